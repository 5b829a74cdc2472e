"""scikit-learn models, from skops files only, to ONNX with skl2onnx; pickle files refused.
It is over 600 lines because an importer, like a runtime backend (docs/adr/0012), is one module
per framework, registered by one line in `importers.registry`, and this one holds
scikit-learn's: the skops allow-list and tree checks, the skl2onnx conversion, and recognising
and refusing pickle files.

A skops file is a zip holding `schema.json` (the object tree) and one .npy per array.
Loading it constructs only the types the schema names, and skops refuses any type outside
a trusted list, so unlike a pickle it cannot run code of the file's choosing. Slipway
widens skops' default list by a fixed allow-list (`is_allowed_type`), never by what the
file asks for: a file naming any other type is refused with `untrusted_types`.

Pickle and joblib files are refused without being loaded: `sniff_pickle` recognises them
from their first bytes, and `pickle_references` names what they would import by reading
opcodes with pickletools, which parses and never executes.

The tabular helpers it shares with the XGBoost and LightGBM importers (`tabular_parity_inputs`,
`compare_labels`, `save_onnx`, `tabular_report`, ...) are in `workers.engine.importers.parity`.
"""

from __future__ import annotations

import bz2
import importlib
import io
import json
import lzma
import pickletools
import sys
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.archive import DEFAULT_LIMITS, MEMBER_READ_ERRORS
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
    import numpy as np
    import onnx

SKOPS_SCHEMA = "schema.json"
# The schema holds the object tree only (arrays are separate .npy members); a real one is
# kilobytes to a few megabytes.
MAX_SCHEMA_BYTES = 64 * 2**20
# As in archive.py: small archives may compress by any ratio (short JSON, zero padding).
_RATIO_EXEMPT_BYTES = 2**20

PICKLE_REFUSED_MESSAGE = (
    "Slipway does not load pickle files: they can run arbitrary code when loaded. Save "
    "scikit-learn models with skops (skops.io.dump(model, 'model.skops')) and upload that."
)

# --- What a skops file may contain --------------------------------------------------------

# Containers and primitives: plain data, no behaviour (skops trusts bool, and stores None as JSON).
_ALLOWED_BUILTINS = frozenset(
    "builtins." + name
    for name in ("dict", "list", "tuple", "set", "frozenset", "slice", "int", "float", "complex", "str", "bytes")
)
# scikit-learn internals that are not estimators but are needed by common models.
_ALLOWED_SKLEARN_INTERNALS = frozenset(
    {
        # Node storage of every decision tree, forest and GradientBoosting* model. skops
        # does not trust it by default because scikit-learn follows its child and feature
        # indices without bounds checks; Slipway trusts it only because
        # `check_tree_structures` validates every index before anything calls predict.
        "sklearn.tree._tree.Tree",
        # A dict with attribute access (Voting*, Stacking* named_estimators_): plain data.
        "sklearn.utils._bunch.Bunch",
        # MLP* optimizer state: pure Python holding arrays, only used by partial_fit.
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    }
)
_ALLOWED_ROOTS = frozenset({"sklearn", "numpy", "scipy"})
# Modules under those roots that act when imported (numpy.f2py.__main__ runs f2py on the
# process's argv; conftest and test modules set up test state), refused without importing.
_NEVER_IMPORTED = frozenset({"tests", "testing", "conftest", "f2py", "distutils"})
# Why some types a user is likely to meet are refused, and what to do instead.
_REFUSAL_HINTS = {
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor": (
        "HistGradientBoosting* models are not supported yet: their tree nodes hold raw indices "
        "that scikit-learn follows without bounds checks."
    ),
    "sklearn.neighbors._kd_tree.KDTree": "For nearest-neighbour models, fit with algorithm='brute'.",
    "sklearn.neighbors._ball_tree.BallTree": "For nearest-neighbour models, fit with algorithm='brute'.",
}
ALLOW_LIST_SUMMARY = (
    "skops' default-trusted types; classes of scikit-learn that derive from BaseEstimator; "
    "sklearn.tree._tree.Tree (indices validated), sklearn.utils._bunch.Bunch and the MLP optimizers; "
    "numpy arrays, scalar types, dtypes and random generators; scipy.sparse matrices and arrays; builtin containers "
    "and primitives. Functions are accepted only where skops trusts them by default (numpy and "
    "scipy ufuncs)."
)


