"""XGBoost and LightGBM boosters, from their own model files, to ONNX with onnxmltools.

Both formats are data, not code: XGBoost's JSON or UBJSON model (`save_model("model.json")`
or `"model.ubj"`) and LightGBM's text model (`booster.save_model("model.txt")`). Each is
loaded into the framework's Booster, converted by onnxmltools, and checked against
`Booster.predict` on the same rows: predicted labels must match exactly, probabilities and
regression values within the tolerances.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.errors import ModelError
from workers.engine.importers.base import (
    Importer,
    ImportOptions,
    ImportParity,
    ImportReport,
    InputSpec,
    ProgressCallback,
)
from workers.engine.importers.parity import (
    DEFAULT_INPUT_NAME,
    align_output,
    check_onnx,
    compare,
    compare_labels,
    run_onnx,
    save_onnx,
    tabular_parity_inputs,
    tabular_report,
)

if TYPE_CHECKING:
    import onnx

_HEAD_BYTES = 1024
# UBJSON type markers that may give the length of an object's first key.
_UBJSON_INT_MARKERS = b"iUIlL"
_LIGHTGBM_MAGIC = b"tree\nversion="
# The header of a LightGBM text model (before the first tree) is a few kilobytes.
_LIGHTGBM_HEADER_BYTES = 2**20
# Objectives whose booster.predict gives class labels rather than probabilities.
_XGBOOST_LABEL_OBJECTIVES = frozenset({"multi:softmax", "binary:hinge"})
_LIGHTGBM_CLASSIFIER_OBJECTIVES = frozenset({"binary", "multiclass", "softmax", "multiclassova", "multiclass_ova"})


class _BoosterImporter(Importer):
    """A booster of the framework named `framework` (also its module's name), converted by onnxmltools."""

    method = ""  # the onnxmltools function that converts it, as the report names it

    def framework_version(self) -> str | None:
        """The framework's version; None unless onnxmltools is installed too."""
        if not _installed(self.framework, "onnxmltools"):
            return None
        return str(importlib.import_module(self.framework).__version__)

    def _report(
        self,
        framework_version: str,
        proto: onnx.ModelProto,
        onnx_path: Path,
        files: tuple[Path, ...],
        specs: Sequence[InputSpec],
        parity: tuple[ImportParity, ...],
        assumptions: Sequence[str],
        notes: Sequence[str],
    ) -> ImportReport:
        import onnxmltools

        return tabular_report(
            self,
            framework_version=framework_version,
            converter="onnxmltools",
            converter_version=str(onnxmltools.__version__),
            method=self.method,
            proto=proto,
            onnx_path=onnx_path,
            files=files,
            specs=specs,
            parity=parity,
            assumptions=assumptions,
            notes=notes,
        )


class XGBoostImporter(_BoosterImporter):
    """XGBoost models saved as JSON or UBJSON, converted by onnxmltools' `convert_xgboost`."""

    format = "xgboost"
    framework = "xgboost"
    install_hint = "pip install xgboost-cpu onnxmltools"
    method = "convert_xgboost"

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """XGBoost's JSON (`{"learner": ...}` ending with "version") or UBJSON model."""
        with path.open("rb") as stream:
            head = stream.read(_HEAD_BYTES)
            stream.seek(max(0, path.stat().st_size - _HEAD_BYTES))
            tail = stream.read(_HEAD_BYTES)
        if head[:1] == b"{" and head[1:2] in _UBJSON_INT_MARKERS:
            # {, the key's length (a type marker then 1 to 8 bytes), then the key itself.
            return b"learner" in head[2:18] and b"version" in tail
        text = head.lstrip()
        return text[:1] == b"{" and text[1:].lstrip().startswith(b'"learner"') and b'"version"' in tail

    def convert(self, source: Path, out_dir: Path, options: ImportOptions, progress: ProgressCallback) -> ImportReport:
        """Load into xgboost.Booster, convert with onnxmltools, compare with Booster.predict."""
        import onnxmltools
        import xgboost

        progress(0.0, "Loading the XGBoost model")
        booster = xgboost.Booster()
        try:
            # From bytes, so that XGBoost reads JSON or UBJSON by content, not by file name.
            booster.load_model(bytearray(source.read_bytes()))
        except xgboost.core.XGBoostError as exc:
            raise ModelError(
                "invalid_model",
                f"XGBoost could not read the model ({_first_line(exc)}). Save it with "
                "booster.save_model('model.json') or 'model.ubj' and re-upload.",
            ) from exc
        learner = json.loads(booster.save_config())["learner"]
        objective = str(learner["objective"]["name"])
        _check_xgboost_supported(booster, learner)
        assumptions: list[str] = []
        notes = [f"XGBoost objective {objective}."]
        specs = _tree_inputs(options, booster.num_features(), "num_features()", assumptions)

        progress(0.3, "Converting with onnxmltools")
        proto = _convert(onnxmltools.convert_xgboost, booster, specs[0], options.opset)
        onnx_path, files = _finish(proto, out_dir, options.opset, notes)

        progress(0.7, "Comparing ONNX Runtime with XGBoost")
        feeds = tabular_parity_inputs(specs, options, notes)
        matrix = xgboost.DMatrix(
            feeds[specs[0].name], feature_names=booster.feature_names, feature_types=booster.feature_types
        )
        names = [output.name for output in proto.graph.output]
        reference = booster.predict(matrix)
        converted = run_onnx(onnx_path, feeds)
        if objective == "multi:softmax":
            # predict gives labels, and onnxmltools leaves the scores untransformed.
            margins = booster.predict(matrix, output_margin=True)
            parity = _classifier_parity(names, margins, converted, options, reference)
            notes.append(
                "Objective multi:softmax: the 'probabilities' output holds raw margins (before softmax), as "
                "booster.predict(output_margin=True) gives them."
            )
        elif objective in _XGBOOST_LABEL_OBJECTIVES:
            raise ModelError(
                "unsupported_model",
                f"Slipway can't check a model with objective {objective}, whose predictions are labels without "
                "scores. Train with binary:logistic or multi:softprob.",
            )
        else:
            parity = _booster_parity(names, reference, converted, options)
        progress(1.0, "Converted")
        return self._report(str(xgboost.__version__), proto, onnx_path, files, specs, parity, assumptions, notes)


class LightGBMImporter(_BoosterImporter):
    """LightGBM text models, converted by onnxmltools' `convert_lightgbm` (which takes a Booster)."""

    format = "lightgbm"
    framework = "lightgbm"
    install_hint = "pip install lightgbm onnxmltools"
    method = "convert_lightgbm"

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """LightGBM's text model, which starts "tree\\nversion="."""
        with path.open("rb") as stream:
            return stream.read(len(_LIGHTGBM_MAGIC)) == _LIGHTGBM_MAGIC

    def convert(self, source: Path, out_dir: Path, options: ImportOptions, progress: ProgressCallback) -> ImportReport:
        """Load into lightgbm.Booster, convert with onnxmltools, compare with Booster.predict."""
        import lightgbm
        import onnxmltools

        progress(0.0, "Loading the LightGBM model")
        header = _lightgbm_header(source)
        try:
            booster = lightgbm.Booster(model_file=str(source))
        except lightgbm.basic.LightGBMError as exc:
            raise ModelError(
                "invalid_model",
                f"LightGBM could not read the model ({_first_line(exc)}). Save it with "
                "booster.save_model('model.txt') and re-upload.",
            ) from exc
        objective = header.get("objective", "")
        assumptions: list[str] = []
        notes = [f"LightGBM objective {objective or 'unknown'}."]
        specs = _tree_inputs(options, booster.num_feature(), "num_feature()", assumptions)
        classifier = objective.split(" ")[0] in _LIGHTGBM_CLASSIFIER_OBJECTIVES

        progress(0.3, "Converting with onnxmltools")
        proto = _convert(onnxmltools.convert_lightgbm, booster, specs[0], options.opset, zipmap=False)
        if classifier:
            notes.append("ZipMap disabled: class probabilities are a plain float tensor, not a list of maps.")
        onnx_path, files = _finish(proto, out_dir, options.opset, notes)

        progress(0.7, "Comparing ONNX Runtime with LightGBM")
        feeds = tabular_parity_inputs(specs, options, notes)
        names = [output.name for output in proto.graph.output]
        reference = booster.predict(feeds[specs[0].name])
        converted = run_onnx(onnx_path, feeds)
        parity = _booster_parity(names, reference, converted, options)
        progress(1.0, "Converted")
        return self._report(str(lightgbm.__version__), proto, onnx_path, files, specs, parity, assumptions, notes)


def _installed(*names: str) -> bool:
    from importlib.util import find_spec

    return all(find_spec(name) is not None for name in names)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_xgboost_supported(booster: Any, learner: dict[str, Any]) -> None:
    kind = learner["gradient_booster"]["name"]
    if kind == "gblinear":
        raise ModelError(
            "unsupported_model",
            "The model uses XGBoost's linear booster (gblinear), which onnxmltools can't convert. "
            "Train with booster='gbtree' or 'dart'.",
        )
    if int(learner["learner_model_param"].get("num_target", "1")) > 1:
        raise ModelError(
            "unsupported_model",
            "The model predicts several targets at once, which onnxmltools can't convert. Train one model per target.",
        )
    if booster.feature_types and "c" in booster.feature_types:
        raise ModelError(
            "unsupported_model",
            "The model splits on categorical features (enable_categorical), which onnxmltools can't convert. "
            "One-hot or ordinal-encode those features and train again.",
        )


def _lightgbm_header(path: Path) -> dict[str, str]:
    """The key=value lines before the first tree (objective, num_class, ...)."""
    with path.open("rb") as stream:
        head = stream.read(_LIGHTGBM_HEADER_BYTES).decode("utf-8", errors="replace")
    header: dict[str, str] = {}
    for line in head.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition("=")
        if sep:
            header[key.strip()] = value.strip()
    return header


def _tree_inputs(options: ImportOptions, n_features: int, source: str, assumptions: list[str]) -> tuple[InputSpec]:
    """The one float32 [batch, n_features] input a booster takes, as declared or assumed."""
    if not options.inputs:
        assumptions.append(
            f"One input '{DEFAULT_INPUT_NAME}': float32 [batch, {n_features}] from the booster's {source}."
        )
        return (InputSpec(DEFAULT_INPUT_NAME, (None, n_features), "float32"),)
    spec = options.inputs[0]
    if len(options.inputs) != 1 or spec.dtype != "float32" or len(spec.shape) != 2 or spec.shape[1] != n_features:
        declared = ", ".join(f"{s.name} {s.dtype} {list(s.shape)}" for s in options.inputs)
        raise ModelError(
            "invalid_inputs",
            f"A gradient-boosted model takes one float32 input of shape [batch, {n_features}], but the upload "
            f"declares {declared}. Declare one input of that shape, or none to let Slipway name it 'input'.",
        )
    return (spec,)


def _convert(convert: Any, booster: Any, spec: InputSpec, opset: int | None, **extra: Any) -> onnx.ModelProto:
    from onnxmltools.convert.common.data_types import FloatTensorType

    try:
        return convert(
            booster,
            initial_types=[(spec.name, FloatTensorType([None, spec.shape[1]]))],
            target_opset=opset,
            **extra,
        )
    except Exception as exc:  # onnxmltools raises RuntimeError, ValueError, KeyError, NotImplementedError...
        raise ModelError(
            "conversion_failed",
            f"onnxmltools could not convert the booster ({_first_line(exc)}). Try another opset (onnxmltools "
            "supports up to 15 for tree models), or report the model to Slipway.",
        ) from exc


def _finish(
    proto: onnx.ModelProto, out_dir: Path, opset: int | None, notes: list[str]
) -> tuple[Path, tuple[Path, ...]]:
    """Repair what onnxmltools leaves out or declares wrong, save, and run the checker."""
    from onnxmltools.convert.common.onnx_ex import DEFAULT_OPSET_NUMBER

    if not any(entry.domain in ("", "ai.onnx") for entry in proto.opset_import):
        # Tree-only graphs use the ai.onnx.ml domain alone; tools that rewrite graphs
        # (optimizers, version converters) expect the default domain to be imported too.
        entry = proto.opset_import.add()
        entry.domain, entry.version = "", opset or DEFAULT_OPSET_NUMBER
        notes.append(f"Added the default ONNX domain at opset {entry.version}: the converter only imported ai.onnx.ml.")
    fixed = _free_batch_dims(proto)
    if fixed:
        notes.append(f"Declared batch dimension of {', '.join(fixed)} changed from 1 to dynamic (a converter quirk).")
    onnx_path, files = save_onnx(proto, out_dir)
    check_onnx(onnx_path)
    return onnx_path, files


def _free_batch_dims(proto: onnx.ModelProto) -> list[str]:
    """Outputs whose batch dim is declared 1 while the input's is dynamic; each row gives one
    output row, so the declared 1 is wrong and runtimes warn on every call."""
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if batch.HasField("dim_value"):
        return []
    fixed = []
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].Clear()
            if batch.HasField("dim_param"):
                dims[0].dim_param = batch.dim_param
            fixed.append(output.name)
    return fixed


