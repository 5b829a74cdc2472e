"""One anchor configuration on one model, run by bench/anchors.py with the anchor environment's python.

Reads the float ONNX model and the calibration feeds (an .npz written by bench/anchors.py: key
`s<index>__<input>` for each sample's feed, batch 1), runs one configuration of Olive,
onnx-neural-compressor or onnxslim, and writes the candidate model to --out. The last line on
stdout is a JSON object: {"ok": true, "detail": ...} or {"ok": false, "error": ...}. It imports
nothing of Slipway's: this file runs in the anchor environment, where Slipway is not installed.

    <anchor-venv>/bin/python bench/_anchor_worker.py --config olive-static-u8s8-per-channel \
        --model model.onnx --calibration feeds.npz --out candidate.onnx --work scratch/
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class AnchorConfig:
    """One configuration of one anchor tool: its name, the tool, and what it does, in words."""

    name: str
    anchor: str
    description: str
    # Which reference models it applies to (None: all).
    models: tuple[str, ...] | None = None


# The transformer gets onnxruntime's transformer optimizer first (as Olive's BERT recipes do);
# every other model Olive's peephole optimizer (as its CNN recipes do).
CONFIGS: tuple[AnchorConfig, ...] = (
    AnchorConfig("olive-peephole", "olive", "OnnxPeepholeOptimizer (onnxscript optimizer, onnxoptimizer, fusions)"),
    AnchorConfig(
        "olive-transformers-opt",
        "olive",
        "OrtTransformersOptimization (model_type bert: attention, LayerNorm and GELU fusions)",
        ("transformer",),
    ),
    AnchorConfig(
        "olive-static-u8s8-per-channel",
        "olive",
        "graph optimization, then OnnxStaticQuantization QDQ, uint8 activations, per-channel int8 weights, MinMax",
    ),
    AnchorConfig(
        "olive-static-u8s8-conv-matmul",
        "olive",
        "graph optimization, then OnnxStaticQuantization QDQ U8S8 per-channel, op_types_to_quantize Conv and "
        "MatMul only",
    ),
    AnchorConfig(
        "olive-static-default",
        "olive",
        "graph optimization, then OnnxStaticQuantization with its defaults (QDQ, int8 activations and weights, "
        "per-tensor, MinMax)",
    ),
    AnchorConfig("olive-dynamic", "olive", "graph optimization, then OnnxDynamicQuantization (its defaults)"),
    AnchorConfig(
        "inc-static-default",
        "inc",
        "quantize() with StaticQuantConfig's defaults (QOperator, U8S8, per-tensor, MinMax, its CPU op list)",
    ),
    AnchorConfig("inc-static-qdq-per-channel", "inc", "quantize() with StaticQuantConfig QDQ, U8S8, per-channel"),
    AnchorConfig(
        "inc-autotune",
        "inc",
        "autotune() over StaticQuantConfig.get_config_set_for_tuning() (op types without Add/Mul, Gather, "
        "Attention; per-channel; last MatMul) with tolerable loss 0.01, the accuracy being Slipway's parity rule "
        "on the calibration samples",
    ),
    AnchorConfig("inc-dynamic", "inc", "quantize() with DynamicQuantConfig's defaults"),
    AnchorConfig("onnxslim", "onnxslim", "onnxslim.slim (constant folding, dead-code removal, fusions)"),
)

AUTOTUNE_MAX_TRIALS = 16


def configs_for(model_key: str) -> list[AnchorConfig]:
    """The configurations that apply to a reference model."""
    return [config for config in CONFIGS if config.models is None or model_key in config.models]


# --- inputs ---------------------------------------------------------------------------------


def read_feeds(path: Path) -> list[dict[str, Any]]:
    """The calibration feeds in the order they were written: one dict per sample."""
    import numpy as np

    feeds: dict[int, dict[str, Any]] = {}
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            index, name = key.split("__", 1)
            feeds.setdefault(int(index[1:]), {})[name] = archive[key]
    return [feeds[index] for index in sorted(feeds)]


class FeedReader:
    """An onnxruntime CalibrationDataReader (and INC's) over a list of feeds."""

    def __init__(self, feeds: list[dict[str, Any]]) -> None:
        self.feeds = feeds
        self._iter: Iterator[dict[str, Any]] = iter(feeds)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)


