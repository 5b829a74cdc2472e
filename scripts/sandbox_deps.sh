#!/usr/bin/env bash
# Uploaded models run inside bubblewrap (docs/adr/0008-sandbox.md). Install it when it is missing
# and this user can (root or password-less sudo with apt-get); otherwise say what to do.
set -euo pipefail
[ "${SLIPWAY_SANDBOX_ISOLATION:-namespaces}" = limits ] && exit 0
command -v bwrap >/dev/null 2>&1 && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
if command -v apt-get >/dev/null 2>&1 && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
  echo "Installing bubblewrap, the sandbox for uploaded models" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bubblewrap >/dev/null
else
  echo "Slipway runs uploaded models inside bubblewrap, which is not installed here. Install the" \
    "'bubblewrap' package, or set SLIPWAY_SANDBOX_ISOLATION=limits to run models with memory and" \
    "time limits only (for models you trust; reports will say so)." >&2
  exit 1
fi