def _classifier_parity(
    names: Sequence[str],
    probabilities: Any,
    converted: Sequence[Any],
    options: ImportOptions,
    labels: Any = None,
) -> tuple[ImportParity, ...]:
    """Labels exactly (from `labels`, else the most probable class), probabilities within tolerance.

    A binary booster gives the positive class's probability only; it is compared with
    the ONNX model's second column.
    """
    import numpy as np

    probabilities = np.asarray(probabilities)
    if labels is None:
        labels = (probabilities > 0.5).astype(np.int64) if probabilities.ndim == 1 else probabilities.argmax(axis=1)
    label = compare_labels(names[0], labels, converted[0])
    reference, got = align_output(probabilities, converted[1])
    return (label, *compare([names[1]], [reference], [got], options))


def _regressor_parity(
    names: Sequence[str], reference: Any, converted: Sequence[Any], options: ImportOptions
) -> tuple[ImportParity, ...]:
    if len(names) != 1:
        raise ModelError(
            "parity_failed",
            f"The ONNX model gives {len(names)} outputs ({', '.join(names)}) where the booster gives one.",
        )
    ref, got = align_output(reference, converted[0])
    return compare(names, [ref], [got], options)


def _booster_parity(
    names: Sequence[str], reference: Any, converted: Sequence[Any], options: ImportOptions
) -> tuple[ImportParity, ...]:
    """Parity of a classifier's outputs ("label", "probabilities") or of a regressor's one output."""
    if names[:2] == ["label", "probabilities"]:
        return _classifier_parity(names, reference, converted, options)
    return _regressor_parity(names, reference, converted, options)
