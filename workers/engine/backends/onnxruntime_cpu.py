"""onnxruntime on the CPU: operator support, optimized and quantized variants, and sessions.
It is over 600 lines because a runtime backend is one module by the plug-in contract
(docs/adr/0012: adding a runtime is one file plus its test; the registry discovers the modules
in the package), and this one holds all of onnxruntime's: op support from provider placement
and one-node probes, and the optimized, FP16 and quantized variants (dynamic, static QDQ, mixed
precision, LSTM cells quantized dynamically), external weights included.

`check_support` asks onnxruntime itself: it builds a session with graph optimizations
off (so every node keeps its name and maps back to the uploaded model) and reads the
runtime's record of which execution provider took which node. When no session can be
built (an operator without a kernel, a custom domain, an opset the runtime does not
know), each distinct node is loaded on its own in a one-node model, and the runtime's
error says why a node is refused.

`build_variants` builds, for a CPU profile, models optimized offline at the basic,
extended and all levels, an INT8 dynamically quantized model and, with calibration data,
an INT8 static QDQ model in the recipe of the CPU it will run on (`quant_recipes`: U8S8 with
per-channel weights on x86-64, S8S8 on ARM64); for a GPU profile, an FP16 model. Every variant is loaded once
before it is returned (the base class's template, `verify`); one that does not load is dropped and
the reason noted.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.backends._onnx_graph import (
    default_opset,
    label_nodes,
    load_graph,
    probe_model,
    walk_graphs,
    walk_nodes,
)
from workers.engine.backends.base import (
    Backend,
    BackendNotInstalled,
    Calibration,
    HardwareProfile,
    SupportReport,
    SupportStatus,
    TritonNative,
    Variant,
)
from workers.engine.calibration import calibration_feeds, calibration_size_note, load_calibration
from workers.engine.hardware import cpu_features
from workers.engine.inspection import TensorSpec, graph_input_specs
from workers.engine.onnx_walk import DEFAULT_DOMAIN
from workers.engine.quant_recipes import PER_CHANNEL_MIN_OPSET, QuantRecipe, ort_static_recipe, target_cpu

if TYPE_CHECKING:
    import numpy as np
    from onnx import GraphProto, ModelProto, NodeProto, TypeProto, ValueInfoProto

CPU_PROVIDER = "CPUExecutionProvider"
GPU_PROVIDER = "CUDAExecutionProvider"

# Models larger than this (weights included) get their variants' weights in a separate
# file: protobuf cannot hold more than 2 GB, and the quantizers copy the model around.
EXTERNAL_DATA_THRESHOLD_BYTES = int(1.5 * 2**30)

# Initializers up to this size are copied into one-node probe models (some kernels want
# constant inputs); larger ones become graph inputs of the same type and shape.
_PROBE_CONSTANT_BYTES = 64 * 2**10

_MAX_REASON_CHARS = 500

_OPT_LEVELS = ("basic", "extended", "all")

_ALL_LEVEL_WARNING = (
    "onnxruntime warns that a model optimized offline at the 'all' level can hold optimizations "
    "specific to the CPU it was built on (such as NCHWc layouts); run it on the same kind of "
    "hardware, or rebuild it there."
)

_SUPPORT_METHOD_NOTE = (
    "Placement comes from onnxruntime's graph-assignment record for a session built with graph "
    "optimizations disabled, so every node keeps its name and maps back to the uploaded model; "
    "optimized variants may fuse nodes further."
)


class OnnxRuntimeSession:
    """A model loaded in onnxruntime on the CPU, ready to run."""

    def __init__(
        self,
        model_path: Path,
        *,
        intra_op_threads: int | None = None,
        providers: Sequence[str] = (CPU_PROVIDER,),
    ) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        self._session: Any = onnxruntime.InferenceSession(str(model_path), options, providers=list(providers))
        self.input_names = tuple(value.name for value in self._session.get_inputs())
        self.output_names = tuple(value.name for value in self._session.get_outputs())

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on `inputs` (input name -> array); returns output name -> array."""
        if self._session is None:
            raise RuntimeError("This session is closed; load the model again to run it.")
        values = self._session.run(list(self.output_names), inputs)
        return dict(zip(self.output_names, values, strict=True))

    def close(self) -> None:
        """Free the session; `run` fails afterwards."""
        self._session = None


