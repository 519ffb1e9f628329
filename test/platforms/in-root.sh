#!/usr/bin/env bash
# Runs Node.js from the Debian 13 root (debian13-root.sh) inside it: in-root.sh ROOT MAJOR ARGS...
# runs /opt/node-MAJOR/bin/node ARGS... chrooted into ROOT, with this host's /dev, /proc, /tmp
# and the project folder (at the same path) mounted in a private mount namespace, so paths the
# tests hand over (configs and certificates under /tmp, dist/ in the project) mean the same inside.
# The network is the host's: the bridge inside reaches the broker on 127.0.0.1:5672.
# Every step execs the next, so the PID the caller holds is Node's own and signals reach it.
set -euo pipefail
root=$1 major=$2
shift 2
project=$(cd "$(dirname "$0")/../.." && pwd -P)
mkdir -p "$root$project"
exec unshare --mount --propagation private -- sh -c '
  set -e
  root=$1 major=$2 project=$3
  shift 3
  mount --rbind /dev "$root/dev"
  mount -t proc proc "$root/proc"
  mount --bind /tmp "$root/tmp"
  mount --bind "$project" "$root$project"
  cd "$root$project"
  exec chroot "$root" sh -c "cd \"\$0\" && exec /opt/node-$major/bin/node \"\$@\"" "$project" "$@"
' in-root "$root" "$major" "$project" "$@"
