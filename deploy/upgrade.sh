#!/usr/bin/env bash
# Zero-downtime binary upgrade: start the new release beside the running one on the same port
# (--takeover, SO_REUSEPORT), wait until it is ready, then drain the old one.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$(readlink -f "$0")")/lib.sh"

usage() {
  cat <<'USAGE'
Usage:
  upgrade.sh --pid PID --release DIR --config FILE --admin HOST:PORT [--log FILE] [--timeout SEC]
      Without systemd: start DIR's bridge with --takeover beside the instance PID (same config,
      so the same partner port), its admin port on HOST:PORT (must differ from the running
      one's), wait for its /readyz 200, SIGTERM PID and wait for its exit. The new instance
      inherits this script's environment, runs detached and logs to FILE. Prints new_pid=N.

  upgrade.sh --systemd --release DIR [--timeout SEC]
      Under systemd, DIR being a release laid out by install.sh (/opt/xml-amqp-bridge/releases/ID):
      start xml-amqp-bridge-handover.service on DIR beside xml-amqp-bridge.service, stop the
      latter (drain), point /opt/xml-amqp-bridge/current at DIR, start xml-amqp-bridge.service
      again beside the handover instance, then stop the handover instance. The port is served
      throughout. install.sh runs this itself when it installs a new release over a running one.

  --timeout SEC bounds each wait (readiness, drain); default 90.
Exit status: 0 done; 1 failed (the message says which instance is serving); 2 bad usage or an
invalid config (nothing was changed).
USAGE
}

mode=pid old_pid='' release='' config='' admin='' log='' timeout_s=90
while [ $# -gt 0 ]; do
  case $1 in
    --pid) old_pid=${2:?--pid needs a PID}; shift 2 ;;
    --release) release=${2:?--release needs a DIR}; shift 2 ;;
    --config) config=${2:?--config needs a FILE}; shift 2 ;;
    --admin) admin=${2:?--admin needs HOST:PORT}; shift 2 ;;
    --log) log=${2:?--log needs a FILE}; shift 2 ;;
    --timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
    --systemd) mode=systemd; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; DIE_CODE=2 die "unknown argument: $1" ;;
  esac
done
[[ $timeout_s =~ ^[0-9]+$ ]] || DIE_CODE=2 die "--timeout takes whole seconds"
[ -n "$release" ] || { usage >&2; DIE_CODE=2 die "--release is required"; }
release=$(readlink -f "$release")
main_js=$release/dist/src/primary/main.js
[ -f "$main_js" ] || DIE_CODE=2 die "$release is not a built release: $main_js is missing (npm run build)"
node_bin=${NODE:-$(command -v node || true)}
[ -n "$node_bin" ] || DIE_CODE=2 die "node is not on PATH (set NODE=/path/to/node)"