class OnnxRuntimeCpuBackend(Backend):
    """onnxruntime with its CPU execution provider."""

    name = "onnxruntime"
    # InferenceSession.run is thread-safe.
    thread_argument = "intra_op_threads"
    thread_safe_sessions = True
    serving_requirements = ("numpy", "onnx", "onnxruntime")
    triton_native = {"onnx": TritonNative("onnxruntime_onnx", "", "model.onnx", "keep")}

    def __init__(self, intra_op_threads: int | None = None) -> None:
        self.intra_op_threads = intra_op_threads

    def runtime_version(self) -> str | None:
        """onnxruntime's version, or None when it cannot be imported here."""
        try:
            import onnxruntime
        except ImportError:
            return None
        return str(onnxruntime.__version__)

    # --- operator support -----------------------------------------------------------

    def check_support(self, model_path: Path) -> SupportReport:
        """Which operators of the model onnxruntime runs on the CPU, and which it refuses.

        Support is grouped per (domain, op_type); nodes of one op type that end up
        differently (say Relu on float and on int16) get one entry each. Raises
        ModelError "invalid_model" when the file cannot be parsed as ONNX.
        """
        version = self.runtime_version()
        if version is None:
            return self.not_installed_report()

        model = load_graph(model_path)
        nodes, renamed = _label_nodes(model)
        try:
            placement, expanded = self._placement_from_runtime(model_path, model, renamed)
        except Exception as exc:  # onnxruntime raises its own exception types, all plain Exceptions
            return self._probe_report(model, nodes, version, _runtime_error_text(exc))

        notes = [_SUPPORT_METHOD_NOTE]
        default_device = next(iter(set(expanded.values())), CPU_PROVIDER)
        statuses: dict[str, tuple[SupportStatus, str, str]] = {}
        missing = []
        for node in nodes:
            device = placement.get(node.label)
            if device is None:
                # Function calls (and ops onnxruntime implements as functions) are inlined:
                # their body nodes run, under other names.
                missing.append(node.label)
                device = default_device
            statuses[node.label] = ("supported", device, "")
        if missing:
            notes.append(
                f"{len(missing)} node(s) were expanded into their function bodies and run as those: "
                + ", ".join(missing[:10])
                + ("..." if len(missing) > 10 else "")
                + "."
            )
        return self.report_from_statuses(version, "runtime", nodes, statuses, notes, refused_partitions=False)

    def _placement_from_runtime(
        self, model_path: Path, model: ModelProto, renamed: bool
    ) -> tuple[dict[str, str], dict[str, str]]:
        """(node label -> provider, unknown node name -> provider) from a real session."""
        import onnxruntime

        options = self._session_options()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
        if renamed:
            # The model was changed in memory to give every node a unique name; its
            # external weights are still found next to the original file.
            options.add_session_config_entry(
                "session.model_external_initializers_file_folder_path", str(model_path.parent)
            )
            session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=[CPU_PROVIDER])
        else:
            session = onnxruntime.InferenceSession(str(model_path), options, providers=[CPU_PROVIDER])

        labels = {node.name for node in walk_nodes(model.graph)}
        placement: dict[str, str] = {}
        others: dict[str, str] = {}
        try:
            subgraphs = session.get_provider_graph_assignment_info()
        except AttributeError:
            # Older onnxruntime: a session with only the CPU provider runs every node there.
            return dict.fromkeys(labels, session.get_providers()[0]), {}
        for subgraph in subgraphs:
            for assigned in subgraph.get_nodes():
                target = placement if assigned.name in labels else others
                target[assigned.name] = subgraph.ep_name
        return placement, others

    def _probe_report(
        self, model: ModelProto, nodes: list[_LabeledNode], version: str, session_error: str
    ) -> SupportReport:
        """Load each distinct node on its own to find the ones onnxruntime refuses."""
        import onnxruntime

        context = _ProbeContext.of(model)
        outcomes: dict[tuple[Any, ...], tuple[SupportStatus, str, str]] = {}
        statuses: dict[str, tuple[SupportStatus, str, str]] = {}
        for node in nodes:
            key = context.node_key(node.proto)
            if key not in outcomes:
                probe = context.one_node_model(node.proto)
                options = self._session_options()
                options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
                try:
                    onnxruntime.InferenceSession(probe.SerializeToString(), options, providers=[CPU_PROVIDER])
                    outcomes[key] = ("supported", CPU_PROVIDER, "")
                except Exception as exc:  # onnxruntime's own exception types
                    outcomes[key] = ("unsupported", "", _runtime_error_text(exc))
            statuses[node.label] = outcomes[key]

        notes = [
            f"onnxruntime could not load the whole model ({session_error}); each distinct node "
            "(operator, attributes, input types and ranks) was loaded on its own in a one-node model."
        ]
        notes.extend(context.notes)
        report = self.report_from_statuses(version, "probe", nodes, statuses, notes, refused_partitions=False)
        if report.verdict == "full":
            notes.append(
                "Every operator loads on its own, so the model fails for another reason, such as how "
                "its nodes are connected or its weights are stored."
            )
            return replace(report, verdict="error", notes=tuple(notes), error=session_error)
        return report

    # --- variants ---------------------------------------------------------------------

    def build(
        self,
        model_path: Path,
        profile: HardwareProfile,
        calibration: Calibration | None,
        out_dir: Path,
        notes: list[str],
    ) -> list[Variant]:
        """Build the variants the profile asks for into `out_dir`.

        CPU profiles: "fp32" gives ort-opt-basic, ort-opt-extended and ort-opt-all; "int8"
        gives ort-int8-dynamic and, with `calibration`, ort-int8-static-qdq. GPU profiles:
        "fp16" gives ort-fp16 (inputs and outputs stay float32). Variants of a model with
        external data, or larger than 1.5 GB, keep their weights in "<name>.onnx.data".

        Raises ModelError "invalid_model" for a file that is not ONNX, and the ModelErrors of `load_calibration` for
        calibration data that does not fit the model.
        """
        import onnx
        import onnxruntime

        header = load_graph(model_path)
        large = _model_bytes(model_path, header) > EXTERNAL_DATA_THRESHOLD_BYTES
        external = large or _has_external_data(header)
        versions = {"onnx": str(onnx.__version__), "onnxruntime": str(onnxruntime.__version__)}

        samples: dict[str, np.ndarray] = {}
        specs = graph_input_specs(header.graph)
        if profile.device_kind == "cpu" and "int8" in profile.precisions and calibration is not None:
            # Before anything is built: a wrong calibration file is the user's to fix.
            samples = load_calibration(calibration.path, specs, max_samples=calibration.max_samples)
            if size_note := calibration_size_note(samples, specs, calibration.method):
                notes.append(size_note)

        plans: list[tuple[str, str, Callable[[Path, Path], dict[str, Any]]]] = []
        if profile.device_kind == "cpu":
            if "fp32" in profile.precisions:
                for level in _OPT_LEVELS:
                    plans.append((f"ort-opt-{level}", "fp32", self._optimizer(level, external)))
        elif "fp16" in profile.precisions:
            plans.append(("ort-fp16", "fp16", _fp16_builder(external, large)))

        scratch = Path(tempfile.mkdtemp(prefix=".ort-build-", dir=out_dir))
        try:
            # Graph simplification (constant folding, in If/Loop bodies too): a variant of its
            # own, and the graph every quantization pass starts from.
            simplified: Path | None = None
            if profile.device_kind == "cpu":
                simplified, stats, note = _simplify(model_path, scratch, external)
                if note:
                    notes.append(note)
                if simplified is not None and "fp32" in profile.precisions:
                    plans.insert(0, ("ort-simplified", "fp32", _copy_builder(simplified, stats)))
            if profile.device_kind == "cpu" and "int8" in profile.precisions:
                start, opset, opset_note = simplified or model_path, default_opset(header), ""
                if calibration is not None and opset < PER_CHANNEL_MIN_OPSET and not external:
                    # Per-channel weights need per-axis QDQ: convert the graph up first.
                    start, opset, opset_note = _convert_opset(start, scratch, PER_CHANNEL_MIN_OPSET)
                source, prep_note = _preprocess_for_quantization(start, scratch, external)
                prep_note = " ".join(
                    part
                    for part in (
                        "Quantized the simplified graph (see ort-simplified)." if simplified is not None else "",
                        opset_note,
                        prep_note,
                    )
                    if part
                )
                plans.append(("ort-int8-dynamic", "int8", _dynamic_quantizer(source, prep_note, external)))
                if calibration is not None:
                    recipe = _static_recipe(profile, calibration, opset)
                    quantizer = _static_quantizer(source, prep_note, external, calibration, samples, specs, recipe)
                    plans.append(("ort-int8-static-qdq", "int8", quantizer))
                    if _has_compute_and_other_ops(header):
                        compute_only = _static_quantizer(
                            source, prep_note, external, calibration, samples, specs, recipe, COMPUTE_OPS
                        )
                        plans.append(("ort-int8-static-compute", "int8", compute_only))
                        if _has_lstm(header):
                            plans.append(
                                ("ort-int8-static-compute-lstm", "int8", _with_lstm_weights(compute_only, external))
                            )
                else:
                    notes.append(
                        "ort-int8-static-qdq was not built: static INT8 quantization needs calibration data. Upload "
                        "calibration=@calib.npz (one array per model input) to build it."
                    )

            variants = []
            for name, precision, build in plans:
                target = out_dir / f"{name}.onnx"
                try:
                    options = build(model_path, target)
                except Exception as exc:  # the optimizers and quantizers raise anything
                    _remove_variant_files(target)
                    notes.append(f"{name} was not built: {_runtime_error_text(exc)}")
                    continue
                variants.append(
                    Variant(
                        name=name,
                        backend=self.name,
                        path=target,
                        format="onnx",
                        precision=precision,
                        pass_name=options.pop("pass_name"),
                        options=options,
                        tool_versions=dict(versions),
                        files=_variant_files(target),
                    )
                )
            static = next((v for v in variants if v.name == "ort-int8-static-qdq"), None)
            # The search starts from the static variant: only one that loads (the template then
            # drops one that does not, with its reason).
            if static is not None and samples and self.usable(static, profile):
                mixed, record = self._mixed_precision(
                    model_path, static, samples, specs, profile, calibration, external, out_dir, notes
                )
                if mixed is not None:
                    variants.append(mixed)
                elif record is not None:
                    # No mixed variant: the variant the search started from keeps what it judged.
                    variants[variants.index(static)] = replace(static, options={**static.options, "search": record})
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return variants

    def _mixed_precision(
        self,
        model_path: Path,
        static: Variant,
        samples: Mapping[str, np.ndarray],
        specs: Sequence[TensorSpec],
        profile: HardwareProfile,
        calibration: Calibration | None,
        external: bool,
        out_dir: Path,
        notes: list[str],
    ) -> tuple[Variant | None, dict[str, Any] | None]:
        """ort-int8-static-mixed: the static INT8 model with its most sensitive activations kept
        in float, when the full INT8 model is out of tolerance on the calibration samples (see
        `workers.engine.mixed_precision`), within the profile's search budget; None, with a note
        saying why, otherwise. Beside it, the search's record (every candidate judged, the
        budget, why it stopped), which the variant carries, or else ort-int8-static-qdq; None
        where there was no search."""
        import onnx

        from workers.engine import mixed_precision
        from workers.engine.outputs import semantics_map
        from workers.engine.parity import Tolerance

        name = "ort-int8-static-mixed"
        if external:
            notes.append(f"{name} was not searched: the model keeps its weights in a separate file.")
            return None, None
        feeds, probe, sets = mixed_precision.probe_feeds(
            list(calibration_feeds(samples, specs)),
            calibration.evidence if calibration else (),
            MIXED_PROBE_SAMPLES,
            calibration.evidence_description if calibration else "",
        )
        tolerance = Tolerance.from_options(profile.options)
        budget, budget_note = mixed_precision.SearchBudget.for_build(profile.options)
        if budget_note:
            notes.append(budget_note)
        reference = mixed_precision._run(onnx.load(str(model_path)), feeds)
        semantics = semantics_map(calibration.output_semantics if calibration else None)
        result = mixed_precision.search(
            onnx.load(str(static.path)),
            reference,
            feeds,
            tolerance,
            semantics=semantics,
            budget=budget,
            progress=self.search_progress,
            sets=sets,
        )
        record = {**result.record(), "probe": probe}
        if result.full_int8_passed:
            notes.append(
                f"{name} was not built: ort-int8-static-qdq is within the profile's tolerance on {probe}, so no "
                "activation needs to stay in float."
            )
            return None, record
        if result.model is None:
            notes.append(f"{name} was not built: {_search_failure(result, probe)}")
            return None, record
        if result.out_of_budget:
            notes.append(result.budget_sentence(name))
        target = out_dir / f"{name}.onnx"
        onnx.save(result.model, str(target))
        summary = result.summary()
        kept = ", ".join(summary["kept_in_float"][:6]) + (" ..." if len(summary["kept_in_float"]) > 6 else "")
        options = {
            **{key: value for key, value in static.options.items() if key != "calibration_batches"},
            "mixed_precision": summary,
            "search": record,
            "probe": probe,
            "reason": (
                f"ort-int8-static-qdq is out of tolerance on {probe} (worst slice "
                f"{summary['full_int8_worst_slice_db']} dB); keeping {len(result.kept_in_float)} of its "
                f"{result.quantized_activations} quantized activations in float ({kept}), the most sensitive "
                f"measured, brings it to {summary['mixed_worst_slice_db']} dB, within tolerance."
            ),
        }
        variant = Variant(
            name=name,
            backend=self.name,
            path=target,
            format="onnx",
            precision="int8",
            pass_name="ort-quantize-static-mixed",  # noqa: S106 - a pass, not a password
            options=options,
            tool_versions=dict(static.tool_versions),
            files=_variant_files(target),
        )
        return variant, record

    def _optimizer(self, level: str, external: bool) -> Callable[[Path, Path], dict[str, Any]]:
        def build(model_path: Path, target: Path) -> dict[str, Any]:
            import onnxruntime

            levels = {
                "basic": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                "extended": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                "all": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
            }
            options = self._session_options()
            options.graph_optimization_level = levels[level]
            options.optimized_model_filepath = str(target)
            if external:
                options.add_session_config_entry(
                    "session.optimized_model_external_initializers_file_name", f"{target.name}.data"
                )
                options.add_session_config_entry(
                    "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
                )
            onnxruntime.InferenceSession(str(model_path), options, providers=[CPU_PROVIDER])
            result: dict[str, Any] = {
                "pass_name": "ort-graph-optimization",
                "graph_optimization_level": level,
                "optimized_for": CPU_PROVIDER,
                "external_data": external,
            }
            if level == "all":
                result["hardware_specific"] = True
                result["warning"] = _ALL_LEVEL_WARNING
            return result

        return build

    def verify(self, variant: Variant, profile: HardwareProfile) -> None:
        """Load the variant in a session on the profile's device (CUDA where a GPU profile has it)."""
        import onnxruntime

        providers = [CPU_PROVIDER]
        if profile.device_kind == "gpu" and GPU_PROVIDER in onnxruntime.get_available_providers():
            providers = [GPU_PROVIDER, CPU_PROVIDER]
        onnxruntime.InferenceSession(str(variant.path), self._session_options(), providers=providers)

    def error_text(self, exc: BaseException) -> str:
        return _runtime_error_text(exc)

    def _session_options(self) -> Any:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # onnxruntime warns freely about users' models; what matters ends up in reports and notes.
        options.log_severity_level = 3
        if self.intra_op_threads:
            options.intra_op_num_threads = self.intra_op_threads
        return options

    # --- running ----------------------------------------------------------------------

    def load(self, variant_path: Path) -> OnnxRuntimeSession:
        """Load a variant (or the original model) on the CPU provider."""
        if not self.available():
            raise BackendNotInstalled(f"{self.name} is not installed on this worker.")
        return OnnxRuntimeSession(variant_path, intra_op_threads=self.intra_op_threads)


