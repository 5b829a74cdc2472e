"""OpenVINO on the CPU: operator support, IR variants (FP32, FP16 weights, INT8) and sessions.
It is over 600 lines because a runtime backend is one module by the plug-in contract
(docs/adr/0012: adding a runtime is one file plus its test; the registry discovers the modules
in the package), and this one holds all of OpenVINO's: conversion through the ONNX frontend
(partial conversion included), mapping the CPU plugin's operations back to ONNX nodes for op
support, and the NNCF INT8 and weight-compression variants.

`check_support` converts the model with OpenVINO's ONNX frontend and asks the CPU plugin
(`Core.query_model`) which of the resulting operations it runs. The plugin answers with
OpenVINO operation names, which are mapped back to the ONNX nodes they came from:

1. The frontend names the operation that produces a node's output after the ONNX node when
   the node has a name, else after its output tensor, and keeps the ONNX output tensor
   names on the OpenVINO outputs (model outputs are named after their tensor). Helper
   operations get "<that name>/<suffix>" (such as "conv/WithoutBiases").
2. So an operation belongs to the ONNX node whose name equals its friendly name, else to
   the node that produces one of its output tensors, else to the node named by the part of
   its friendly name before a "/". The frontend drops Identity and Dropout nodes and gives
   their output name to the operation that made their input, so a name that points at one
   of them is followed back to the node that made its input.
3. The remaining operations (auto-named, like "Subtract_9": shape and bias helpers the
   frontend inserts) belong to the nearest mapped operation they feed, or failing that the
   nearest one that feeds them.

A node is supported when every operation it maps to is in the plugin's answer. A node
with no operation of its own (Identity, Dropout: folded away by the frontend) counts as
supported. When the frontend cannot convert an operator, the model is converted partially
(`FrontEnd.convert_partially`): the operator stays as a framework node that names its ONNX
type and domain, and is reported unsupported with the frontend's message; the framework
nodes are cut out of the graph (their outputs become parameters) so that the plugin can
still judge the operations around them.

`build_variants` writes OpenVINO IR (.xml + .bin): FP32, FP16-compressed weights, INT8
from NNCF post-training quantization with calibration data, and NNCF INT8 weight
compression. Every variant is compiled once on the CPU before it is returned (the base
class's template, `verify`); one that does not build or compile is dropped and the reason noted.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.backends._onnx_graph import label_nodes, load_graph
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
from workers.engine.backends.published import load_published_list, report_from_published_list
from workers.engine.calibration import calibration_feeds, calibration_size_note, load_calibration
from workers.engine.hardware import cpu_features
from workers.engine.inspection import TensorSpec, graph_input_specs
from workers.engine.quant_recipes import bf16_arithmetic, target_cpu

if TYPE_CHECKING:
    import numpy as np
    from onnx import ModelProto, NodeProto

DEVICE = "CPU"
DEFAULT_DOMAIN = "ai.onnx"

# Where build_variants records the model's input and output names inside the IR, so that a
# session keys its outputs by the names of the uploaded model.
_RT_INFO_KEY = "slipway"
# Under the same key: the arithmetic a variant was judged in ("bf16"), which `load` asks
# the CPU plugin for; a variant without it computes in the backend's precision (f32).
_PRECISION_KEY = "inference_precision"

_MAX_REASON_CHARS = 500

_NOT_INSTALLED = (
    "OpenVINO is not installed on this worker: install the openvino package on it, or build and "
    "run this model with another backend."
)

_SUPPORT_METHOD_NOTE = (
    "Placement comes from OpenVINO's CPU plugin (Core.query_model) for the model as the ONNX "
    "frontend converts it. The plugin names OpenVINO operations; each was mapped back to the ONNX "
    "node it came from by its friendly name and output tensor names, and helper operations the "
    "frontend inserts were counted with the node they feed."
)

_FRAMEWORK_NODE_TYPES = ("ONNXFrameworkNode", "NotSupportedONNXNode")


class OpenVinoSession:
    """A model compiled by OpenVINO for the CPU, ready to run.

    `run` copies each input into the infer request's own input tensor (the plugin allocated
    it and reads it in place) and then runs the request without inputs. That is the copy
    `request.infer(inputs)` makes, minus OpenVINO's Python data dispatcher: about 25 µs a call
    in a warm loop, but 120 to 160 µs on a 2 ms model (bench/fidelity.py), because each
    inference evicts the interpreter from the CPU caches and the Python after it runs cold.
    Inputs that do not fit the tensors as they are (another shape such as a new batch size,
    another dtype, strings, array-likes) go through `request.infer(inputs)`, which reshapes
    and converts them; the tensors are looked up again after it. Outputs are copies the
    caller owns.
    """

    def __init__(self, compiled: Any, input_names: Sequence[str], output_names: Sequence[str]) -> None:
        self._compiled: Any = compiled
        self._request: Any = compiled.create_infer_request()
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        self._expected_names = frozenset(self.input_names)
        self._input_arrays = self._request_input_arrays()
        import numpy as np

        self._ndarray = np.ndarray  # run() is the hot path: no import statement in it

    def _request_input_arrays(self) -> tuple[np.ndarray | None, ...]:
        """A numpy view of each of the request's input tensors, in input order; None for a
        tensor that has no plain numpy view (strings, types numpy lacks)."""
        from openvino import Type

        arrays: list[np.ndarray | None] = []
        for index in range(len(self.input_names)):
            tensor = self._request.get_input_tensor(index)
            try:
                arrays.append(None if tensor.element_type == Type.string else tensor.data)
            except (RuntimeError, TypeError, ValueError):  # element types numpy cannot hold
                arrays.append(None)
        return tuple(arrays)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on `inputs` (input name -> array); returns output name -> array."""
        request = self._request
        if request is None:
            raise RuntimeError("This session is closed; load the model again to run it.")
        if inputs.keys() != self._expected_names:
            missing = [name for name in self.input_names if name not in inputs]
            unknown = [name for name in inputs if name not in self.input_names]
            raise ValueError(
                f"The inputs do not match the model: it takes {', '.join(self.input_names)}; "
                f"missing {', '.join(missing) or 'none'}, unknown {', '.join(unknown) or 'none'}."
            )
        values = [inputs[name] for name in self.input_names]
        fits = [
            target
            for value, target in zip(values, self._input_arrays, strict=True)
            if target is not None
            and type(value) is self._ndarray
            and value.shape == target.shape
            and value.dtype == target.dtype
        ]
        if len(fits) == len(values):
            for value, target in zip(values, fits, strict=True):
                target[...] = value
            results = request.infer(share_outputs=False)
        else:
            feeds = dict(enumerate(values))
            results = request.infer(feeds, share_inputs=False, share_outputs=False)
            # Reshaping may have reallocated a tensor, and a scalar input replaces its tensor.
            self._input_arrays = self._request_input_arrays()
        # The results come in the compiled model's output order, which is the model's.
        return dict(zip(self.output_names, results.values(), strict=True))

    def close(self) -> None:
        """Free the compiled model; `run` fails afterwards."""
        self._input_arrays = ()
        self._request = None
        self._compiled = None


