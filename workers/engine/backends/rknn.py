"""Rockchip NPUs (RK3588, RK3576, RK3566/RK3568...): which operators the NPU takes, .rknn variants,
and their outputs from RKNN-Toolkit2's simulator.

The toolkit pins numpy, protobuf and onnx below Slipway's, so it runs in the `rknn` framework
environment (workers/engine/framework_envs.py, ADR 0017) through its side module
`workers/engine/importers/envs/rknn_side.py`.

`check_support` builds the model once for the profile's platform (FP16 without calibration
data; the INT8 build places some operators differently, and the optimize report shows its
placement) and reads the toolkit's placement table: every operator it makes runs on the NPU or
falls back to the board's CPU, and a model it refuses names the node. An ONNX node the toolkit
fused into a neighbour takes the neighbour's place. NPU nodes are "supported", CPU nodes are
"fallback" (they run, between NPU segments, with a copy each way), refused ones "unsupported".

`build` makes `rknn-int8` (weights and activations INT8, scales from the calibration set, the
NPU's fast path) and `rknn-fp16`, and runs the toolkit's accuracy analysis (each layer's cosine
against the float model, on one calibration sample, on the simulator). Besides the .rknn file,
a variant keeps its recipe (`.rknn.json`), the ONNX model it was built from and, for INT8, the
calibration samples: the simulator runs only a model built in the same process, so parity on
an x86 worker builds the recipe again and runs it there.

Sessions: on a board with `rknn-toolkit-lite2` (a device agent on an RK3588), the .rknn file runs
on the NPU through RKNNLite; on a worker with the toolkit, on its simulator. The simulator
computes the NPU's arithmetic on the x86 CPU: its outputs are evidence for parity, its timings
mean nothing, and the benchmark refuses it. Timings come only from a board.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine import framework_envs
from workers.engine.backends._converters import check_inputs, convert_in_side, first_line
from workers.engine.backends._onnx_graph import DEFAULT_DOMAIN, load_graph, node_labels
from workers.engine.backends.base import (
    Backend,
    BackendNotInstalled,
    Calibration,
    HardwareProfile,
    OpSupport,
    SupportReport,
    SupportStatus,
    Variant,
    Verdict,
    device_runs,
    ops_by_outcome,
    verdict_for,
)

if TYPE_CHECKING:
    import numpy as np

ENV = "rknn"
DEFAULT_PLATFORM = "rk3588"
CONVERTER_STEP = "rknn-toolkit2"
VARIANT_PLANS: tuple[tuple[str, str], ...] = (("rknn-int8", "int8"), ("rknn-fp16", "fp16"))
RECIPE_SUFFIX = ".rknn.json"
_BUILD_FOLDER = ".rknn-build"
# A model whose operators fall back to the CPU more than this share is told so in plain words.
MOSTLY_CPU = 0.5
# Calibration samples a variant keeps for the simulator to rebuild it (the toolkit uses them all).
_MAX_CALIBRATION_SAMPLES = 128
_SUPPORT_NOTE = (
    "Support comes from RKNN-Toolkit2's build for {platform}: its placement table says which operators the NPU "
    "runs and which fall back to the board's CPU (each fallback costs a copy between NPU and CPU memory). Nodes it "
    "fused into a neighbour take the neighbour's place. This build was FP16; the INT8 variant's own placement is "
    "in the optimize report."
)


def platform_of(profile_options: Mapping[str, Any]) -> str:
    return str(profile_options.get("rknn_platform") or DEFAULT_PLATFORM).lower()


def npu_device(platform: str) -> str:
    return f"{platform.upper()} NPU"


def cpu_device(platform: str) -> str:
    return f"{platform.upper()} CPU (RKNN fallback)"


def recipe_path(variant_path: Path) -> Path:
    return variant_path.with_name(variant_path.name.removesuffix(".rknn") + RECIPE_SUFFIX)


def support_rows(
    labels: Sequence[str], domains: Mapping[str, str], nodes: Sequence[Mapping[str, Any]], platform: str, version: str
) -> list[tuple[str, str, str, SupportStatus, str, str]]:
    """The support report's rows, (label, domain, op_type, status, device, reason), from the side's
    per-node placement."""
    by_name = {str(node["name"]): node for node in nodes}
    refused = next((node for node in nodes if node["status"] == "refused"), None)
    rows: list[tuple[str, str, str, SupportStatus, str, str]] = []
    for label in labels:
        node = by_name.get(label, {"op_type": "?", "status": "unplaced", "reason": ""})
        op_type, status, reason = str(node["op_type"]), str(node["status"]), str(node.get("reason") or "")
        domain = domains.get(label, DEFAULT_DOMAIN)
        if status in ("npu", "split"):
            if status == "split":
                reason = f"Split between the NPU and the CPU: {reason}"
            rows.append((label, domain, op_type, "supported", npu_device(platform), reason))
        elif status == "folded":
            rows.append((label, domain, op_type, "supported", npu_device(platform), reason))
        elif status == "cpu":
            rows.append(
                (
                    label,
                    domain,
                    op_type,
                    "fallback",
                    cpu_device(platform),
                    f"The NPU has no kernel for it here, so it runs on the board's CPU: {reason}",
                )
            )
        elif status == "refused":
            rows.append((label, domain, op_type, "unsupported", "", f"RKNN-Toolkit2 {version} refuses it: {reason}"))
        elif status == "not_reached" and refused is not None:
            reason = (
                f"Not known: the toolkit refused '{refused['name']}' ({refused['op_type']}) and stopped. Change that "
                "node, then validate again."
            )
            rows.append((label, domain, op_type, "unsupported", "", reason))
        elif status == "unplaced" and refused is None:
            # The toolkit built the model, yet its placement table names no operator made from this
            # node or a neighbour (merged into another operator, or computed at conversion): it runs,
            # where is not reported (found by bench/op_support_matrix.py: TfIdfVectorizer, BitwiseNot).
            rows.append(
                (
                    label,
                    domain,
                    op_type,
                    "supported",
                    f"{platform.upper()} (placement not reported)",
                    "The toolkit built the model, but its placement table names no operator made from this node: "
                    "merged into another operator or computed at conversion.",
                )
            )
        else:
            rows.append((label, domain, op_type, "unsupported", "", reason or "The toolkit did not place it."))
    return rows


def placement_summary(rows: Sequence[tuple[str, str, str, SupportStatus, str, str]], platform: str) -> str:
    """One sentence on where the graph runs; says plainly when most of it is back on the CPU."""
    total = len(rows)
    npu = sum(1 for row in rows if row[3] == "supported")
    cpu = [row for row in rows if row[3] == "fallback"]
    if not total:
        return "The model has no nodes."
    if not cpu:
        return f"All {npu} placed nodes run on the {platform.upper()} NPU."
    kinds = ", ".join(sorted({row[2] for row in cpu}))
    text = f"{npu} of {total} nodes run on the {platform.upper()} NPU and {len(cpu)} fall back to the CPU ({kinds})."
    if len(cpu) / total > MOSTLY_CPU:
        text += (
            " Most of the graph runs on the CPU, not the NPU: this model gains little from the NPU as it is. Replace "
            "the fallback operators with ones the NPU takes, or choose a CPU profile."
        )
    return text


def accuracy_summary(layers: Sequence[Mapping[str, Any]]) -> str:
    """The accuracy analysis in one sentence: the output's cosine and the weakest single layer."""
    scored = [layer for layer in layers if "single_cosine" in layer]
    if not scored:
        return ""
    worst = min(scored, key=lambda layer: float(layer["single_cosine"]))
    last = scored[-1]
    return (
        f"Accuracy analysis on the simulator (one calibration sample, against the float model): the output's cosine "
        f"is {float(last['entire_cosine']):.5f} with errors accumulated from the input; the weakest layer on its own "
        f"is {worst['layer']} ({worst['op']}, cosine {float(worst['single_cosine']):.5f})."
    )


