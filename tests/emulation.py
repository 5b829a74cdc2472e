"""An arm64 machine for the tests: the Debian root filesystem scripts/arm64_rootfs.sh builds once
per machine (cached under SLIPWAY_EMULATION_DIR, by default ~/.cache/slipway/emulation, shared by
every checkout), whose programs QEMU user emulation runs. `arm64_skip_reason()` says why no such
machine can be had here (None when one can); `arm64_root()` builds it when missing and returns
it; `in_arm64(root, ...)` is the command line that runs a program inside (scripts/in_arm64.sh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
BUILD_TIMEOUT_SECONDS = 30 * 60


def emulation_dir() -> Path:
    return Path(os.environ.get("SLIPWAY_EMULATION_DIR") or Path.home() / ".cache" / "slipway" / "emulation")


def arm64_dir() -> Path:
    return emulation_dir() / "arm64-bookworm"


def _binfmt_enabled() -> bool:
    return BINFMT.exists() and BINFMT.read_text().splitlines()[:1] == ["enabled"]


def _enable_binfmt() -> None:
    """Mount binfmt_misc and enable QEMU's aarch64 entry where they are installed but off (a
    fresh boot of a machine that has qemu-user-static and binfmt-support)."""
    if _binfmt_enabled():
        return
    if not BINFMT.parent.joinpath("status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT.parent)], capture_output=True)
    if shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)


def arm64_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "running an arm64 root filesystem needs root (mounts and chroot)"
    _enable_binfmt()
    if not _binfmt_enabled():
        return (
            "this host can't run arm64 programs (no enabled binfmt_misc qemu-aarch64): "
            "apt-get install qemu-user-static binfmt-support mmdebstrap"
        )
    if not (arm64_dir() / ".slipway-rootfs.json").exists() and shutil.which("mmdebstrap") is None:
        return "the arm64 root filesystem is not built and mmdebstrap is missing: apt-get install mmdebstrap"
    return None


def arm64_root() -> Path:
    """The built root filesystem, building it first when it is missing (minutes, once per machine)."""
    built = subprocess.run(
        ["bash", str(REPO / "scripts" / "arm64_rootfs.sh"), str(arm64_dir())],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
    )
    if built.returncode != 0:
        raise AssertionError(f"scripts/arm64_rootfs.sh failed:\n{built.stderr[-4000:]}")
    return arm64_dir()


def in_arm64(root: Path, *command: str, binds: tuple[str, ...] = (), chdir: str = "/slipway") -> list[str]:
    """The command line that runs `command` inside `root`, with the repository at /slipway."""
    extra = [arg for bind in binds for arg in ("--bind", bind)]
    return ["bash", str(REPO / "scripts" / "in_arm64.sh"), str(root), *extra, "--chdir", chdir, "--", *command]