# --- variant builders -------------------------------------------------------------------

# The mixed-precision search judges candidates on this many calibration samples.
MIXED_PROBE_SAMPLES = 8


def _search_failure(result: Any, probe: str) -> str:
    """Why a mixed-precision search (a `mixed_precision.MixedPrecisionResult`) found no mix
    that passes, in a sentence."""
    from workers.engine import mixed_precision

    if result.out_of_budget:
        sentence = result.budget_sentence("mixed-precision")
        return sentence[0].lower() + sentence[1:]
    if result.stopped == "no-activations":
        return "ort-int8-static-qdq has no quantized activation to keep in float."
    if result.stopped == "no-gain":
        return (
            f"keeping any one of the {result.quantized_activations} quantized activations in float does not "
            f"improve the worst output on {probe}. The full INT8 model: {' '.join(result.reasons[:1])}"
        )
    limit = max(1, int(result.quantized_activations * mixed_precision.MAX_FLOAT_SHARE))
    return (
        f"keeping up to {limit} of the {result.quantized_activations} quantized activations in float (the most "
        f"sensitive of {result.measured} measured) did not bring the model within the profile's tolerance on "
        f"{probe} (the search stops at half: past that most of the graph runs in float). The full INT8 model: "
        f"{' '.join(result.reasons[:1])}"
    )


