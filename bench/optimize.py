"""Optimized variants next to the original model: latency and accuracy, for every installed backend.
It is over 600 lines because a bench is one script by design (its models, runs, statistics
and the section it writes to BENCHMARKS.md read and rerun together); this one covers every
installed backend on three real models.

For real models (a ResNet-18 CNN, a 4-layer Transformer encoder and the PP-OCRv4 text detector
that ships in the `rapidocr_onnxruntime` package), builds every installed backend's variants for
the `x86-cpu` hardware profile (FP32 and INT8, static INT8 with a generated calibration set),
then times the original model in a plain onnxruntime session (the baseline) and every variant,
each in a process of its own (several runtime sessions in one process distort each other's
timings), interleaved as baseline, variant 1, baseline, variant 2, ..., baseline, with the same
inputs and thread settings. A variant's ratio is its p50 over the mean p50 of the two baseline
runs around it; the spread of the baseline runs shows the noise. Each variant's outputs are
compared with the baseline's on the same inputs (cosine similarity, max abs error), so that a
fast but wrong variant shows. Then Slipway's own verdict: each variant's parity by
`compare_variant` at the seeded `x86-cpu` profile's tolerance, and `recommend` (objective
"p99_latency_batch1") over the measured batch-1 points; per model, the recommended variant's
ratios to the baseline runs around it, the runner-up and why the others failed the tolerance
(`recommendation` in the JSON, with the headline figures in its top-level `value`). Writes
BENCHMARKS.md section "Optimized variants" unless --no-write; --json prints the result as JSON
on stdout (everything else goes to stderr).

    python bench/optimize.py                                   # cnn, transformer, ocr: 5-9 min on 2 cores
    python bench/optimize.py --quick --models cnn --no-write --json
    python bench/optimize.py --models ocr,ocr-rec --threads 0  # 0: all cores
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from apps.hardware import seeded_profiles  # noqa: E402
from bench._benchmarks_md import write_section  # noqa: E402
from workers.engine.child import stdout_to_stderr  # noqa: E402 - bench/value and bench/anchors use it from here

SECTION = "Optimized variants"
PROFILE_NAME = "x86-cpu"
# The backends an x86 CPU profile runs; others (mnn, ncnn) target other hardware.
PROFILE_BACKENDS = ("onnxruntime", "openvino")
# As the seeded x86-cpu profile (apps/hardware/seeded_profiles.py): bf16 where the CPU has it.
PRECISIONS = tuple(seeded_profiles.profile("x86-cpu")["precisions"])
BASELINE_BACKEND = "onnxruntime"
# How backends name their thread-count argument, in the order tried.
DEFAULT_MODELS = ("cnn", "transformer", "ocr")
WORKER_TIMEOUT_S = 300
# A slow variant still gets this many timed runs when it reaches the time cap.
MIN_RUNS_AT_CAP = 3
OPSET = 17
# What Slipway's recommendation optimizes here: the lowest p99 latency at batch 1.
OBJECTIVE = "p99_latency_batch1"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CNN_SIZE = 224
VOCAB, SEQ_LEN, D_MODEL, HEADS, FFN, LAYERS = 8000, 128, 256, 4, 1024, 4
OCR_DET_SIZE = 640
OCR_REC_SHAPE = (48, 320)
TEXT_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,-:"


@dataclass(frozen=True)
class Timing:
    """When a measurement stops: after warm-up, at least `min_runs` runs and `min_s` seconds, then
    as soon as the medians of the first and second half of the runs agree within `tolerance`,
    or at `max_s` seconds (with at least MIN_RUNS_AT_CAP runs) or `max_runs` runs, whichever
    comes first."""

    warmup_runs: int
    warmup_s: float
    min_runs: int
    min_s: float
    max_s: float
    max_runs: int
    tolerance: float = 0.02


FULL = Timing(warmup_runs=5, warmup_s=0.5, min_runs=30, min_s=1.5, max_s=4.0, max_runs=2000)
QUICK = Timing(warmup_runs=1, warmup_s=0.0, min_runs=3, min_s=0.0, max_s=0.2, max_runs=30)


@dataclass(frozen=True)
class ModelCase:
    key: str
    title: Callable[[], str]  # asked after `make`, which may have had to fall back to another model
    make: Callable[[Path], str]  # writes the model to the path; returns how it was made
    samples: Callable[[Any, int], dict[str, Any]]  # (numpy Generator, count) -> input name -> array


# --- input data ---------------------------------------------------------------------------


def random_images(rng: Any, count: int, height: int, width: int) -> Any:
    """Uniform random pixels, normalized as ImageNet models expect (about -2.1..2.6), NCHW float32."""
    import numpy as np

    pixels = rng.random((count, 3, height, width), dtype=np.float32)
    mean = np.array(IMAGENET_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(IMAGENET_STD, dtype=np.float32).reshape(1, 3, 1, 1)
    return ((pixels - mean) / std).astype(np.float32)


def text_images(rng: Any, count: int, height: int, width: int, one_line: bool = False) -> Any:
    """Synthetic printed text (random characters in Pillow's built-in font, dark on a light
    background, with a little noise), normalized as PP-OCR does ((x / 255 - 0.5) / 0.5), NCHW.

    Falls back to uniform noise in the same range when Pillow is missing."""
    import numpy as np

    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return rng.uniform(-1.0, 1.0, (count, 3, height, width)).astype(np.float32)
    images = []
    for _ in range(count):
        background = tuple(int(v) for v in rng.integers(190, 256, 3))
        image = Image.new("RGB", (width, height), background)
        draw = ImageDraw.Draw(image)
        top = int(rng.integers(2, 8)) if one_line else int(rng.integers(5, 30))
        while top < height - 12:
            size = int(rng.integers(26, 34)) if one_line else int(rng.integers(14, 36))
            font = ImageFont.load_default(size=size)
            length = int(rng.integers(8, 20)) if one_line else int(rng.integers(5, 40))
            text = "".join(rng.choice(list(TEXT_CHARS), length))
            ink = tuple(int(v) for v in rng.integers(0, 90, 3))
            left = int(rng.integers(2, 10)) if one_line else int(rng.integers(0, width // 3))
            draw.text((left, top), text, fill=ink, font=font)
            if one_line:
                break
            top += int(size * rng.uniform(1.3, 2.5))
        array = np.asarray(image, dtype=np.float32) / 255.0
        array = array + rng.normal(0.0, 0.02, array.shape).astype(np.float32)
        images.append(((array - 0.5) / 0.5).transpose(2, 0, 1))
    return np.stack(images).astype(np.float32)


def token_ids(rng: Any, count: int) -> Any:
    import numpy as np

    return rng.integers(0, VOCAB, (count, SEQ_LEN), dtype=np.int64)


# --- models -------------------------------------------------------------------------------


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _export(model: Any, example: Any, path: Path, input_name: str, output_name: str) -> None:
    """TorchScript-based export (dynamo=False): no onnxscript needed, opset 17."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[input_name],
            output_names=[output_name],
        )


