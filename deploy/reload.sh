#!/usr/bin/env bash
# ExecReload helper: SIGHUP the primary, then wait until its rolling restart is over, so that
# `systemctl reload` returns when the new config serves (or fails when the roll did not happen).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$(readlink -f "$0")")/lib.sh"

if [ $# -ne 1 ] || [[ ! $1 =~ ^[0-9]+$ ]]; then
  DIE_CODE=2 die "usage: reload.sh MAINPID   (admin address from \$BRIDGE_ADMIN_LISTEN, default 127.0.0.1:9464)"
fi
pid=$1
admin=${BRIDGE_ADMIN_LISTEN:-127.0.0.1:9464}
# The roll replaces workers one at a time, each draining up to shutdownTimeoutMs.
timeout_s=${BRIDGE_RELOAD_TIMEOUT:-240}
pid_alive "$pid" || die "no running primary $pid"

http_get "$admin" /readyz
[ "$HTTP_STATUS" != 000 ] || die "nothing answers on the admin address $admin (set BRIDGE_ADMIN_LISTEN)"
mapfile -t before < <(readyz_pids)
[ "${#before[@]}" -gt 0 ] || die "/readyz on $admin lists no worker: $HTTP_BODY"

started=$(now_ms)
kill -HUP "$pid"
deadline=$(( started + timeout_s * 1000 ))
# Done when /readyz is 200, lists as many workers as before, none of them an old one, and every
# old worker has exited (its drain is part of the roll).
while :; do
  pid_alive "$pid" || die "the primary $pid exited during the reload"
  http_get "$admin" /readyz
  if [ "$HTTP_STATUS" = 200 ]; then
    mapfile -t now < <(readyz_pids)
    fresh=yes
    [ "${#now[@]}" -eq "${#before[@]}" ] || fresh=no
    for old in "${before[@]}"; do
      for cur in "${now[@]}"; do [ "$cur" != "$old" ] || fresh=no; done
      ! pid_alive "$old" || fresh=no
    done
    if [ "$fresh" = yes ]; then
      say "reloaded: workers ${before[*]} replaced by ${now[*]} in $(( $(now_ms) - started )) ms"
      exit 0
    fi
  fi
  if [ "$(now_ms)" -ge "$deadline" ]; then
    die "the roll did not complete within ${timeout_s}s (last /readyz: $HTTP_STATUS $HTTP_BODY); the primary logs why (journalctl)"
  fi
  sleep 0.2
done