def _graph_counts(model: ModelProto) -> dict[str, int]:
    """Nodes of the graph and its subgraphs, and how many are control flow (If, Loop, Scan)."""
    nodes = list(walk_nodes(model.graph))
    return {"nodes": len(nodes), "control_flow": sum(node.op_type in ("If", "Loop", "Scan") for node in nodes)}


def _simplify(model_path: Path, scratch: Path, external: bool) -> tuple[Path | None, dict[str, Any], str]:
    """The model through onnxscript's optimizer (constant folding, in If/Loop bodies too, If
    nodes whose condition folds replaced by their branch, dead nodes removed), saved in
    `scratch`, with its node counts before and after; or None and why not. A model the
    optimizer doesn't shrink gives None: an identical variant would only be measured twice."""
    name = "ort-simplified"
    if external:
        why = "the model keeps its weights in a separate file, which the simplifier does not take"
        return None, {}, f"{name} was not built: {why}."
    try:
        import onnxscript
        import onnxscript.optimizer
    except ImportError:
        return None, {}, f"{name} was not built: onnxscript (its ONNX optimizer) is not installed on this worker."
    import onnx

    model = onnx.load(str(model_path))
    before = _graph_counts(model)
    try:
        result = onnxscript.optimizer.optimize(model)
        onnx.checker.check_model(result)
    except Exception as exc:  # the optimizer raises whatever its passes raise
        return None, {}, f"{name} was not built: the optimizer failed: {_runtime_error_text(exc)}"
    after = _graph_counts(result)
    stats = {
        "tool": f"onnxscript {onnxscript.__version__} optimizer",
        "nodes_before": before["nodes"],
        "nodes_after": after["nodes"],
        "control_flow_before": before["control_flow"],
        "control_flow_after": after["control_flow"],
    }
    if after["nodes"] >= before["nodes"]:
        return (
            None,
            stats,
            (f"{name} was not built: the optimizer found nothing to fold or remove ({before['nodes']} nodes)."),
        )
    target = scratch / "simplified.onnx"
    onnx.save(result, str(target))
    return target, stats, ""


