#!/usr/bin/env bash
# Run a command inside the arm64 root filesystem that scripts/arm64_rootfs.sh built, under
# QEMU user emulation (binfmt_misc runs its arm64 programs transparently).
#
#   sudo bash scripts/in_arm64.sh DIR [--bind SRC:DST]... [--chdir PATH] -- COMMAND [ARG]...
#   e.g. bash scripts/in_arm64.sh ~/.cache/slipway/emulation/arm64-bookworm --chdir /slipway \
#          -- python -m workers.engine.hardware
#
# Inside: this repository read-only at /slipway, each --bind SRC:DST (read-write; DST is made
# in the tree when missing), /proc, /dev and /sys of the host, a fresh /tmp, the host's
# /etc/resolv.conf and /etc/hosts, and the venv /opt/slipway-agent/venv first on PATH. The
# network is the host's: 127.0.0.1 reaches the host's servers. The environment is clean
# (HOME, PATH, LANG, TERM, VIRTUAL_ENV) plus the caller's SLIPWAY_* variables.
#
# /sys/devices/system/cpu is an empty folder inside: with the host's CPU topology there and its
# x86 /proc/cpuinfo, onnxruntime's cpuinfo library crashes at import (SIGSEGV); without it,
# cpuinfo gives up with a warning and onnxruntime runs. /proc/cpuinfo stays the host's (QEMU 7.2
# does not emulate it), which is one way a program tells it is emulated.
#
# The mounts are made in a private mount namespace (unshare), so they are invisible to the
# host and to concurrent runs, and vanish with the command however it ends. This script
# replaces itself with the command (exec all the way down: unshare, sh, chroot, env), so the
# process a caller started *is* the command: SIGTERM and SIGINT reach it directly, and its
# exit status is this script's. Needs root (mounts and chroot).
set -euo pipefail

die() {
  echo "[in-arm64] error: $*" >&2
  exit 2
}
usage() { die "usage: $0 DIR [--bind SRC:DST]... [--chdir PATH] -- COMMAND [ARG]..."; }

[ $# -ge 1 ] || usage
ROOT=$1
shift
BINDS=()
CHDIR=/
while [ $# -gt 0 ]; do
  case $1 in
    --) shift && break ;;
    --bind) [ $# -ge 2 ] || usage && BINDS+=("$2") && shift 2 ;;
    --bind=*) BINDS+=("${1#--bind=}") && shift ;;
    --chdir) [ $# -ge 2 ] || usage && CHDIR=$2 && shift 2 ;;
    --chdir=*) CHDIR=${1#--chdir=} && shift ;;
    *) usage ;;
  esac
done
[ $# -ge 1 ] || usage

[ -d "$ROOT" ] || die "$ROOT does not exist; build it with: bash scripts/arm64_rootfs.sh $ROOT"
ROOT=$(cd "$ROOT" && pwd -P)
[ -f "$ROOT/.slipway-rootfs.json" ] || die "$ROOT is not a finished arm64 root filesystem (no .slipway-rootfs.json); build it with: bash scripts/arm64_rootfs.sh $ROOT"
[ "$(id -u)" -eq 0 ] || die "running in the arm64 root filesystem needs root (mounts and chroot); run it with sudo."
if [ "$(head -n1 /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null)" != enabled ]; then
  die "this host can't run arm64 programs (no enabled /proc/sys/fs/binfmt_misc/qemu-aarch64). Install them with: apt-get install qemu-user-static binfmt-support mmdebstrap (then: update-binfmts --enable qemu-aarch64)."
fi
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

# Each --bind as two words, SRC and DST, checked here so that a mistake is a clear sentence.
PAIRS=()
for pair in "${BINDS[@]}"; do
  src=${pair%%:*} dst=${pair#*:}
  [ "$src" != "$pair" ] && [ -n "$src" ] && [ -n "$dst" ] || die "--bind takes SRC:DST, not '$pair'."
  [ -e "$src" ] || die "--bind $pair: $src does not exist."
  case $dst in /*) ;; *) die "--bind $pair: DST must be an absolute path inside the tree." ;; esac
  PAIRS+=("$(cd "$(dirname "$src")" && pwd -P)/$(basename "$src")" "$dst")
done

ENVS=(HOME=/root LANG=C.UTF-8 "TERM=${TERM:-dumb}" VIRTUAL_ENV=/opt/slipway-agent/venv
  PATH=/opt/slipway-agent/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
while IFS= read -r name; do
  ENVS+=("$name=${!name}")
done < <(compgen -e | grep '^SLIPWAY_' || true)

# shellcheck disable=SC2016 # the inner script expands its own variables
exec unshare --mount --propagation private -- /bin/sh -euc '
  root=$1 repo=$2 chdir=$3 npairs=$4
  shift 4
  mount --rbind /proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount --rbind /sys "$root/sys"
  mount -t tmpfs -o ro,mode=755 slipway-no-cpu-topology "$root/sys/devices/system/cpu"
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
  for f in /etc/resolv.conf /etc/hosts; do
    if [ -e "$f" ] && [ -e "$root$f" ]; then mount --bind "$f" "$root$f"; fi
  done
  mount --bind -o ro "$repo" "$root/slipway"
  while [ "$npairs" -gt 0 ]; do
    src=$1 dst=$2
    shift 2
    npairs=$((npairs - 1))
    if [ -d "$src" ]; then mkdir -p "$root$dst"; else mkdir -p "$(dirname "$root$dst")" && touch "$root$dst"; fi
    mount --bind "$src" "$root$dst"
  done
  # The rest: the NAME=VALUE words of the environment, then the command.
  exec chroot "$root" /usr/bin/env -i -C "$chdir" "$@"
' in-arm64 "$ROOT" "$REPO" "$CHDIR" "$((${#PAIRS[@]} / 2))" ${PAIRS[@]+"${PAIRS[@]}"} "${ENVS[@]}" "$@"
