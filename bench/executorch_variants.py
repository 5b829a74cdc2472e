"""ExecuTorch variants on this x86 CPU: what `ExecuTorchBackend.build_variants` makes of bench/litert.py's
models for the `mobile-executorch` profile (FP32 and calibrated INT8 .pte programs with the XNNPACK
delegate, both from one run of the exporter's side process), how much of each model XNNPACK takes,
how close each variant is to onnxruntime, and how fast it runs next to onnxruntime.

The twin of bench/litert.py, whose machinery it runs with ExecuTorch as the runtime (`Runtime`):
the same models (`cnn`, a ResNet-18 1x3x224x224, and `transformer`, a small Transformer encoder
1x32x128, built here from seeded weights and exported to ONNX opset 17), the same generated
calibration (16 samples) and parity inputs (4 fresh samples), the same timing. The route (onnx2torch 1.5.15, then
torch.export, then ExecuTorch's lowering) takes both as torch.onnx wrote them: the exporter's side
reads constants routed through Identity nodes directly (onnx2torch takes Conv weights from
initializers only) and fixes onnx2torch's Reshape, Slice, Gather and shape computations at the
export's shapes (torch.export can't trace their reading of shape tensors). Per model:

- conversion: the wall time of the whole `build_variants` call: one run of the executorch side
  process (its start and PyTorch's import included; onnx2torch, torch.export, the FP32 lowering,
  PT2E INT8 quantization and its lowering, each program run once there), then each .pte loaded
  once to verify it;
- delegation: `ExecuTorchBackend().check_support` on the original model (one more FP32 conversion):
  its verdict, the ONNX nodes per device (XNNPACK, ExecuTorch's portable kernels, refused), and
  the operator counts of the FP32 program XNNPACK took; with the build's note on the INT8 program;
- parity: each variant through Slipway's ExecuTorch session (`ExecuTorchBackend(threads=1).load`,
  ONNX names) against onnxruntime FP32 on the 4 fresh inputs: max abs error and lowest cosine;
- speed: the original model in onnxruntime (CPUExecutionProvider, one intra- and one inter-op
  thread: the baseline, as bench/litert.py's) and each variant through Slipway's ExecuTorch
  session at one thread, each in a fresh process (bench/litert.py's `--worker`), in the order
  baseline, v1, baseline, v2, baseline, the variants' order rotated each round, for --rounds rounds.
  ExecuTorch's thread count is its process's (`_unsafe_reset_threadpool` resizes the one XNNPACK
  threadpool), so a process of its own per measurement is also what keeps it at one thread. A
  process warms up, picks N so that N runs last about 2 s (0.3 s with --quick) and takes the
  process CPU time per inference over them, and each run's wall time (its p50). A variant's ratio in
  a round is its CPU time per inference over the mean of the two baseline runs around it; the
  table gives the median over rounds and the min-max range;
- file sizes: each .pte with its io.json (the original ONNX model's is in the JSON).

The result is printed as JSON on stdout (progress goes to stderr) and written to BENCHMARKS.md's
"## ExecuTorch variants" section unless --no-write; --from-json re-renders a saved result.

The run's duration is in the section's header.

    python bench/executorch_variants.py                           # cnn and transformer, 3 rounds
    python bench/executorch_variants.py --quick --no-write --models transformer
    python bench/executorch_variants.py --from-json result.json  # re-render a saved result
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import litert  # noqa: E402

SECTION = "ExecuTorch variants"
PROFILE_NAME = "mobile-executorch"
PRECISIONS = ("fp32", "int8")
DEFAULT_MODELS = litert.DEFAULT_MODELS
CASES = litert.CASES


def delegation(model_path: Path) -> dict[str, Any]:
    """`check_support`'s answer for the original model: its verdict, the ONNX nodes per device, the
    operators left to portable kernels, and the nodes the conversion refused."""
    from workers.engine.backends.executorch import DELEGATED_DEVICE, ExecuTorchBackend

    litert.log(f"[{model_path.parent.name}] check_support (one FP32 conversion)")
    started = time.perf_counter()
    report = ExecuTorchBackend().check_support(model_path)
    seconds = round(time.perf_counter() - started, 1)
    devices: Counter[str] = Counter()
    portable: list[dict[str, Any]] = []
    refused: dict[str, dict[str, Any]] = {}  # by op type, with the first node's reason
    for op in report.ops:
        item = {"op_type": op.op_type, "nodes": list(op.nodes), "where": op.device, "reason": op.reason}
        if op.status == "supported":
            devices[op.device] += len(op.nodes)
            if op.device != DELEGATED_DEVICE:
                portable.append(item)
        elif op.reason.startswith("Not known"):
            devices["not known (after a refused node)"] += len(op.nodes)
        else:
            devices["refused"] += len(op.nodes)
            refused.setdefault(op.op_type, {**item, "nodes": []})["nodes"] += op.nodes
    return {
        "seconds": seconds,
        "verdict": report.verdict,
        "nodes": sum(devices.values()),
        "devices": dict(devices.most_common()),
        "portable": portable,
        "refused": list(refused.values()),
        "delegation": next((note for note in report.notes if note.startswith("XNNPACK takes")), ""),
    }


EXECUTORCH = litert.Runtime("executorch", "ExecuTorch", PROFILE_NAME, PRECISIONS, "executorch", support=delegation)


# --- BENCHMARKS.md ------------------------------------------------------------------------


def support_text(model: dict[str, Any]) -> str:
    support = model["support"]
    devices = ", ".join(
        f"{count} {'on ' if where.startswith('ExecuTorch') else ''}{where}"
        for where, count in support["devices"].items()
    )
    text = (
        f"**Delegation** (`check_support`, one FP32 conversion, {support['seconds']:.0f} s): verdict "
        f"`{support['verdict']}`; of the {support['nodes']} ONNX nodes, {devices}."
    )
    for item in support["portable"]:
        text += f" {item['op_type']} x{len(item['nodes'])} on {item['where']}."
    for item in support["refused"]:
        text += f" Refused: {item['op_type']} x{len(item['nodes'])} (first `{item['nodes'][0]}`: {item['reason']})."
    if support["delegation"]:
        text += f" {support['delegation']}"
    int8 = [note.removeprefix("executorch-int8: ") for note in model["notes"] if note.startswith("executorch-int8: ")]
    return text + (f"\n\nINT8 build: {' '.join(int8)}" if int8 else "") + "\n"


def render(result: dict[str, Any]) -> str:
    versions = result["versions"]
    timing = result["timing"]
    load = result["load_average"]
    paragraph = (
        f"`python bench/executorch_variants.py` ({result['mode']} run, {result['seconds']:.0f} s) on {result['cpu']}, "
        f"{result['cores']} cores (load average {load[0]:.1f} at the start, {load[1]:.1f} at the end): the "
        f"`{PROFILE_NAME}` profile's ExecuTorch variants (FP32, and INT8 by PT2E static quantization with the "
        "XNNPACK quantizer: per-channel INT8 weights, INT8 activations calibrated on generated samples) as "
        "`ExecuTorchBackend.build_variants` makes them (ONNX -> onnx2torch "
        f"{versions.get('onnx2torch')} -> torch.export -> ExecuTorch {versions.get('executorch')}'s lowering with "
        f"the XNNPACK partitioner, torch {versions.get('torch')} and torchao {versions.get('torchao')} in the "
        "executorch framework environment), run by ExecuTorch's runtime "
        f"(executorch-runtime {versions.get('executorch-runtime')}) through Slipway's ExecuTorch session (ONNX "
        "names; its tensor copies in and out are timed too) with a one-thread XNNPACK threadpool, against the "
        f"original ONNX model in onnxruntime {versions.get('onnxruntime')} (CPUExecutionProvider, one intra-op and "
        "one inter-op thread), the baseline of bench/litert.py. **These are x86 timings: the "
        f"`{PROFILE_NAME}` profile's own timings come from an aarch64 device agent**, where XNNPACK's ARM kernels "
        "(and its INT8 dot-product kernels) can rank the variants differently.\n\n"
        "ExecuTorch's thread count belongs to its process (one XNNPACK threadpool, resized by "
        "`_unsafe_reset_threadpool`), so each measurement is a fresh process at one thread, in the order "
        "baseline, variant 1, baseline, variant 2, baseline (variant order rotated each round), "
        f"{result['rounds']} round(s): {timing['warmup_runs']} warm-up runs (at least {timing['warmup_s']} s), then "
        f"N runs with N set so that they last about {timing['target_s']} s. **CPU time per inference** is the "
        "process CPU time (time.process_time) over the N runs / N, median over rounds (min-max); **ratio** is a "
        "round's CPU time per inference over the mean of the two baseline runs around it, median over rounds "
        "(min-max), below 1 is faster. The baseline row's range is its runs' spread around their median, the noise "
        "floor. **wall p50** is the median single-run wall time, with its ratio to the baseline runs around it in "
        "brackets. **Conversion** is the wall time of the whole `build_variants` call: one run of the exporter's "
        "side process (its start and PyTorch's import included) makes both programs and runs each once, then each "
        "is loaded once here to verify it. Sizes are the .pte with its io.json. **Parity** compares each variant's "
        "outputs with onnxruntime's on fresh inputs: the largest absolute error and the lowest cosine over the inputs."
    )
    parts = [f"## {SECTION}", "", paragraph, ""]
    for key, model in result["models"].items():
        parts += [litert.model_table(key, model), support_text(model)]
    return "\n".join(parts)


def print_summary(result: dict[str, Any]) -> None:
    litert.print_summary(result)
    for key, model in result["models"].items():
        support = model["support"]
        litert.log(f"{key}: check_support {support['verdict']}, {support['devices']}; {support['delegation']}")


if __name__ == "__main__":
    litert.main(
        EXECUTORCH,
        SECTION,
        render_result=render,
        summary=print_summary,
        description=__doc__,
        cases=CASES,
        default_models=DEFAULT_MODELS,
    )
