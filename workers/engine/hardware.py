"""What this machine has: CPU model and the instruction sets that matter for inference, cores,
memory, NVIDIA GPUs. Read from /proc and nvidia-smi; nothing heavy is imported."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# CPU flags that change which kernels runtimes use (VNNI/AMX: INT8 and BF16 speed-ups).
INTERESTING_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "asimdhp", "fphp",
    "sve", "i8mm",
)  # fmt: skip
# Names of one architecture: what platform.machine() says on Linux, and what others call it.
ARCH_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}
ACCELERATORS = ("cuda",)


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
    # Non-empty where the CPU is emulated (QEMU user mode running aarch64 code on an x86-64
    # host): the runtimes' ARM builds compute as on ARM, but no timing is the device's.
    emulation: str = ""
    # Rockchip NPUs this machine can run (`rockchip_npus`): the SoC, e.g. "rk3588", where the
    # device tree names it and Rockchip's NPU driver is loaded.
    npus: tuple[str, ...] = ()

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


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it, else what the platform module knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_features() -> tuple[str, tuple[str, ...]]:
    """This machine's architecture (platform.machine(): "x86_64", "aarch64") and its
    INTERESTING_FLAGS, without asking for GPUs."""
    try:
        _, flags = _cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        flags = ()
    return platform.machine(), flags


# aarch64 AT_HWCAP / AT_HWCAP2 bits (Linux arch/arm64/include/uapi/asm/hwcap.h), named as
# /proc/cpuinfo's Features line names them.
_ARM64_HWCAP = {1: "asimd", 9: "fphp", 10: "asimdhp", 20: "asimddp", 22: "sve"}
_ARM64_HWCAP2 = {13: "i8mm"}
_AT_HWCAP, _AT_HWCAP2 = 16, 26


def _hwcap_flags() -> tuple[str, ...]:
    """An aarch64 process's CPU features from its auxiliary vector: what the (real or emulated)
    CPU offers this process, which QEMU sets for the CPU it emulates."""
    import ctypes

    try:
        getauxval = ctypes.CDLL(None).getauxval
    except (OSError, AttributeError):
        return ()
    getauxval.restype = ctypes.c_ulong
    getauxval.argtypes = [ctypes.c_ulong]
    words = {_AT_HWCAP: getauxval(_AT_HWCAP), _AT_HWCAP2: getauxval(_AT_HWCAP2)}
    found = {name for bit, name in _ARM64_HWCAP.items() if words[_AT_HWCAP] >> bit & 1}
    found |= {name for bit, name in _ARM64_HWCAP2.items() if words[_AT_HWCAP2] >> bit & 1}
    return tuple(flag for flag in INTERESTING_FLAGS if flag in found)


def _emulator() -> str:
    """The emulator running this thread, where one does: under QEMU user mode the thread's own
    executable (/proc/thread-self/exe) is qemu-<arch>[-static], while /proc/self/exe names the
    emulated program."""
    with contextlib.suppress(OSError):
        name = os.path.basename(os.readlink("/proc/thread-self/exe"))
        if name.startswith("qemu-"):
            return name
    return ""


def emulation_of(arch: str, cpuinfo: str, emulator: str = "") -> str:
    """How this process's CPU is emulated, in words; empty on a real CPU. Under QEMU user mode
    the program sees its own architecture (`uname -m` says aarch64) while its thread's
    executable is QEMU (`emulator`) and, up to QEMU 8.0 at least, /proc/cpuinfo still describes
    the host's x86-64 CPU (vendor_id, an x86 flags line)."""
    if canonical_arch(arch) == "x86_64":
        return ""
    lowered = cpuinfo.lower()
    x86_cpuinfo = "vendor_id" in lowered or any(
        line.startswith("flags") and " sse" in line for line in lowered.splitlines()
    )
    if not (emulator or x86_cpuinfo):
        return ""
    host_model, _ = _cpuinfo(cpuinfo) if x86_cpuinfo else ("", ())
    host = f"an x86-64 host ({host_model or 'unknown CPU'})" if x86_cpuinfo else "another architecture's host"
    return f"QEMU user-mode emulation of {canonical_arch(arch)} on {host}"