class RKNNSimulatorSession:
    """An RKNN variant on RKNN-Toolkit2's simulator, on a worker with the toolkit's environment.
    The simulator runs only a model built in the same process, so each call builds the recipe
    again in the side and runs every feed it is given: parity passes all its inputs at once
    (`run_many`)."""

    simulated = True

    def __init__(self, variant_path: Path, recipe: dict[str, Any]) -> None:
        self._path = variant_path
        self._recipe = recipe
        self.input_names = tuple(str(item["name"]) for item in recipe["inputs"])
        self.output_names = tuple(str(name) for name in recipe["outputs"])
        self._open = True

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.run_many([inputs])[0]

    def run_many(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        import numpy as np

        if not self._open:
            raise RuntimeError("This session is closed; load the variant again to run it.")
        for feed in feeds:
            check_inputs(self.input_names, dict(feed))
        folder = self._path.parent
        with tempfile.TemporaryDirectory(prefix=".rknn-simulate-", dir=folder) as scratch:
            work = Path(scratch)
            arrays: dict[str, Any] = {f"in/{i}/{k}": np.asarray(v) for i, f in enumerate(feeds) for k, v in f.items()}
            np.savez(work / "feeds.npz", **arrays)
            calibration = self._recipe.get("calibration")
            framework_envs.run_side(
                ENV,
                {
                    "action": "simulate",
                    "model": {"onnx": str((folder / self._recipe["onnx"]).resolve())},
                    "inputs": self._recipe["inputs"],
                    "platform": self._recipe["platform"],
                    "precision": self._recipe["precision"],
                    "calibration": str((folder / calibration).resolve()) if calibration else None,
                    "feeds": str(work / "feeds.npz"),
                    "outputs": str(work / "outputs.npz"),
                },
                work,
            )
            runs: dict[int, dict[str, np.ndarray]] = {}
            with np.load(work / "outputs.npz", allow_pickle=False) as data:
                for key in data.files:
                    _, index, name = key.split("/", 2)
                    runs.setdefault(int(index), {})[name] = np.array(data[key], dtype=np.float32)
        return [runs.get(i, {}) for i in range(len(feeds))]

    def close(self) -> None:
        self._open = False


class RKNNLiteSession:
    """An .rknn file on a board's NPU through rknn-toolkit-lite2 (RKNNLite), for a device agent
    on an RK3588/RK3566 board: the only place RKNN timings come from."""

    simulated = False

    def __init__(self, variant_path: Path, recipe: dict[str, Any]) -> None:
        from rknnlite.api import RKNNLite

        self.input_names = tuple(str(item["name"]) for item in recipe["inputs"])
        self.output_names = tuple(str(name) for name in recipe["outputs"])
        self._lite: Any = RKNNLite(verbose=False)
        if self._lite.load_rknn(str(variant_path)) != 0:
            raise RuntimeError(f"RKNNLite could not load {variant_path.name}; rebuild it with this board's platform.")
        if self._lite.init_runtime() != 0:
            raise RuntimeError(
                "RKNNLite could not start the NPU runtime: the board needs Rockchip's NPU driver and librknnrt.so."
            )

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np

        if self._lite is None:
            raise RuntimeError("This session is closed; load the variant again to run it.")
        check_inputs(self.input_names, inputs)
        # The layout of 4-D inputs (ONNX's); RKNNLite lowercases every entry, and ignores it for other ranks.
        formats = ["nchw"] * len(self.input_names)
        outputs = self._lite.inference(
            inputs=[np.asarray(inputs[name]) for name in self.input_names], data_format=formats
        )
        if outputs is None:
            raise RuntimeError("RKNNLite returned no outputs: its log on the board says why.")
        return {
            name: np.asarray(value, dtype=np.float32) for name, value in zip(self.output_names, outputs, strict=False)
        }

    def close(self) -> None:
        if self._lite is not None:
            self._lite.release()
            self._lite = None


class RKNNBackend(Backend):
    """Rockchip NPUs through RKNN-Toolkit2 (in its own environment) and, on boards, RKNNLite."""

    name = "rknn"
    architectures = ("aarch64", "x86_64")
    simulated_on_builders = True
    serving_requirements = ("numpy", "rknn-toolkit-lite2")

    def toolkit_version(self) -> str | None:
        built = framework_envs.stamp(framework_envs.get(ENV)) if framework_envs.is_ready(ENV) else None
        return str(built.get("packages", {}).get("rknn-toolkit2", "unknown")) if built else None

    def lite_version(self) -> str | None:
        if find_spec("rknnlite") is None:
            return None
        try:
            return importlib.metadata.version("rknn-toolkit-lite2")
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    def runtime_version(self) -> str | None:
        """The toolkit's version (a worker that converts and simulates), else RKNNLite's (a board)."""
        return self.toolkit_version() or self.lite_version()

    def available(self) -> bool:
        """Building needs the toolkit's environment."""
        return self.toolkit_version() is not None

    def runs_here(self) -> bool:
        return self.runtime_version() is not None

    def not_installed_text(self) -> str:
        return (
            "RKNN-Toolkit2 is not built on this worker (it pins numpy, protobuf and onnx below Slipway's, so it has "
            "an environment of its own): make framework-envs, or build on a worker that has it. A board runs the "
            ".rknn files with rknn-toolkit-lite2."
        )

    # --- operator support -----------------------------------------------------------

    def check_support(self, model_path: Path) -> SupportReport:
        return self.support_for(model_path, DEFAULT_PLATFORM)

    def support_for(self, model_path: Path, platform: str) -> SupportReport:
        version = self.toolkit_version()
        if version is None:
            lite = self.lite_version()
            if lite is None:
                return self.not_installed_report()
            return SupportReport(
                backend=self.name,
                runtime_version=lite,
                installed=False,
                method="converter",
                verdict="not_installed",
                notes=(
                    f"This board runs RKNNLite {lite} but not RKNN-Toolkit2, and which operators the NPU takes is the "
                    "toolkit's answer: it comes from the workers that build the .rknn files. Here, parity and the "
                    "benchmark run the files they built on this board's NPU.",
                ),
            )
        model = load_graph(model_path)
        with tempfile.TemporaryDirectory(prefix="slipway-rknn-") as scratch:
            answer = self._convert(model_path, model, platform, ("fp16",), None, Path(scratch), {}, analysis=False)
        labels = node_labels(model.graph)
        domains = {label: node.domain or DEFAULT_DOMAIN for label, node in zip(labels, model.graph.node, strict=True)}
        rows = support_rows(labels, domains, answer.get("nodes", []), platform, version)
        notes = [_SUPPORT_NOTE.format(platform=platform.upper()), placement_summary(rows, platform)]
        if answer.get("error"):
            notes.append(f"The toolkit refused the model: {answer['error']}")
        ops: tuple[OpSupport, ...] = ops_by_outcome(rows)
        runnable = sum(1 for row in rows if row[3] in ("supported", "fallback"))
        verdict: Verdict | None = (
            "partial" if runnable == len(rows) and any(row[3] == "fallback" for row in rows) else None
        )
        partitions = tuple(device_runs((row[0], row[4]) for row in rows if row[3] in ("supported", "fallback")))
        return self.installed_report(
            version,
            "converter",
            verdict or verdict_for(sum(1 for row in rows if row[3] == "supported"), len(rows)),
            ops=ops,
            partitions=partitions,
            notes=notes,
        )

    # --- variants ---------------------------------------------------------------------

    def build(
        self,
        model_path: Path,
        profile: HardwareProfile,
        calibration: Calibration | None,
        out_dir: Path,
        notes: list[str],
    ) -> list[Variant]:
        model = load_graph(model_path)
        platform = platform_of(profile.options)
        wanted = [precision for _, precision in VARIANT_PLANS if precision in profile.precisions]
        if "int8" in wanted and calibration is None:
            wanted.remove("int8")
            notes.append(
                "rknn-int8 was not built: the NPU's INT8 needs calibration data for its activation scales; upload a "
                "calibration .npz with the model."
            )
        if not wanted:
            return []
        kept_calibration = out_dir / "rknn.calibration.npz"
        if calibration is not None and "int8" in wanted:
            _trim_calibration(
                calibration.path, kept_calibration, min(calibration.max_samples, _MAX_CALIBRATION_SAMPLES)
            )
        overrides = profile.options.get("input_shapes") or {}
        try:
            answer = self._convert(
                model_path,
                model,
                platform,
                tuple(wanted),
                kept_calibration if kept_calibration.exists() else None,
                out_dir,
                overrides,
                analysis=True,
            )
            return self._variants(model_path, model, answer, wanted, out_dir, kept_calibration, notes)
        finally:
            shutil.rmtree(out_dir / _BUILD_FOLDER, ignore_errors=True)

    def _variants(
        self,
        model_path: Path,
        model: Any,
        answer: dict[str, Any],
        wanted: list[str],
        out_dir: Path,
        kept_calibration: Path,
        notes: list[str],
    ) -> list[Variant]:
        platform = str(answer.get("platform") or DEFAULT_PLATFORM)
        if not answer.get("converted"):
            notes.append(f"No RKNN variant was built: the toolkit refused the model: {answer.get('error', '')}")
            kept_calibration.unlink(missing_ok=True)
            return []
        labels = node_labels(model.graph)
        domains = {label: node.domain or DEFAULT_DOMAIN for label, node in zip(labels, model.graph.node, strict=True)}
        rows = support_rows(labels, domains, answer.get("nodes", []), platform, str(answer.get("converter_version")))
        placement = placement_summary(rows, platform)
        notes.append(f"RKNN placement of the {answer.get('placement_precision', '')} build: {placement}")
        source = out_dir / "rknn.source.onnx"
        shutil.copyfile(model_path, source)
        versions = {str(k): str(v) for k, v in answer.get("tool_versions", {}).items()}
        variants = []
        for name, precision in VARIANT_PLANS:
            if precision not in wanted:
                continue
            built = answer.get("variants", {}).get(precision, {})
            if "error" in built or not built.get("path"):
                notes.append(f"{name} was not built: {built.get('error', 'the toolkit wrote no file')}")
                continue
            target = out_dir / f"{name}.rknn"
            Path(built["path"]).replace(target)
            accuracy = list(built.get("accuracy") or [])
            summary = accuracy_summary(accuracy)
            if summary:
                notes.append(f"{name}: {summary}")
            recipe = {
                "platform": platform,
                "precision": precision,
                "onnx": source.name,
                "calibration": kept_calibration.name if precision == "int8" else None,
                "inputs": [{"name": k, "shape": v} for k, v in answer.get("input_shapes", {}).items()],
                "outputs": [value.name for value in model.graph.output],
                "tool_versions": versions,
                "placement": placement,
            }
            recipe_path(target).write_text(json.dumps(recipe, indent=1))
            files = [target, recipe_path(target), source]
            if precision == "int8":
                files.append(kept_calibration)
            variants.append(
                Variant(
                    name=name,
                    backend=self.name,
                    path=target,
                    format="rknn",
                    precision=precision,
                    pass_name=CONVERTER_STEP,
                    options={
                        "platform": platform,
                        "input_shapes": answer.get("input_shapes", {}),
                        "calibration_samples": answer.get("calibration_samples", 0) if precision == "int8" else 0,
                        "placement": placement,
                        "accuracy_analysis": accuracy,
                    },
                    tool_versions=dict(versions),
                    files=tuple(files),
                )
            )
        if not any(variant.precision == "int8" for variant in variants):
            kept_calibration.unlink(missing_ok=True)
        return variants

    def verify(self, variant: Variant, profile: HardwareProfile) -> None:
        """The toolkit checked the file as it wrote it; here the recipe must be complete, since the
        simulator builds from it (a full simulator run is parity's)."""
        recipe = _read_recipe(variant.path)
        missing = [
            name
            for name in (recipe["onnx"], recipe.get("calibration"))
            if name and not (variant.path.parent / name).exists()
        ]
        if missing:
            raise RuntimeError(f"the variant's recipe names files that are missing: {missing}")

    # --- running ----------------------------------------------------------------------

    def load(self, variant_path: Path) -> RKNNSimulatorSession | RKNNLiteSession:
        recipe = _read_recipe(variant_path)
        if self.lite_version() is not None:
            return RKNNLiteSession(variant_path, recipe)
        if self.toolkit_version() is not None:
            return RKNNSimulatorSession(variant_path, recipe)
        raise BackendNotInstalled(
            "Neither RKNNLite (a board's NPU runtime, rknn-toolkit-lite2) nor RKNN-Toolkit2's simulator is installed "
            "here, so RKNN variants can't run on this machine."
        )

    # --- the converter ------------------------------------------------------------------

    def _convert(
        self,
        model_path: Path,
        model: Any,
        platform: str,
        precisions: tuple[str, ...],
        calibration: Path | None,
        out_dir: Path,
        overrides: dict[str, Any],
        *,
        analysis: bool,
    ) -> dict[str, Any]:
        request = {
            "platform": platform,
            "variants": list(precisions),
            "calibration": str(calibration.resolve()) if calibration is not None else None,
            "analysis": analysis,
        }
        return convert_in_side(ENV, "RKNN", model_path, model, out_dir, _BUILD_FOLDER, overrides, request)


def _read_recipe(variant_path: Path) -> dict[str, Any]:
    companion = recipe_path(variant_path)
    try:
        recipe: dict[str, Any] = json.loads(companion.read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"{companion.name} is missing or unreadable beside {variant_path.name}: it says how the variant was built. "
            "Rebuild the variant."
        ) from exc
    return recipe


def _trim_calibration(source: Path, target: Path, samples: int) -> None:
    """The first `samples` samples of each calibration array, kept with the variant."""
    import numpy as np

    from workers.engine.errors import ModelError

    try:
        with np.load(source, allow_pickle=False) as data:
            arrays: dict[str, Any] = {name: np.asarray(data[name][:samples]) for name in data.files}
    except Exception as exc:  # numpy raises several types for a file that is not an .npz
        raise ModelError(
            "invalid_calibration", f"The calibration file can't be read as .npz: {first_line(str(exc))}"
        ) from None
    np.savez(target, **arrays)
