#!/usr/bin/env bash
# Build, once, an arm64 Debian bookworm root filesystem that runs under QEMU user emulation,
# with a Python venv at /opt/slipway-agent/venv holding the aarch64 wheels of onnxruntime,
# MNN, ncnn and LiteRT's ai-edge-litert (and onnx, numpy, requests, psutil, pyseccomp). The
# device agent runs in it in the integration tests (docs/adr/0016-device-agents.md); run commands in it with
# scripts/in_arm64.sh.
#
#   sudo bash scripts/arm64_rootfs.sh [DIR]
#
# DIR defaults to ${SLIPWAY_EMULATION_DIR:-$HOME/.cache/slipway/emulation}/arm64-bookworm.
# The finished tree has DIR/.slipway-rootfs.json (written last: architecture, Python and
# package versions, build time); when it is there, the script prints its path and exits at
# once. A build happens in DIR.partial and is moved into place when complete, so an
# interrupted build never looks finished (the next call starts it over). flock on DIR.lock:
# a second caller waits for the first build and then uses it. Delete DIR to rebuild.
#
# Needs root (mmdebstrap's root mode, chroot, mounts), the host packages qemu-user-static,
# binfmt-support and mmdebstrap, and network access to Debian's mirror and to PyPI (or to
# PIP_INDEX_URL). Nothing is compiled under emulation: pip takes binary wheels only.
# Environment: SLIPWAY_DEBIAN_MIRROR (default http://deb.debian.org/debian),
# SLIPWAY_ARM64_REQUIREMENTS (pip requirement specs, space-separated; default below: the
# versions of the x86_64 dev venv, so parity numbers compare like with like).
set -euo pipefail

