#!/usr/bin/env bash
# Installs, upgrades or removes xml-amqp-bridge on a Debian 12 host (or lays it out under --root).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage:
  install.sh [--from DIR] [--root DIR] [--node PATH] [--no-start]
  install.sh --uninstall [--purge] [--root DIR]

Installs the built release in DIR (default: the checkout this script is in, after
`npm ci && npm run build`), idempotently:
  /opt/xml-amqp-bridge/releases/VERSION-HASH/   the release: dist/src, deploy/, production dependencies
  /opt/xml-amqp-bridge/current                  symlink to the release that runs
  /etc/xml-amqp-bridge/config.yaml              the config (0644), installed once, never overwritten
  /etc/xml-amqp-bridge/credentials/amqp-url     the broker URL with its password (0600 in a 0700 dir),
                                                installed once (guest on 127.0.0.1) for you to replace
  /etc/systemd/system/xml-amqp-bridge.service   the unit, and xml-amqp-bridge-handover.service (upgrades)
  /etc/sysctl.d/90-xml-amqp-bridge.conf         kernel settings for many connections
then, when systemd runs this machine: daemon-reload, applies the sysctl file, enables and starts
the service, or, if it already runs an older release, switches to the new one without downtime
(deploy/upgrade.sh --systemd). A release already running is left alone.

  --root DIR    lay the files out under DIR instead of / (packaging, tests); starts nothing
  --node PATH   the Node.js binary the units run: 20, 22 or 24 (default: node on PATH)
  --no-start    lay the files out, do not touch systemd or sysctl
  --uninstall   stop and disable the service, remove the units, the sysctl file and
                /opt/xml-amqp-bridge; keeps /etc/xml-amqp-bridge unless --purge
USAGE
}

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

here=$(dirname "$(readlink -f "$0")")
from=$(dirname "$here") root=/ node_bin='' start=yes action=install purge=no
while [ $# -gt 0 ]; do
  case $1 in
    --from) from=${2:?--from needs a DIR}; shift 2 ;;
    --root) root=${2:?--root needs a DIR}; shift 2 ;;
    --node) node_bin=${2:?--node needs a PATH}; shift 2 ;;
    --no-start) start=no; shift ;;
    --uninstall) action=uninstall; shift ;;
    --purge) purge=yes; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; say "error: unknown argument: $1"; exit 2 ;;
  esac
done

PREFIX=/opt/xml-amqp-bridge
ETC=/etc/xml-amqp-bridge
UNITS=(xml-amqp-bridge.service xml-amqp-bridge-handover.service)
UNIT_DIR=/etc/systemd/system
SYSCTL_FILE=/etc/sysctl.d/90-xml-amqp-bridge.conf
TAKEOVER_ENV=/run/xml-amqp-bridge-takeover.env

root=$(readlink -m "$root")
R=${root%/} # "" when installing into the running system
live=no
[ -z "$R" ] && live=yes
systemd=no
[ "$live" = yes ] && [ "$start" = yes ] && [ -d /run/systemd/system ] && systemd=yes
no_systemd_note() {
  if [ "$live" = no ]; then
    say "laid out under $root only: nothing enabled or started"
  elif [ "$start" = no ]; then
    say "--no-start: systemd and sysctl left alone"
  else
    say "systemd is not running here (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown)): files laid out," \
      "but the service is not enabled or started and the sysctl file is not applied." \
      "Without systemd run: CREDENTIALS_DIRECTORY=$ETC/credentials node $PREFIX/current/dist/src/primary/main.js --config $ETC/config.yaml"
  fi
}

uninstall() {
  [ "$live" = no ] || [ "$(id -u)" = 0 ] || die "run as root (sudo), or give --root DIR"
  if [ "$systemd" = yes ]; then
    systemctl disable --now "${UNITS[0]}" 2>/dev/null || true
    systemctl stop "${UNITS[1]}" 2>/dev/null || true
  fi
  local u
  for u in "${UNITS[@]}"; do rm -f "$R$UNIT_DIR/$u"; done
  rm -f "$R$SYSCTL_FILE"
  [ "$live" = yes ] && rm -f "$TAKEOVER_ENV"
  [ "$systemd" = yes ] && systemctl daemon-reload
  rm -rf "$R$PREFIX"
  say "removed $R$PREFIX, the units and $SYSCTL_FILE (its values stay in force until reboot)"
  if [ "$purge" = yes ]; then
    rm -rf "$R$ETC"
    say "removed $ETC (config and credentials)"
  elif [ -e "$R$ETC" ]; then
    say "kept $ETC (config and credentials); --uninstall --purge removes it"
  fi
}

