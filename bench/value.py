"""Value: what Slipway's recommendation is worth on the reference models, and what its evidence rests on.
It is over 600 lines because a bench is one script by design (its models, runs, statistics
and the section it writes to BENCHMARKS.md read and rerun together); this one measures three
reference models end to end.

For each reference model (the ResNet-18, Transformer encoder and PP-OCRv4 text detector of
bench/optimize.py, a YOLO-style detector built here whose one output holds box coordinates in
pixels beside sigmoid class scores, and a stateful recurrent voice-activity model whose
`state` input is [2, batch, 128]), this builds the variants the pipeline builds on the
`x86-cpu` profile (`build_variants` of onnxruntime and OpenVINO, FP32, BF16 where the CPU
computes in it, and INT8; static INT8
calibrated on real-like samples, as a user who uploads calibration data gets, the quantization
searches judging their candidates on those and on the real-like validation samples, as the
optimize step does when a validation set is uploaded), then judges
every variant's parity twice with the engine's comparator, the output kinds inspection
proposes and the profile's tolerance:

- on generated inputs: `parity.evidence_inputs` without a validation set, which is what the
  pipeline uses when the user uploads none;
- on real-like samples, given to `evidence_inputs` as a validation set: crops of the two
  photographs scikit-learn ships (china.jpg, flower.jpg) for the image models, pages of
  printed text for the OCR detector, Zipf-distributed token ids with padding for the
  Transformer, and chunks of a speech-like signal with the state the model itself carried
  from the chunks before for the recurrent model (each held out from the calibration set).

It benchmarks the original model in plain onnxruntime and every variant with
`benchmark_interleaved` (3 trials, each a fresh process, one intra-op thread, pinned to one
core, at the input plan's sizes) and runs `recommend` on both parity verdicts. Per model it
reports the recommended variant (generated-input parity, as the pipeline decides without a
validation set) and its CPU-time ratio to plain onnxruntime with the 95 % band, beside the
fastest variant that real-data parity accepts, and every variant whose verdict differs
between the two kinds of input. Writes the "## Value" section of BENCHMARKS.md unless
--no-write; --json prints everything as JSON on stdout (progress goes to stderr).

    python bench/value.py                                      # all five models: about 10 min on 2 cores
    python bench/value.py --models detector,recurrent --no-write
    python bench/value.py --models recurrent --backends onnxruntime --seconds 0.6 --no-write --json
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from apps.hardware import seeded_profiles  # noqa: E402
from bench._benchmarks_md import cpu_line, write_section  # noqa: E402

SECTION = "Value"
PROFILE_NAME = "x86-cpu"
PROFILE_BACKENDS = ("onnxruntime", "openvino")
# As the seeded x86-cpu profile (apps/hardware/seeded_profiles.py): bf16 where the CPU has it.
PRECISIONS = tuple(seeded_profiles.profile("x86-cpu")["precisions"])
OBJECTIVE = "p99_latency_batch1"
DEFAULT_MODELS = ("cnn", "transformer", "ocr", "detector", "recurrent")
# The pipeline judges parity on 8 samples (workers/tasks/steps/parity.py).
EVAL_SAMPLES = 8
CALIBRATION_SAMPLES = 16
TRIALS = 3
OPSET = 17

DETECTOR_SIZE = 640
DETECTOR_STRIDE = 16
DETECTOR_CLASSES = 80
DETECTOR_ANCHOR_PX = 64
# The share of anchors whose best class score reaches the decoding threshold (0.25) on the
# photographs the detector's statistics come from: a few dozen candidates per image.
DETECTOR_FIRING = 0.02
AUDIO_RATE = 16000
AUDIO_CHUNK = 512
STATE_SIZE = 128
# Chunks a stream runs before its states are sampled, so that they are far from zero.
STREAM_WARMUP_CHUNKS = 8


@dataclass(frozen=True)
class ValueCase:
    """One reference model: how to build it, and how to make real-like samples for it.

    `real(model_path, seed, count)` returns one array per model input with `count` samples on
    each input's batch axis (the state's axis 1), as a user's validation .npz would hold them.
    """

    key: str
    title: str
    make: Callable[[Path], str]
    real: Callable[[Path, int, int], dict[str, Any]]
    real_description: str


# --- real-like samples ------------------------------------------------------------------


def photographs() -> list[Any]:
    """The two photographs scikit-learn ships (china.jpg, flower.jpg), 427x640 RGB uint8."""
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)


def photo_crops(seed: int, count: int, size: int) -> Any:
    """`count` square crops of the photographs (a side of 40-100 % of the shorter side, at a
    random place, flipped half the time), resized to `size` px: NCHW float32 in [0, 1]."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = photographs()
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = photo.shape[:2]
        side = int(min(height, width) * rng.uniform(0.4, 1.0))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side]).resize(
            (size, size), Image.Resampling.BILINEAR
        )
        array = np.asarray(crop, dtype=np.float32) / 255.0
        if rng.random() < 0.5:
            array = array[:, ::-1]
        crops.append(array.transpose(2, 0, 1))
    return np.stack(crops).astype(np.float32)