# wait_exit PID SECONDS — true once PID is gone (or a zombie), false at the deadline.
wait_exit() {
  local pid=$1 deadline=$(( $(now_ms) + $2 * 1000 ))
  while pid_alive "$pid"; do
    [ "$(now_ms)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

upgrade_pid() {
  if [ -z "$old_pid" ] || [ -z "$config" ] || [ -z "$admin" ]; then
    usage >&2
    DIE_CODE=2 die "--pid, --config and --admin are required without --systemd"
  fi
  [[ $admin =~ ^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[1-9][0-9]*$ ]] || DIE_CODE=2 die "--admin must be HOST:PORT with a fixed port"
  pid_alive "$old_pid" || DIE_CODE=2 die "no running process $old_pid"
  # Refuse before touching anything if the new release does not accept the config.
  "$node_bin" "$main_js" check-config "$config" >&2 || DIE_CODE=2 die "the new release refuses $config (above); nothing changed"
  http_get "$admin" /healthz
  [ "$HTTP_STATUS" = 000 ] || DIE_CODE=2 die "$admin already answers (the running instance's admin port?): choose a free --admin"

  log=${log:-${TMPDIR:-/tmp}/xml-amqp-bridge-upgrade-$(date +%Y%m%dT%H%M%S).log}
  local started new_pid
  started=$(now_ms)
  # setsid: the new instance must outlive this script and its terminal or caller.
  BRIDGE_ADMIN_LISTEN=$admin setsid "$node_bin" "$main_js" --config "$config" --takeover </dev/null >>"$log" 2>&1 &
  new_pid=$!
  say "started the new release as pid $new_pid (admin $admin, log $log); waiting for /readyz 200"

  local deadline=$(( started + timeout_s * 1000 )) ready=no
  while [ "$(now_ms)" -lt "$deadline" ]; do
    if ! pid_alive "$new_pid"; then
      tail -n 20 "$log" >&2 || true
      die "the new instance exited during start-up (log above, $log); the old instance $old_pid keeps serving"
    fi
    http_get "$admin" /readyz
    if [ "$HTTP_STATUS" = 200 ]; then
      # The 200 must come from the instance just started: its workers are its children.
      local pid mine=yes
      for pid in $(readyz_pids); do [ "$(ppid_of "$pid")" = "$new_pid" ] || mine=no; done
      [ "$mine" = yes ] && { ready=yes; break; }
    fi
    sleep 0.1
  done
  if [ "$ready" != yes ]; then
    kill -TERM "$new_pid" 2>/dev/null || true
    wait_exit "$new_pid" "$timeout_s" || kill -KILL "$new_pid" 2>/dev/null || true
    die "the new instance was not ready within ${timeout_s}s (last /readyz: $HTTP_STATUS $HTTP_BODY); stopped it, the old instance $old_pid keeps serving"
  fi
  local ready_ms=$(( $(now_ms) - started ))
  say "new instance $new_pid ready after ${ready_ms} ms; draining the old instance $old_pid (SIGTERM)"

  local drain_start
  drain_start=$(now_ms)
  kill -TERM "$old_pid"
  if ! wait_exit "$old_pid" "$timeout_s"; then
    die "the old instance $old_pid is still running ${timeout_s}s after SIGTERM; both serve the port (new: $new_pid)"
  fi
  pid_alive "$new_pid" || die "the new instance $new_pid died while the old one drained: the port may be unserved (log: $log)"
  say "old instance $old_pid exited after $(( $(now_ms) - drain_start )) ms; upgrade done, $new_pid serves the port"
  printf 'new_pid=%s\nlog=%s\n' "$new_pid" "$log"
}

upgrade_systemd() {
  local prefix=/opt/xml-amqp-bridge unit=xml-amqp-bridge.service handover=xml-amqp-bridge-handover.service
  local takeover_env=/run/xml-amqp-bridge-takeover.env
  [ "$(id -u)" = 0 ] || DIE_CODE=2 die "--systemd needs root"
  [ -d /run/systemd/system ] || DIE_CODE=2 die "systemd is not running here (PID 1 is $(cat /proc/1/comm)); use --pid"
  case $release in
    "$prefix"/releases/*) ;;
    *) DIE_CODE=2 die "$release is not under $prefix/releases: lay it out with install.sh first" ;;
  esac
  env CREDENTIALS_DIRECTORY=/etc/xml-amqp-bridge/credentials "$node_bin" "$main_js" check-config /etc/xml-amqp-bridge/config.yaml >&2 ||
    DIE_CODE=2 die "the new release refuses /etc/xml-amqp-bridge/config.yaml (above); nothing changed"
  # Relative targets, as install.sh writes them (it compares them when pruning old releases).
  switch() { ln -sfn "releases/${release##*/}" "$prefix/$1.tmp" && mv -Tf "$prefix/$1.tmp" "$prefix/$1"; }

  if ! systemctl is-active --quiet "$unit"; then
    switch current
    systemctl start "$unit"
    say "$unit was not running: started it on $release"
    return 0
  fi
  switch next
  say "starting $handover on $release beside $unit"
  if ! timeout "$timeout_s" systemctl start "$handover"; then
    systemctl stop "$handover" || true
    rm -f "$prefix/next"
    die "$handover did not become ready (journalctl -u $handover); $unit keeps serving the old release"
  fi
  say "stopping $unit (drain); $handover serves meanwhile"
  systemctl stop "$unit"
  switch current
  printf 'BRIDGE_TAKEOVER=--takeover\n' >"$takeover_env"
  if ! timeout "$timeout_s" systemctl start "$unit"; then
    rm -f "$takeover_env"
    die "$unit did not start on $release (journalctl -u $unit); $handover keeps serving it: fix, then 'systemctl start $unit && systemctl stop $handover'"
  fi
  rm -f "$takeover_env"
  say "stopping $handover (drain)"
  systemctl stop "$handover"
  rm -f "$prefix/next"
  say "upgrade done: $unit runs $release"
}

case $mode in
  pid) upgrade_pid ;;
  systemd) upgrade_systemd ;;
esac