# Everything missing is listed at once, so one round of apt-get/npm fixes it all.
preflight() {
  local missing=() ver t
  if [ "$live" = yes ] && [ "$(id -u)" != 0 ]; then
    missing+=("root: run with sudo (or give --root DIR to lay the files out elsewhere)")
  fi
  node_bin=${node_bin:-$(command -v node || true)}
  if [ -z "$node_bin" ] || [ ! -x "$node_bin" ]; then
    missing+=("Node.js: no node on PATH (Debian 12's own nodejs package is 18; install Node.js 20 on Debian 12, 22 or 24 on Debian 13, e.g. NodeSource's deb, or give --node PATH; README: Supported platforms)")
  else
    node_bin=$(readlink -f "$node_bin")
    ver=$("$node_bin" --version 2>/dev/null || echo unknown)
    [[ $ver =~ ^v(20|22|24)\. ]] || missing+=("Node.js: $node_bin is $ver; the bridge runs on 20, 22 or 24 (package.json engines; README: Supported platforms)")
    # Whether a uWebSockets.js build loads with this Node.js on this glibc (README: Supported platforms).
    if [ -f "$from/dist/src/primary/main.js" ] && [ -d "$from/node_modules" ]; then
      t=$("$node_bin" "$from/dist/src/primary/main.js" --version 2>&1 || true)
      [[ $t == *"none loads here"* ]] && missing+=("a uWebSockets.js build for $ver on this host: ${t#*none loads here: }")
    fi
  fi
  [ -f "$from/dist/src/primary/main.js" ] ||
    missing+=("a built release: $from/dist/src/primary/main.js is missing (run 'npm ci && npm run build' in $from, or give --from DIR)")
  [ -f "$from/package.json" ] && [ -f "$from/package-lock.json" ] ||
    missing+=("package.json and package-lock.json in $from")
  if [ ! -d "$from/node_modules" ] && ! command -v npm >/dev/null 2>&1; then
    missing+=("npm: $from has no node_modules, so production dependencies must be fetched with 'npm ci --omit=dev'")
  fi
  for t in sha256sum find sort install cmp; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t (Debian packages coreutils, findutils, diffutils)")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "cannot install; missing:"
    for t in "${missing[@]}"; do printf '  - %s\n' "$t" >&2; done
    exit 1
  fi
}

# release_id — VERSION-HASH, HASH over what a release is made of: same build, same id.
release_id() {
  local version hash
  version=$("$node_bin" -e 'process.stdout.write(String(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).version))' "$from/package.json")
  hash=$(cd "$from" && { find dist/src deploy -type f; printf '%s\n' package.json package-lock.json; } |
    LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum | cut -c1-12)
  printf '%s-%s\n' "$version" "$hash"
}