def _copy_builder(source: Path, stats: Mapping[str, Any]) -> Callable[[Path, Path], dict[str, Any]]:
    def build(model_path: Path, target: Path) -> dict[str, Any]:
        shutil.copyfile(source, target)
        return {
            "pass_name": "onnx-simplify",
            **stats,
            "reason": (
                f"{stats['nodes_before']} nodes ({stats['control_flow_before']} If/Loop/Scan) folded to "
                f"{stats['nodes_after']} ({stats['control_flow_after']}); onnxruntime applies its own "
                "optimizations at load, as for the original."
            ),
        }

    return build


def _preprocess_for_quantization(model_path: Path, scratch: Path, external: bool) -> tuple[Path, str]:
    """Run onnxruntime's quantization pre-processing (shape inference, cleanup) if it works."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = scratch / "preprocessed.onnx"
    failures = []
    # Symbolic shape inference needs sympy and fails on some models; ONNX shape inference
    # and the cleanup pass still help on their own.
    for skip_symbolic in (False, True):
        try:
            # Symbolic shape inference saves a scratch copy named sym_shape_infer_temp.onnx in
            # the current directory; keep it in our scratch folder.
            with contextlib.chdir(scratch):
                quant_pre_process(
                    str(model_path),
                    str(target),
                    skip_symbolic_shape=skip_symbolic,
                    save_as_external_data=external,
                    all_tensors_to_one_file=True,
                    external_data_location=f"{target.name}.data",
                )
        except Exception as exc:  # pre-processing is best effort
            failures.append(_runtime_error_text(exc))
            _remove_variant_files(target)
            continue
        if skip_symbolic:
            return target, f"Pre-processed without symbolic shape inference ({failures[0]})."
        return target, "Pre-processed with onnxruntime's quant_pre_process."
    return model_path, f"Quantized without pre-processing, which failed: {failures[-1]}"


def _dynamic_quantizer(source: Path, prep_note: str, external: bool) -> Callable[[Path, Path], dict[str, Any]]:
    def build(model_path: Path, target: Path) -> dict[str, Any]:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, use_external_data_format=external)
        return {
            "pass_name": "ort-quantize-dynamic",
            "weight_type": "int8",
            "activations": "quantized to uint8 at run time",
            "preprocessing": prep_note,
            "external_data": external,
        }

    return build


def _convert_opset(model_path: Path, scratch: Path, target: int) -> tuple[Path, int, str]:
    """The model converted to opset `target` (onnx's version converter), checked, in `scratch`,
    with the sentence the variant's options carry; the model as it was, and why, when the
    converter can't."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(model_path))
    before = default_opset(model)
    try:
        converted = version_converter.convert_version(model, target)
        onnx.checker.check_model(converted)
    except Exception as exc:  # the converter raises whatever its adapters raise
        return (
            model_path,
            before,
            f"Kept opset {before}: converting it to {target} failed ({_runtime_error_text(exc)}).",
        )
    path = scratch / f"opset{target}.onnx"
    onnx.save(converted, str(path))
    return path, target, f"Converted from opset {before} to {target} for per-channel weights."


def _static_recipe(profile: HardwareProfile, calibration: Calibration, opset: int) -> QuantRecipe:
    """The static INT8 recipe for the CPU the profile's variants run on (see quant_recipes);
    per-tensor where the graph's opset predates per-axis QDQ."""
    arch, flags = target_cpu(profile.options, *cpu_features())
    recipe = ort_static_recipe(arch, flags, per_channel=calibration.per_channel)
    if recipe.per_channel and opset < PER_CHANNEL_MIN_OPSET:
        return replace(
            recipe,
            per_channel=False,
            reason=f"{recipe.reason} Weights per tensor: the model's opset {opset} predates per-channel "
            f"QDQ (opset {PER_CHANNEL_MIN_OPSET}).",
        )
    return recipe


def _static_quantizer(
    source: Path,
    prep_note: str,
    external: bool,
    calibration: Calibration,
    samples: Mapping[str, np.ndarray],
    specs: Sequence[TensorSpec],
    recipe: QuantRecipe,
    op_types: tuple[str, ...] = (),
) -> Callable[[Path, Path], dict[str, Any]]:
    """The static INT8 pass: every operator onnxruntime quantizes, or only `op_types`."""

    def build(model_path: Path, target: Path) -> dict[str, Any]:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}

        methods = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }
        reader = _FeedReader(calibration_feeds(samples, specs))
        # The histogram calibrators print progress to stdout; a worker's stdout is its log.
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(source),
                str(target),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=recipe.per_channel,
                reduce_range=recipe.reduce_range,
                activation_type=types[recipe.activation_type],
                weight_type=types[recipe.weight_type],
                calibrate_method=methods[calibration.method],
                use_external_data_format=external,
                op_types_to_quantize=list(op_types) or None,
            )
        only = {"op_types_to_quantize": list(op_types), "reason": _COMPUTE_ONLY_REASON} if op_types else {}
        return {
            "pass_name": "ort-quantize-static",
            **only,
            "quant_format": "QDQ",
            "calibrate_method": calibration.method,
            "per_channel": recipe.per_channel,
            "reduce_range": recipe.reduce_range,
            "activation_type": recipe.activation_type,
            "weight_type": recipe.weight_type,
            "recipe": f"{recipe.pairing} for {recipe.target}: {recipe.reason}",
            "calibration_batches": reader.count,
            "preprocessing": prep_note,
            "external_data": external,
        }

    return build