_ROCKCHIP_SOC = re.compile(r"^rockchip,(r[kv]\d{4})$")
# Where Rockchip's NPU driver shows itself: its misc device (older kernels), its module, or its
# debugfs folder (the DRM driver of the vendor kernels).
_RKNPU_DRIVER = ("/dev/rknpu", "/sys/module/rknpu", "/sys/kernel/debug/rknpu")


def rockchip_npus(root: Path = Path("/")) -> tuple[str, ...]:
    """The Rockchip SoC whose NPU this machine can run ("rk3588"), from the device tree's
    compatible strings, when the NPU driver is loaded; () elsewhere."""
    try:
        compatible = (root / "proc/device-tree/compatible").read_bytes()
    except OSError:
        return ()
    socs = [m.group(1) for name in compatible.split(b"\0") if (m := _ROCKCHIP_SOC.match(name.decode(errors="replace")))]
    if not socs or not any((root / path.lstrip("/")).exists() for path in _RKNPU_DRIVER):
        return ()
    return tuple(dict.fromkeys(socs))


def describe_hardware() -> HardwareInfo:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    model, flags = _cpuinfo(text) if text else (platform.processor(), ())
    emulation = emulation_of(platform.machine(), text, _emulator())
    if emulation or (canonical_arch(platform.machine()) == "aarch64" and not flags):
        # The host's x86 flags say nothing of the emulated CPU: its features come from the
        # auxiliary vector, and its model is named as emulated.
        flags = _hwcap_flags()
        if emulation:
            model = f"emulated {canonical_arch(platform.machine())} CPU (QEMU)"
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
        emulation=emulation,
        npus=rockchip_npus(),
    )


def canonical_arch(arch: str) -> str:
    """ "arm64" -> "aarch64", "amd64" -> "x86_64"; other names as given, lower-case."""
    name = (arch or "").strip().lower()
    return ARCH_ALIASES.get(name, name)


def check_requirements(requirements: Any) -> dict[str, Any]:
    """A hardware profile's requirements, checked and normalised; ValueError with a sentence.

    `arch`: an architecture or a list of them ("x86_64", "aarch64"); `cpu_features`: CPU flags
    the machine must have, as /proc/cpuinfo names them ("avx512_vnni", "asimddp", "fphp",
    "i8mm"); `accelerator`: "cuda" for an NVIDIA GPU, with `min_compute_capability` ("8.0");
    `npu`: a Rockchip SoC whose NPU the machine must have ("rk3588")."""
    if requirements in (None, ""):
        return {}
    if not isinstance(requirements, dict):
        raise ValueError('Give the requirements as an object, e.g. {"arch": "aarch64", "cpu_features": ["asimddp"]}.')
    unknown = sorted(set(requirements) - {"arch", "cpu_features", "accelerator", "min_compute_capability", "npu"})
    if unknown:
        raise ValueError(
            f"Unknown requirement {', '.join(unknown)}; a profile can require arch, cpu_features, accelerator, "
            "min_compute_capability and npu."
        )
    cleaned: dict[str, Any] = {}
    arch = requirements.get("arch")
    if arch not in (None, "", []):
        arches = [arch] if isinstance(arch, str) else arch
        if not isinstance(arches, list) or not all(isinstance(a, str) and a.strip() for a in arches):
            raise ValueError('The requirement arch must be an architecture or a list of them, e.g. "aarch64".')
        cleaned["arch"] = sorted({canonical_arch(a) for a in arches})
    features = requirements.get("cpu_features")
    if features not in (None, []):
        if not isinstance(features, list) or not all(isinstance(f, str) and f.strip() for f in features):
            raise ValueError('The requirement cpu_features must be a list of CPU flags, e.g. ["avx512_vnni"].')
        cleaned["cpu_features"] = sorted({f.strip().lower() for f in features})
    npu = requirements.get("npu")
    if npu not in (None, ""):
        if not isinstance(npu, str) or not re.fullmatch(r"r[kv]\d{4}", npu.strip().lower()):
            raise ValueError('The requirement npu names a Rockchip SoC whose NPU the machine must have, e.g. "rk3588".')
        cleaned["npu"] = npu.strip().lower()
    accelerator = requirements.get("accelerator")
    if accelerator not in (None, ""):
        if accelerator not in ACCELERATORS:
            raise ValueError(f"Unknown accelerator {accelerator!r}; known: {', '.join(ACCELERATORS)}.")
        cleaned["accelerator"] = accelerator
    capability = requirements.get("min_compute_capability")
    if capability not in (None, ""):
        if cleaned.get("accelerator") != "cuda" or _capability(capability) is None:
            raise ValueError('min_compute_capability goes with accelerator "cuda", as "major.minor", e.g. "8.0".')
        cleaned["min_compute_capability"] = str(capability)
    return cleaned