def make_cnn(path: Path) -> str:
    """ResNet-18 (torchvision's layout: 7x7 stem, 4 stages of 2 basic blocks, 1000 classes)."""
    if not _torch_available():
        return _onnx_resnet18(path)
    import numpy as np
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x: Any) -> Any:
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.downsample(x))

    class ResNet18(nn.Module):
        def __init__(self, classes: int = 1000) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
            )
            blocks, cin = [], 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
                cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, classes)

        def forward(self, x: Any) -> Any:
            return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))

    torch.manual_seed(0)
    model = ResNet18()
    # Random weights with BatchNorm statistics taken from the input distribution, as training
    # would leave them, so that activations keep a sensible scale through the 18 layers.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(random_images(np.random.default_rng(100), 16, CNN_SIZE, CNN_SIZE)))
    model.eval()
    example = torch.from_numpy(random_images(np.random.default_rng(99), 1, CNN_SIZE, CNN_SIZE))
    _export(model, example, path, "image", "logits")
    return (
        f"ResNet-18 built in torch {torch.__version__} (seeded random weights; BatchNorm statistics from "
        "16 random images, folded into the convolutions on export), exported with "
        "`torch.onnx.export(dynamo=False)`, opset 17"
    )


def _onnx_resnet18(path: Path) -> str:
    """The same ResNet-18 graph as the torch export (BatchNorm folded), built with onnx helpers."""
    from bench._graphs import resnet_onnx

    resnet_onnx(
        path,
        widths=(64, 128, 256, 512),
        image_size=CNN_SIZE,
        stem_kernel=7,
        stem_pool=True,
        residual_gain=0.5,
        name="resnet18",
    )
    return (
        "ResNet-18 graph (Conv with folded BatchNorm, Relu, residual Add) built with onnx helpers, seeded "
        "He-initialized weights (torch is not installed here)"
    )


def make_transformer(path: Path) -> str:
    """A 4-layer Transformer encoder over token embeddings (BERT-mini sized)."""
    if not _torch_available():
        return _copy_rapidocr_rec(path) + " (torch is not installed here, so the SVTR recognizer stands in)"
    import numpy as np
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(VOCAB, D_MODEL)
            self.position = nn.Parameter(torch.randn(1, SEQ_LEN, D_MODEL) * 0.02)
            layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, FFN, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, LAYERS, norm=nn.LayerNorm(D_MODEL), enable_nested_tensor=False)

        def forward(self, ids: Any) -> Any:
            return self.encoder(self.embedding(ids) + self.position)

    torch.manual_seed(0)
    model = Encoder().eval()
    example = torch.from_numpy(token_ids(np.random.default_rng(99), 1))
    # Exported with gradients enabled: under no_grad, eval mode takes PyTorch's fused
    # encoder-layer fast path, which has no ONNX export.
    _export(model, example, path, "input_ids", "hidden")
    return (
        f"`nn.TransformerEncoder` built in torch {torch.__version__}: {LAYERS} post-norm layers, d_model "
        f"{D_MODEL}, {HEADS} heads, FFN {FFN}, ReLU, over a {VOCAB}-token embedding plus learned positions, "
        f"sequence {SEQ_LEN}, seeded random weights; exported with `torch.onnx.export(dynamo=False)`, opset 17 "
        "(attention as MatMul + Softmax)"
    )


def _rapidocr_dir() -> Path:
    from tests.modelzoo import rapidocr_det_model_path

    return rapidocr_det_model_path().parent


def _copy_rapidocr_rec(path: Path) -> str:
    shutil.copyfile(_rapidocr_dir() / "ch_PP-OCRv4_rec_infer.onnx", path)
    return (
        "PP-OCRv4 text recognizer (SVTR-LCNet: PP-LCNet backbone, 2 attention blocks of MatMul + Softmax, "
        f"CTC head over 6625 classes) from rapidocr_onnxruntime {_version('rapidocr-onnxruntime')}, "
        f"run on 1x3x{OCR_REC_SHAPE[0]}x{OCR_REC_SHAPE[1]} text-line images"
    )


def make_ocr_det(path: Path) -> str:
    shutil.copyfile(_rapidocr_dir() / "ch_PP-OCRv4_det_infer.onnx", path)
    return (
        f"PP-OCRv4 text detector (DBNet, PP-LCNetV3 backbone) shipped in rapidocr_onnxruntime "
        f"{_version('rapidocr-onnxruntime')}, used as is (dynamic H and W), run on "
        f"1x3x{OCR_DET_SIZE}x{OCR_DET_SIZE} pages of synthetic printed text"
    )


