"""Quantization recipes: which integer types, granularity and range a static INT8 pass uses,
chosen from the CPU the variant will run on.

onnxruntime's CPU kernels are fastest on different pairings per instruction set, and the
pairing changes accuracy too:

- x86-64 runs uint8 activations against int8 weights (U8S8) on its fastest integer dot
  products (VPMADDUBSW on SSE4.1/AVX2/AVX-512, VPDPBUSD with VNNI). Without VNNI the
  pairwise 16-bit sums of VPMADDUBSW can saturate when weights use the full int8 range, so
  weights are quantized to 7 bits (`reduce_range`); with VNNI (AVX512-VNNI, AVX-VNNI, AMX) the
  sums are 32-bit and the full range is safe. int8 activations (S8S8) are converted back to
  U8S8 at run time on x86, which costs time; the engine's earlier fixed S8S8 per-tensor pass
  measured 0.75x of plain onnxruntime on a ResNet-18 where U8S8 per-channel measured 0.30x.
- ARM64 has signed and unsigned dot products (SDOT/UDOT, and I8MM's SMMLA); onnxruntime's
  QDQ default, S8S8, runs there without conversion.
- Weights are quantized per output channel wherever the graph allows (QDQ per-axis needs
  opset 13): one scale per channel keeps a layer whose channels differ in range from losing
  its small channels, at no cost in speed.

The recipe is recorded in the variant's build options with the sentence saying why, so the
report shows how each variant was made and for which CPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

# Flags (as /proc/cpuinfo names them) whose integer dot products sum into 32 bits.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
X86_ARCHES = ("x86_64", "amd64", "x86-64", "x64")
ARM64_ARCHES = ("aarch64", "arm64")
# QDQ with an axis (per-channel scales) exists from this opset on.
PER_CHANNEL_MIN_OPSET = 13


@dataclass(frozen=True)
class QuantRecipe:
    """How a static INT8 pass quantizes: activation and weight types, per-channel weights,
    7-bit weights, for which CPU, and why."""

    activation_type: Literal["uint8", "int8"]
    weight_type: Literal["int8"]
    per_channel: bool
    reduce_range: bool
    target: str  # "x86-64 with VNNI (avx512_vnni)", "ARM64", ...
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def pairing(self) -> str:
        """ "U8S8" or "S8S8": activations, then weights."""
        letters = {"uint8": "U8", "int8": "S8"}
        return letters[self.activation_type] + letters[self.weight_type]


def target_cpu(profile_options: Mapping[str, Any], arch: str, flags: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """The CPU a profile's variants run on: the profile's own `arch` and `cpu_flags` when it
    declares them (a target other than the worker that builds), else the building worker's."""
    declared_arch = str(profile_options.get("arch") or "").strip()
    declared_flags = profile_options.get("cpu_flags")
    if declared_arch:
        return declared_arch, tuple(str(flag) for flag in (declared_flags or ()))
    return arch, tuple(flags)


def ort_static_recipe(arch: str, flags: Iterable[str], *, per_channel: bool | None = None) -> QuantRecipe:
    """The onnxruntime static INT8 recipe for a CPU of `arch` with `flags`. `per_channel`
    overrides the per-channel choice (a user who asked for per-tensor scales gets them)."""
    flags = tuple(flags)
    arch = arch.strip().lower()
    channel = True if per_channel is None else per_channel
    if arch in X86_ARCHES:
        vnni = [flag for flag in VNNI_FLAGS if flag in flags]
        if vnni:
            return QuantRecipe(
                "uint8", "int8", channel, False, f"x86-64 with VNNI ({', '.join(vnni)})",
                "uint8 activations with int8 weights (U8S8), the pairing onnxruntime's x86 integer kernels run "
                "natively; with VNNI the dot products sum into 32 bits, so weights keep their full 8 bits.",
            )  # fmt: skip
        return QuantRecipe(
            "uint8", "int8", channel, True, "x86-64 without VNNI",
            "uint8 activations with int8 weights (U8S8), the pairing onnxruntime's x86 integer kernels run "
            "natively; without VNNI their 16-bit intermediate sums can saturate, so weights are quantized to "
            "7 bits (reduce_range).",
        )  # fmt: skip
    if arch in ARM64_ARCHES:
        dot = [flag for flag in ("asimddp", "i8mm") if flag in flags]
        target = f"ARM64 ({', '.join(dot)})" if dot else "ARM64"
        return QuantRecipe(
            "int8", "int8", channel, False, target,
            "int8 activations and weights (S8S8), which ARM64's signed dot products run without conversion.",
        )  # fmt: skip
    return QuantRecipe(
        "int8", "int8", channel, False, arch or "an unknown CPU",
        "int8 activations and weights (S8S8), onnxruntime's QDQ default, for a CPU Slipway has no recipe for.",
    )  # fmt: skip


# Flags (as /proc/cpuinfo names them) of x86-64 CPUs that compute in bfloat16 natively, with
# their instructions' names, fastest first: AMX's BF16 tile multiplies, AVX512-BF16's dot products.
BF16_FLAGS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"))


def bf16_arithmetic(arch: str, flags: Iterable[str]) -> str | None:
    """How a CPU of `arch` with `flags` computes in bfloat16 natively ("AMX-BF16 (amx_bf16)",
    "AVX512-BF16 (avx512_bf16)"), or None when it has no such instructions and a runtime
    would emulate BF16 more slowly than it computes in FP32 (or run FP32 instead)."""
    if arch.strip().lower() not in X86_ARCHES:
        return None
    present = set(flags)
    return next((f"{name} ({flag})" for flag, name in BF16_FLAGS if flag in present), None)
