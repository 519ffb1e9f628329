# Shell helpers shared by reload.sh and upgrade.sh (sourced, not run): logging, /readyz, PIDs.
# shellcheck shell=bash disable=SC2034  # HTTP_STATUS and HTTP_BODY are read by the callers
# Pure bash: /dev/tcp instead of curl, which a fresh Debian 12 does not have.

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { say "error: $*"; exit "${DIE_CODE:-1}"; }

# http_get HOST:PORT PATH — sets HTTP_STATUS (000 when nothing answered) and HTTP_BODY.
http_get() {
  local addr=$1 path=$2 host port fd response=''
  host=${addr%:*} port=${addr##*:}
  host=${host#[} host=${host%]}
  [ "$host" = 0.0.0.0 ] && host=127.0.0.1
  [ "$host" = :: ] && host=::1
  HTTP_STATUS=000 HTTP_BODY=''
  { exec {fd}<>"/dev/tcp/$host/$port"; } 2>/dev/null || return 0
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" 1>&"$fd" 2>/dev/null || { exec {fd}>&-; return 0; }
  # read -d '' stops at EOF (the server closes after an HTTP/1.0 answer) and keeps what it got.
  IFS= read -r -d '' -t 5 response <&"$fd" || true
  exec {fd}>&-
  response=${response//$'\r'/}
  local first=${response%%$'\n'*}
  [[ $first =~ ^HTTP/[0-9.]+\ ([0-9]{3}) ]] && HTTP_STATUS=${BASH_REMATCH[1]}
  [[ $response == *$'\n\n'* ]] && HTTP_BODY=${response#*$'\n\n'}
  return 0
}

# readyz_pids — the worker PIDs listed in the last HTTP_BODY of /readyz, one per line.
readyz_pids() {
  local rest=$HTTP_BODY
  while [[ $rest =~ \"pid\":([0-9]+)(.*) ]]; do
    printf '%s\n' "${BASH_REMATCH[1]}"
    rest=${BASH_REMATCH[2]}
  done
}

# pid_alive PID — true while the process exists and is not a zombie (a zombie has let go of
# its sockets; its parent may reap it late).
pid_alive() {
  local pid=$1 stat
  kill -0 "$pid" 2>/dev/null || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# ppid_of PID — the parent PID, empty when the process is gone.
ppid_of() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  stat=${stat#* }
  printf '%s\n' "${stat%% *}"
}

# now_ms — milliseconds since the epoch.
now_ms() { printf '%s\n' "$(( ${EPOCHREALTIME/./} / 1000 ))"; }
