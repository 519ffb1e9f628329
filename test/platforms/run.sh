#!/usr/bin/env bash
# The platform tier, `npm run test:platforms` (after a build): the e2e files that exercise what a
# runtime changes (HTTP parsing, publish, rpc, TLS, lifecycle) run with the bridge inside the
# Debian 13 root on each supported Node.js, on the 20.57 uWebSockets.js build; then the matrix
# and smoke files. The test runner itself stays on this host (its rabbitmqctl, curl, openssl).
# Needs root (chroot, mount namespaces) and the broker on 127.0.0.1:5672. `npm test` runs only
# the matrix and smoke files and the TLS file (CI); this is the full tier.
#   PLATFORM_RUNTIMES="debian13-node22"   to run fewer runtimes
set -uo pipefail
cd "$(dirname "$0")/../.."

root=$(bash test/platforms/debian13-root.sh) || exit 1
echo "== Debian 13 root: $root"
files=()
for name in publish-statuses rpc tls http-edges robustness lifecycle readiness logs corpus partners; do
  files+=("dist/test/e2e/$name.test.js")
done
runtimes=${PLATFORM_RUNTIMES:-"debian13-node20 debian13-node22 debian13-node24"}

node dist/test/shared-broker-state.js save dist/.platforms-broker-before.json || exit 1
status=0
rows=()
run() { # name, then node --test arguments
  local name=$1 log
  shift
  log=$(mktemp)
  local started=$SECONDS
  node --test --test-concurrency=1 "$@" >"$log" 2>&1
  local code=$?
  local pass fail
  pass=$(grep -E '^# pass ' "$log" | tail -1 | cut -d' ' -f3)
  fail=$(grep -E '^# fail ' "$log" | tail -1 | cut -d' ' -f3)
  rows+=("| $name | ${pass:-?} | ${fail:-?} | $((SECONDS - started)) s |")
  if [ "$code" -ne 0 ]; then
    status=1
    echo "== $name: FAILED"
    grep -E '^\s*not ok' "$log"
    tail -40 "$log"
  else
    echo "== $name: ${pass:-?} passed"
  fi
  rm -f "$log"
}

run "host: matrix, smoke" dist/test/platforms/*.test.js
for runtime in $runtimes; do
  export BRIDGE_TEST_RUNTIME=$runtime
  run "$runtime" "${files[@]}"
  unset BRIDGE_TEST_RUNTIME
done
node dist/test/shared-broker-state.js check dist/.platforms-broker-before.json || status=1

echo
echo "| bridge runs on | pass | fail | time |"
echo "| --- | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
exit $status