# The operators whose integer kernels carry the speed-up; quantizing only them leaves heads
# (a classifier's Gemm, a detector's box decoding and Concat) and element-wise ops in float.
COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul")
_COMPUTE_ONLY_REASON = (
    "Only Conv, ConvTranspose and MatMul quantized: the ops whose integer kernels carry the speed-up. Every "
    "other op (a classifier's Gemm head, a detector's box decoding, element-wise ops) stays in float, where "
    "one 8-bit scale can crush outputs of very different ranges."
)


def _has_compute_and_other_ops(model: Any) -> bool:
    """Whether quantizing only COMPUTE_OPS differs from quantizing everything: the graph has
    compute ops and others beside them."""
    types = {node.op_type for node in model.graph.node if node.domain in ("", "ai.onnx")}
    return bool(types & set(COMPUTE_OPS)) and bool(types - set(COMPUTE_OPS))


def _has_lstm(model: Any) -> bool:
    """Whether the graph's top level holds an ONNX LSTM node (its weights can be quantized)."""
    return any(node.op_type == "LSTM" and node.domain in ("", "ai.onnx") for node in model.graph.node)


def _with_lstm_weights(
    compute_only: Callable[[Path, Path], dict[str, Any]], external: bool
) -> Callable[[Path, Path], dict[str, Any]]:
    """ort-int8-static-compute-lstm: the compute-only static variant, then its LSTM nodes
    quantized dynamically (DynamicQuantizeLSTM: int8 weights, the step's inputs quantized at
    run time), which static QDQ cannot express for a recurrent cell. A variant of its own, so
    that a cell that loses accuracy costs only this one."""

    def build(model_path: Path, target: Path) -> dict[str, Any]:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        staged = target.with_name(f".{target.stem}.static.onnx")
        try:
            options = compute_only(model_path, staged)
            quantize_dynamic(
                str(staged),
                str(target),
                op_types_to_quantize=["LSTM"],
                weight_type=QuantType.QInt8,
                use_external_data_format=external,
            )
        finally:
            _remove_variant_files(staged)
        return {
            **options,
            "pass_name": "ort-quantize-static+dynamic-lstm",
            "recurrent_cells": "LSTM as DynamicQuantizeLSTM: int8 weights, inputs quantized at run time",
            "reason": f"{options['reason']} The LSTM cells' weights are int8 too, quantized dynamically.",
        }

    return build