DIR=${1:-${SLIPWAY_EMULATION_DIR:-$HOME/.cache/slipway/emulation}/arm64-bookworm}
STAMP_NAME=.slipway-rootfs.json
VENV=/opt/slipway-agent/venv
MIRROR=${SLIPWAY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Every one has a manylinux aarch64 wheel for CPython 3.11 (bookworm's Python, glibc 2.36 >= 2.28).
# ml_dtypes (onnx's dependency) as in the dev venv: 0.7.0's extension takes 5 to 9 s to load
# under emulation (0.5.4: under 1 s), and every `import onnx` pays it.
REQUIREMENTS=${SLIPWAY_ARM64_REQUIREMENTS:-numpy==2.4.6 onnx==1.23.2 ml_dtypes==0.5.4 onnxruntime==1.32.0 MNN==3.6.1 ncnn==1.0.20261020 ai-edge-litert==2.3.0 protobuf==7.36.2 flatbuffers==25.12.19 requests==2.34.2 psutil==7.2.2 pyseccomp==0.1.2}
# Installed without their dependencies, as on the x86 workers: pnnx (ncnn's converter, which ncnn's
# support check runs) declares torch, which its native converter does not need.
NO_DEPS=${SLIPWAY_ARM64_NO_DEPS:-pnnx==20261020}
# What the stamp records: a tree built with other pins is rebuilt.
WANTED="$REQUIREMENTS | no-deps: $NO_DEPS"
# libstdc++6, libgcc-s1 and zlib1g: what the wheels' extension modules link against (their
# other libraries, libgomp and OpenBLAS, ship inside the wheels). libseccomp2: pyseccomp loads it.
PACKAGES=python3,python3-venv,python3-pip,ca-certificates,libseccomp2,bubblewrap,libgomp1,libstdc++6,libgcc-s1,zlib1g,curl,procps

say() { echo "[arm64-rootfs] $*" >&2; }
die() {
  echo "[arm64-rootfs] error: $*" >&2
  exit 1
}
INSTALL_HINT="Install them with: apt-get install qemu-user-static binfmt-support mmdebstrap"

case $DIR in /*) ;; *) DIR=$PWD/$DIR ;; esac
DIR=${DIR%/}
STAMP=$DIR/$STAMP_NAME
built_with() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("requirements", ""))' "$1" 2>/dev/null; }
if [ -f "$STAMP" ] && [ "$(built_with "$STAMP")" = "$WANTED" ]; then
  echo "$STAMP"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "building the arm64 root filesystem needs root (mmdebstrap, chroot and mounts); run it with sudo."
command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap is not installed. $INSTALL_HINT"

# The host must run arm64 ELF files through QEMU (binfmt_misc). Mount binfmt_misc and enable
# the qemu-aarch64 entry when they are merely off; fail with what to install otherwise.
BINFMT=/proc/sys/fs/binfmt_misc
[ -e "$BINFMT/status" ] || mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null || true
if [ ! -e "$BINFMT/qemu-aarch64" ] || [ "$(head -n1 "$BINFMT/qemu-aarch64")" != enabled ]; then
  command -v update-binfmts >/dev/null 2>&1 && update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
if [ ! -e "$BINFMT/qemu-aarch64" ] || [ "$(head -n1 "$BINFMT/qemu-aarch64")" != enabled ]; then
  die "this host can't run arm64 programs: no enabled qemu-aarch64 entry in $BINFMT. $INSTALL_HINT (then: update-binfmts --enable qemu-aarch64)."
fi
INTERPRETER=$(sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64")
FLAGS=$(sed -n 's/^flags: //p' "$BINFMT/qemu-aarch64")

mkdir -p "$(dirname "$DIR")"
exec 9>"$DIR.lock"
if ! flock -n 9; then
  say "another build of $DIR is running; waiting for it"
  flock 9
fi
if [ -f "$STAMP" ] && [ "$(built_with "$STAMP")" = "$WANTED" ]; then # built by the caller we waited for
  echo "$STAMP"
  exit 0
fi
[ -f "$STAMP" ] && say "$DIR was built with other packages ($(built_with "$STAMP")); rebuilding it with: $WANTED"

PARTIAL=$DIR.partial
START=$(date +%s)

# Mounts made by the steps below live in a private mount namespace and vanish with it; only
# mmdebstrap's own (/proc, /sys, /dev in the tree while it installs) are visible here, and it
# removes them unless it is killed outright. Before deleting a tree, detach whatever is still
# mounted under it, so that rm never reaches into the host's /proc, /dev or /sys.
mounts_under() {
  findmnt -rn -o TARGET | awk -v t="$1" '$0 == t || index($0, t "/") == 1' | sort -r
}
remove_tree() {
  local tree=$1 target
  [ -e "$tree" ] || return 0
  for target in $(mounts_under "$tree"); do
    umount -l "$target" || true
  done
  if [ -n "$(mounts_under "$tree")" ]; then
    die "$tree still has file systems mounted under it (findmnt | grep $tree); unmount them, then run this again."
  fi
  rm -rf --one-file-system "$tree"
}

on_exit() {
  local status=$?
  if [ "$status" -ne 0 ] && [ -e "$PARTIAL" ]; then
    say "build failed (exit $status); the incomplete tree $PARTIAL is removed by the next run"
  fi
}
trap on_exit EXIT

# Run a command in PARTIAL with /proc, /dev, /sys, a scratch /tmp and the host's DNS set-up,
# in a private mount namespace: the mounts disappear when the command ends, however it ends.
# The host's /sys/devices/system/cpu is hidden (an empty folder) as in scripts/in_arm64.sh:
# with it and the host's x86 /proc/cpuinfo, onnxruntime's cpuinfo library crashes at import.
in_root() {
  # shellcheck disable=SC2016 # the inner script expands its own variables
  unshare --mount --propagation private -- /bin/sh -euc '
    root=$1; shift
    mount --rbind /proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    mount -t tmpfs -o ro,mode=755 slipway-no-cpu-topology "$root/sys/devices/system/cpu"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
    for f in /etc/resolv.conf /etc/hosts; do
      if [ -e "$f" ] && [ -e "$root$f" ]; then mount --bind "$f" "$root$f"; fi
    done
    exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin ${PIP_INDEX_URL:+PIP_INDEX_URL="$PIP_INDEX_URL"} "$@"
  ' in_root "$PARTIAL" "$@"
}

if [ -e "$PARTIAL" ]; then
  say "removing $PARTIAL, left by an interrupted build"
  remove_tree "$PARTIAL"
fi
remove_tree "$DIR" # a tree without the stamp is not a finished build

SOURCES=("deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main")
case $MIRROR in */debian) SOURCES+=("deb ${MIRROR%/debian}/debian-security bookworm-security main") ;; esac
say "phase 1/4: bootstrapping Debian bookworm arm64 into $PARTIAL with mmdebstrap (mirror $MIRROR; several minutes under emulation)"
mmdebstrap --mode=root --arch=arm64 --variant=apt --include="$PACKAGES" \
  --aptopt='Acquire::Retries "3"' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  bookworm "$PARTIAL" "${SOURCES[@]}" </dev/null

# Without binfmt's F flag the kernel opens QEMU by its path at each exec, so inside the
# chroot it must exist at that path.
case $FLAGS in
  *F*) ;;
  *)
    mkdir -p "$PARTIAL$(dirname "$INTERPRETER")"
    cp -L "$INTERPRETER" "$PARTIAL$INTERPRETER"
    ;;