def is_allowed_type(name: str) -> bool:
    """True when Slipway lets a skops file construct the type `name` ("module.Class").

    Modules are imported only under sklearn, numpy and scipy, and never `__main__`, test or
    build modules: any other module a file names is refused without being imported.
    """
    if name in _ALLOWED_BUILTINS or name in _ALLOWED_SKLEARN_INTERNALS:
        return True
    module_name, _, attribute = name.rpartition(".")
    parts = module_name.split(".")
    if parts[0] not in _ALLOWED_ROOTS or not all(part.isidentifier() for part in [*parts, attribute]):
        return False
    if any(part.startswith("__") or part in _NEVER_IMPORTED for part in parts):
        return False
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return False
    if not isinstance(found, type):
        return False
    if parts[0] == "sklearn":
        from sklearn.base import BaseEstimator

        return issubclass(found, BaseEstimator)
    if parts[0] == "numpy":
        import numpy as np

        data_types = (np.ndarray, np.generic, np.dtype)
        random_types = (np.random.Generator, np.random.RandomState, np.random.BitGenerator)
        return issubclass(found, data_types + random_types)
    import scipy.sparse

    return parts[:2] == ["scipy", "sparse"] and issubclass(found, (scipy.sparse.spmatrix, scipy.sparse.sparray))


def check_tree_structures(model: object) -> int:
    """Check every scikit-learn decision tree reachable from `model` before it predicts.

    scikit-learn walks a tree's nodes in compiled code without bounds checks, so a
    crafted file could make predict read outside the tree or loop forever. A valid tree
    has child indices above their parent's and below the node count, and split features
    below the width of the data that reaches it: the smallest of the tree's own feature
    count, its estimator's n_features_in_, and, for a tree inside an ensemble (forests and
    GradientBoosting* pass rows on unchecked), the ensemble's width and feature subset.
    Returns how many trees were checked.
    """
    import numpy as np
    from sklearn.tree._tree import Tree

    widths: dict[int, tuple[Any, int, str]] = {}  # id(tree) -> (tree, width, owner name)

    def narrow(tree: Any, width: int, owner: str) -> None:
        _, known, _ = widths.get(id(tree), (tree, width, owner))
        widths[id(tree)] = (tree, min(known, width, _as_int(tree.n_features)), owner)

    for obj in _reachable_objects(model):
        if isinstance(obj, Tree):
            narrow(obj, _as_int(obj.n_features), "Tree")
            continue
        tree = getattr(obj, "tree_", None)
        if isinstance(tree, Tree):
            narrow(tree, _as_int(getattr(obj, "n_features_in_", tree.n_features)), type(obj).__name__)
        members = getattr(obj, "estimators_", None)
        if isinstance(members, list | np.ndarray):
            width = _as_int(getattr(obj, "n_features_in_", None))
            subsets = getattr(obj, "estimators_features_", None)
            for index, member in enumerate(np.asarray(members, dtype=object).ravel()):
                tree = getattr(member, "tree_", None)
                if isinstance(tree, Tree):
                    subset = subsets[index] if isinstance(subsets, list) and index < len(subsets) else None
                    narrow(tree, width if subset is None else min(width, len(subset)), type(obj).__name__)
    for tree, width, owner in widths.values():
        _check_tree(tree, width, owner)
    return len(widths)


def _as_int(value: object) -> int:
    """A feature count from the file; anything that is not a non-negative int checks as 0."""
    import numpy as np

    return int(value) if isinstance(value, int | np.integer) and value >= 0 else 0