def _fp16_builder(external: bool, large: bool) -> Callable[[Path, Path], dict[str, Any]]:
    def build(model_path: Path, target: Path) -> dict[str, Any]:
        import onnx

        try:
            from onnxruntime.transformers.float16 import convert_float_to_float16

            tool = "onnxruntime.transformers.float16"
        except ImportError:
            from onnxconverter_common.float16 import convert_float_to_float16

            tool = "onnxconverter_common.float16"
        model = onnx.load(str(model_path))
        # Shape inference serializes the model, which fails for protos over 2 GB.
        converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=large)
        _save_model(converted, target, external)
        return {"pass_name": "fp16-conversion", "tool": tool, "keep_io_types": True, "external_data": external}

    return build


class _FeedReader:
    """A calibration data reader for onnxruntime's quantizer (it checks for `get_next`)."""

    def __init__(self, feeds: Iterator[dict[str, np.ndarray]]) -> None:
        self._feeds = feeds
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed = next(self._feeds, None)
        if feed is not None:
            self.count += 1
        return feed


def _save_model(model: ModelProto, target: Path, external: bool) -> None:
    import onnx

    if external:
        onnx.save_model(
            model,
            str(target),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{target.name}.data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(target))


def _variant_files(path: Path) -> tuple[Path, ...]:
    """The model file and every external data file it names."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    files = [path]
    for tensor in _walk_initializers(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    companion = path.parent / entry.value
                    if companion not in files:
                        files.append(companion)
    return tuple(files)


def _remove_variant_files(target: Path) -> None:
    """Delete a failed variant: its file, the data files it names, and "<name>.data"."""
    try:
        files = list(_variant_files(target)) if target.is_file() else []
    except Exception:  # a half-written file: remove what is known by name
        files = []
    for path in [*files, target, target.with_name(f"{target.name}.data")]:
        # Only the variant's own files: never a data file it might share with the original.
        if path.parent == target.parent and path.name.startswith(target.stem):
            path.unlink(missing_ok=True)


# --- reading models -----------------------------------------------------------------------


def _walk_initializers(graph: GraphProto) -> Iterator[Any]:
    for each in walk_graphs(graph):
        yield from each.initializer


def _has_external_data(model: ModelProto) -> bool:
    import onnx

    return any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in _walk_initializers(model.graph))


def _model_bytes(model_path: Path, model: ModelProto) -> int:
    """The model file plus its external data files."""
    total = model_path.stat().st_size
    locations = set()
    for tensor in _walk_initializers(model.graph):
        for entry in tensor.external_data:
            if entry.key == "location":
                locations.add(entry.value)
    for location in locations:
        companion = model_path.parent / location
        if companion.is_file():
            total += companion.stat().st_size
    return total


@dataclass(frozen=True)
class _LabeledNode:
    """A node of the uploaded model with the unique label the report uses for it."""

    label: str
    domain: str
    op_type: str
    top_level: bool
    proto: NodeProto


def _label_nodes(model: ModelProto) -> tuple[list[_LabeledNode], bool]:
    """Every node (main graph in topological order, then into subgraphs), uniquely named.

    The labels are those of `label_nodes`. The protos are renamed to them in place, so that
    onnxruntime reports the same labels; returns whether any name changed.
    """
    labeled: list[_LabeledNode] = []
    renamed = False
    for item in label_nodes(model, _node_inputs):
        node = item.node
        if node.name != item.label:
            node.name = item.label
            renamed = True
        labeled.append(_LabeledNode(item.label, node.domain or DEFAULT_DOMAIN, node.op_type, item.top_level, node))
    return labeled, renamed


def _node_inputs(node: NodeProto) -> list[str]:
    """The node's inputs and the outer-scope names its subgraphs read."""
    names = [name for name in node.input if name]
    for attribute in node.attribute:
        subgraphs = ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)
        for subgraph in subgraphs:
            names.extend(_outer_scope_names(subgraph))
    return names


def _outer_scope_names(graph: GraphProto) -> list[str]:
    """Names a subgraph reads from the graph around it."""
    defined = {value.name for value in graph.input}
    defined.update(tensor.name for tensor in graph.initializer)
    defined.update(sparse.values.name for sparse in graph.sparse_initializer)
    found: list[str] = []
    for node in graph.node:
        for name in _node_inputs(node):
            if name not in defined and name not in found:
                found.append(name)
        defined.update(node.output)
    return found


# --- probing one node at a time -----------------------------------------------------------