# --- Olive ----------------------------------------------------------------------------------

# Olive reads calibration data through a registered dataset in a user script.
OLIVE_USER_SCRIPT = """
import numpy as np
import torch
from olive.data.registry import Registry


@Registry.register_dataset()
def slipway_calibration(data_path):
    feeds = {}
    with np.load(data_path, allow_pickle=False) as archive:
        for key in archive.files:
            index, name = key.split("__", 1)
            feeds.setdefault(int(index[1:]), {})[name] = torch.from_numpy(archive[key])
    return [(feeds[i], 0) for i in sorted(feeds)]
"""


def _olive_first_pass(model_key: str) -> dict[str, Any]:
    if model_key == "transformer":
        return {"type": "OrtTransformersOptimization", "model_type": "bert", "opt_level": 1}
    return {"type": "OnnxPeepholeOptimizer"}


def _olive_passes(config: str, model_key: str, data_config: str) -> dict[str, dict[str, Any]]:
    u8s8 = {"quant_format": "QDQ", "precision": "int8", "activation_type": "uint8", "per_channel": True}
    static = {"type": "OnnxStaticQuantization", "data_config": data_config}
    passes = {
        "olive-peephole": {"optimize": {"type": "OnnxPeepholeOptimizer"}},
        "olive-transformers-opt": {"optimize": _olive_first_pass("transformer")},
        "olive-static-u8s8-per-channel": {"optimize": _olive_first_pass(model_key), "quantize": {**static, **u8s8}},
        "olive-static-u8s8-conv-matmul": {
            "optimize": _olive_first_pass(model_key),
            "quantize": {**static, **u8s8, "op_types_to_quantize": ["Conv", "MatMul"]},
        },
        "olive-static-default": {"optimize": _olive_first_pass(model_key), "quantize": static},
        "olive-dynamic": {"optimize": _olive_first_pass(model_key), "quantize": {"type": "OnnxDynamicQuantization"}},
    }
    return passes[config]


def run_olive(config: str, model_key: str, model: Path, calibration: Path, out: Path, work: Path) -> str:
    from olive.workflows import run as olive_run

    script = work / "olive_user_script.py"
    script.write_text(OLIVE_USER_SCRIPT)
    passes = _olive_passes(config, model_key, "calibration")
    detail = " -> ".join(f"{p['type']}" + _olive_options(p) for p in passes.values())
    run_config = {
        "input_model": {"type": "ONNXModel", "model_path": str(model)},
        "systems": {
            "local_system": {
                "type": "LocalSystem",
                "accelerators": [{"device": "cpu", "execution_providers": ["CPUExecutionProvider"]}],
            }
        },
        "data_configs": [
            {
                "name": "calibration",
                "user_script": str(script),
                "load_dataset_config": {"type": "slipway_calibration", "params": {"data_path": str(calibration)}},
                "dataloader_config": {"type": "no_auto_batch_dataloader"},
            }
        ],
        "passes": copy.deepcopy(passes),  # Olive rewrites the dict it is given
        "host": "local_system",
        "target": "local_system",
        "cache_dir": str(work / "cache"),
        "output_dir": str(work / "output"),
        "log_severity_level": 3,
        "evaluate_input_model": False,
    }
    olive_run(run_config)
    produced = sorted((work / "output").rglob("*.onnx"))
    if not produced:
        raise RuntimeError(f"Olive wrote no ONNX model under {work / 'output'}")
    _copy_model(produced[0], out)
    return detail


def _olive_options(spec: dict[str, Any]) -> str:
    options = {key: value for key, value in spec.items() if key not in ("type", "data_config")}
    return f"({', '.join(f'{key}={value}' for key, value in options.items())})" if options else ""


def _copy_model(source: Path, out: Path) -> None:
    """Save as one self-contained file (Olive and INC may leave weights in external data)."""
    import onnx

    model = onnx.load(str(source), load_external_data=True)
    onnx.save(model, str(out))


# --- Intel Neural Compressor (onnx-neural-compressor) -----------------------------------------