def _check_tree(tree: Any, n_features: int, owner: str) -> None:
    import numpy as np

    nodes = tree.__getstate__()["nodes"]
    count = int(nodes.shape[0])
    index = np.arange(count)
    left, right, feature = (nodes[field].astype(np.int64) for field in ("left_child", "right_child", "feature"))
    split = left != -1  # scikit-learn's leaf marker; it tests the left child only
    valid = ~split | (
        (left > index) & (left < count) & (right > index) & (right < count) & (feature >= 0) & (feature < n_features)
    )
    if count == 0:
        problem = "has no nodes"
    elif not bool(valid.all()):
        node = int(np.argmin(valid))
        children_ok = left[node] > node and right[node] > node and max(left[node], right[node]) < count
        problem = (
            f"splits node {node} on feature {int(feature[node])}, but only {n_features} features reach it"
            if children_ok
            else f"has node {node} pointing outside the tree ({count} nodes)"
        )
    else:
        return
    raise ModelError(
        "invalid_model",
        f"A decision tree in the model ({owner}) {problem}, so it can't be run safely. The file is damaged or "
        "was not written by skops from a fitted model: save the fitted model again with skops.io.dump.",
    )


def _reachable_objects(root: object) -> Iterator[object]:
    """Every object reachable through attributes, containers and object arrays, once each."""
    import numpy as np

    seen: set[int] = set()
    pending = [root]
    while pending:
        obj = pending.pop()
        if id(obj) in seen or isinstance(obj, str | bytes | int | float | type):
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, dict):
            pending.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            pending.extend(obj)
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                pending.extend(obj.ravel().tolist())
        elif hasattr(obj, "__dict__"):
            pending.extend(vars(obj).values())


# --- The importer -----------------------------------------------------------------------


class SkopsImporter(Importer):
    """scikit-learn estimators and pipelines saved with `skops.io.dump`, converted by skl2onnx."""

    format = "sklearn-skops"
    framework = "sklearn"
    install_hint = "pip install scikit-learn skops skl2onnx"

    def framework_version(self) -> str | None:
        """scikit-learn's version; None unless skops and skl2onnx are installed too."""
        from importlib.util import find_spec

        if any(find_spec(name) is None for name in ("sklearn", "skops", "skl2onnx")):
            return None
        import sklearn

        return str(sklearn.__version__)

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """A zip whose `schema.json` is a skops object tree with an integer protocol."""
        schema = _read_schema(path)
        return schema is not None and isinstance(schema.get("protocol"), int) and "__loader__" in schema

    def convert(self, source: Path, out_dir: Path, options: ImportOptions, progress: ProgressCallback) -> ImportReport:
        """Load the skops file under Slipway's allow-list, convert with skl2onnx, check parity."""
        import skl2onnx
        import sklearn
        import skops

        progress(0.0, "Checking the types in the skops file")
        model = load_skops(source)
        check_tree_structures(model)
        assumptions: list[str] = []
        notes: list[str] = []
        specs = options.inputs or _default_inputs(model, assumptions)

        progress(0.3, "Converting with skl2onnx")
        proto, classifier = _convert_sklearn(model, specs, options.opset)
        if classifier:
            notes.append("ZipMap disabled: class probabilities are a plain float tensor, not a list of maps.")
        onnx_path, files = save_onnx(proto, out_dir)
        check_onnx(onnx_path)

        progress(0.7, "Comparing ONNX Runtime with scikit-learn")
        feeds = tabular_parity_inputs(specs, options, notes)
        names = [output.name for output in proto.graph.output]
        converted = run_onnx(onnx_path, feeds)
        reference = _sklearn_outputs(model, _sklearn_input(model, specs, feeds), names)
        parity = _compare_outputs(names, reference, converted, options)
        progress(1.0, "Converted")
        return tabular_report(
            self,
            framework_version=str(sklearn.__version__),
            converter="skl2onnx",
            converter_version=str(skl2onnx.__version__),
            method="convert_sklearn",
            proto=proto,
            onnx_path=onnx_path,
            files=files,
            specs=specs,
            parity=parity,
            assumptions=assumptions,
            notes=notes,
            extra_versions={"skops": str(skops.__version__)},
        )