@dataclass
class _ProbeContext:
    """What is known about every value of a model, to rebuild any node as a model of its own."""

    model: ModelProto
    types: dict[str, TypeProto]
    constants: dict[str, Any]  # small embedded initializers, copied into probes
    notes: list[str]

    @classmethod
    def of(cls, model: ModelProto) -> _ProbeContext:
        import onnx

        notes: list[str] = []
        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception as exc:  # shape inference raises several types; the declared types remain
            notes.append(f"Shape inference failed, so probes use the declared types: {_runtime_error_text(exc)}")
            inferred = model
        types: dict[str, TypeProto] = {}
        constants: dict[str, Any] = {}
        for graph in walk_graphs(inferred.graph):
            for value in [*graph.input, *graph.value_info, *graph.output]:
                if value.type.WhichOneof("value") is not None:
                    types.setdefault(value.name, value.type)
            for tensor in graph.initializer:
                types[tensor.name] = onnx.helper.make_tensor_type_proto(tensor.data_type, list(tensor.dims))
                embedded = tensor.data_location != onnx.TensorProto.EXTERNAL
                if embedded and tensor.ByteSize() <= _PROBE_CONSTANT_BYTES:
                    constants[tensor.name] = tensor
            for sparse in graph.sparse_initializer:
                types[sparse.values.name] = onnx.helper.make_tensor_type_proto(
                    sparse.values.data_type, list(sparse.dims)
                )
        return cls(model, types, constants, notes)

    def opset(self, domain: str) -> int:
        for entry in self.model.opset_import:
            if (entry.domain or DEFAULT_DOMAIN) == (domain or DEFAULT_DOMAIN):
                return int(entry.version)
        return 0

    def node_key(self, node: NodeProto) -> tuple[Any, ...]:
        """What decides whether onnxruntime has a kernel: op, attributes, input types and ranks."""
        attributes = []
        for attribute in node.attribute:
            if attribute.HasField("g") or len(attribute.graphs):
                # Subgraphs differ from node to node: probe each such node.
                return ("node", id(node))
            if attribute.HasField("t"):
                value: Any = ("tensor", attribute.t.data_type, tuple(attribute.t.dims))
            else:
                value = attribute.SerializeToString()
            attributes.append((attribute.name, value))
        inputs = tuple(self._type_key(name) for name in node.input)
        return (node.domain or DEFAULT_DOMAIN, node.op_type, tuple(sorted(attributes)), inputs)

    def _type_key(self, name: str) -> Any:
        if not name:
            return None
        type_proto = self.types.get(name)
        if type_proto is None:
            return "?"
        tensor_type = type_proto.tensor_type if type_proto.HasField("tensor_type") else None
        if tensor_type is None:
            return type_proto.WhichOneof("value")
        rank = len(tensor_type.shape.dim) if tensor_type.HasField("shape") else None
        return (tensor_type.elem_type, rank)

    def one_node_model(self, node: NodeProto) -> ModelProto:
        """The node alone in a model, its inputs as graph inputs or small constants."""
        from onnx import helper

        inputs: list[ValueInfoProto] = []
        initializers = []
        seen: set[str] = set()
        formal_positions = {name: position for position, name in reversed(list(enumerate(node.input))) if name}
        for name in _node_inputs(node):
            if name in seen:
                continue
            seen.add(name)
            if name in self.constants:
                initializers.append(self.constants[name])
            else:
                type_proto = self._input_type(node, name, formal_positions.get(name))
                inputs.append(helper.make_value_info(name, type_proto))
        return probe_model(self.model, node, inputs, initializers, self.types)

    def _input_type(self, node: NodeProto, name: str, position: int | None) -> TypeProto:
        import onnx

        known = self.types.get(name)
        if known is not None:
            return known
        # The type is unknown (often downstream of an op that shape inference cannot see
        # through): take the first type the op's schema allows, float preferred.
        allowed = ["tensor(float)"]
        if position is not None:
            try:
                schema = onnx.defs.get_schema(node.op_type, self.opset(node.domain), node.domain)
                formal = schema.inputs[min(position, len(schema.inputs) - 1)]
                constraint = {item.type_param_str: item.allowed_type_strs for item in schema.type_constraints}
                allowed = list(constraint.get(formal.type_str, [formal.type_str])) or allowed
            except (onnx.defs.SchemaError, IndexError):
                pass
        chosen = "tensor(float)" if "tensor(float)" in allowed else sorted(allowed)[0]
        self.notes.append(
            f"The type of '{name}' (input of {node.name or node.op_type}) is unknown; the probe used {chosen}."
        )
        return _type_from_string(chosen)


def _type_from_string(text: str) -> TypeProto:
    """A TypeProto from a schema type string such as "tensor(float)" or "seq(tensor(int64))"."""
    import onnx
    from onnx import helper

    inner = text[text.index("(") + 1 : -1] if "(" in text else text
    if text.startswith("tensor("):
        names = {name.lower(): value for name, value in onnx.TensorProto.DataType.items()}
        return helper.make_tensor_type_proto(names.get(inner, onnx.TensorProto.FLOAT), None)
    if text.startswith("seq("):
        return helper.make_sequence_type_proto(_type_from_string(inner))
    if text.startswith("optional("):
        return helper.make_optional_type_proto(_type_from_string(inner))
    return helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, None)


def _runtime_error_text(exc: BaseException) -> str:
    """The first line of a runtime error, without onnxruntime's status prefix and source location."""
    line = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    line = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", line)
    line = re.sub(r"^Load model from .*? failed:\s*", "", line)
    line = re.sub(r"^\S+:\d+ .*?\)\s+(?=[A-Z])", "", line)
    # A kernel's failure carries the source location after "Status Message: " instead.
    line = re.sub(r"(Status Message: )\S+:\d+ .*?\)\s+(?=[A-Z])", r"\1", line)
    return line[:_MAX_REASON_CHARS]