REC_TITLE = f"PP-OCRv4 text recognizer, SVTR (rapidocr_onnxruntime), 1x3x{OCR_REC_SHAPE[0]}x{OCR_REC_SHAPE[1]}"


def _rec_samples(rng: Any, count: int) -> dict[str, Any]:
    return {"x": text_images(rng, count, *OCR_REC_SHAPE, one_line=True)}


CASES: dict[str, ModelCase] = {
    case.key: case
    for case in (
        ModelCase(
            "cnn",
            lambda: f"ResNet-18, 1x3x{CNN_SIZE}x{CNN_SIZE} -> 1000 logits",
            make_cnn,
            lambda rng, n: {"image": random_images(rng, n, CNN_SIZE, CNN_SIZE)},
        ),
        ModelCase(
            "transformer",
            lambda: (
                f"Transformer encoder, {LAYERS} layers, d_model {D_MODEL}, {HEADS} heads, sequence {SEQ_LEN}"
                if _torch_available()
                else REC_TITLE
            ),
            make_transformer,
            lambda rng, n: {"input_ids": token_ids(rng, n)} if _torch_available() else _rec_samples(rng, n),
        ),
        ModelCase(
            "ocr",
            lambda: f"PP-OCRv4 text detector (rapidocr_onnxruntime), 1x3x{OCR_DET_SIZE}x{OCR_DET_SIZE}",
            make_ocr_det,
            lambda rng, n: {"x": text_images(rng, n, OCR_DET_SIZE, OCR_DET_SIZE)},
        ),
        ModelCase(
            "ocr-rec",
            lambda: REC_TITLE,
            _copy_rapidocr_rec,
            _rec_samples,
        ),
    )
}


# --- timing one model file in a process of its own ----------------------------------------


def worker(spec_path: Path) -> None:
    """Load one model file with one backend, run it once per evaluation sample (outputs saved),
    then warm up and time runs on the first sample. Writes its result as JSON to spec["result"]."""
    import numpy as np

    from workers.engine.backends.registry import BACKENDS

    spec = json.loads(spec_path.read_text())
    timing = Timing(**spec["timing"])
    backend_class = BACKENDS[spec["backend"]]
    parameter = backend_class.thread_argument
    backend = backend_class(**({parameter: spec["threads"]} if parameter else {}))
    with np.load(spec["feeds"]) as data:
        arrays = {name: data[name] for name in data.files}
    count = min(len(array) for array in arrays.values())
    feeds = [{name: array[i : i + 1] for name, array in arrays.items()} for i in range(count)]

    started = time.perf_counter()
    session = backend.load(Path(spec["path"]))
    load_ms = (time.perf_counter() - started) * 1000
    output_names = list(session.output_names)
    saved = {}
    for i, feed in enumerate(feeds):
        result = session.run(feed)
        for j, name in enumerate(output_names):
            saved[f"s{i}_o{j}"] = np.asarray(result[name])
    np.savez(spec["outputs"], **saved)

    feed = feeds[0]
    started, warmup = time.perf_counter(), 0
    while warmup < timing.warmup_runs or time.perf_counter() - started < timing.warmup_s:
        session.run(feed)
        warmup += 1
        if time.perf_counter() - started > timing.max_s:
            break
    latencies: list[float] = []
    cpu_times: list[float] = []
    stable = False
    gc.collect()
    gc.disable()
    started = time.perf_counter()
    while True:
        t0, c0 = time.perf_counter_ns(), time.process_time_ns()
        session.run(feed)
        c1, t1 = time.process_time_ns(), time.perf_counter_ns()
        latencies.append((t1 - t0) / 1e6)
        cpu_times.append((c1 - c0) / 1e6)
        elapsed = time.perf_counter() - started
        if len(latencies) >= timing.min_runs and elapsed >= timing.min_s and len(latencies) % 5 == 0:
            half = len(latencies) // 2
            first, second = statistics.median(latencies[:half]), statistics.median(latencies[half:])
            if abs(first - second) <= timing.tolerance * statistics.median(latencies):
                stable = True
                break
        if (elapsed >= timing.max_s and len(latencies) >= MIN_RUNS_AT_CAP) or len(latencies) >= timing.max_runs:
            break
    gc.enable()
    session.close()
    p50, p90, p99 = np.percentile(np.array(latencies), [50, 90, 99])
    Path(spec["result"]).write_text(
        json.dumps(
            {
                "load_ms": round(load_ms, 1),
                "warmup_runs": warmup,
                "runs": len(latencies),
                "seconds": round(time.perf_counter() - started, 2),
                "stable": stable,
                "p50_ms": round(float(p50), 3),
                "p90_ms": round(float(p90), 3),
                "p99_ms": round(float(p99), 3),
                "min_ms": round(min(latencies), 3),
                "cpu_p50_ms": round(statistics.median(cpu_times), 3),
                "cpu_p99_ms": round(float(np.percentile(np.array(cpu_times), 99)), 3),
                "output_names": output_names,
                "threads_argument": parameter,
            }
        )
    )