def load_skops(path: Path) -> Any:
    """The object in a skops file, after refusing every type outside Slipway's allow-list."""
    import skops.io
    from skops.io._protocol import PROTOCOL

    schema = _read_schema(path)
    if schema is None or not isinstance(schema.get("protocol"), int):
        raise ModelError(
            "not_a_model",
            "The file is not a skops file (a zip with a schema.json). Save the model with "
            "skops.io.dump(model, 'model.skops') and upload that.",
        )
    if schema["protocol"] > PROTOCOL:
        raise ModelError(
            "unsupported_version",
            f"The skops file uses format protocol {schema['protocol']}, newer than this worker's skops "
            f"{skops.__version__} reads (up to {PROTOCOL}). Save it with skops {skops.__version__} or older.",
        )
    _check_expansion(path)
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # a malformed tree surfaces as any of KeyError, TypeError, ValueError...
        raise _unreadable_skops(exc) from exc
    refused = sorted(name for name in untrusted if not is_allowed_type(name))
    if refused:
        hints = " ".join(dict.fromkeys(_REFUSAL_HINTS[name] for name in refused if name in _REFUSAL_HINTS))
        raise ModelError(
            "untrusted_types",
            f"The skops file contains types Slipway does not load: {', '.join(refused)}. Slipway only loads "
            "scikit-learn estimators and transformers, numpy and scipy types. Remove custom classes and "
            f"functions from the model (or rewrite them with scikit-learn components) and save it again. {hints}",
        )
    try:
        return skops.io.load(path, trusted=sorted(untrusted))
    except Exception as exc:
        raise _unreadable_skops(exc) from exc


