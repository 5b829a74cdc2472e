"""What this machine has: CPU model and the instruction sets that matter for inference, cores,
memory, NVIDIA GPUs. Read from /proc and nvidia-smi; nothing heavy is imported."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# CPU flags that change which kernels runtimes use (VNNI/AMX: INT8 and BF16 speed-ups).
INTERESTING_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve", "i8mm",
)  # fmt: skip


@dataclass(frozen=True)
class GpuInfo:
    name: str
    memory_mb: int
    compute_capability: str
    driver: str


@dataclass(frozen=True)
class HardwareInfo:
    host: str
    arch: str
    cpu_model: str
    cpu_flags: tuple[str, ...]
    cores: int  # cores this process may run on (its affinity), not the whole machine
    memory_bytes: int
    gpus: tuple[GpuInfo, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpuinfo(text: str) -> tuple[str, tuple[str, ...]]:
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return model, tuple(flag for flag in INTERESTING_FLAGS if flag in flags)


def _memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def query_gpus(timeout: float = 10.0) -> tuple[GpuInfo, ...]:
    """NVIDIA GPUs as nvidia-smi reports them; none when it is missing or fails."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total,compute_cap,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    gpus = []
    for line in out.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 4:
            memory = int(parts[1]) if parts[1].isdigit() else 0
            gpus.append(GpuInfo(name=parts[0], memory_mb=memory, compute_capability=parts[2], driver=parts[3]))
    return tuple(gpus)


def cpu_features() -> tuple[str, tuple[str, ...]]:
    """This machine's architecture (platform.machine(): "x86_64", "aarch64") and its
    INTERESTING_FLAGS, without asking for GPUs."""
    try:
        _, flags = _cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        flags = ()
    return platform.machine(), flags


def describe_hardware() -> HardwareInfo:
    try:
        model, flags = _cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        model, flags = platform.processor(), ()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return HardwareInfo(
        host=platform.node(),
        arch=platform.machine(),
        cpu_model=model or platform.processor() or "unknown",
        cpu_flags=flags,
        cores=cores,
        memory_bytes=_memory_bytes(),
        gpus=query_gpus(),
    )