def measure(backend: str, path: Path, feeds: Path, threads: int, timing: Timing, scratch: Path) -> dict[str, Any]:
    """Time one model file in a fresh Python process; returns its result plus its saved outputs."""
    import numpy as np

    scratch.mkdir(parents=True, exist_ok=True)
    spec_path = scratch / "spec.json"
    spec = {
        "backend": backend,
        "path": str(path),
        "feeds": str(feeds),
        "threads": threads,
        "timing": asdict(timing),
        "outputs": str(scratch / "outputs.npz"),
        "result": str(scratch / "result.json"),
    }
    spec_path.write_text(json.dumps(spec))
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"the timing process ran over {WORKER_TIMEOUT_S} s"}
    if done.returncode != 0 or not Path(spec["result"]).is_file():
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {"error": (lines[-1] if lines else f"exit status {done.returncode}")[:300]}
    result = json.loads(Path(spec["result"]).read_text())
    with np.load(spec["outputs"]) as data:
        samples = 1 + max(int(key[1:].split("_")[0]) for key in data.files)
        outputs = len(result["output_names"])
        result["outputs"] = [[data[f"s{i}_o{j}"] for j in range(outputs)] for i in range(samples)]
    return result


def compare(reference: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
    """Cosine similarity and max abs error of all outputs on all evaluation samples, the
    candidate's outputs matched to the reference's by name (by position when names differ)."""
    import numpy as np

    ref_names, names = reference["output_names"], candidate["output_names"]
    order = [names.index(n) for n in ref_names] if set(ref_names) <= set(names) else list(range(len(ref_names)))
    if len(names) < len(ref_names):
        return {"cosine": None, "max_abs_err": None, "compare_error": "fewer outputs than the original model"}
    expected, actual = [], []
    for ref_sample, sample in zip(reference["outputs"], candidate["outputs"], strict=True):
        for ref_value, j in zip(ref_sample, order, strict=True):
            value = sample[j]
            if value.shape != ref_value.shape:
                return {
                    "cosine": None,
                    "max_abs_err": None,
                    "compare_error": f"output shape {value.shape} differs from {ref_value.shape}",
                }
            expected.append(ref_value.astype(np.float64).ravel())
            actual.append(value.astype(np.float64).ravel())
    a, b = np.concatenate(expected), np.concatenate(actual)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / norms) if norms else (1.0 if not a.any() and not b.any() else 0.0)
    return {
        "cosine": round(cosine, 6),
        "max_abs_err": float(f"{float(np.max(np.abs(a - b))):.4g}"),
        "reference_max_abs": float(f"{float(np.max(np.abs(a))):.4g}"),
    }


# --- Slipway's verdict: parity at the profile's tolerance, then the recommendation ---------


def profile_tolerance() -> Any:
    """The accuracy tolerance of the seeded `x86-cpu` profile."""
    from workers.engine.parity import Tolerance

    return Tolerance.from_options(seeded_profiles.profile(PROFILE_NAME)["options"])


def _named_outputs(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(result["output_names"], sample, strict=True)) for sample in result["outputs"]]


def judge(reference: dict[str, Any], candidate: dict[str, Any], tolerance: Any, samples: int) -> dict[str, Any]:
    """Slipway's parity verdict (`compare_variant`) on the candidate's outputs against the
    original's, on the same evaluation samples, outputs matched by name as Slipway matches them.
    The verdict without its tolerance (the model's result holds that once), plus the lowest
    cosine and top-1 agreement over the outputs."""
    from workers.engine.parity import VariantParity, compare_variant

    if "error" in candidate:
        reason = f"The variant failed to run on the parity inputs: {candidate['error']}"
        verdict = VariantParity(False, (), (reason,), samples, tolerance, error=candidate["error"])
    else:
        verdict = compare_variant(_named_outputs(reference), _named_outputs(candidate), tolerance)
    data = verdict.to_dict()
    del data["tolerance"]
    cosines = [output.cosine for output in verdict.outputs if output.cosine is not None]
    top1 = [output.top1_agreement for output in verdict.outputs if output.top1_agreement is not None]
    data["min_cosine"] = min(cosines) if cosines else None
    data["min_top1_agreement"] = min(top1) if top1 else None
    return data


def _batch1_points(p50_ms: float, p99_ms: float) -> list[dict[str, Any]]:
    return [{"batch": 1, "concurrency": 1, "p50": p50_ms, "p99": p99_ms, "throughput": 1000.0 / p50_ms}]