class OpenVinoBackend(Backend):
    """OpenVINO with its CPU plugin."""

    name = "openvino"
    # A session holds a single infer request, which is not thread-safe.
    thread_argument = "num_threads"
    serving_requirements = ("numpy", "onnx", "openvino")
    install_extra = "runtimes-cpu"
    triton_native = {"openvino-ir": TritonNative("", "openvino", "model.xml", "stem")}
    verify_failure = "does not compile on the CPU"

    def __init__(self, num_threads: int | None = None, inference_precision: str | None = "f32") -> None:
        """`inference_precision` pins the CPU plugin's precision for float operations: "f32"
        (the default, so that results match the model's own) or None for the plugin's choice,
        which is bf16 or f16 on CPUs that support them."""
        self.num_threads = num_threads
        self.inference_precision = inference_precision

    def not_installed_text(self) -> str:
        return _NOT_INSTALLED

    def error_text(self, exc: BaseException) -> str:
        return _error_text(exc)

    def runtime_version(self) -> str | None:
        """OpenVINO's release (such as "2026.4.1"), or None when it cannot be imported here."""
        full = _openvino_version()
        return full.split("-")[0] if full else None

    # --- operator support -----------------------------------------------------------

    def check_support(self, model_path: Path) -> SupportReport:
        """Which operators of the model OpenVINO runs on the CPU, and which it cannot convert.

        Support is grouped per (domain, op_type, status, reason); partitions are the runs
        of top-level nodes in topological order, device "CPU" or "" for a run OpenVINO cannot
        take. Without OpenVINO installed, the answer comes from OpenVINO's published ONNX
        operator list when Slipway ships one. Raises ModelError "invalid_model" when the file
        cannot be parsed as ONNX.
        """
        version = self.runtime_version()
        if version is None:
            oplist = load_published_list(self.name)
            if oplist is None:
                return self.not_installed_report()
            return report_from_published_list(self.name, model_path, oplist)

        onnx_model = load_graph(model_path, file_format=None)
        nodes = _label_nodes(onnx_model)
        notes = [_SUPPORT_METHOD_NOTE]
        try:
            graph = _read_converted(model_path)
        except Exception as exc:  # OpenVINO raises plain RuntimeErrors for conversion failures
            conversion_error = _error_text(exc)
            try:
                graph = _read_partially_converted(model_path, onnx_model, _conversion_failures(str(exc)))
            except Exception as partial_exc:  # the frontend cannot read the file at all
                return self._error_report(version, conversion_error, _error_text(partial_exc))
            notes.append(
                "OpenVINO's ONNX frontend could not convert every operator, so the model was converted "
                "partially: the operators it could not convert are reported unsupported with its message, "
                "and the CPU plugin judged the rest with those operators cut out of the graph."
            )
        notes.extend(graph.notes)
        statuses, folded = _node_statuses(nodes, graph)
        if folded:
            notes.append(
                f"{len(folded)} node(s) have no OpenVINO operation of their own after conversion (the frontend "
                "folds Identity and Dropout into their neighbours and reads some constants as attributes) "
                "and count as supported: " + _short_list(folded)
            )
        return self.report_from_statuses(version, "runtime", nodes, statuses, notes, refused_partitions=True)

    def _error_report(self, version: str, conversion_error: str, partial_error: str) -> SupportReport:
        return SupportReport(
            backend=self.name,
            runtime_version=version,
            installed=True,
            method="runtime",
            verdict="error",
            notes=(
                "OpenVINO could not read the model, not even partially, so no operator could be judged: "
                f"{partial_error}",
            ),
            error=conversion_error,
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
        """Build OpenVINO IR variants for the profile into `out_dir`.

        Always "ov-ir-fp32" (the model converted to IR); "ov-ir-fp16" (weights stored as
        FP16, precision "fp16-weights") for CPU profiles and profiles asking for "fp16";
        "ov-ir-bf16" (the same IR, computed in bfloat16 by the CPU plugin) for CPU profiles
        asking for "bf16" whose CPU, and this worker's, compute in BF16 natively (AMX or
        AVX512-BF16), a note saying why not otherwise;
        with "int8" in the precisions, "ov-ir-int8" (NNCF post-training quantization, only
        with `calibration`) and "ov-ir-int8-weights" (NNCF INT8 weight compression, weights
        only). Each variant is "<name>.xml" plus "<name>.bin".

        Raises ModelError "invalid_model" for a file that is not ONNX, and the ModelErrors of
        `load_calibration` for calibration data that does not fit the model. Variants that fail
        are dropped, not raised.
        """
        import onnx
        import openvino

        header = load_graph(model_path, file_format=None)
        specs = graph_input_specs(header.graph)
        wants_int8 = "int8" in profile.precisions
        samples: dict[str, np.ndarray] = {}
        if wants_int8 and calibration is not None:
            # Before anything is built: a wrong calibration file is the user's to fix.
            samples = load_calibration(calibration.path, specs, max_samples=calibration.max_samples)
            if size_note := calibration_size_note(samples, specs, calibration.method):
                notes.append(size_note)

        versions = {"openvino": str(_openvino_version()), "onnx": str(onnx.__version__)}
        nncf_version = _package_version("nncf")
        if nncf_version:
            versions["nncf"] = nncf_version
        try:
            converted = openvino.convert_model(str(model_path))
        except Exception as exc:  # conversion failures are plain RuntimeErrors
            notes.append(
                f"The model could not be converted to OpenVINO IR, so no variant was built: {_error_text(exc)}"
            )
            return []
        names = {
            "input_names": [spec.name for spec in specs],
            "output_names": [value.name for value in header.graph.output],
        }
        for key, value in names.items():
            converted.set_rt_info(json.dumps(value), [_RT_INFO_KEY, key])

        plans: list[tuple[str, str, Callable[[Any, Path], dict[str, Any]]]] = [("ov-ir-fp32", "fp32", _save_fp32)]
        if profile.device_kind == "cpu" or "fp16" in profile.precisions:
            plans.append(("ov-ir-fp16", "fp16-weights", _save_fp16_weights))
        if profile.device_kind == "cpu" and "bf16" in profile.precisions:
            save_bf16, why_not = _bf16_builder(profile)
            if save_bf16 is not None:
                plans.append(("ov-ir-bf16", "bf16", save_bf16))
            else:
                notes.append(why_not)
        if wants_int8:
            if calibration is not None:
                plans.append(("ov-ir-int8", "int8", _int8_quantizer(calibration, samples, specs)))
            else:
                notes.append(
                    "ov-ir-int8 was not built: static INT8 quantization needs calibration data. Upload "
                    "calibration=@calib.npz (one array per model input) to build it."
                )
            plans.append(("ov-ir-int8-weights", "int8-weights", _compress_weights_int8))

        variants = []
        for name, precision, build in plans:
            target = out_dir / f"{name}.xml"
            try:
                options = build(converted.clone(), target)
            except Exception as exc:  # NNCF and the IR serializer raise anything
                _remove_ir(target)
                notes.append(f"{name} was not built: {_error_text(exc)}")
                continue
            variants.append(
                Variant(
                    name=name,
                    backend=self.name,
                    path=target,
                    format="openvino-ir",
                    precision=precision,
                    pass_name=options.pop("pass_name"),
                    options=options,
                    tool_versions=dict(versions),
                    files=(target, target.with_suffix(".bin")),
                )
            )
        int8 = next((v for v in variants if v.name == "ov-ir-int8"), None)
        # The search starts from ov-ir-int8: only one that compiles (the template then drops one
        # that does not, with its reason).
        if int8 is not None and samples and self.usable(int8, profile):
            semantics = calibration.output_semantics if calibration is not None else None
            evidence = (calibration.evidence, calibration.evidence_description) if calibration is not None else ((), "")
            mixed, record = self._accuracy_controlled(
                model_path, converted, int8, samples, specs, profile, semantics, evidence, out_dir, notes
            )
            if mixed is not None:
                variants.append(mixed)
            elif record is not None:
                # No mixed variant: the variant the search started from keeps what it judged.
                variants[variants.index(int8)] = replace(int8, options={**int8.options, "search": record})
        return variants

    def _accuracy_controlled(
        self,
        model_path: Path,
        converted: Any,
        int8: Variant,
        samples: Mapping[str, np.ndarray],
        specs: Sequence[TensorSpec],
        profile: HardwareProfile,
        output_semantics: Mapping[str, Any] | None,
        evidence: tuple[Sequence[Mapping[str, Any]], str],
        out_dir: Path,
        notes: list[str],
    ) -> tuple[Variant | None, dict[str, Any] | None]:
        """ov-ir-int8-mixed: when ov-ir-int8 is out of the profile's tolerance on the calibration
        samples, NNCF's quantization with accuracy control, judged by the engine's own comparator
        (per output and per slice, against the original model in onnxruntime): NNCF puts back
        in float the quantizers that cost the most until the model passes, within the profile's
        search budget. None, with a note saying why, otherwise. Beside it, the search's record
        (every candidate model NNCF had judged, the budget, why it stopped), which the variant
        carries, or else ov-ir-int8."""
        import nncf
        import onnx
        import openvino

        from workers.engine import mixed_precision
        from workers.engine.outputs import semantics_map
        from workers.engine.parity import Tolerance, compare_variant, run_session

        name = "ov-ir-int8-mixed"
        feeds = list(calibration_feeds(samples, specs))
        probe, where, sets = mixed_precision.probe_feeds(feeds, evidence[0], MIXED_PROBE_SAMPLES, evidence[1])
        tolerance = Tolerance.from_options(profile.options)
        budget, budget_note = mixed_precision.SearchBudget.for_build(profile.options)
        if budget_note:
            notes.append(budget_note)
        semantics = semantics_map(output_semantics)
        reference = mixed_precision._run(onnx.load(str(model_path)), probe)
        started = time.monotonic()
        session = self.load(int8.path)
        try:
            full = mixed_precision.judge_sets(reference, run_session(session, probe), tolerance, semantics, sets)
        finally:
            session.close()
        candidates = [
            mixed_precision.Candidate(
                "full INT8 (ov-ir-int8)", "full-int8", 0, mixed_precision.candidate_score(full), full.passed
            )
        ]
        quantizers_full = sum(op.get_type_name() == "FakeQuantize" for op in self._read(int8.path).get_ops())

        def record(stopped: str) -> dict[str, Any]:
            return {
                **budget.to_dict(),
                "spent_s": round(time.monotonic() - started, 1),
                "activations": quantizers_full,
                "float_unit": "quantizers",
                "stopped": stopped,
                "stopped_because": mixed_precision.STOPPED_REASONS.get(stopped, stopped),
                "candidates": [candidate.to_dict(quantizers_full) for candidate in candidates],
                "probe": where,
            }

        if full.passed:
            notes.append(f"{name} was not built: ov-ir-int8 is within the profile's tolerance on {where}.")
            return None, record("full-int8-passed")
        input_names = _port_names(converted, converted.inputs, "input_names")
        output_names = _port_names(converted, converted.outputs, "output_names")
        # NNCF validates the original model and its own full quantization first on the whole
        # probe; those are not candidates (the full INT8 model is judged above). Every later
        # call on the whole probe judges a model with some layers back in float; calls on
        # single samples are NNCF's per-sample bookkeeping.
        whole_probe_calls = 0
        cut = ""

        def validate(compiled: Any, items: Any) -> tuple[float, None]:
            # NNCF hands over the compiled model; 1 when it passes the engine's rule, else
            # below 1 by how far it is from passing, which NNCF ranks layer groups by.
            nonlocal whole_probe_calls, cut
            indices = list(items)
            if not cut:
                # One candidate kept back: the engine's own judgement of NNCF's result.
                if len(candidates) + 1 >= budget.max_candidates:
                    cut = "candidates"
                elif time.monotonic() - started >= budget.seconds:
                    cut = "budget"
            if cut:
                # NNCF has no time limit: past the budget the metric says "passes", so NNCF
                # stops at its next check; the engine's own judgement afterwards decides.
                return 1.0, None
            runner = OpenVinoSession(compiled, input_names, output_names)
            outputs = [runner.run(probe[index]) for index in indices]
            if len(indices) == len(probe):
                verdict = mixed_precision.judge_sets(reference, outputs, tolerance, semantics, sets)
            else:
                verdict = compare_variant([reference[index] for index in indices], outputs, tolerance, semantics)
            if len(indices) == len(probe) and len(probe) > 1:
                whole_probe_calls += 1
                if whole_probe_calls > 2:
                    label = f"NNCF candidate {len(candidates)}"
                    score = mixed_precision.candidate_score(verdict)
                    candidates.append(mixed_precision.Candidate(label, "nncf", None, score, verdict.passed))
                    if self.search_progress:
                        share = max(
                            (time.monotonic() - started) / budget.seconds, len(candidates) / budget.max_candidates
                        )
                        self.search_progress(
                            min(share, 1.0),
                            f"accuracy-controlled quantization: {len(candidates)} of at most "
                            f"{budget.max_candidates} candidate models judged",
                        )
            return mixed_precision.graded_metric(verdict), None

        try:
            with _quiet_nncf():
                restored = nncf.quantize_with_accuracy_control(
                    converted.clone(),
                    nncf.Dataset(feeds),
                    nncf.Dataset(list(range(len(probe)))),
                    validate,
                    max_drop=0.0,
                    preset=nncf.QuantizationPreset.PERFORMANCE,
                    subset_size=len(feeds),
                    # Each iteration puts one more group of layers back in float: one candidate.
                    advanced_accuracy_restorer_parameters=nncf.AdvancedAccuracyRestorerParameters(
                        max_num_iterations=budget.max_candidates
                    ),
                )
        except Exception as exc:  # NNCF raises whatever its passes raise
            notes.append(f"{name} was not built: NNCF's accuracy control failed: {_error_text(exc)}")
            return None, record(cut or "not-restored")
        seconds = time.monotonic() - started
        quantizers_kept = sum(op.get_type_name() == "FakeQuantize" for op in restored.get_ops())
        float_quantizers = quantizers_full - quantizers_kept
        check = OpenVinoSession(openvino.compile_model(restored, DEVICE), input_names, output_names)
        try:
            verdict = mixed_precision.judge_sets(reference, run_session(check, probe), tolerance, semantics, sets)
        finally:
            check.close()
        candidates.append(
            mixed_precision.Candidate(
                f"NNCF's result ({float_quantizers} quantizers removed)",
                "nncf",
                float_quantizers,
                mixed_precision.candidate_score(verdict),
                verdict.passed,
                chosen=verdict.passed,
            )
        )
        spent = _budget_words(cut, budget)
        if not verdict.passed:
            if cut:
                why = (
                    f"NNCF's accuracy control ran out of {spent} after {len(candidates)} candidate models; kept "
                    "what was measured (in the report), but none of them passed on "
                    f"{where}. Raise search_budget_s or search_max_candidates in the hardware profile's options "
                    "to search further."
                )
            else:
                why = (
                    f"NNCF's accuracy control did not bring the model within the profile's tolerance on {where}: "
                    f"{' '.join(verdict.reasons[:1])}"
                )
            notes.append(f"{name} was not built: {why}")
            return None, record(cut or "not-restored")
        if cut:
            notes.append(
                f"The {name} search ran out of {spent} after {len(candidates)} candidate models; kept what was "
                f"measured: NNCF's model with {float_quantizers} of {quantizers_full} quantizers removed passes, "
                "though fewer might. Raise search_budget_s or search_max_candidates in the hardware profile's "
                "options to search further."
            )
        target = out_dir / f"{name}.xml"
        openvino.save_model(restored, str(target), compress_to_fp16=False)
        options = {
            "preset": int8.options.get("preset"),
            "accuracy_control": "NNCF quantize_with_accuracy_control, the engine's parity rule as its metric",
            "quantizers_full": quantizers_full,
            "quantizers_kept": quantizers_kept,
            "full_int8_worst_slice_db": _rounded_db(mixed_precision.score_db(full)),
            "mixed_worst_slice_db": _rounded_db(mixed_precision.score_db(verdict)),
            "probe": where,
            "search_seconds": round(seconds, 1),
            "search": record(cut or "passed"),
            "reason": (
                f"ov-ir-int8 is out of tolerance on {where} ({' '.join(full.reasons[:1])}); NNCF's accuracy "
                f"control kept {float_quantizers} of its {quantizers_full} quantizers' layers in float, which "
                "brings it within tolerance."
            ),
        }
        variant = Variant(
            name=name,
            backend=self.name,
            path=target,
            format="openvino-ir",
            precision="int8",
            pass_name="nncf-quantize-accuracy-control",  # noqa: S106 - a pass, not a password
            options=options,
            tool_versions=dict(int8.tool_versions),
            files=(target, target.with_suffix(".bin")),
        )
        return variant, options["search"]

    @staticmethod
    def _read(path: Path) -> Any:
        import openvino

        return openvino.Core().read_model(str(path))

    # --- running ----------------------------------------------------------------------

    def load(self, variant_path: Path) -> OpenVinoSession:
        """Compile an IR variant (.xml, its .bin beside it) or an ONNX model on the CPU."""
        if not self.available():
            raise BackendNotInstalled(_NOT_INSTALLED)
        import openvino

        if variant_path.suffix.lower() not in (".xml", ".onnx"):
            raise ValueError(f"OpenVINO loads .xml (IR) or .onnx files, not '{variant_path.name}'.")
        core = openvino.Core()
        model = core.read_model(str(variant_path))
        config: dict[str, Any] = {}
        # A variant judged in another arithmetic (ov-ir-bf16) computes in it wherever it runs.
        asked = _recorded_precision(model)
        if asked or self.inference_precision:
            config["INFERENCE_PRECISION_HINT"] = asked or self.inference_precision
        if self.num_threads:
            config["INFERENCE_NUM_THREADS"] = self.num_threads
        known_inputs: list[str] | None = None
        known_outputs: list[str] | None = None
        if variant_path.suffix.lower() == ".onnx":  # OpenVINO may have dropped some of its names
            graph = load_graph(variant_path).graph
            known_inputs = [spec.name for spec in graph_input_specs(graph)]
            known_outputs = [value.name for value in graph.output]
        compiled = core.compile_model(model, DEVICE, config)
        if asked:
            _check_precision(compiled, asked, variant_path)
        input_names = _port_names(model, model.inputs, "input_names", known_inputs)
        output_names = _port_names(model, model.outputs, "output_names", known_outputs)
        return OpenVinoSession(compiled, input_names, output_names)


# --- variant builders -------------------------------------------------------------------

# The accuracy-controlled quantization judges candidates on this many calibration samples.
MIXED_PROBE_SAMPLES = 8


def _rounded_db(value: float) -> float | None:
    return round(value, 1) if math.isfinite(value) else None


def _save_fp32(model: Any, target: Path) -> dict[str, Any]:
    import openvino

    openvino.save_model(model, str(target), compress_to_fp16=False)
    return {"pass_name": "ov-convert-model", "compress_to_fp16": False}


def _save_fp16_weights(model: Any, target: Path) -> dict[str, Any]:
    import openvino

    openvino.save_model(model, str(target), compress_to_fp16=True)
    return {
        "pass_name": "ov-fp16-weights",
        "compress_to_fp16": True,
        "weights": "fp16",
        "compute": "the device's inference precision: the weights are decompressed when the model is compiled",
    }


def _bf16_builder(profile: HardwareProfile) -> tuple[Callable[[Any, Path], dict[str, Any]] | None, str]:
    """The ov-ir-bf16 builder for `profile`, or None and the sentence saying why it is not built.

    BF16 is built only where it is the CPU's own arithmetic: the profile's CPU (its declared
    `arch`/`cpu_flags`, else this worker's) must have AMX-BF16 or AVX512-BF16, and so must this
    worker, since parity and the benchmark run here. Elsewhere OpenVINO runs such a variant in
    FP32, or emulates BF16 more slowly, and the variant would not be what its numbers say.
    """
    arch, flags = cpu_features()
    target_arch, target_flags = target_cpu(profile.options, arch, flags)
    target = bf16_arithmetic(target_arch, target_flags)
    if target is None:
        return None, (
            f"ov-ir-bf16 was not built: the profile's CPU ({target_arch or 'unknown'}) has no native BF16 "
            "arithmetic (AMX-BF16 or AVX512-BF16), where OpenVINO would compute it in FP32 or emulate it "
            "more slowly."
        )
    if bf16_arithmetic(arch, flags) is None:
        return None, (
            f"ov-ir-bf16 was not built: the profile's CPU computes in BF16 ({target}) but this worker's CPU "
            "does not, so parity and timings measured here would not be the variant's. Serve the profile's "
            "queue from a worker with that CPU."
        )

    def build(model: Any, path: Path) -> dict[str, Any]:
        import openvino

        model.set_rt_info(json.dumps("bf16"), [_RT_INFO_KEY, _PRECISION_KEY])
        openvino.save_model(model, str(path), compress_to_fp16=False)
        return {
            "pass_name": "ov-bf16-inference",
            "arithmetic": "bf16 (the CPU plugin's inference_precision)",
            "weights": "fp32 in the file, converted to bf16 when the model is compiled",
            "cpu": target,
            "reason": (
                f"The CPU computes in BF16 natively ({target}): float layers run on its BF16 units with FP32's "
                "range and 8 bits of mantissa, no calibration needed; parity judges what the 8 bits cost."
            ),
        }

    return build, ""


def _recorded(model: Any, key: str) -> Any:
    """What build_variants recorded under `key` in the IR's rt_info (JSON), or None."""
    if not model.has_rt_info([_RT_INFO_KEY, key]):
        return None
    with contextlib.suppress(ValueError, TypeError):
        return json.loads(str(model.get_rt_info([_RT_INFO_KEY, key]).value))
    return None


def _recorded_precision(model: Any) -> str | None:
    """The arithmetic the IR was built for ("bf16"), or None for the backend's own."""
    value = _recorded(model, _PRECISION_KEY)
    return value if isinstance(value, str) and value else None


def _check_precision(compiled: Any, asked: str, variant_path: Path) -> None:
    """Raise when the CPU plugin did not take the variant's arithmetic (a CPU without BF16 runs
    FP32 instead): what such a session measured would not be the variant's."""
    used = compiled.get_property("INFERENCE_PRECISION_HINT")
    used_name = used.get_type_name() if hasattr(used, "get_type_name") else str(used)
    if used_name != asked:
        raise RuntimeError(
            f"{variant_path.stem} computes in {asked}, which this CPU does not: OpenVINO would run it in "
            f"{used_name}, so what it measured here would not be the variant's. Run it on a CPU with native "
            f"{asked} arithmetic (AMX or AVX512-BF16 for bf16)."
        )


def _int8_quantizer(
    calibration: Calibration, samples: Mapping[str, np.ndarray], specs: Sequence[TensorSpec]
) -> Callable[[Any, Path], dict[str, Any]]:
    def build(model: Any, target: Path) -> dict[str, Any]:
        import nncf
        import openvino

        feeds = list(calibration_feeds(samples, specs))
        with _quiet_nncf():
            quantized = nncf.quantize(
                model, nncf.Dataset(feeds), preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(feeds)
            )
        openvino.save_model(quantized, str(target), compress_to_fp16=False)
        options: dict[str, Any] = {
            "pass_name": "nncf-quantize",
            "preset": "performance (symmetric INT8 activations and weights)",
            "weights": "int8, per channel",
            "activations": "int8, per tensor",
            "calibration_batches": len(feeds),
            "range_estimation": "NNCF's default",
        }
        if calibration.method != "minmax":
            options["calibrate_method_ignored"] = (
                f"The requested '{calibration.method}' calibration method has no direct NNCF setting; "
                "NNCF's default range estimation was used."
            )
        return options

    return build


def _compress_weights_int8(model: Any, target: Path) -> dict[str, Any]:
    import nncf
    import openvino

    with _quiet_nncf():
        compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    openvino.save_model(compressed, str(target), compress_to_fp16=False)
    return {
        "pass_name": "nncf-compress-weights",
        "mode": "int8_asym",
        "weights": "int8, per channel, asymmetric",
        "activations": "unchanged (float)",
    }


def _budget_words(cut: str, budget: Any) -> str:
    """ "its 120 s budget" or "its budget of 300 candidate models", for the limit that ran out."""
    if cut == "candidates":
        return f"its budget of {budget.max_candidates} candidate models"
    return f"its {budget.seconds:g} s budget"


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF draws progress bars and logs tables on stdout; a worker's stdout is its log."""
    nncf_logger = logging.getLogger("nncf")
    previous = nncf_logger.level
    nncf_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        nncf_logger.setLevel(previous)


def _remove_ir(target: Path) -> None:
    target.unlink(missing_ok=True)
    target.with_suffix(".bin").unlink(missing_ok=True)


def _port_names(model: Any, ports: Sequence[Any], key: str, known: Sequence[str] | None = None) -> tuple[str, ...]:
    """The name of each input or output: the ONNX model's, from `known` (read from an ONNX
    file) or as recorded at build time.

    A port can carry several tensor names (an Identity output shares its input's tensor), and
    OpenVINO drops the name of a tensor it folds away: an input that feeds straight into an
    Identity or Dropout keeps only the name of that node's output. A known name is used where
    it is one of its port's names or no port's name at all (folded away); otherwise a model
    output is named like its Result, and an input by any of its names.
    """
    recorded: Any = list(known) if known is not None else _recorded(model, key)
    if isinstance(recorded, list) and len(recorded) == len(ports):
        everywhere = {name for port in ports for name in port.get_names()}
        if all(
            isinstance(name, str) and (name in port.get_names() or name not in everywhere)
            for name, port in zip(recorded, ports, strict=True)
        ):
            return tuple(recorded)
    results = model.get_results() if key == "output_names" else [None] * len(ports)
    names: list[str] = []
    for port, result in zip(ports, results, strict=True):
        candidates = port.get_names()
        chosen = port.get_any_name() if candidates else f"{key.removesuffix('_names')}_{len(names)}"
        own = result.get_friendly_name().removesuffix("/sink_port_0") if result is not None else ""
        names.append(own if own in candidates else chosen)
    return tuple(names)


# --- converted graph: the facts the support report needs --------------------------------


@dataclass
class _OvOp:
    """One OpenVINO operation, as plain data (OpenVINO objects must not outlive the frontend)."""

    name: str
    type_name: str
    output_names: tuple[str, ...]
    consumers: list[int] = field(default_factory=list)
    producers: list[int] = field(default_factory=list)
    onnx_type: tuple[str, str] | None = None  # (domain, op_type) of a framework node
    bodies: list[list[_OvOp]] = field(default_factory=list)  # If/Loop/TensorIterator bodies


@dataclass
class _ConvertedGraph:
    ops: list[_OvOp]
    placement: dict[str, str]  # friendly name -> device, from query_model
    failures: dict[str, str] = field(default_factory=dict)  # "domain.Op" or "Op" -> frontend message
    notes: list[str] = field(default_factory=list)
    judged: bool = True  # False when the plugin refused to judge the graph at all


def _read_converted(model_path: Path) -> _ConvertedGraph:
    """The fully converted model; raises when the frontend cannot convert every operator."""
    import openvino

    core = openvino.Core()
    model = core.read_model(str(model_path))
    try:
        placement = dict(core.query_model(model, DEVICE))
    except Exception as exc:  # the plugin refuses the graph as a whole
        note = f"The CPU plugin could not judge the model: {_error_text(exc)}"
        return _ConvertedGraph(ops=_collect_ops(model), placement={}, notes=[note], judged=False)
    return _ConvertedGraph(ops=_collect_ops(model), placement=placement)


def _read_partially_converted(model_path: Path, onnx_model: ModelProto, failures: dict[str, str]) -> _ConvertedGraph:
    """Convert what the frontend can; its framework nodes are cut out before the plugin is asked."""
    import openvino
    from openvino.frontend import FrontEndManager

    # Framework nodes are objects of the frontend's library: the manager that loaded it must
    # outlive every object of the model, so nothing of the model leaves this function.
    manager = FrontEndManager()
    frontend = manager.load_by_framework("onnx")
    input_model = frontend.load(str(model_path))
    model = frontend.convert_partially(input_model)
    try:
        ops = _collect_ops(model)
        notes: list[str] = []
        judged = True
        try:
            cut = _cut_framework_nodes(model, onnx_model, notes)
            placement = dict(openvino.Core().query_model(cut, DEVICE))
            del cut
        except Exception as exc:  # the cut graph does not validate, or the plugin refuses it
            placement, judged = {}, False
            notes.append(f"The CPU plugin could not judge the partially converted model: {_error_text(exc)}")
        return _ConvertedGraph(ops=ops, placement=placement, failures=failures, notes=notes, judged=judged)
    finally:
        del model, input_model


def _conversion_failures(text: str) -> dict[str, str]:
    """Why each operator failed to convert, per "domain.Op" key, from the frontend's error.

    The error reads "-- No conversion rule found for operations: Det-22, com.example.Foo"
    and, for converters that threw, "-- Resize-18 with a message:" followed by the message.
    """
    failures: dict[str, str] = {}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        no_rule = re.match(r"-- No conversion rule found for operations: (.*)", line)
        if no_rule:
            for item in no_rule.group(1).split(","):
                key = _failure_key(item)
                failures.setdefault(key, f"OpenVINO's ONNX frontend has no conversion rule for {key}.")
            continue
        threw = re.match(r"-- (\S+) with a message:", line)
        if threw:
            message = []
            for following in lines[index + 1 :]:
                if following.startswith("-- ") or following.startswith("Summary:"):
                    break
                if following.strip():
                    message.append(following.strip())
            key = _failure_key(threw.group(1))
            failures[key] = f"OpenVINO's ONNX frontend failed to convert {key}: " + " ".join(message)
    for key, reason in failures.items():
        failures[key] = reason[:_MAX_REASON_CHARS]
    return failures


def _failure_key(item: str) -> str:
    """ "Det-22" -> "Det"; "com.example.Foo" stays."""
    return re.sub(r"-\d+$", "", item.strip())


def _collect_ops(model: Any) -> list[_OvOp]:
    ops = model.get_ordered_ops()
    index = {op.get_instance_id(): position for position, op in enumerate(ops)}
    collected = []
    for op in ops:
        names: list[str] = []
        for output in op.outputs():
            names.extend(sorted(output.get_names()))
        onnx_type = None
        if op.get_type_name() in _FRAMEWORK_NODE_TYPES:
            attributes = op.get_attributes()
            onnx_type = (attributes.get("ONNX_META_domain") or DEFAULT_DOMAIN, attributes.get("ONNX_META_type", ""))
        bodies = [_collect_ops(body) for body in _bodies(op)]
        collected.append(
            _OvOp(op.get_friendly_name(), op.get_type_name(), tuple(names), onnx_type=onnx_type, bodies=bodies)
        )
    for position, op in enumerate(ops):
        for value in op.input_values():
            producer = index.get(value.get_node().get_instance_id())
            if producer is not None:
                collected[position].producers.append(producer)
                collected[producer].consumers.append(position)
    return collected


def _bodies(op: Any) -> list[Any]:
    if op.get_type_name() == "If":
        return [op.get_then_body(), op.get_else_body()]
    if op.get_type_name() in ("Loop", "TensorIterator"):
        return [op.get_function()]
    return []


def _cut_framework_nodes(model: Any, onnx_model: ModelProto, notes: list[str]) -> Any:
    """A model where each framework node (or op holding one in a body) is replaced by
    parameters for its outputs and results for its inputs, so the plugin can judge the rest."""
    import openvino
    from openvino import opset13

    value_types = _onnx_value_types(onnx_model)
    parameters = list(model.get_parameters())
    results = list(model.get_results())
    for op in model.get_ordered_ops():
        if not _holds_framework_node(op):
            continue
        for value in op.input_values():
            results.append(opset13.result(value))
        for output in op.outputs():
            element_type, shape = output.get_element_type(), output.get_partial_shape()
            known = next((value_types[name] for name in output.get_names() if name in value_types), None)
            if known is not None:
                element_type, shape = openvino.Type(known[0]), openvino.PartialShape(list(known[1]))
            elif element_type.is_dynamic or shape.rank.is_dynamic:
                # The plugin judges few operations of unknown rank: assume the operator keeps
                # its first input's type and shape, as element-wise custom operators do.
                if op.get_input_size():
                    element_type = op.input_value(0).get_element_type()
                    shape = op.input_value(0).get_partial_shape()
                notes.append(
                    f"The type of '{output.get_any_name() if output.get_names() else op.get_friendly_name()}' "
                    "(made by an operator OpenVINO could not convert) is unknown; the operations after it were "
                    "judged assuming it has the type and shape of that operator's first input."
                )
            parameter = opset13.parameter(shape, element_type if not element_type.is_dynamic else openvino.Type.f32)
            for target in list(output.get_target_inputs()):
                target.replace_source_output(parameter.output(0))
            parameters.append(parameter)
    cut = openvino.Model(results, parameters, "cut")
    cut.validate_nodes_and_infer_types()
    return cut


def _holds_framework_node(op: Any) -> bool:
    if op.get_type_name() in _FRAMEWORK_NODE_TYPES:
        return True
    return any(_holds_framework_node(inner) for body in _bodies(op) for inner in body.get_ordered_ops())


def _onnx_value_types(onnx_model: ModelProto) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """Tensor name -> (numpy dtype, shape with -1 for unknown dims) where shape inference knows them."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(onnx_model)
    except Exception:  # custom domains and broken models: use what the file declares
        inferred = onnx_model
    known: dict[str, tuple[Any, tuple[int, ...]]] = {}
    graph = inferred.graph
    for value in [*graph.value_info, *graph.output, *graph.input]:
        tensor_type = value.type.tensor_type
        if not value.type.HasField("tensor_type") or not tensor_type.elem_type or not tensor_type.HasField("shape"):
            continue
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        except (KeyError, ValueError, TypeError):
            continue
        dims = tuple(dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor_type.shape.dim)
        known[value.name] = (dtype, dims)
    return known


# --- mapping OpenVINO operations back to ONNX nodes ---------------------------------------


def _node_statuses(
    nodes: list[_OnnxNode], graph: _ConvertedGraph
) -> tuple[dict[str, tuple[SupportStatus, str, str]], list[str]]:
    """(label -> (status, device, reason), labels of nodes that have no operation of their own)."""
    index = _NodeIndex(nodes)
    # label -> (operation, why it cannot run or "" when it can)
    owners: dict[str, list[tuple[_OvOp, str]]] = {}

    def visit(ops: list[_OvOp], enclosing: tuple[str, str] | None) -> None:
        labels = _assign(ops, index)
        for op, label in zip(ops, labels, strict=True):
            reason = _refusal(op, graph, enclosing)
            if label is not None:
                owners.setdefault(label, []).append((op, reason))
            for body in op.bodies:
                visit(body, (label or op.name, reason))

    visit(graph.ops, None)
    statuses: dict[str, tuple[SupportStatus, str, str]] = {}
    folded = []
    for node in nodes:
        # A framework node's reason names the operator that failed, so it goes first.
        owned = sorted(owners.get(node.label, []), key=lambda entry: entry[0].onnx_type is None)
        reasons = [reason for _, reason in owned if reason]
        if not owned:
            folded.append(node.label)
            statuses[node.label] = ("supported", DEVICE, "")
        elif reasons:
            statuses[node.label] = ("unsupported", "", reasons[0])
        else:
            statuses[node.label] = ("supported", DEVICE, "")
    return statuses, folded


class _NodeIndex:
    """Finds the ONNX node an OpenVINO operation was converted from (see the module docstring)."""

    # The frontend drops these and gives their output tensor name to the operation that
    # made their input, so that name points at the node that really made the operation.
    PASS_THROUGH = ("Identity", "Dropout")

    def __init__(self, nodes: list[_OnnxNode]) -> None:
        self.by_name = {node.name: node.label for node in nodes if node.name and node.unique_name}
        self.by_output: dict[str, str] = {}
        for node in nodes:
            for output in node.outputs:
                self.by_output.setdefault(output, node.label)
        self.order = {node.label: position for position, node in enumerate(nodes)}
        self.source: dict[str, str] = {}
        for node in nodes:
            if node.op_type in self.PASS_THROUGH and node.domain == DEFAULT_DOMAIN and node.inputs:
                producer = self.by_output.get(node.inputs[0])
                if producer is not None:
                    self.source[node.label] = producer

    def direct_label(self, op: _OvOp) -> str | None:
        """The node named by the operation itself, or None for helpers that need the graph."""
        label = self.by_name.get(op.name)
        if label is None:
            produced = {self.by_output[name] for name in op.output_names if name in self.by_output}
            label = min(produced, key=self.order.__getitem__) if produced else None
        prefix = op.name
        while label is None and "/" in prefix:
            prefix = prefix.rsplit("/", 1)[0]
            label = self.by_name.get(prefix) or self.by_output.get(prefix)
        if op.type_name == "Identity":
            return label  # an Identity the frontend kept (it does for model outputs)
        seen = set()
        while label in self.source and label not in seen:
            seen.add(label)
            label = self.source[label]
        return label


def _assign(ops: list[_OvOp], index: _NodeIndex) -> list[str | None]:
    """The ONNX node label each operation of one graph belongs to (None for inputs and outputs)."""
    direct = [None if op.type_name in ("Parameter", "Result") else index.direct_label(op) for op in ops]
    labels = list(direct)
    for position, op in enumerate(ops):
        if direct[position] is None and op.type_name not in ("Parameter", "Result"):
            labels[position] = _nearest_label(ops, direct, position, "consumers") or _nearest_label(
                ops, direct, position, "producers"
            )
    return labels


def _nearest_label(ops: list[_OvOp], labels: list[str | None], start: int, direction: str) -> str | None:
    seen = {start}
    queue = deque(getattr(ops[start], direction))
    while queue:
        position = queue.popleft()
        if position in seen:
            continue
        seen.add(position)
        if labels[position] is not None:
            return labels[position]
        queue.extend(getattr(ops[position], direction))
    return None


def _refusal(op: _OvOp, graph: _ConvertedGraph, enclosing: tuple[str, str] | None) -> str:
    """Why the CPU cannot run this operation, or "" when it can.

    `enclosing` is (label, refusal) of the If/Loop whose body holds the operation: the plugin
    names only top-level operations, and a body runs where its If/Loop runs.
    """
    if op.onnx_type is not None:
        return _framework_reason(op, graph.failures)
    if _holds_framework(op):
        return "A subgraph of this node holds operators OpenVINO's ONNX frontend cannot convert."
    if enclosing is not None:
        label, refusal = enclosing
        return f"It runs inside a subgraph of '{label}', which OpenVINO cannot run." if refusal else ""
    if op.name in graph.placement:
        return ""
    if not graph.judged:
        return "OpenVINO's CPU plugin could not judge this model (see the notes)."
    return f"OpenVINO's CPU plugin does not run the {op.type_name} operation this node converts to."


def _holds_framework(op: _OvOp) -> bool:
    return any(inner.onnx_type is not None or _holds_framework(inner) for body in op.bodies for inner in body)


def _framework_reason(op: _OvOp, failures: Mapping[str, str]) -> str:
    domain, op_type = op.onnx_type or (DEFAULT_DOMAIN, op.type_name)
    key = op_type if domain == DEFAULT_DOMAIN else f"{domain}.{op_type}"
    return failures.get(key) or f"OpenVINO's ONNX frontend could not convert {key}."


# --- reading ONNX models ------------------------------------------------------------------


@dataclass(frozen=True)
class _OnnxNode:
    """A node of the uploaded model with the unique label the report uses for it."""

    label: str
    name: str
    unique_name: bool
    domain: str
    op_type: str
    top_level: bool
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _label_nodes(model: ModelProto) -> list[_OnnxNode]:
    """Every node (main graph in topological order, then into subgraphs), labelled by
    `label_nodes` (the labels the onnxruntime backend uses too)."""
    return [
        _OnnxNode(
            item.label,
            item.node.name,
            item.unique_name,
            item.node.domain or DEFAULT_DOMAIN,
            item.node.op_type,
            item.top_level,
            tuple(item.node.input),
            tuple(name for name in item.node.output if name),
        )
        for item in label_nodes(model, _node_inputs)
    ]


def _node_inputs(node: NodeProto) -> list[str]:
    """The node's inputs and every name its subgraphs read (outer-scope names among them)."""
    names = [name for name in node.input if name]
    for attribute in node.attribute:
        for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
            for inner in subgraph.node:
                names.extend(_node_inputs(inner))
    return names


# --- small helpers --------------------------------------------------------------------------


def _openvino_version() -> str | None:
    """OpenVINO's full build version, or None when it cannot be imported here."""
    try:
        import openvino
    except (ImportError, OSError):  # OSError: its native libraries are missing
        return None
    return str(openvino.__version__)


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _error_text(exc: BaseException) -> str:
    """An OpenVINO error without its "Exception from src/...cpp:84:" and "Check ... failed" lines."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    kept = [line for line in lines if not re.match(r"^(Exception from |Check '.*' failed at )\S+", line)]
    return " ".join(kept or lines or [type(exc).__name__])[:_MAX_REASON_CHARS]


def _short_list(labels: Sequence[str], limit: int = 10) -> str:
    return ", ".join(labels[:limit]) + ("..." if len(labels) > limit else "") + "."