def imagenet_crops(seed: int, count: int, size: int) -> Any:
    """Photo crops normalized with ImageNet's mean and std, as a ResNet takes them."""
    import numpy as np

    from bench.optimize import IMAGENET_MEAN, IMAGENET_STD

    mean = np.array(IMAGENET_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array(IMAGENET_STD, dtype=np.float32).reshape(1, 3, 1, 1)
    return ((photo_crops(seed, count, size) - mean) / std).astype(np.float32)


def zipf_token_ids(seed: int, count: int, length: int, vocabulary: int) -> Any:
    """Token ids as text gives them: ranks drawn from a Zipf-Mandelbrot law (p(r) ~ 1/(r + 2.7)),
    rank r being id r + 4 (ids 0-3 are special), a leading id 1, and a padded tail of id 0
    after 25-100 % of the sequence."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ranks = np.arange(vocabulary - 4)
    weights = 1.0 / (ranks + 2.7) ** 1.1
    weights /= weights.sum()
    ids = 4 + rng.choice(ranks, size=(count, length), p=weights)
    ids[:, 0] = 1
    for row in ids:
        row[int(rng.integers(length // 4, length + 1)) :] = 0
    return ids.astype(np.int64)


def speech_like(seed: int, seconds: float) -> Any:
    """A speech-like signal at 16 kHz: voiced stretches (a glottal pulse train at 90-220 Hz
    shaped by three formants), unvoiced hiss, and pauses with a little room noise, each under
    a smooth envelope; peaks around 0.3."""
    import numpy as np

    rng = np.random.default_rng(seed)
    total = int(seconds * AUDIO_RATE)
    parts = []
    length = 0
    while length < total:
        kind = rng.choice(["voiced", "unvoiced", "pause"], p=[0.55, 0.15, 0.3])
        n = int(rng.uniform(0.06, 0.35) * AUDIO_RATE)
        t = np.arange(n) / AUDIO_RATE
        if kind == "voiced":
            f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
            phase = 2 * np.pi * np.cumsum(f0) / AUDIO_RATE
            formants = (rng.uniform(300, 900), rng.uniform(900, 2400), rng.uniform(2400, 3400))
            segment = np.zeros(n)
            for k in range(1, int(4000 / f0.max())):
                gain = sum(1.0 / (1.0 + ((k * f0.mean() - f) / 120.0) ** 2) for f in formants)
                segment += gain / k * np.sin(k * phase)
            segment *= rng.uniform(0.1, 0.3) / max(1e-9, float(np.abs(segment).max()))
        elif kind == "unvoiced":
            segment = np.diff(rng.normal(0, 1, n + 1)) * rng.uniform(0.02, 0.08)
        else:
            segment = rng.normal(0, 0.002, n)
        parts.append(segment * np.sin(np.pi * np.arange(n) / n) ** 0.5)
        length += n
    signal = np.concatenate(parts)[:total] + rng.normal(0, 0.001, total)
    return np.clip(signal, -1.0, 1.0).astype(np.float32)


def stream_samples(model_path: Path, seed: int, count: int) -> dict[str, Any]:
    """Chunks of a speech-like stream with the state the original model carried into each: the
    model is run chunk by chunk from a zero state, as a voice-activity detector is used, and
    `count` (chunk, state) pairs are sampled after the first STREAM_WARMUP_CHUNKS chunks."""
    import numpy as np

    from workers.engine.backends.registry import get_backend

    chunks = STREAM_WARMUP_CHUNKS + 3 * count
    signal = speech_like(seed, chunks * AUDIO_CHUNK / AUDIO_RATE)
    session = get_backend("onnxruntime").load(model_path)
    state = np.zeros((2, 1, STATE_SIZE), np.float32)
    inputs: list[Any] = []
    states: list[Any] = []
    try:
        for index in range(chunks):
            chunk = signal[index * AUDIO_CHUNK : (index + 1) * AUDIO_CHUNK][None, :]
            if index >= STREAM_WARMUP_CHUNKS and (index - STREAM_WARMUP_CHUNKS) % 3 == 0 and len(inputs) < count:
                inputs.append(chunk[0])
                states.append(state[:, 0])
            state = session.run({"input": chunk, "state": state})["stateN"]
    finally:
        session.close()
    # Samples on each input's batch axis: axis 0 of the audio, axis 1 of the state.
    return {"input": np.stack(inputs).astype(np.float32), "state": np.stack(states, axis=1).astype(np.float32)}


# --- the two models built here --------------------------------------------------------------


def _export(model: Any, example: tuple[Any, ...], path: Path, inputs: list[str], outputs: list[str], **kw: Any) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=inputs,
            output_names=outputs,
            **kw,
        )


def make_detector(path: Path) -> str:
    """A YOLO-style single-scale detector at 640x640: five Conv-BN-SiLU stages (stride 16),
    a box head giving centres (grid + sigmoid) * stride and sizes (2 sigmoid)^2 * 64 px, and
    80 sigmoid class scores, concatenated into one output [1, 1600, 84] as YOLO exports do."""
    import numpy as np
    import torch
    from torch import nn

    grid_side = DETECTOR_SIZE // DETECTOR_STRIDE

    def stage(cin: int, cout: int, stride: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())

    class Detector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(
                stage(3, 16, 2), stage(16, 32, 2), stage(32, 64, 2), stage(64, 128, 2), stage(128, 128, 1)
            )
            self.box = nn.Conv2d(128, 4, 1)
            self.cls = nn.Conv2d(128, DETECTOR_CLASSES, 1)
            ys, xs = torch.meshgrid(torch.arange(grid_side), torch.arange(grid_side), indexing="ij")
            # A constant of the graph: each anchor's cell (x, y).
            self.grid: torch.Tensor = torch.stack([xs, ys]).reshape(1, 2, -1).float()

        def features(self, image: Any) -> Any:
            return self.backbone(image)

        def forward(self, image: Any) -> Any:
            features = self.features(image)
            t = torch.sigmoid(self.box(features)).flatten(2)
            centres = (self.grid + t[:, :2]) * DETECTOR_STRIDE
            sizes = (2 * t[:, 2:]) ** 2 * DETECTOR_ANCHOR_PX
            boxes = torch.cat([centres, sizes], 1)
            scores = torch.sigmoid(self.cls(features).flatten(2))
            return torch.cat([boxes, scores], 1).transpose(1, 2)

    torch.manual_seed(0)
    model = Detector()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average
    images = torch.from_numpy(photo_crops(100, 8, DETECTOR_SIZE))
    model.train()
    with torch.no_grad():
        model.features(images)
    model.eval()
    with torch.no_grad():
        # The class bias a trained detector ends with: most anchors score near zero, a few fire.
        best = model.cls(model.features(images)).amax(dim=1).flatten()
        threshold = float(np.quantile(best.numpy(), 1 - DETECTOR_FIRING))
        bias = model.cls.bias
        assert bias is not None
        bias.add_(math.log(0.25 / 0.75) - threshold)
    _export(model, (images[:1],), path, ["images"], ["output0"])
    return (
        f"built in torch {_version('torch')}: seeded random weights, BatchNorm statistics from 8 other photo crops "
        f"(folded on export), the class bias set so that {DETECTOR_FIRING:.0%} of anchors reach a score of 0.25 on "
        "them; output `output0` [1, 1600, 84]: cx, cy, w, h in pixels (0-640), then 80 sigmoid scores"
    )


def make_recurrent(path: Path) -> str:
    """A voice-activity model shaped like Silero VAD: a 512-sample chunk `input` [batch, 512]
    and a recurrent `state` [2, batch, 128] (h and c of an LSTM) in; the speech probability
    `output` [batch, 1] and the next state `stateN` [2, batch, 128] out. A strided Conv1d
    front end, the LSTM (an ONNX LSTM node) and a linear head."""
    import torch
    from torch import nn

    class Vad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frontend = nn.Sequential(
                nn.Conv1d(1, 64, 64, stride=32, padding=16),
                nn.ReLU(),
                nn.Conv1d(64, STATE_SIZE, 3, stride=2, padding=1),
                nn.ReLU(),
            )
            self.scale: torch.Tensor = torch.ones(1)
            self.lstm = nn.LSTM(STATE_SIZE, STATE_SIZE)
            self.head = nn.Linear(STATE_SIZE, 1)

        def encode(self, chunk: Any) -> Any:
            return self.frontend(chunk.unsqueeze(1)).mean(dim=2)

        def forward(self, chunk: Any, state: Any) -> Any:
            x = (self.encode(chunk) * self.scale).unsqueeze(0)
            out, (h, c) = self.lstm(x, (state[0:1], state[1:2]))
            return torch.sigmoid(self.head(out[0])), torch.cat([h, c], 0)

    torch.manual_seed(0)
    model = Vad().eval()
    with torch.no_grad():
        # Scale the front end's features to unit spread on speech, as a trained model's would be.
        signal = torch.from_numpy(speech_like(101, 64 * AUDIO_CHUNK / AUDIO_RATE).reshape(64, AUDIO_CHUNK))
        model.scale.fill_(1.0 / float(model.encode(signal).std()))
    chunk = torch.zeros(1, AUDIO_CHUNK)
    state = torch.zeros(2, 1, STATE_SIZE)
    _export(
        model,
        (chunk, state),
        path,
        ["input", "state"],
        ["output", "stateN"],
        dynamic_axes={"input": {0: "batch"}, "state": {1: "batch"}, "output": {0: "batch"}, "stateN": {1: "batch"}},
    )
    return (
        f"built in torch {_version('torch')}: Conv1d(1->64, k 64, stride 32) + ReLU + Conv1d(64->128, k 3, stride 2) "
        "+ ReLU, mean over time, scaled to unit spread on speech, one LSTM step (128 -> 128, state [2, batch, 128] "
        "holding h and c), Linear + Sigmoid; seeded random weights; batch symbolic on axis 0 of `input` and axis 1 "
        "of `state`"
    )


def _optimize_module() -> Any:
    return importlib.import_module("bench.optimize")


def _make_cnn(path: Path) -> str:
    return str(_optimize_module().make_cnn(path))


def _make_transformer(path: Path) -> str:
    return str(_optimize_module().make_transformer(path))


def _make_ocr(path: Path) -> str:
    return str(_optimize_module().make_ocr_det(path))


def _real_cnn(_: Path, seed: int, count: int) -> dict[str, Any]:
    return {"image": imagenet_crops(seed, count, _optimize_module().CNN_SIZE)}


def _real_transformer(_: Path, seed: int, count: int) -> dict[str, Any]:
    optimize = _optimize_module()
    return {"input_ids": zipf_token_ids(seed, count, optimize.SEQ_LEN, optimize.VOCAB)}


def _real_ocr(_: Path, seed: int, count: int) -> dict[str, Any]:
    import numpy as np

    optimize = _optimize_module()
    size = optimize.OCR_DET_SIZE
    return {"x": optimize.text_images(np.random.default_rng(seed), count, size, size)}


def _real_detector(_: Path, seed: int, count: int) -> dict[str, Any]:
    return {"images": photo_crops(seed, count, DETECTOR_SIZE)}


CASES: dict[str, ValueCase] = {
    case.key: case
    for case in (
        ValueCase(
            "cnn",
            "ResNet-18, 1x3x224x224 -> 1000 logits (bench/optimize.py)",
            _make_cnn,
            _real_cnn,
            "224 px crops of the two photographs scikit-learn ships, normalized with ImageNet's mean and std",
        ),
        ValueCase(
            "transformer",
            "Transformer encoder, 4 layers, d_model 256, sequence 128 (bench/optimize.py)",
            _make_transformer,
            _real_transformer,
            "Zipf-distributed token ids (p(rank) ~ 1/(rank + 2.7)^1.1), a leading id 1 and a padded tail of id 0",
        ),
        ValueCase(
            "ocr",
            "PP-OCRv4 text detector (rapidocr_onnxruntime), dynamic H and W (bench/optimize.py)",
            _make_ocr,
            _real_ocr,
            "640x640 pages of printed text (Pillow's font, dark on light, a little noise), normalized as PP-OCR does",
        ),
        ValueCase(
            "detector",
            f"YOLO-style detector, 1x3x{DETECTOR_SIZE}x{DETECTOR_SIZE} -> [1, 1600, 84] (boxes in pixels + 80 scores)",
            make_detector,
            _real_detector,
            f"{DETECTOR_SIZE} px crops of the two photographs scikit-learn ships, in [0, 1] (not those its "
            "statistics came from)",
        ),
        ValueCase(
            "recurrent",
            "Stateful voice-activity model (LSTM), input [batch, 512] + state [2, batch, 128]",
            make_recurrent,
            stream_samples,
            "512-sample chunks of a speech-like signal with the state the original model carried into each chunk "
            f"(after {STREAM_WARMUP_CHUNKS} chunks of the stream)",
        ),
    )
}


# --- one model --------------------------------------------------------------------------------


_STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"{time.perf_counter() - _STARTED:6.1f}s {message}", file=sys.stderr, flush=True)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def seeded_profile_options() -> dict[str, Any]:
    """The seeded `x86-cpu` profile's options."""
    return dict(seeded_profiles.profile(PROFILE_NAME)["options"])


def profile_tolerance() -> Any:
    """The seeded `x86-cpu` profile's tolerance."""
    from workers.engine.parity import Tolerance

    return Tolerance.from_options(seeded_profile_options())


def _outputs(backend: str, path: Path, feeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from workers.engine.backends.registry import get_backend
    from workers.engine.parity import run_session

    session = get_backend(backend).load(path)
    try:
        return run_session(session, feeds)
    finally:
        session.close()


def judge(
    backend: str,
    path: Path,
    feeds: Mapping[str, list[dict[str, Any]]],
    references: Mapping[str, list[dict[str, Any]]],
    tolerance: Any,
    semantics: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """The variant's parity verdict on each set of feeds (`compare_variant`, as the pipeline's
    parity step gives it), or a failed verdict naming the error when the variant doesn't load
    or run. The variant is loaded once for all sets."""
    from workers.engine.backends.registry import get_backend
    from workers.engine.errors import runtime_cause
    from workers.engine.parity import VariantParity, compare_variant, run_session

    def failed(exc: Exception) -> dict[str, Any]:
        reason = f"The variant failed to run on these inputs: {runtime_cause(exc)}"
        return VariantParity(False, (), (reason,), 0, tolerance, error=reason).to_dict()

    try:
        session = get_backend(backend).load(path)
    except Exception as exc:  # each runtime raises its own types
        return {kind: failed(exc) for kind in feeds}
    verdicts = {}
    try:
        for kind, runs in feeds.items():
            try:
                outputs = run_session(session, runs)
            except Exception as exc:  # each runtime raises its own types
                verdicts[kind] = failed(exc)
                continue
            verdicts[kind] = compare_variant(references[kind], outputs, tolerance, semantics).to_dict()
    finally:
        session.close()
    return verdicts


def _points(result: Any) -> list[dict[str, Any]]:
    """The result's points as the JSON a benchmark report stores, marked for the recommender."""
    from dataclasses import asdict

    from workers.engine.recommend import benchmark_points

    return [asdict(point) for point in benchmark_points(result.to_dict(), device_kind="cpu")]


def cpu_ratio(baseline: Mapping[str, Any] | None, point: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A variant's CPU time per inference over the original's, with the 95 % band `recommend`
    puts on the speed-up (`timing.latency_change`, inverted: below 1 is faster)."""
    from workers.engine.timing import estimate_from_point, latency_change

    if not baseline or not point:
        return None
    before, after = estimate_from_point(baseline, "cpu_ms"), estimate_from_point(point, "cpu_ms")
    if before is None or after is None:
        return None
    change = latency_change(before, after)
    if change.ratio is None or change.ratio_low is None or change.ratio_high is None:
        return None
    return {
        "ratio": 1 / change.ratio,
        "low": 1 / change.ratio_high,
        "high": 1 / change.ratio_low,
        "verdict": change.verdict,
    }


def measure(model_path: Path, plan: Any, entries: Sequence[tuple[str, Path]], seconds: float, core: int) -> list[Any]:
    """The original model in plain onnxruntime, then each (backend, path), benchmarked with
    `benchmark_interleaved` as the pipeline's benchmark step does (the input plan's data-like
    inputs at its typical sizes), in TRIALS fresh processes round robin, one thread, pinned to
    `core`: a BenchmarkResult or BenchmarkFailed each, the original's first."""
    from workers.engine.benchmark import BenchmarkConfig, BenchmarkRequest, benchmark_interleaved

    inputs = [
        {"name": recipe.name, "shape": list(recipe.shape), "dtype": recipe.dtype, "recipe": recipe.to_dict()}
        for recipe in plan.recipes
    ]
    config = BenchmarkConfig(
        trials=TRIALS,
        max_seconds_per_point=seconds,
        intra_op_threads=1,
        pin_cores=(core,),
        warmup_runs=5,
        window_runs=30,
        max_windows=10,
        input_overrides=dict(plan.dims),
    )
    requests = [BenchmarkRequest("onnxruntime", model_path, inputs)]
    requests += [BenchmarkRequest(backend, path, inputs) for backend, path in entries]
    return benchmark_interleaved(requests, config)


def bench_model(
    case: ValueCase, workdir: Path, backends: list[str], seconds: float, core: int, tolerance: Any
) -> dict[str, Any]:
    import numpy as np

    from workers.engine.backends.base import Builds, Calibration, HardwareProfile
    from workers.engine.backends.registry import get_backend
    from workers.engine.benchmark import BenchmarkFailed
    from workers.engine.inputs import InputPlan
    from workers.engine.inspection import inspect_model
    from workers.engine.outputs import semantics_map
    from workers.engine.parity import evidence_inputs
    from workers.engine.recommend import recommend

    started = time.perf_counter()
    folder = workdir / case.key
    folder.mkdir(parents=True)
    model_path = folder / "model.onnx"
    log(f"[{case.key}] making the model")
    made_with = case.make(model_path)

    # What inspection tells the pipeline: how to generate inputs, and what each output is.
    report = inspect_model(model_path)
    plan = InputPlan.from_dict(report.input_plan or {})
    semantics = semantics_map(report.output_semantics)

    log(f"[{case.key}] making inputs")
    generated = evidence_inputs(model_path, samples=EVAL_SAMPLES)
    validation_path = folder / "real.npz"
    np.savez(validation_path, **case.real(model_path, 2, EVAL_SAMPLES))
    real = evidence_inputs(model_path, validation_path, samples=EVAL_SAMPLES)
    calibration_path = folder / "calibration.npz"
    np.savez(calibration_path, **case.real(model_path, 1, CALIBRATION_SAMPLES))

    # The seeded profile's options: its tolerance is what the quantization searches work to.
    profile = HardwareProfile(PROFILE_NAME, "cpu", tuple(backends), PRECISIONS, options=seeded_profile_options())
    variants: list[Any] = []
    notes: list[str] = []
    build_seconds: dict[str, float] = {}
    for name in backends:
        backend = get_backend(name)
        log(f"[{case.key}] building {name} variants")
        t0 = time.perf_counter()
        try:
            # As the optimize step with a validation set: quantization searches judge their
            # candidates by the output kinds, on the calibration samples and the parity inputs.
            calibration = Calibration(
                calibration_path,
                output_semantics=dict(report.output_semantics or {}),
                evidence=tuple(real.feeds),
                evidence_description=real.description,
            )
            built = backend.build_variants(model_path, profile, calibration, folder / name)
        except Exception as exc:  # a backend that can't build for this model is reported, not fatal
            built = Builds()
            notes.append(f"{name} built no variant: {type(exc).__name__}: {str(exc)[:300]}")
        build_seconds[name] = round(time.perf_counter() - t0, 1)
        notes.extend(f"{name}: {note}" for note in built.notes)
        variants.extend(built)

    log(f"[{case.key}] parity of {len(variants)} variants on generated and real-like inputs")
    references = {
        "generated": _outputs("onnxruntime", model_path, generated.feeds),
        "real": _outputs("onnxruntime", model_path, real.feeds),
    }
    feeds = {"generated": generated.feeds, "real": real.feeds}
    parity = {
        variant.name: judge(variant.backend, variant.path, feeds, references, tolerance, semantics)
        for variant in variants
    }

    log(f"[{case.key}] benchmarking the original and {len(variants)} variants, {TRIALS} trials each")
    # As the pipeline's benchmark step: the plan's data-like inputs at its typical sizes.
    outcomes = measure(model_path, plan, [(variant.backend, variant.path) for variant in variants], seconds, core)
    baseline_outcome = outcomes[0]
    if isinstance(baseline_outcome, BenchmarkFailed):
        raise SystemExit(f"[{case.key}] the original model could not be benchmarked: {baseline_outcome}")
    baseline_points = _points(baseline_outcome)

    rows = []
    candidates: dict[str, list[dict[str, Any]]] = {"generated": [], "real": []}
    for variant, outcome in zip(variants, outcomes[1:], strict=True):
        size = sum(Path(f).stat().st_size for f in (variant.files or (variant.path,)) if Path(f).is_file())
        failed = isinstance(outcome, BenchmarkFailed)
        points = [] if isinstance(outcome, BenchmarkFailed) else _points(outcome)
        trials = [] if isinstance(outcome, BenchmarkFailed) else list(outcome.points[0].trial_cpu_ms)
        for kind in candidates:
            candidates[kind].append(
                {
                    "name": variant.name,
                    "backend": variant.backend,
                    "precision": variant.precision,
                    "parity": parity[variant.name][kind],
                    "points": points,
                    "benchmark_error": str(outcome) if failed else "",
                    "size_bytes": size,
                }
            )
        rows.append(
            {
                "name": variant.name,
                "backend": variant.backend,
                "precision": variant.precision,
                "size_bytes": size,
                "benchmark_error": str(outcome) if failed else None,
                "point": points[0] if points else None,
                "trial_cpu_ms": trials,
                "cpu_ratio": cpu_ratio(baseline_points[0], points[0] if points else None),
                "parity": {kind: _parity_summary(parity[variant.name][kind]) for kind in ("generated", "real")},
            }
        )
    recommendations = {
        kind: recommend(candidates[kind], baseline_points, OBJECTIVE).to_dict() for kind in ("generated", "real")
    }
    measured = [row for row in rows if row["cpu_ratio"] is not None]
    accepted = [row for row in measured if row["parity"]["real"]["passed"]]
    fastest_real = min(accepted, key=lambda row: row["point"]["cpu_ms"], default=None)
    fastest = min(measured, key=lambda row: row["point"]["cpu_ms"], default=None)
    return {
        "title": case.title,
        "made_with": made_with,
        "real_description": case.real_description,
        "inputs": {
            "generated": generated.summary(),
            "real": {**real.summary(), "description": case.real_description},
            "benchmark": plan.describe(),
        },
        "output_semantics": {name: data.get("kind") for name, data in (report.output_semantics or {}).items()},
        "build_seconds": build_seconds,
        "build_notes": notes,
        "baseline": {**baseline_points[0], "trial_cpu_ms": list(baseline_outcome.points[0].trial_cpu_ms)},
        "variants": rows,
        "recommendation": recommendations,
        "fastest_real_accepted": fastest_real["name"] if fastest_real else None,
        "fastest_measured": fastest["name"] if fastest else None,
        "disagreements": [
            row["name"] for row in rows if row["parity"]["generated"]["passed"] != row["parity"]["real"]["passed"]
        ],
        "seconds": round(time.perf_counter() - started, 1),
    }


def _parity_summary(verdict: Mapping[str, Any]) -> dict[str, Any]:
    """A parity verdict without its per-output detail: passed, reasons, the worst cosine, and
    for detection heads how many detections the original and the variant made."""
    outputs = verdict.get("outputs") or ()
    cosines = [o["cosine"] for o in outputs if isinstance(o.get("cosine"), int | float)]
    return {
        "passed": bool(verdict.get("passed")),
        "reasons": list(verdict.get("reasons") or ()),
        "min_cosine": min(cosines) if cosines else None,
        "detections": {
            o["name"]: {key: o["detection"][key] for key in ("reference_detections", "variant_detections", "matched")}
            for o in outputs
            if o.get("detection")
        },
    }


# --- the whole run ------------------------------------------------------------------------------


def run(models: list[str], backends: list[str] | None, seconds: float, keep: bool) -> dict[str, Any]:
    from workers.engine.backends.registry import installed_backends

    started = time.perf_counter()
    installed = installed_backends()
    if backends is None:
        backends = [name for name in PROFILE_BACKENDS if installed.get(name)]
    missing = [name for name in backends if not installed.get(name)]
    if missing:
        raise SystemExit(f"Not installed here: {', '.join(missing)}; installed: {installed}.")
    core = sorted(os.sched_getaffinity(0))[0]
    tolerance = profile_tolerance()
    load_before = [round(value, 2) for value in os.getloadavg()]
    parent = REPO / "var" if (REPO / "var").is_dir() else None
    workdir = Path(tempfile.mkdtemp(prefix="slipway-bench-value-", dir=parent))
    try:
        results = {key: bench_model(CASES[key], workdir, backends, seconds, core, tolerance) for key in models}
    finally:
        if keep:
            log(f"kept the models, variants and inputs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    packages = ["onnxruntime", "openvino", "nncf", "onnx", "torch", "numpy", "scikit-learn", "rapidocr-onnxruntime"]
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_line(),
        "cores": os.cpu_count(),
        "pinned_core": core,
        "load_average_before": load_before,
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "seconds_per_point": seconds,
        "trials": TRIALS,
        "eval_samples": EVAL_SAMPLES,
        "calibration_samples": CALIBRATION_SAMPLES,
        "tolerance": {key: value for key, value in vars(tolerance).items()},
        "profile": {"name": PROFILE_NAME, "backends": backends, "precisions": list(PRECISIONS)},
        "versions": {name: version for name in packages if (version := _version(name))},
        "models": results,
        "seconds": round(time.perf_counter() - started, 1),
    }


# --- BENCHMARKS.md ------------------------------------------------------------------------------


def _ratio_text(ratio: Mapping[str, Any] | None) -> str:
    if ratio is None:
        return "not measured"
    return f"{ratio['ratio']:.2f} [{ratio['low']:.2f}-{ratio['high']:.2f}]"


def _row(model: Mapping[str, Any], name: str | None) -> Mapping[str, Any] | None:
    return next((row for row in model["variants"] if row["name"] == name), None)


def _named(model: Mapping[str, Any], name: str | None) -> str:
    row = _row(model, name)
    if row is None:
        return "none: keep the original model"
    return f"{name} ({row['backend']}, {row['precision']}) {_ratio_text(row['cpu_ratio'])}"


def _first_reason(summary: Mapping[str, Any]) -> str:
    if summary["passed"]:
        return "pass"
    reasons = summary["reasons"]
    text = reasons[0] if reasons else "failed"
    more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
    return f"FAIL: {text.replace('|', '/')}{more}"


def _versus(model: Mapping[str, Any], name: str | None) -> str:
    """How a variant's CPU time compares with the generated-parity recommendation's, in words
    (`timing.latency_change` at the recommender's noise threshold)."""
    from workers.engine.timing import estimate_from_point, latency_change

    winner = model["recommendation"]["generated"]["winner"]
    mine, theirs = _row(model, name), _row(model, winner["name"] if winner else None)
    if mine is None or mine is theirs or not mine["point"]:
        return ""
    reference = theirs["point"] if theirs is not None else model["baseline"]
    before, after = estimate_from_point(reference, "cpu_ms"), estimate_from_point(mine["point"], "cpu_ms")
    if before is None or after is None:
        return ""
    verdict = latency_change(before, after).verdict
    against = "the recommended" if theirs is not None else "the original"
    if verdict == "faster":
        return f", faster than {against} beyond the noise"
    if verdict == "slower":
        return f", slower than {against} beyond the noise"
    return f", within the noise of {against}"


def summary_table(result: Mapping[str, Any]) -> list[str]:
    lines = [
        "| model | recommended on generated inputs: CPU-time ratio [95%] | fastest variant real-data parity accepts: "
        "CPU-time ratio [95%] | recommended with the real samples as validation set | verdicts that differ "
        "(generated / real) |",
        "|---|---|---|---|---|",
    ]
    for key, model in result["models"].items():
        winners = {kind: (model["recommendation"][kind]["winner"] or {}).get("name") for kind in ("generated", "real")}
        differ = ", ".join(
            f"{name} ({'pass' if row['parity']['generated']['passed'] else 'fail'} / "
            f"{'pass' if row['parity']['real']['passed'] else 'fail'})"
            for name in model["disagreements"]
            if (row := _row(model, name)) is not None
        )
        accepted = _named(model, model["fastest_real_accepted"]) + _versus(model, model["fastest_real_accepted"])
        lines.append(
            f"| `{key}` | {_named(model, winners['generated'])} | {accepted} "
            f"| {_named(model, winners['real'])} | {differ or 'none'} |"
        )
    return lines


def lost_ties(model: Mapping[str, Any], kind: str) -> str:
    """The variants that passed `kind` parity and were faster than `recommend`'s winner by more
    than the recommender's noise threshold (by their CPU-time point estimates), yet tied with it."""
    from workers.engine.recommend import MIN_RELATIVE

    winner = model["recommendation"][kind]["winner"]
    row = _row(model, winner["name"]) if winner else None
    if row is None or row["point"] is None:
        return ""
    faster = [
        other
        for other in model["variants"]
        if other["point"] is not None
        and other["parity"][kind]["passed"]
        and other["point"]["cpu_ms"] * (1 + MIN_RELATIVE) < row["point"]["cpu_ms"]
        and other["name"] in winner.get("tied_with", [])
    ]
    return ", ".join(f"{other['name']} {_ratio_text(other['cpu_ratio'])}" for other in faster)


def model_section(key: str, model: Mapping[str, Any]) -> list[str]:
    base = model["baseline"]
    generated, real = model["inputs"]["generated"], model["inputs"]["real"]
    lines = [
        f"### `{key}`: {model['title']}",
        "",
        f"Made: {model['made_with']}. Output kinds (inspection's proposal): "
        + ", ".join(f"`{name}` {kind}" for name, kind in model["output_semantics"].items())
        + f". Generated parity inputs: {generated['description']}. Real-like: {real['description']}, "
        f"{real['samples']} samples given as a validation set (static INT8 calibrated on {CALIBRATION_SAMPLES} "
        f"others). Benchmarked on {model['inputs']['benchmark']}. The original in plain onnxruntime: CPU "
        f"{base['cpu_ms']:.3f} ms [{base['cpu_ci_ms'][0]:.3f}-{base['cpu_ci_ms'][1]:.3f}] (trials "
        f"{', '.join(f'{v:.3f}' for v in base['trial_cpu_ms'])}), p50 {base['p50_ms']:.3f} ms ({base['samples']} "
        f"requests over {base['trials']} trials). Build: "
        + ", ".join(f"{name} {seconds} s" for name, seconds in model["build_seconds"].items())
        + f"; {model['seconds']:.0f} s in all.",
        "",
        "| variant | backend | precision | CPU ms [95%] | CPU-time ratio [95%] | p50 ms | parity, generated | "
        "parity, real-like |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for row in model["variants"]:
        point = row["point"]
        if point is None:
            timing = f"not measured: {(row['benchmark_error'] or '').replace('|', '/')} | | "
        else:
            timing = (
                f"{point['cpu_ms']:.3f} [{point['cpu_ci_ms'][0]:.3f}-{point['cpu_ci_ms'][1]:.3f}] | "
                f"{_ratio_text(row['cpu_ratio'])} | {point['p50_ms']:.3f}"
            )
        lines.append(
            f"| {row['name']} | {row['backend']} | {row['precision']} | {timing} | "
            f"{_first_reason(row['parity']['generated'])} | {_first_reason(row['parity']['real'])} |"
        )
    for row in model["variants"][:1]:
        for output, counts in row["parity"]["generated"]["detections"].items():
            real_counts = row["parity"]["real"]["detections"].get(output, {})
            lines += [
                "",
                f"The original's detections on `{output}` (score at least the layout's threshold, after NMS): "
                f"{counts['reference_detections']} on the {generated['samples']} generated inputs, "
                f"{real_counts.get('reference_detections', '?')} on the {real['samples']} real-like samples.",
            ]
    assumptions = generated.get("assumptions") or []
    notes = [*(f"Generated inputs assumed: {text}" for text in assumptions), *model["build_notes"]]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    for kind in ("generated", "real"):
        lines += ["", f"`recommend` on {kind} parity: {model['recommendation'][kind]['summary']}"]
        lost = lost_ties(model, kind)
        if lost:
            lines += [
                "",
                f"Faster than the recommended variant by their point estimates, passing the same {kind} parity, "
                "but tied with it because each figure lies within the other's interval (a tie goes to accuracy, then "
                f"the smaller file): {lost}.",
            ]
    return [*lines, ""]


def write_benchmarks(result: Mapping[str, Any]) -> None:
    """Replace (or append) this bench's section of BENCHMARKS.md, leaving the others alone."""
    versions = ", ".join(f"{name} {version}" for name, version in result["versions"].items())
    tolerance = result["tolerance"]
    load = f"{result['load_average_before'][0]:.1f} -> {result['load_average_after'][0]:.1f}"
    lines = [
        f"## {SECTION}",
        "",
        f"`bench/value.py`, {result['date']}, {result['cpu']}, {result['cores']} vCPUs shared with other work "
        f"(1-minute load average {load}), {result['seconds']:.0f} s; {versions}.",
        "",
        f"Variants are what `build_variants` of {', '.join(result['profile']['backends'])} builds for the "
        f"`{PROFILE_NAME}` profile ({', '.join(result['profile']['precisions'])}; bf16 only where the CPU computes "
        "in it), static INT8 calibrated on {result['calibration_samples']} real-like "
        f"samples. Parity is `compare_variant` at the profile's tolerance (max abs error "
        f"{tolerance['max_abs_error']:g}, or else cosine at least {tolerance['min_cosine']:g} and top-1 agreement at "
        f"least {tolerance['min_top1_agreement']:.0%}, every slice at least {tolerance['min_slice_sqnr_db']:g} dB, "
        f"detections {tolerance['min_detection_recall']:.0%} recall and precision) with the output kinds inspection "
        f"proposes, on {result['eval_samples']} samples twice: generated (`evidence_inputs` without a validation "
        "set, what the pipeline uses when none is uploaded) and real-like (given to `evidence_inputs` as a "
        "validation set; per model below). Timing: `benchmark_interleaved`, the original in plain onnxruntime "
        f"and every variant, {result['trials']} trials round robin, each a fresh process, one intra-op thread, pinned "
        f"to core {result['pinned_core']}, {result['seconds_per_point']:g} s per point over the trials, at the input "
        "plan's sizes. The **CPU-time ratio** is a variant's CPU time per inference over the original's (below 1 "
        "is faster), with the 95% band `recommend` puts on the speed-up (the intervals' far ends divided). "
        "**Recommended** is `recommend` (objective `p99_latency_batch1`, ranking by CPU time, two variants tied "
        "when each figure lies within the other's interval or they are within 5%, a tie broken by accuracy, then "
        "size) on the generated-input verdicts, as the "
        "pipeline decides without a validation set; the **fastest variant real-data parity accepts** is the one "
        "with the lowest CPU time among those that pass on the real-like samples.",
        "",
        *summary_table(result),
        "",
    ]
    for key, model in result["models"].items():
        lines += model_section(key, model)
    write_section(REPO / "BENCHMARKS.md", SECTION, "\n".join(lines))


def print_summary(result: Mapping[str, Any], stream: Any) -> None:
    for key, model in result["models"].items():
        print(f"{key}: {model['seconds']} s", file=stream)
        for row in model["variants"]:
            flags = "/".join("pass" if row["parity"][kind]["passed"] else "FAIL" for kind in ("generated", "real"))
            print(f"  {row['name']:<22} {_ratio_text(row['cpu_ratio']):<22} parity gen/real {flags}", file=stream)
        for kind in ("generated", "real"):
            print(f"  recommended ({kind}): {model['recommendation'][kind]['summary']}", file=stream)
        print(f"  fastest accepted on real-like samples: {model['fastest_real_accepted']}", file=stream)
    print(f"total {result['seconds']} s", file=stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument(
        "--backends", help=f"comma-separated (default: the installed ones of {', '.join(PROFILE_BACKENDS)})"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per point over the trials")
    parser.add_argument("--no-write", action="store_true", help="don't update BENCHMARKS.md")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (models, variants, inputs)")
    args = parser.parse_args()
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in models if name not in CASES]
    if unknown or not models:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    backends = [name.strip() for name in args.backends.split(",")] if args.backends else None
    with _optimize_module().stdout_to_stderr() as real_stdout:
        result = run(models, backends, args.seconds, args.keep)
        if args.json:
            print(json.dumps(result, indent=1, default=str), file=real_stdout)
        else:
            print_summary(result, real_stdout)
    if not args.no_write:
        write_benchmarks(result)


if __name__ == "__main__":
    main()