def _figures(row: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    """A recommended variant (or the runner-up) with its side-by-side ratios and accuracy."""
    keys = (
        "name",
        "backend",
        "precision",
        "p50_ms",
        "p99_ms",
        "cpu_p50_ms",
        "cpu_p99_ms",
        "baseline_p50_ms",
        "baseline_p99_ms",
        "ratio_vs_baseline",
        "cpu_ratio_vs_baseline",
        "p99_ratio_vs_baseline",
        "cpu_p99_ratio_vs_baseline",
    )
    return {
        **{key: row.get(key) for key in keys},
        "cosine": row["parity"]["min_cosine"],
        "top1_agreement": row["parity"]["min_top1_agreement"],
        "parity_passed": row["parity"]["passed"],
        "speedup_p99_vs_median_baseline": outcome.get("speedup"),
        "reason": outcome.get("reason", ""),
    }


def recommendation(
    rows: list[dict[str, Any]], baseline: dict[str, Any], tolerance: Any, by_cpu: bool
) -> dict[str, Any]:
    """`recommend` with the objective "p99_latency_batch1" over the variants' measured batch-1
    points and parity verdicts, against the baseline's (the medians of its interleaved runs).

    `value` is the issue's figure: the recommended variant's p50 over the plain onnxruntime
    baseline's measured side by side (CPU time when `by_cpu`, else wall clock); 1 when no
    variant passes and the original model is kept."""
    from workers.engine.recommend import recommend

    candidates = [
        {
            "name": row["name"],
            "backend": row["backend"],
            "precision": row["precision"],
            "parity": {"passed": row["parity"]["passed"], "reasons": row["parity"]["reasons"]},
            "points": [] if "error" in row else _batch1_points(row["p50_ms"], row["p99_ms"]),
            "benchmark_error": row.get("error", ""),
            "size_bytes": row["file_bytes"],
        }
        for row in rows
    ]
    result = recommend(
        candidates, _batch1_points(baseline["p50_ms"], baseline["p99_ms"]), OBJECTIVE, budget_ms=None
    ).to_dict()
    by_name = {row["name"]: row for row in rows}
    winner, runner_up = result["winner"], result["runner_up"]
    chosen = _figures(by_name[winner["name"]], winner) if winner else None
    basis = "cpu_ratio_vs_baseline" if by_cpu else "ratio_vs_baseline"
    return {
        "objective": OBJECTIVE,
        "tolerance": asdict(tolerance),
        "use_baseline": result["use_baseline"],
        "summary": result["summary"],
        "value": chosen[basis] if chosen else 1.0,
        "value_basis": "cpu_time_p50" if by_cpu else "wall_clock_p50",
        "winner": chosen,
        "runner_up": _figures(by_name[runner_up["name"]], runner_up) if runner_up else None,
        "failed_parity": [
            {"name": row["name"], "reasons": row["parity"]["reasons"]} for row in rows if not row["parity"]["passed"]
        ],
        "result": result,
    }


# --- one model ----------------------------------------------------------------------------


def _file_bytes(paths: Any) -> int:
    return sum(Path(p).stat().st_size for p in paths if Path(p).is_file())


def _stats(result: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "min_ms",
        "cpu_p50_ms",
        "cpu_p99_ms",
        "runs",
        "stable",
        "load_ms",
        "seconds",
        "error",
    )
    return {key: result[key] for key in keys if key in result}


def bench_model(
    case: ModelCase,
    workdir: Path,
    backends: list[str],
    threads: int,
    timing: Timing,
    calibration_samples: int,
    eval_samples: int,
) -> dict[str, Any]:
    import numpy as np

    from workers.engine.backends.base import Builds, Calibration, HardwareProfile
    from workers.engine.backends.registry import get_backend

    started = time.perf_counter()
    model_dir = workdir / case.key
    model_dir.mkdir(parents=True)
    model_path = model_dir / "model.onnx"
    log(f"[{case.key}] making the model")
    made_with = case.make(model_path)
    calibration_path = model_dir / "calibration.npz"
    feeds_path = model_dir / "feeds.npz"
    np.savez(calibration_path, **case.samples(np.random.default_rng(1), calibration_samples))
    inputs = case.samples(np.random.default_rng(2), eval_samples)
    np.savez(feeds_path, **inputs)

    profile = HardwareProfile(PROFILE_NAME, "cpu", tuple(backends), PRECISIONS)
    tolerance = profile_tolerance()
    variants: list[Any] = []
    notes: list[str] = []
    build_seconds: dict[str, float] = {}
    for name in backends:
        backend = get_backend(name)
        log(f"[{case.key}] building {name} variants")
        t0 = time.perf_counter()
        try:
            built = backend.build_variants(model_path, profile, Calibration(calibration_path), model_dir / name)
        except Exception as exc:  # a backend that cannot build for this model is reported, not fatal
            built = Builds()
            notes.append(f"{name} built no variant: {type(exc).__name__}: {str(exc)[:300]}")
        build_seconds[name] = round(time.perf_counter() - t0, 1)
        notes.extend(f"{name}: {note}" for note in built.notes)
        variants.extend(built)

    def timed(backend: str, path: Path, label: str, index: int) -> dict[str, Any]:
        log(f"[{case.key}] timing {label}")
        return measure(backend, path, feeds_path, threads, timing, model_dir / "runs" / f"{index:02d}-{label}")

    baselines = [timed(BASELINE_BACKEND, model_path, "baseline", 0)]
    if "error" in baselines[0]:
        raise SystemExit(f"[{case.key}] the original model did not run in onnxruntime: {baselines[0]['error']}")
    measured = []
    for index, variant in enumerate(variants, start=1):
        measured.append(timed(variant.backend, variant.path, variant.name, 2 * index - 1))
        baselines.append(timed(BASELINE_BACKEND, model_path, "baseline", 2 * index))

    good = [run for run in baselines if "error" not in run]
    reference = baselines[0]
    baseline_p50s = [run["p50_ms"] for run in good]
    median_p50 = statistics.median(baseline_p50s)
    baseline_cpu = [run["cpu_p50_ms"] for run in good]
    median_cpu = statistics.median(baseline_cpu)
    # The baseline's numbers are medians over its interleaved runs.
    baseline = {
        "p50_ms": round(median_p50, 3),
        "p90_ms": round(statistics.median(run["p90_ms"] for run in good), 3),
        "p99_ms": round(statistics.median(run["p99_ms"] for run in good), 3),
        "p50_ms_each_run": baseline_p50s,
        "p50_spread_percent": round(100 * (max(baseline_p50s) - min(baseline_p50s)) / median_p50, 1),
        "cpu_p50_ms": round(median_cpu, 3),
        "cpu_p50_ms_each_run": baseline_cpu,
        "cpu_p50_spread_percent": round(100 * (max(baseline_cpu) - min(baseline_cpu)) / median_cpu, 1),
        "cpu_p99_ms": round(statistics.median(run["cpu_p99_ms"] for run in good), 3),
        "load_ms": round(statistics.median(run["load_ms"] for run in good), 1),
        "file_bytes": _file_bytes([model_path]),
        "runs": [_stats(run) for run in baselines],
        "self_check": compare(reference, good[-1]),
    }

    rows = []
    for index, (variant, result) in enumerate(zip(variants, measured, strict=True), start=1):
        row: dict[str, Any] = {
            "name": variant.name,
            "backend": variant.backend,
            "precision": variant.precision,
            "format": variant.format,
            "pass_name": variant.pass_name,
            "file_bytes": _file_bytes(variant.files or [variant.path]),
            **_stats(result),
        }
        if "error" not in result:
            around = [run for run in (baselines[index - 1], baselines[index]) if "error" not in run]
            for key, ratio in (
                ("p50_ms", "ratio_vs_baseline"),
                ("cpu_p50_ms", "cpu_ratio_vs_baseline"),
                ("p99_ms", "p99_ratio_vs_baseline"),
                ("cpu_p99_ms", "cpu_p99_ratio_vs_baseline"),
            ):
                # The mean of the two baseline runs around the variant; their median over all
                # runs when both failed.
                neighbours = statistics.mean(run[key] for run in around) if around else baseline[key]
                if key in ("p50_ms", "p99_ms"):
                    row[f"baseline_{key}"] = round(neighbours, 3)
                row[ratio] = round(result[key] / neighbours, 3)
            row.update(compare(reference, result))
        row["parity"] = judge(reference, result, tolerance, eval_samples)
        rows.append(row)

    return {
        "title": case.title(),
        "made_with": made_with,
        "inputs": {name: {"shape": [1, *array.shape[1:]], "dtype": str(array.dtype)} for name, array in inputs.items()},
        "calibration_samples": calibration_samples,
        "eval_samples": eval_samples,
        "build_seconds": build_seconds,
        "build_notes": notes,
        "baseline": baseline,
        "variants": rows,
        "recommendation": recommendation(rows, baseline, tolerance, by_cpu=threads == 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


# --- the whole run ------------------------------------------------------------------------


_STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"{time.perf_counter() - _STARTED:6.1f}s {message}", file=sys.stderr, flush=True)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def run(models: list[str], backends: list[str] | None, threads: int, quick: bool, keep: bool) -> dict[str, Any]:
    from workers.engine.backends.registry import installed_backends

    started = time.perf_counter()
    installed = installed_backends()
    if backends is None:
        backends = [name for name in PROFILE_BACKENDS if installed.get(name)]
    missing = [name for name in backends if not installed.get(name)]
    if missing:
        raise SystemExit(f"not installed here: {', '.join(missing)} (installed: {installed})")
    if BASELINE_BACKEND not in installed or not installed[BASELINE_BACKEND]:
        raise SystemExit("onnxruntime is needed for the baseline")
    timing = QUICK if quick else FULL
    calibration_samples = 8 if quick else 32
    eval_samples = 1 if quick else 4
    threads = threads or os.cpu_count() or 1
    load_before = [round(value, 2) for value in os.getloadavg()]
    parent = REPO / "var" if (REPO / "var").is_dir() else None
    workdir = Path(tempfile.mkdtemp(prefix="slipway-bench-optimize-", dir=parent))
    try:
        results = {
            key: bench_model(CASES[key], workdir, backends, threads, timing, calibration_samples, eval_samples)
            for key in models
        }
    finally:
        if keep:
            log(f"kept the models, variants and outputs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    packages = ["onnxruntime", "onnx", "numpy", "torch", "openvino", "nncf", "rapidocr-onnxruntime", "pillow"]
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "threads": threads,
        "load_average_before": load_before,
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "mode": "quick" if quick else "full",
        "timing": asdict(timing),
        "profile": {"name": PROFILE_NAME, "device_kind": "cpu", "backends": backends, "precisions": list(PRECISIONS)},
        "installed_backends": installed,
        "versions": {name: version for name in packages if (version := _version(name))},
        "models": results,
        # The headline: each model's recommended variant over plain onnxruntime (see `recommendation`).
        "value": {key: model["recommendation"]["value"] for key, model in results.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


# --- BENCHMARKS.md ------------------------------------------------------------------------


def _size(count: int) -> str:
    return f"{count / 2**20:.2f} MiB" if count >= 2**20 else f"{count / 2**10:.0f} KiB"


def _num(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def model_table(key: str, model: dict[str, Any], by_cpu: bool) -> str:
    base = model["baseline"]
    each = ", ".join(f"{p:.2f}" for p in base["p50_ms_each_run"])
    each_cpu = ", ".join(f"{p:.2f}" for p in base["cpu_p50_ms_each_run"])
    inputs = ", ".join(
        f"`{name}` {info['dtype']} {'x'.join(map(str, info['shape']))}" for name, info in model["inputs"].items()
    )
    lines = [
        f"### `{key}`: {model['title']}",
        "",
        f"{model['made_with']}. Input: {inputs}. Calibration: {model['calibration_samples']} generated samples; "
        f"accuracy over {model['eval_samples']} other samples. Build time: "
        + ", ".join(f"{name} {seconds} s" for name, seconds in model["build_seconds"].items())
        + f". Baseline p50 of its {len(base['p50_ms_each_run'])} interleaved runs: {each} ms (spread "
        f"{base['p50_spread_percent']} %); CPU time p50: {each_cpu} ms (spread {base['cpu_p50_spread_percent']} %).",
        "",
        "| variant | backend | precision | p50 ms | p99 ms | ratio vs baseline | CPU-time ratio | cosine "
        "| max abs err | file size | load ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| **baseline** (original model, plain onnxruntime session) | onnxruntime | fp32 | {base['p50_ms']:.2f} "
        f"| {base['p99_ms']:.2f} | 1 (spread {base['p50_spread_percent']:.0f} %) "
        f"| 1 (spread {base['cpu_p50_spread_percent']:.0f} %) | 1 | 0 | {_size(base['file_bytes'])} "
        f"| {base['load_ms']:.0f} |",
    ]
    for row in model["variants"]:
        if "error" in row:
            detail = row["error"].replace("|", "/")
            lines.append(
                f"| {row['name']} | {row['backend']} | {row['precision']} | failed: {detail} | | | | | "
                f"| {_size(row['file_bytes'])} | |"
            )
            continue
        unstable = "" if row.get("stable") else " *"
        lines.append(
            f"| {row['name']} | {row['backend']} | {row['precision']} | {row['p50_ms']:.2f}{unstable} "
            f"| {row['p99_ms']:.2f} | {row['ratio_vs_baseline']:.3f} | {row['cpu_ratio_vs_baseline']:.3f} "
            f"| {_num(row.get('cosine'), '.6f')} | {_num(row.get('max_abs_err'), '.3g')} "
            f"| {_size(row['file_bytes'])} | {row['load_ms']:.0f} |"
        )
    lines.append("")
    lines.extend(f"- {sentence}" for sentence in model_findings(model, by_cpu))
    return "\n".join(lines) + "\n"


def _ratio(value: Any, bold: bool) -> str:
    text = _num(value, ".3f")
    return f"**{text}**" if bold and value is not None else text


def _accuracy(figures: dict[str, Any]) -> str:
    top1 = figures.get("top1_agreement")
    return f"{_num(figures.get('cosine'), '.4f')} / {'—' if top1 is None else format(top1, '.0%')}"


def recommended_table(result: dict[str, Any], by_cpu: bool) -> str:
    """One row per model: what Slipway recommends, its ratios to the side-by-side baseline,
    its accuracy and the runner-up; then the variants that failed the tolerance, and why."""
    lines = [
        "### Recommended",
        "",
        "| model | recommended variant | p50 ratio, wall | p50 ratio, CPU time | p99 ratio, wall "
        "| p99 ratio, CPU time | cosine / top-1 | runner-up |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    notes = []
    for key, model in result["models"].items():
        rec = model["recommendation"]
        winner, second = rec["winner"], rec["runner_up"]
        if second:
            preferred = second["cpu_ratio_vs_baseline" if by_cpu else "ratio_vs_baseline"]
            basis = " CPU time" if by_cpu else ""
            runner_up = f"{second['name']} (p50 ratio {preferred:.3f}{basis}, p99 {second['p99_ms']:.2f} ms)"
        else:
            runner_up = "—"
        if winner is None:
            lines.append(f"| `{key}` | none: keep the original model | 1 | 1 | 1 | 1 | 1 / 100% | {runner_up} |")
        else:
            ratios = " | ".join(
                _ratio(winner[name], bold)
                for name, bold in (
                    ("ratio_vs_baseline", not by_cpu),
                    ("cpu_ratio_vs_baseline", by_cpu),
                    ("p99_ratio_vs_baseline", False),
                    ("cpu_p99_ratio_vs_baseline", False),
                )
            )
            lines.append(
                f"| `{key}` | {winner['name']} ({winner['backend']}, {winner['precision']}) | {ratios} "
                f"| {_accuracy(winner)} | {runner_up} |"
            )
        failed = "; ".join(
            f"{item['name']} ({' '.join(item['reasons']).replace('|', '/')})" for item in rec["failed_parity"]
        )
        notes.append(f"`{key}`: {rec['summary']}" + (f" Failed the tolerance: {failed}" if failed else ""))
    lines.append("")
    lines.extend(f"- {note}" for note in notes)
    return "\n".join(lines) + "\n"


def model_findings(model: dict[str, Any], by_cpu: bool) -> list[str]:
    """Sentences drawn from the numbers: the fastest variant, and the ones that lose accuracy."""
    rows = [row for row in model["variants"] if "ratio_vs_baseline" in row]
    found = []
    key = "cpu_ratio_vs_baseline" if by_cpu else "ratio_vs_baseline"
    spread = model["baseline"]["cpu_p50_spread_percent" if by_cpu else "p50_spread_percent"]
    if rows:
        best = min(rows, key=lambda row: row[key])
        found.append(
            f"Fastest by {'CPU time' if by_cpu else 'p50'}: {best['name']} at {best[key]:.2f}x the baseline "
            f"(wall-clock ratio {best['ratio_vs_baseline']:.2f}, cosine {_num(best.get('cosine'), '.4f')}); "
            f"the baseline's own runs spread over {spread:.0f} %."
        )
        slower = [row for row in rows if row[key] > 1 + max(spread, 5.0) / 100]
        if slower:
            found.append(
                "Slower than the baseline beyond its spread: "
                + ", ".join(f"{row['name']} ({row[key]:.2f}x)" for row in slower)
                + "."
            )
    wrong = [row for row in rows if row.get("cosine") is not None and row["cosine"] < 0.99]
    if wrong:
        found.append(
            "Cosine below 0.99 against the original's outputs: "
            + ", ".join(f"{row['name']} ({row['cosine']:.4f}, max abs err {row['max_abs_err']:.3g})" for row in wrong)
            + "."
        )
    unstable = [row["name"] for row in rows if not row.get("stable")]
    if unstable:
        found.append("\\* p50 had not settled within 2 % when the time cap was reached: " + ", ".join(unstable) + ".")
    failed = [row["name"] for row in model["variants"] if "error" in row]
    if failed:
        found.append("Built but failed to run: " + ", ".join(failed) + ".")
    found.extend(f"Build note: {note}" for note in model["build_notes"])
    return found


def _tolerance_text(result: dict[str, Any]) -> str:
    tolerances = [model["recommendation"]["tolerance"] for model in result["models"].values()]
    if not tolerances:
        return "none"
    tol = tolerances[0]
    text = (
        f"max abs error {tol['max_abs_error']:g}, or else cosine at least {tol['min_cosine']:g} and top-1 "
        f"agreement at least {tol['min_top1_agreement']:.0%} on classifier outputs"
    )
    extra = [f"{key} {tol[key]:g}" for key in ("max_rel_error", "p99_abs_error") if tol.get(key) is not None]
    return text + (" and " + ", ".join(extra) if extra else "")


def write_benchmarks(result: dict[str, Any]) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md, leaving the others alone."""
    versions = ", ".join(f"{name} {version}" for name, version in result["versions"].items())
    timing = result["timing"]
    by_cpu = result["threads"] == 1
    load = f"{result['load_average_before'][0]:.1f} -> {result['load_average_after'][0]:.1f}"
    section = (
        f"## {SECTION}\n\n"
        f"`bench/optimize.py`, {result['date']}, {result['cores']} cores (1-minute load average {load} "
        f"over the run), {result['threads']} intra-op thread(s) for every session, {result['mode']} run in "
        f"{result['seconds']:.0f} s; {versions}.\n\n"
        f"Variants are what `build_variants` of each installed backend of the `{result['profile']['name']}` "
        f"profile ({', '.join(result['profile']['backends'])}; precisions "
        f"{', '.join(result['profile']['precisions'])}) builds, static INT8 calibrated on generated samples. The "
        "**baseline** is the original model in a plain onnxruntime session (default session options, so "
        "onnxruntime still applies its own graph optimizations when loading it). Every measurement runs in a "
        "fresh process, in the order baseline, variant 1, baseline, variant 2, ..., baseline, on the same input: "
        f"{timing['warmup_runs']} warm-up runs (at least {timing['warmup_s']} s), then runs until at least "
        f"{timing['min_runs']} runs and {timing['min_s']} s, stopping when the medians of the first and second half "
        f"agree within {timing['tolerance'] * 100:.0f} % or at {timing['max_s']} s. "
        "**ratio** = variant p50 / the mean p50 of the two baseline runs around it (below 1 is faster). "
        "**CPU-time ratio** is the same with the process CPU time per run, which other processes on the machine "
        "do not inflate: with one thread it is the better guide when the machine is busy (the load average above "
        "says how busy), with more threads it also counts the threads' spinning. The baseline row shows the spread "
        "of all its runs' p50 ((max - min) / median). p99 over fewer than 100 runs is close to the slowest run. "
        "**cosine** and **max abs err** compare every output on the evaluation samples with the original model's "
        "in onnxruntime. **load ms** is the time to create the session (or compile the model).\n\n"
        f"**Recommended** is Slipway's own verdict for the `{result['profile']['name']}` profile: every variant's "
        "outputs on the evaluation samples are judged by `compare_variant` against the original model's at the "
        f"profile's tolerance ({_tolerance_text(result)}), and `recommend` with the objective `{OBJECTIVE}` picks, "
        "of the variants that pass, the one with the lowest measured wall-clock p99 at batch 1 (ties: smaller "
        "file). Its ratios are to the baseline runs around it, as in the tables below; the bold one is the figure "
        "to quote (CPU time with one thread, wall clock otherwise). The sentence under the table is `recommend`'s "
        "own summary, whose speed-up is the baseline's p99 (the median of its runs) over the winner's. The "
        "accuracy inputs are the bench's evaluation samples, not the standard-normal inputs Slipway generates "
        "when a model has no validation set.\n\n"
        + recommended_table(result, by_cpu)
        + "\n"
        + "\n".join(model_table(key, model, by_cpu) for key, model in result["models"].items())
    )
    write_section(REPO / "BENCHMARKS.md", SECTION, section)


def print_summary(result: dict[str, Any], stream: Any) -> None:
    for key, model in result["models"].items():
        base = model["baseline"]
        print(f"{key}: baseline p50 {base['p50_ms']:.2f} ms (spread {base['p50_spread_percent']} %)", file=stream)
        for row in model["variants"]:
            if "error" in row:
                print(f"  {row['name']:<22} failed: {row['error']}", file=stream)
                continue
            print(
                f"  {row['name']:<22} p50 {row['p50_ms']:8.2f} ms  ratio {row['ratio_vs_baseline']:.3f}  "
                f"cpu ratio {row['cpu_ratio_vs_baseline']:.3f}  cosine {_num(row.get('cosine'), '.6f')}  "
                f"max abs err {_num(row.get('max_abs_err'), '.3g')}",
                file=stream,
            )
        rec = model["recommendation"]
        print(f"  recommended: {rec['summary']} (value {rec['value']:.3f}, {rec['value_basis']})", file=stream)
        for item in rec["failed_parity"]:
            print(f"  failed the tolerance: {item['name']}: {' '.join(item['reasons'])}", file=stream)
    print(f"total {result['seconds']} s", file=stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument(
        "--backends",
        help=f"comma-separated (default: the installed ones of {', '.join(PROFILE_BACKENDS)})",
    )
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per session; 0 for all cores")
    parser.add_argument("--quick", action="store_true", help="few runs and calibration samples: a smoke test")
    parser.add_argument("--no-write", action="store_true", help="don't update BENCHMARKS.md")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (models, variants, outputs)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in models if name not in CASES]
    if unknown or not models:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    backends = [name.strip() for name in args.backends.split(",")] if args.backends else None

    with stdout_to_stderr() as real_stdout:
        result = run(models, backends, args.threads, args.quick, args.keep)
        if args.json:
            print(json.dumps(result, indent=1), file=real_stdout)
        else:
            print_summary(result, real_stdout)
    if not args.no_write:
        write_benchmarks(result)


if __name__ == "__main__":
    main()