def _capability(value: Any) -> tuple[int, int] | None:
    major, _, minor = str(value).strip().partition(".")
    return (int(major), int(minor or 0)) if major.isdigit() and (minor or "0").isdigit() else None


def unmet_requirements(requirements: Any, facts: Any) -> list[str]:
    """What a machine lacks of a profile's `requirements` (see `check_requirements`), each as a
    phrase ("it is x86_64, not aarch64"); empty when it meets them all.

    `facts` is a machine's probe as `HardwareInfo.to_dict()` writes it (the workers' registry
    keeps the same keys): arch, cpu_flags, gpus with their compute_capability. The probe is
    what counts, never what a machine was configured to claim."""
    wanted = check_requirements(requirements)
    unmet: list[str] = []
    arch = canonical_arch(str(facts.get("arch") or ""))
    if "arch" in wanted and arch not in wanted["arch"]:
        unmet.append(f"it is {arch or 'of unknown architecture'}, not {' or '.join(wanted['arch'])}")
    flags = {str(flag).lower() for flag in facts.get("cpu_flags") or ()}
    missing = [flag for flag in wanted.get("cpu_features", ()) if flag not in flags]
    if missing:
        unmet.append(f"its CPU lacks {', '.join(missing)}")
    if wanted.get("npu") and wanted["npu"] not in {str(npu).lower() for npu in facts.get("npus") or ()}:
        unmet.append(f"it has no {wanted['npu'].upper()} NPU (with Rockchip's NPU driver loaded)")
    if wanted.get("accelerator") == "cuda":
        gpus = [gpu for gpu in facts.get("gpus") or () if isinstance(gpu, dict)]
        floor = _capability(wanted.get("min_compute_capability", "0.0")) or (0, 0)
        if not gpus:
            unmet.append("it has no NVIDIA GPU")
        elif not any((_capability(gpu.get("compute_capability")) or (0, 0)) >= floor for gpu in gpus):
            have = ", ".join(f"{gpu.get('name', 'GPU')} ({gpu.get('compute_capability', '?')})" for gpu in gpus)
            unmet.append(f"its GPUs ({have}) are below compute capability {wanted['min_compute_capability']}")
    return unmet


def describe_requirements(requirements: Any) -> str:
    """The requirements in words: "an aarch64 CPU with asimddp", "an NVIDIA GPU (compute capability 8.0+)"."""
    wanted = check_requirements(requirements)
    if not wanted:
        return "any machine"
    parts = []
    if wanted.get("accelerator") == "cuda":
        floor = wanted.get("min_compute_capability")
        parts.append("an NVIDIA GPU" + (f" (compute capability {floor}+)" if floor else ""))
    if wanted.get("arch") or wanted.get("cpu_features"):
        # "an aarch64 CPU", "an x86_64 CPU": both names are said with a vowel sound.
        cpu = f"an {' or '.join(wanted['arch'])} CPU" if wanted.get("arch") else "a CPU"
        if wanted.get("cpu_features"):
            cpu += " with " + ", ".join(wanted["cpu_features"])
        parts.append(cpu)
    if wanted.get("npu"):
        parts.append(f"an {wanted['npu'].upper()} NPU")
    return " with ".join(parts)


if __name__ == "__main__":
    # `python -m workers.engine.hardware`: this machine's probe as JSON, what a device sends when
    # it registers (POST /api/v1/agent/register/) and a worker registers with.
    import json

    print(json.dumps(describe_hardware().to_dict()))
