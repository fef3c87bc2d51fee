#!/usr/bin/env bash
# Runs a command on the committed tree (git archive HEAD) inside a minimal Debian 12 root
# (debootstrap --variant=minbase bookworm): stricter than any real fresh machine, it catches
# install steps that only work because the developer's machine already has some package.
#
#   scripts/fresh_root_check.sh                     # the README's first command (see below)
#   scripts/fresh_root_check.sh scripts/test.sh     # any command, run from the tree's root
#
# Default command: scripts/sdrt generate --prompt "red apple" --output /tmp/fresh-check.png,
# then checks that the root's /tmp/fresh-check.png is a PNG.
#
# Needs root (re-runs itself with sudo otherwise), debootstrap (installed if missing) and the
# Debian mirror. Environment:
#   SDRT_FRESH_ROOT_CACHE    the base root, built once (default /var/cache/sdrt-fresh-root/base)
#   SDRT_FRESH_ROOT_WORK     where per-run copies go (default /var/tmp/sdrt-fresh-root)
#   SDRT_FRESH_ROOT_REV      the commit to check (default HEAD)
#   SDRT_FRESH_ROOT_TIMEOUT  seconds the command may run (default: no limit); on expiry the
#                            command's process group is killed and the exit status is 124
# Exit status: the command's (or the PNG check's). Each run works on a fresh copy of the base
# root; on success the copy is removed, on failure it is kept and its path printed.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  exec sudo --preserve-env=SDRT_FRESH_ROOT_CACHE,SDRT_FRESH_ROOT_WORK,SDRT_FRESH_ROOT_REV,SDRT_FRESH_ROOT_TIMEOUT "$0" "$@"
fi

repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cache=${SDRT_FRESH_ROOT_CACHE:-/var/cache/sdrt-fresh-root/base}
work_parent=${SDRT_FRESH_ROOT_WORK:-/var/tmp/sdrt-fresh-root}
rev=$(git -C "$repo" rev-parse --verify "${SDRT_FRESH_ROOT_REV:-HEAD}^{commit}")
limit=${SDRT_FRESH_ROOT_TIMEOUT:-0}
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[[ -n "$mirror" ]] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[[ -n "$mirror" ]] || mirror=http://deb.debian.org/debian

png=/tmp/fresh-check.png
cmd=("$@")
default_cmd=0
if (( ${#cmd[@]} == 0 )); then
  cmd=(scripts/sdrt generate --prompt "red apple" --output "$png")
  default_cmd=1
fi

log() { echo "fresh_root_check: $*" >&2; }
t0=$SECONDS

# 1. The base root, built once. A lock keeps two runs from building it at the same time.
mkdir -p "$(dirname "$cache")"
exec 9>"$cache.lock"
flock 9
if [[ ! -x "$cache/bin/bash" ]]; then
  if ! command -v debootstrap >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  log "building a minimal Debian 12 root in $cache from $mirror (once)"
  rm -rf --one-file-system "$cache.partial"
  debootstrap --variant=minbase bookworm "$cache.partial" "$mirror" > "$cache.debootstrap.log" 2>&1 \
    || { tail -30 "$cache.debootstrap.log" >&2; log "debootstrap failed (log: $cache.debootstrap.log)"; exit 1; }
  mv "$cache.partial" "$cache"
  log "base root ready after $((SECONDS - t0)) s"
fi
flock -u 9
exec 9>&-

# 2. A private copy of it, with the committed tree in /src.
mkdir -p "$work_parent"
work=$(mktemp -d "$work_parent/root.XXXXXX")
mounts=(proc sys dev dev/pts)

mounted_under_work() {  # prints the mount points at or below $work, deepest first
  awk -v w="$work" '$2 == w || index($2, w "/") == 1 {print $2}' /proc/self/mounts | sort -r
}
cleanup() {
  local m
  for m in $(mounted_under_work); do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cp -a "$cache/." "$work/"
cp -L /etc/resolv.conf "$work/etc/resolv.conf"
mkdir -p "$work/src"
git -C "$repo" archive "$rev" | tar -x -C "$work/src"
mount -t proc proc "$work/proc"
mount -t sysfs sysfs "$work/sys"
mount --bind /dev "$work/dev"
mount --bind /dev/pts "$work/dev/pts"

# 3. The command, as root in the clean root with a clean environment.
log "running '${cmd[*]}' on $(git -C "$repo" rev-parse --short "$rev") in $work"
runner=()
if (( limit > 0 )); then runner=(timeout -k 30 "$limit"); fi
t1=$SECONDS
set +e
"${runner[@]}" chroot "$work" /usr/bin/env -i HOME=/root TERM=dumb \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  bash -c 'cd /src && "$@"' bash "${cmd[@]}"
rc=$?
set -e
log "command exited with $rc after $((SECONDS - t1)) s"

if (( rc == 0 && default_cmd )); then
  if [[ "$(head -c 8 "$work$png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" == 89504e470d0a1a0a ]]; then
    log "$png is a PNG ($(stat -c %s "$work$png") bytes)"
  else
    log "$png is missing or not a PNG"
    rc=1
  fi
fi

cleanup
if (( rc == 0 )); then
  if [[ -n "$(mounted_under_work)" ]]; then
    log "passed, but mounts remain under $work; not removing it"
  else
    rm -rf --one-file-system "$work"
    log "passed in $((SECONDS - t0)) s"
  fi
else
  log "FAILED with status $rc after $((SECONDS - t0)) s (the root is kept in $work)"
fi
exit $rc