esac

say "phase 2/4: checking that this host runs the arm64 programs"
if ! chroot "$PARTIAL" /bin/true; then
  die "this host can't run the arm64 programs of $PARTIAL (chroot $PARTIAL /bin/true failed). $INSTALL_HINT (then: update-binfmts --enable qemu-aarch64)."
fi
# Mount points: the repository (scripts/in_arm64.sh binds it read-only) and the host's DNS files.
mkdir -p "$PARTIAL/slipway" "$PARTIAL/opt/slipway-agent"
[ -e "$PARTIAL/etc/resolv.conf" ] || : >"$PARTIAL/etc/resolv.conf"
[ -s "$PARTIAL/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$PARTIAL/etc/hosts"
# Certificate authorities this host added locally (a proxy's, a company's) are trusted inside too.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  say "trusting this host's local certificate authorities: $(cd /usr/local/share/ca-certificates && echo *.crt)"
  cp /usr/local/share/ca-certificates/*.crt "$PARTIAL/usr/local/share/ca-certificates/"
  in_root update-ca-certificates >/dev/null
fi

say "phase 3/4: creating $VENV and installing aarch64 wheels (binary only): $REQUIREMENTS"
in_root python3 -m venv "$VENV" >&2
# shellcheck disable=SC2086 # the requirement specs are words
in_root "$VENV/bin/python" -m pip install --no-cache-dir --no-input --disable-pip-version-check \
  --progress-bar off --only-binary=:all: --cert /etc/ssl/certs/ca-certificates.crt $REQUIREMENTS >&2
if [ -n "$NO_DEPS" ]; then
  # shellcheck disable=SC2086 # the requirement specs are words
  in_root "$VENV/bin/python" -m pip install --no-cache-dir --no-input --disable-pip-version-check \
    --progress-bar off --only-binary=:all: --no-deps --cert /etc/ssl/certs/ca-certificates.crt $NO_DEPS >&2
fi

say "phase 4/4: checking the imports and writing the stamp"
# stdout to stderr: MNN prints the CPU's features when imported; stdout is only the stamp's path.
in_root "$VENV/bin/python" - "$STAMP_NAME" "$START" "$WANTED" >&2 <<'EOF'
import datetime
import importlib.metadata as md
import json
import platform
import sys
import time

import MNN
import ncnn
import numpy
from ai_edge_litert.interpreter import Interpreter  # noqa: F401
import onnx
import onnxruntime

assert platform.machine() == "aarch64", platform.machine()
providers = onnxruntime.get_available_providers()
assert "CPUExecutionProvider" in providers, providers
stamp = {
    "arch": platform.machine(),
    "debian": "bookworm",
    "python": platform.python_version(),
    "packages": {d.metadata["Name"]: d.version for d in sorted(md.distributions(), key=lambda d: d.metadata["Name"].lower())},
    "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "seconds": round(time.time() - int(sys.argv[2])),
    "requirements": sys.argv[3],
}
with open("/" + sys.argv[1] + ".tmp", "w") as f:
    json.dump(stamp, f, indent=2, sort_keys=True)
    f.write("\n")
EOF
mv "$PARTIAL/$STAMP_NAME.tmp" "$PARTIAL/$STAMP_NAME"
mv -T "$PARTIAL" "$DIR"
say "built $DIR in $(($(date +%s) - START)) s ($(du -sh --one-file-system "$DIR" | cut -f1))"
echo "$STAMP"