def run_inc(config: str, model: Path, calibration: Path, out: Path, work: Path, probe: list[str]) -> str:
    import onnx
    from onnx_neural_compressor.quantization import config as inc_config
    from onnx_neural_compressor.quantization import quantize, tuning
    from onnxruntime.quantization import QuantFormat

    reader = FeedReader(read_feeds(calibration))
    if config == "inc-static-default":
        quantize(str(model), str(out), inc_config.StaticQuantConfig(reader))
        return "StaticQuantConfig() defaults"
    if config == "inc-static-qdq-per-channel":
        quantize(
            str(model), str(out), inc_config.StaticQuantConfig(reader, quant_format=QuantFormat.QDQ, per_channel=True)
        )
        return "StaticQuantConfig(quant_format=QDQ, per_channel=True)"
    if config == "inc-dynamic":
        quantize(str(model), str(out), inc_config.DynamicQuantConfig())
        return "DynamicQuantConfig() defaults"
    if config == "inc-autotune":
        trials: list[dict[str, Any]] = []

        def evaluate(path: str) -> float:
            # Slipway's parity rule on the calibration samples, in Slipway's own environment.
            done = subprocess.run([*probe, path], capture_output=True, text=True, timeout=300)
            lines = done.stdout.strip().splitlines()
            verdict = json.loads(lines[-1]) if done.returncode == 0 and lines else {"passed": False}
            if not lines:
                verdict["reasons"] = [f"the probe exited {done.returncode}: {done.stderr.strip()[-300:]}"]
            trials.append(verdict)
            return 1.0 if verdict.get("passed") else 0.0

        tune = tuning.TuningConfig(
            config_set=inc_config.StaticQuantConfig.get_config_set_for_tuning(),
            tolerable_loss=0.01,
            max_trials=AUTOTUNE_MAX_TRIALS,
        )
        try:
            best = tuning.autotune(str(model), tune, eval_fn=evaluate, calibration_data_reader=reader)
        except SystemExit:
            best = None  # autotune calls exit(0) when no configuration meets the tolerable loss
        # trials[0] is the float baseline.
        tried = trials[1:]
        if best is None or not tried or not tried[-1].get("passed"):
            last = (tried[-1].get("reasons") or ["?"])[0] if tried else "no trial ran"
            raise RuntimeError(
                f"autotune found no configuration within the tolerable loss in {len(tried)} trial(s) judged by "
                f"Slipway's parity rule on the calibration samples; the last: {last}"
            )
        onnx.save(best, str(out))
        return f"autotune: trial {len(tried)} passed Slipway's parity rule on the calibration samples"
    raise ValueError(f"unknown INC configuration {config}")


# --- onnxslim ---------------------------------------------------------------------------------


def run_onnxslim(model: Path, out: Path) -> str:
    import onnx
    import onnxslim

    before = len(onnx.load(str(model)).graph.node)
    slimmed = onnxslim.slim(str(model))
    onnx.save(slimmed, str(out))
    return f"onnxslim.slim: {before} -> {len(slimmed.graph.node)} top-level nodes"


# --- entry point ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, choices=[config.name for config in CONFIGS])
    parser.add_argument("--model-key", required=True, help="the reference model (cnn, transformer, ...)")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--calibration", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--probe", default="[]", help="JSON list: the command that judges a candidate path")
    args = parser.parse_args()
    config = next(config for config in CONFIGS if config.name == args.config)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runners: dict[str, Callable[[], str]] = {
        "olive": lambda: run_olive(args.config, args.model_key, args.model, args.calibration, args.out, args.work),
        "inc": lambda: run_inc(args.config, args.model, args.calibration, args.out, args.work, json.loads(args.probe)),
        "onnxslim": lambda: run_onnxslim(args.model, args.out),
    }
    try:
        detail = runners[config.anchor]()
        result = {"ok": args.out.is_file(), "detail": detail}
        if not args.out.is_file():
            result["error"] = "no model was written"
    except BaseException as exc:  # the tools raise anything, and INC's autotune calls exit(0)
        traceback.print_exc(file=sys.stderr)
        result = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:400]}"}
    finally:
        shutil.rmtree(args.work / "cache", ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