def _unreadable_skops(exc: Exception) -> ModelError:
    return ModelError(
        "invalid_model",
        f"skops could not read the file ({_first_line(exc)}). It may be damaged or written by an incompatible skops; "
        "save the model again with skops.io.dump and re-upload.",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def _read_schema(path: Path) -> dict[str, Any] | None:
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(SKOPS_SCHEMA)
            if info.file_size > MAX_SCHEMA_BYTES:
                return None
            with archive.open(info) as member:
                data = member.read(MAX_SCHEMA_BYTES + 1)
        schema = json.loads(data)
    # damaged member data in schema.json (found by fuzzing; this runs in the web process at
    # upload, where it would have been a 500)
    except MEMBER_READ_ERRORS:
        return None
    except KeyError:  # no schema.json: not a skops file
        return None
    except (ValueError, RecursionError):  # not JSON, or absurdly nested
        return None
    return schema if isinstance(schema, dict) else None


def _check_expansion(path: Path) -> None:
    """skops reads each array into memory: refuse zips that would expand too far."""
    limits = DEFAULT_LIMITS
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    total = sum(info.file_size for info in members)
    compressed = sum(info.compress_size for info in members)
    too_compressed = total > _RATIO_EXEMPT_BYTES and total > limits.max_ratio * compressed
    if len(members) > limits.max_entries or total > limits.max_total_bytes or too_compressed:
        raise ModelError(
            "unsafe_archive",
            f"The skops file would expand to {total} bytes in {len(members)} members, beyond Slipway's limits "
            f"({limits.max_total_bytes} bytes, {limits.max_entries} members, {limits.max_ratio:g}:1). "
            "Save the model again with skops.io.dump.",
        )


def _default_inputs(model: Any, assumptions: list[str]) -> tuple[InputSpec, ...]:
    reason = _why_inputs_are_needed(model)
    if reason:
        raise ModelError(
            "inputs_required",
            f"{reason} One float tensor can't feed it, so declare the model's inputs at upload: one input per "
            "column group, named as its columns (a DataFrame column name, or any name for integer-selected "
            "columns, in column order), shape [null, width], dtype float32 for numbers or string for text. "
            "Parity inputs (.npz) are needed for string inputs.",
        )
    n_features = getattr(model, "n_features_in_", None)
    if not isinstance(n_features, int):
        raise ModelError(
            "inputs_required",
            "The model does not record how many features it takes (n_features_in_). Declare its input at "
            "upload: a name, shape [null, <number of features>] and dtype float32.",
        )
    assumptions.append(
        f"One input '{DEFAULT_INPUT_NAME}': float32 [batch, {n_features}] from n_features_in_; scikit-learn "
        "computes in float64, the ONNX model in float32."
    )
    return (InputSpec(DEFAULT_INPUT_NAME, (None, n_features), "float32"),)


def _why_inputs_are_needed(model: Any) -> str:
    """Why a single float tensor can't be the model's input, or "" when it can."""
    import numpy as np
    from sklearn.compose import ColumnTransformer

    for obj in _reachable_objects(model):
        if isinstance(obj, ColumnTransformer):
            names = getattr(obj, "feature_names_in_", None)
            if names is not None:
                columns = ", ".join(str(name) for name in names)
                return f"The model's ColumnTransformer selects DataFrame columns by name ({columns})."
        categories = getattr(obj, "categories_", None)
        if isinstance(categories, list) and any(np.asarray(c).dtype.kind in "OUS" for c in categories):
            return f"The model's {type(obj).__name__} encodes text categories."
    return ""


def _convert_sklearn(model: Any, specs: Sequence[InputSpec], opset: int | None) -> tuple[onnx.ModelProto, bool]:
    from skl2onnx import convert_sklearn
    from sklearn.base import is_classifier

    classifier = bool(is_classifier(model))
    try:
        proto = convert_sklearn(
            model,
            initial_types=[(spec.name, _skl2onnx_type(spec)) for spec in specs],
            target_opset=opset,
            options={id(model): {"zipmap": False}} if classifier else None,
        )
    except ModelError:
        raise
    except Exception as exc:  # skl2onnx raises RuntimeError, ValueError, TypeError, NotImplementedError...
        first = _first_line(exc)
        unsupported = any(
            words in first.lower() for words in ("converter", "shape calculator", "not implemented", "not support")
        )
        raise ModelError(
            "unsupported_model" if unsupported else "conversion_failed",
            f"skl2onnx could not convert the {type(model).__name__}: {first}. "
            + (
                "Replace the unsupported step or setting with one skl2onnx converts, and save the model again."
                if unsupported
                else "Check the declared inputs match what the model was fitted on, or try another opset."
            ),
        ) from exc
    not_tensors = [output.name for output in proto.graph.output if output.type.WhichOneof("value") != "tensor_type"]
    if not_tensors:
        raise ModelError(
            "conversion_failed",
            f"skl2onnx produced non-tensor outputs ({', '.join(not_tensors)}), which Slipway can't serve. "
            "Report the model to Slipway.",
        )
    return proto, classifier


def _skl2onnx_type(spec: InputSpec) -> Any:
    from skl2onnx.common import data_types

    types = {
        "float32": data_types.FloatTensorType,
        "float64": data_types.DoubleTensorType,
        "int64": data_types.Int64TensorType,
        "int32": data_types.Int32TensorType,
        "bool": data_types.BooleanTensorType,
        "string": data_types.StringTensorType,
        "str": data_types.StringTensorType,
    }
    if spec.dtype not in types:
        raise ModelError(
            "unsupported_input",
            f"Input '{spec.name}' has dtype {spec.dtype}; scikit-learn models take one of {', '.join(types)}.",
        )
    return types[spec.dtype]([d if isinstance(d, int) and d > 0 else None for d in spec.shape])


def _sklearn_input(model: Any, specs: Sequence[InputSpec], feeds: dict[str, np.ndarray]) -> Any:
    """What scikit-learn's predict takes for the ONNX feeds: the array, or the columns side by side."""
    import numpy as np

    if len(specs) == 1:
        return feeds[specs[0].name]
    columns = [feeds[spec.name].reshape(len(feeds[spec.name]), -1) for spec in specs]
    if getattr(model, "feature_names_in_", None) is not None:
        try:
            import pandas as pd
        except ImportError as exc:
            raise ModelError(
                "missing_dependency",
                "The model was fitted on a DataFrame, and checking its parity needs pandas, which this worker "
                "lacks. Install pandas on the worker.",
            ) from exc
        return pd.DataFrame({spec.name: column[:, 0] for spec, column in zip(specs, columns, strict=True)})
    if len({column.dtype for column in columns}) > 1:
        columns = [column.astype(object) for column in columns]
    return np.hstack(columns)


def _sklearn_outputs(model: Any, data: Any, names: Sequence[str]) -> list[Any]:
    """scikit-learn's results for each ONNX output, matched by skl2onnx's output names."""
    from sklearn.base import is_classifier

    results: list[Any] = []
    for name in names:
        if name == "label" or (name == "variable" and hasattr(model, "predict")):
            results.append(model.predict(data))
        elif name == "probabilities" and is_classifier(model) and hasattr(model, "predict_proba"):
            results.append(model.predict_proba(data))
        elif hasattr(model, "decision_function") and name in ("probabilities", "scores"):
            results.append(model.decision_function(data))
        elif hasattr(model, "transform"):
            results.append(model.transform(data))
        else:
            raise ModelError(
                "conversion_failed",
                f"Slipway can't tell which scikit-learn method gives the ONNX output '{name}'. "
                "Report the model to Slipway.",
            )
    return [result.toarray() if hasattr(result, "toarray") else result for result in results]


def _compare_outputs(
    names: Sequence[str], reference: Sequence[Any], converted: Sequence[Any], options: ImportOptions
) -> tuple[ImportParity, ...]:
    """Labels must match exactly, everything else within the tolerances."""
    labels = {
        name: compare_labels(name, ref, got)
        for name, ref, got in zip(names, reference, converted, strict=True)
        if name == "label"
    }
    numeric = [
        (name, *align_output(ref, got))
        for name, ref, got in zip(names, reference, converted, strict=True)
        if name not in labels
    ]
    compared = compare([n for n, _, _ in numeric], [r for _, r, _ in numeric], [g for _, _, g in numeric], options)
    by_name = {result.name: result for result in compared} | labels
    return tuple(by_name[name] for name in names)


# --- Pickle files: recognised and refused, never loaded ------------------------------------

# Protocol 2+ pickles start with PROTO (0x80) and the protocol number.
_PROTO_OPCODE = 0x80
_PROTOCOLS = range(2, 6)
# Protocol 0 and 1 pickles have no header; these opcodes start nearly all of them:
# MARK, GLOBAL, EMPTY_LIST, EMPTY_DICT, EMPTY_TUPLE.
_OLD_PROTOCOL_FIRST_BYTES = frozenset(b"(c]})")
# Protocol 0/1 candidates must parse this many opcodes (or reach STOP) to count.
_MIN_OLD_PROTOCOL_OPS = 8
_OPCODES = frozenset(opcode.code for opcode in pickletools.opcodes)
_SNIFF_BYTES = 4096
_SCAN_BYTES = 2**20
_MAX_REFERENCES = 12


def sniff_pickle(path: Path) -> bool:
    """True when the file is a pickle: plain, joblib, or a joblib file compressed with zlib,
    gzip, bz2 or xz (whose first bytes are decompressed, boundedly, to look)."""
    with path.open("rb") as stream:
        head = stream.read(_SNIFF_BYTES)
    return _looks_like_pickle(head) or _looks_like_pickle(_decompressed_head(head, _SNIFF_BYTES))


def pickle_references(path: Path) -> tuple[str, ...]:
    """The classes and functions ("module.name") a pickle would import, read from its opcodes
    in the first megabyte without executing any."""
    with path.open("rb") as stream:
        data = stream.read(_SCAN_BYTES)
    if not _looks_like_pickle(data[:_SNIFF_BYTES]):
        data = _decompressed_head(data, _SCAN_BYTES)
    return tuple(list(dict.fromkeys(_global_references(data)))[:_MAX_REFERENCES])


def refuse_pickle(path: Path) -> None:
    """Raise ModelError("pickle_refused") when the file is a pickle or joblib file; else return.

    Called on every upload before any importer sniffs it, so no importer can load a pickle.
    """
    if sniff_pickle(path):
        raise pickle_refused(path)


def pickle_refused(path: Path) -> ModelError:
    """The refusal of a pickle file, naming what it would have imported."""
    references = pickle_references(path)
    named = f" This file would import {', '.join(references)}." if references else ""
    return ModelError("pickle_refused", PICKLE_REFUSED_MESSAGE + named)


class PickleRefusal(Importer):
    """Claims pickle and joblib uploads so that the platform refuses them with a reason."""

    format = "pickle"
    framework = "pickle"

    def framework_version(self) -> str | None:
        return sys.version.split()[0]

    @classmethod
    def sniff(cls, path: Path) -> bool:
        return sniff_pickle(path)

    def convert(self, source: Path, out_dir: Path, options: ImportOptions, progress: ProgressCallback) -> ImportReport:
        raise pickle_refused(source)


def _looks_like_pickle(head: bytes) -> bool:
    if len(head) >= 2 and head[0] == _PROTO_OPCODE:
        # An opcode must follow: a safetensors header length of 640 to 1408 bytes also
        # starts 0x80 0x02..0x05, but then zero bytes, which are no opcode.
        return head[1] in _PROTOCOLS and len(head) > 2 and head[2:3].decode("latin-1") in _OPCODES
    if not head or head[0] not in _OLD_PROTOCOL_FIRST_BYTES:
        return False
    parsed = 0
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(head)):
            if opcode.name in ("GLOBAL", "INST") and not _is_dotted_pair(arg):
                return False
            parsed += 1
            if opcode.name == "STOP" or parsed >= _MIN_OLD_PROTOCOL_OPS:
                return True
    except (ValueError, EOFError, UnicodeDecodeError):
        return False
    return False