# copy_dependencies DEST — the production packages of package-lock.json, from $from/node_modules
# when it has them (no network), else fetched by npm ci --omit=dev.
copy_dependencies() {
  local dest=$1
  if [ ! -d "$from/node_modules" ]; then
    say "no node_modules in $from: fetching production dependencies (npm ci --omit=dev)"
    (cd "$dest" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >&2)
    return
  fi
  local lines
  # shellcheck disable=SC2016  # JavaScript, not shell
  lines=$("$node_bin" -e '
    const lock = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    for (const [path, info] of Object.entries(lock.packages ?? {})) {
      if (path === "" || info.dev === true || info.link === true) continue;
      console.log(`${info.optional === true || info.devOptional === true ? "optional" : "required"} ${path}`);
    }' "$from/package-lock.json")
  local kind path copied=() parent skip
  while read -r kind path; do
    skip=no
    for parent in "${copied[@]}"; do [[ $path == "$parent"/* ]] && skip=yes && break; done
    [ "$skip" = no ] || continue
    if [ -d "$from/$path" ]; then
      (cd "$from" && cp -R --parents "$path" "$dest/")
      copied+=("$path")
    elif [ "$kind" = required ]; then
      die "$from/$path is missing: node_modules does not match package-lock.json (run 'npm ci' in $from)"
    fi
  done <<<"$lines"
}

install_release() {
  local id=$1 rel=$R$PREFIX/releases/$1 tmp
  if [ -d "$rel" ]; then
    say "release $id is already laid out in $PREFIX/releases"
    return
  fi
  tmp=$R$PREFIX/releases/.$id.partial
  rm -rf "$tmp"
  mkdir -p "$tmp"
  (cd "$from" && cp -R --parents dist/src deploy package.json package-lock.json "$tmp/")
  [ -f "$from/README.md" ] && cp "$from/README.md" "$tmp/"
  find "$tmp/dist" -name '*.tsbuildinfo' -delete
  copy_dependencies "$tmp"
  [ "$(id -u)" = 0 ] && chown -R 0:0 "$tmp"
  chmod -R u+rwX,go+rX,go-w "$tmp"
  chmod 0755 "$tmp/dist/src/primary/main.js" "$tmp/deploy/install.sh" "$tmp/deploy/upgrade.sh" "$tmp/deploy/reload.sh"
  chmod 0644 "$tmp/deploy/lib.sh"
  # Complete or absent: the final name appears only once everything is in place.
  mv -T "$tmp" "$rel"
  say "laid out release $id in $PREFIX/releases/$id"
}

# put SRC DEST MODE — install SRC as DEST if its content or mode differs; true when it changed.
put() {
  local src=$1 dest=$2 mode=$3
  if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then return 1; fi
  install -D -m "$mode" "$src" "$dest"
}

install_files() {
  local rel=$R$PREFIX/releases/$1 u tmp changed=no
  install -d -m 0755 "$R$ETC"
  chmod 0755 "$R$ETC"
  if [ -e "$R$ETC/config.yaml" ]; then
    say "kept the existing $ETC/config.yaml"
  else
    install -m 0644 "$rel/deploy/config.yaml" "$R$ETC/config.yaml"
    say "installed $ETC/config.yaml (edit it: routes, topology)"
  fi
  install -d -m 0700 "$R$ETC/credentials"
  chmod 0700 "$R$ETC/credentials"
  if [ -e "$R$ETC/credentials/amqp-url" ]; then
    say "kept the existing $ETC/credentials/amqp-url"
  else
    (umask 077 && printf '%s\n' 'amqp://guest:guest@127.0.0.1:5672/' >"$R$ETC/credentials/amqp-url")
    say "installed $ETC/credentials/amqp-url with RabbitMQ's local guest account: put your broker's URL there"
  fi
  chmod 0600 "$R$ETC/credentials/amqp-url"

  tmp=$(mktemp)
  for u in "${UNITS[@]}"; do
    # The units name /usr/bin/node (NodeSource's path); point them at the node that was checked.
    sed "s#^\(Exec[A-Za-z]*=\)/usr/bin/node #\1$node_bin #" "$rel/deploy/$u" >"$tmp"
    if put "$tmp" "$R$UNIT_DIR/$u" 0644; then changed=yes; say "installed $UNIT_DIR/$u"; fi
  done
  rm -f "$tmp"
  if put "$rel/deploy/sysctl/90-xml-amqp-bridge.conf" "$R$SYSCTL_FILE" 0644; then say "installed $SYSCTL_FILE"; fi
  UNITS_CHANGED=$changed
}

check_config() {
  local rel=$R$PREFIX/releases/$1
  # The environment the unit gives the service, nothing from this shell.
  if ! env -i PATH=/usr/bin:/bin CREDENTIALS_DIRECTORY="$R$ETC/credentials" BRIDGE_ADMIN_LISTEN=127.0.0.1:9464 \
    "$node_bin" "$rel/dist/src/primary/main.js" check-config "$R$ETC/config.yaml" >&2; then
    die "release $1 refuses $ETC/config.yaml (problems above): fix it and run install.sh again; nothing was started or switched"
  fi
}

switch_current() {
  ln -sfn "releases/$1" "$R$PREFIX/current.tmp"
  mv -Tf "$R$PREFIX/current.tmp" "$R$PREFIX/current"
}

# Keep the running release and the two newest others, for a quick way back.
prune_releases() {
  local current kept=0 dir
  current=$(readlink -f "$R$PREFIX/current")
  while IFS= read -r dir; do
    dir=${dir%/}
    [ "$(readlink -f "$dir")" = "$current" ] && continue
    kept=$((kept + 1))
    [ "$kept" -le 2 ] || { rm -rf -- "$dir"; say "removed the old release ${dir##*/}"; }
  done < <(ls -1dt "$R$PREFIX"/releases/*/)
}

install_all() {
  preflight
  local id previous
  id=$(release_id)
  install -d -m 0755 "$R$PREFIX" "$R$PREFIX/releases"
  install_release "$id"
  install_files "$id"
  check_config "$id"
  previous=$(readlink "$R$PREFIX/current" 2>/dev/null || true)

  if [ "$systemd" != yes ]; then
    switch_current "$id"
    prune_releases
    no_systemd_note
    return
  fi
  systemctl daemon-reload
  sysctl -p "$SYSCTL_FILE" >/dev/null || say "warning: could not apply $SYSCTL_FILE now (it applies at boot)"
  systemctl enable "${UNITS[0]}" >/dev/null
  if ! systemctl is-active --quiet "${UNITS[0]}"; then
    switch_current "$id"
    say "starting ${UNITS[0]} (it reports ready once every worker listens and reaches the broker)"
    systemctl start "${UNITS[0]}" || die "${UNITS[0]} did not start: journalctl -u ${UNITS[0]}"
  elif [ "${previous##*/}" != "$id" ]; then
    say "${UNITS[0]} runs ${previous#releases/}: switching to $id without downtime"
    NODE=$node_bin "$R$PREFIX/releases/$id/deploy/upgrade.sh" --systemd --release "$PREFIX/releases/$id"
  elif [ "$UNITS_CHANGED" = yes ]; then
    say "the unit files changed: they apply at the next start (systemctl restart ${UNITS[0]}, a short outage) or upgrade"
  else
    say "${UNITS[0]} already runs release $id: nothing to do"
  fi
  prune_releases
}

case $action in
  install) install_all ;;
  uninstall) uninstall ;;
esac