def _is_dotted_pair(arg: object) -> bool:
    parts = str(arg).split(" ")
    return len(parts) == 2 and all(piece.isidentifier() for part in parts for piece in part.split("."))


def _decompressed_head(data: bytes, limit: int) -> bytes:
    """Up to `limit` decompressed bytes of a zlib, gzip, bz2 or xz stream; b"" for anything else."""
    try:
        if data[:2] == b"\x1f\x8b":
            return zlib.decompressobj(wbits=31).decompress(data, limit)
        if len(data) >= 2 and data[0] == 0x78 and (data[0] * 256 + data[1]) % 31 == 0:
            return zlib.decompressobj().decompress(data, limit)
        if data[:3] == b"BZh":
            return bz2.BZ2Decompressor().decompress(data, max_length=limit)
        if data[:6] == b"\xfd7zXZ\x00":
            return lzma.LZMADecompressor().decompress(data, max_length=limit)
    except (zlib.error, OSError, EOFError, lzma.LZMAError):
        return b""
    return b""


def _global_references(data: bytes) -> Iterator[str]:
    """ "module.name" of each GLOBAL, INST and STACK_GLOBAL, following strings through the memo."""
    memo: dict[int, object] = {}
    recent: list[object] = [None, None]  # the last two values pushed: STACK_GLOBAL's operands
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            name = opcode.name
            if name in ("GLOBAL", "INST"):
                yield str(arg).replace(" ", ".")
            elif name == "STACK_GLOBAL":
                module, attribute = recent[-2], recent[-1]
                if isinstance(module, str) and isinstance(attribute, str):
                    yield f"{module}.{attribute}"
            if name == "MEMOIZE":
                memo[len(memo)] = recent[-1]
            elif name in ("PUT", "BINPUT", "LONG_BINPUT") and isinstance(arg, int):
                memo[arg] = recent[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET") and isinstance(arg, int):
                recent.append(memo.get(arg))
            elif opcode.stack_after:
                recent.append(arg if isinstance(arg, str) else None)
            del recent[:-2]
    except (ValueError, EOFError, UnicodeDecodeError):
        return  # the scan window ends mid-opcode, or the rest is not a pickle
