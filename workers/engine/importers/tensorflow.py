"""TensorFlow importers: a zipped SavedModel, a Keras file (.keras or legacy .h5) and a TFLite
flatbuffer, each converted to ONNX with tf2onnx and checked against the original.
It is over 600 lines because an importer, like a runtime backend (docs/adr/0012), is one module
per framework, registered by one line in `importers.registry`, and this one holds TensorFlow's
three formats (SavedModel, Keras, TFLite): their safe loading and unsafe-op refusal, one
tf2onnx conversion path and the parity check they share.

Files come from strangers, so:
- zips are checked member by member (paths, links, encryption, zip bombs) with the checks of
  `workers.engine.archive` before TensorFlow or Keras opens them;
- Keras files are always loaded with `safe_mode=True` and `compile=False`: a Lambda layer's
  Python code is refused, never run, and no optimizer or loss is deserialized;
- a SavedModel whose graph reads or writes files or calls back into Python is refused before it
  is loaded (and its serving signature again after), because parity runs the original graph.
The sandbox that runs importers stays the real boundary: TensorFlow's own kernels (TFLite's in
particular) parse the file natively.

tensorflow, keras, tf2onnx, onnx and numpy are imported inside functions only.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine import archive
from workers.engine.backends._onnx_graph import default_opset
from workers.engine.errors import ModelError
from workers.engine.importers.base import (
    Importer,
    ImportOptions,
    ImportParity,
    ImportReport,
    InputSpec,
    ProgressCallback,
)
from workers.engine.importers.parity import GENERATED_DIM, check_onnx, check_parity

if TYPE_CHECKING:
    import numpy as np

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8
SAVED_MODEL_PB = "saved_model.pb"
ONNX_NAME = "model.onnx"
EXTERNAL_DATA_NAME = "model.onnx.data"
# Above this the ONNX weights go to EXTERNAL_DATA_NAME: protobuf cannot hold 2 GiB, and the
# margin covers the graph itself.
LARGE_MODEL_BYTES = int(1.5 * 2**30)

TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-macos", "tf-nightly")
INSTALL_HINT = "Install TensorFlow and tf2onnx on this worker: pip install 'tensorflow-cpu>=2.16' 'tf2onnx>=1.17'."
EXPORT_ADVICE = (
    "Export a SavedModel with a serving signature instead (Keras: model.export(path); TensorFlow: "
    "tf.saved_model.save(model, path, signatures=...)), zip its folder and upload the zip."
)

# Ops that read or write files or call back into Python. A model's computation never needs
# them, and parity runs the original graph, so a graph that has them is refused.
_FILE_AND_PYTHON_OPS = frozenset(
    {
        "ReadFile",
        "WriteFile",
        "MatchingFiles",
        "ImmutableConst",
        "WholeFileReader",
        "WholeFileReaderV2",
        "PyFunc",
        "PyFuncStateless",
        "EagerPyFunc",
        "CreateSummaryFileWriter",
        "WriteSummary",
        "WriteRawProtoSummary",
        "DebugIdentityV2",
        "DebugIdentityV3",
        "DebugNumericSummaryV2",
    }
)
# Every SavedModel carries TensorFlow's own checkpoint save/restore functions, which loading
# does not run; only a serving signature that uses them is suspicious.
_CHECKPOINT_OPS = frozenset(
    {"Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints"}
)
_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]+")


# --- the importers -----------------------------------------------------------------------


class _TensorFlowImporter(Importer):
    """An importer whose framework is TensorFlow itself: it needs TensorFlow, tf2onnx and onnx."""

    install_hint = INSTALL_HINT

    def framework_version(self) -> str | None:
        return _installed_version("tensorflow", TENSORFLOW_DISTRIBUTIONS)

    def available(self) -> bool:
        return _converter_stack_available()


class SavedModelImporter(_TensorFlowImporter):
    """A zipped TensorFlow SavedModel: its serving signature, converted with tf2onnx."""

    format = "tf-savedmodel"
    framework = "tensorflow"

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """A zip with `saved_model.pb` (at its top or one folder down) and a `variables/` folder beside it."""
        names = archive.zip_names(path)
        return names is not None and _savedmodel_prefix(names) is not None

    def convert(self, source: Path, out_dir: Path, options: ImportOptions, progress: ProgressCallback) -> ImportReport:
        """Unpack, refuse unsafe graphs, load, pick the serving signature, convert it with
        `tf2onnx.convert.from_function` and compare it with the ONNX model."""
        tf = _import_tensorflow()
        import tf2onnx

        with tempfile.TemporaryDirectory(prefix="savedmodel-", dir=out_dir) as tmp:
            progress(0.1, "unpacking the SavedModel")
            prefix = _savedmodel_prefix(archive.extract_zip(source, Path(tmp)))
            if prefix is None:
                raise ModelError(
                    "archive_layout",
                    "The zip holds no saved_model.pb with a variables/ folder beside it, at its top or one folder "
                    "down. Zip the folder that tf.saved_model.save wrote and upload that zip.",
                )
            model_dir = Path(tmp) / prefix
            _refuse_unsafe_ops(_saved_model_ops(model_dir / SAVED_MODEL_PB), _FILE_AND_PYTHON_OPS, "SavedModel")

            progress(0.2, "loading the SavedModel")
            try:
                loaded = tf.saved_model.load(str(model_dir))
            except Exception as exc:
                raise ModelError(
                    "not_a_model",
                    f"TensorFlow could not load the SavedModel: {_first_line(exc)}. Check that the zip holds the "
                    "complete folder that tf.saved_model.save wrote, including variables/ and assets/.",
                ) from exc
            key, function, notes = _pick_signature(loaded.signatures)
            _refuse_unsafe_ops(
                _graph_def_ops(function.graph.as_graph_def()),
                _FILE_AND_PYTHON_OPS | _CHECKPOINT_OPS,
                f"serving signature '{key}'",
            )

            specs, assumptions = _resolve_inputs(_signature_inputs(function, key, options.inputs), options.inputs)
            tensor_specs = [_tensor_spec(tf, spec) for spec in specs]
            names = [spec.name for spec in specs]

            # A loaded signature takes keyword arguments only; tf2onnx wants a tf.function
            # with a positional input signature. Returning the signature's dict keeps its
            # output names in the ONNX model.
            @tf.function(input_signature=tensor_specs)
            def serve(*args: Any) -> Any:
                return function(**dict(zip(names, args, strict=True)))

            large = _tree_bytes(model_dir) > LARGE_MODEL_BYTES
            progress(0.4, "converting with tf2onnx")
            proto, storage = _run_converter(
                lambda: tf2onnx.convert.from_function(
                    serve, input_signature=tensor_specs, opset=options.opset, large_model=large
                )
            )
            progress(0.6, "checking the ONNX model")
            converted = _write_onnx(proto, storage, specs, out_dir, large)

            def reference(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
                outputs = function(**{name: tf.constant(value) for name, value in feeds.items()})
                return {name: value.numpy() for name, value in outputs.items()}

            progress(0.7, "comparing TensorFlow with onnxruntime")
            parity, parity_assumptions = check_parity(specs, converted.path, converted.outputs, reference, options)

        progress(1.0, "done")
        return _report(
            self,
            framework_version=tf.__version__,
            method="tf2onnx.convert.from_function",
            converted=converted,
            specs=specs,
            parity=parity,
            assumptions=(*assumptions, *parity_assumptions),
            notes=(f"Converted the SavedModel's signature '{key}'.", *notes),
        )


class KerasImporter(Importer):
    """A Keras model: the v3 `.keras` zip, or the legacy HDF5 `.h5` file. Loaded in safe mode."""

    format = "keras"
    framework = "keras"
    install_hint = INSTALL_HINT

    def framework_version(self) -> str | None:
        return _installed_version("keras", ("keras",))

    def available(self) -> bool:
        return self.framework_version() is not None and _converter_stack_available()

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """A zip with `config.json` and `metadata.json` at its top (Keras v3), or an HDF5 file."""
        if _read_head(path, len(HDF5_MAGIC)) == HDF5_MAGIC:
            return True
        names = archive.zip_names(path)
        return names is not None and {"config.json", "metadata.json"} <= set(names)

    def convert(self, source: Path, out_dir: Path, options: ImportOptions, progress: ProgressCallback) -> ImportReport:
        """Load with `safe_mode=True`, convert with `tf2onnx.convert.from_keras` (or, where that
        fails, the model traced as a tf.function), and compare `model(x)` with the ONNX model."""
        tf = _import_tensorflow()
        import keras
        import tf2onnx

        is_hdf5 = _read_head(source, len(HDF5_MAGIC)) == HDF5_MAGIC
        if not is_hdf5:
            # Keras reads the zip itself; check it first as any other uploaded zip.
            archive.check_zip_members(source)
        notes = ["Loaded with safe_mode=True and compile=False: no Python code from the file was run."]
        if is_hdf5:
            notes.append("The file is in the legacy HDF5 format; Keras recommends saving as .keras.")

        with tempfile.TemporaryDirectory(prefix="keras-", dir=out_dir) as tmp:
            progress(0.1, "loading the Keras model in safe mode")
            model = _load_keras_model(keras, source, Path(tmp), is_hdf5)
            specs, assumptions = _resolve_inputs(_keras_inputs(model, options.inputs), options.inputs)
            tensor_specs = [_tensor_spec(tf, spec) for spec in specs]
            large = source.stat().st_size > LARGE_MODEL_BYTES

            def call_model(args: Sequence[Any]) -> list[Any]:
                return list(keras.tree.flatten(model(args[0] if len(args) == 1 else list(args), training=False)))

            progress(0.4, "converting with tf2onnx")
            method, fallback_reason = "tf2onnx.convert.from_keras", ""
            output_names: list[str] | None = None
            try:
                with _numpy_product_alias():
                    proto, storage = tf2onnx.convert.from_keras(
                        model, input_signature=tensor_specs, opset=options.opset, large_model=large
                    )
            except Exception as exc:
                # tf2onnx 1.17's from_keras fails on some Keras 3 models (Sequential ones among
                # them); tracing the model as a tf.function is what it does inside anyway.
                method = "tf2onnx.convert.from_function"
                fallback_reason = (
                    f"tf2onnx.convert.from_keras failed on this model ({_first_line(exc)}), so the model was "
                    "traced as a tf.function and converted with tf2onnx.convert.from_function."
                )
                output_names = _keras_output_names(model)
                names = output_names

                @tf.function(input_signature=tensor_specs)
                def traced(*args: Any) -> Any:
                    return dict(zip(names, call_model(args), strict=True))

                proto, storage = _run_converter(
                    lambda: tf2onnx.convert.from_function(
                        traced, input_signature=tensor_specs, opset=options.opset, large_model=large
                    )
                )
            progress(0.6, "checking the ONNX model")
            converted = _write_onnx(proto, storage, specs, out_dir, large)
            # from_keras orders the ONNX outputs as the model orders its outputs.
            reference_names = output_names or list(converted.outputs)

            def reference(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
                import numpy as np

                outputs = call_model([tf.constant(feeds[spec.name]) for spec in specs])
                if len(outputs) != len(reference_names):
                    raise ModelError(
                        "parity_failed",
                        f"The Keras model gives {len(outputs)} outputs but the ONNX model gives "
                        f"{len(reference_names)}.",
                    )
                return {name: np.asarray(value) for name, value in zip(reference_names, outputs, strict=True)}

            progress(0.7, "comparing Keras with onnxruntime")
            parity, parity_assumptions = check_parity(specs, converted.path, converted.outputs, reference, options)

        progress(1.0, "done")
        return _report(
            self,
            framework_version=keras.__version__,
            method=method,
            converted=converted,
            specs=specs,
            parity=parity,
            fallback_reason=fallback_reason,
            assumptions=(*assumptions, *parity_assumptions),
            notes=tuple(notes),
            extra_versions={"keras": keras.__version__},
        )


class TfliteImporter(_TensorFlowImporter):
    """A TensorFlow Lite flatbuffer, converted with tf2onnx's TFLite reader.

    Its framework version is TensorFlow's: TFLite's Python interpreter ships inside TensorFlow.
    """

    format = "tflite"
    framework = "tflite"

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """A flatbuffer whose file identifier (bytes 4..8) is `TFL3`."""
        head = _read_head(path, 8)
        return len(head) == 8 and head[4:8] == TFLITE_IDENTIFIER

    def convert(self, source: Path, out_dir: Path, options: ImportOptions, progress: ProgressCallback) -> ImportReport:
        """Convert with `tf2onnx.convert.from_tflite`; compare `tf.lite.Interpreter` with the ONNX model."""
        import numpy as np

        tf = _import_tensorflow()
        import tf2onnx

        progress(0.1, "reading the TFLite model")
        interpreter = _tflite_interpreter(tf, source)
        input_details = interpreter.get_input_details()
        output_details = interpreter.get_output_details()
        renames, notes = _tflite_signature_names(interpreter, input_details, output_details)
        found = []
        for detail in input_details:
            signature = detail.get("shape_signature")
            shape = signature if signature is not None and len(signature) == len(detail["shape"]) else detail["shape"]
            found.append(
                InputSpec(
                    name=renames.get(detail["name"], detail["name"]),
                    shape=tuple(None if int(d) < 0 else int(d) for d in shape),
                    dtype=np.dtype(detail["dtype"]).name,
                )
            )
        specs, assumptions = _resolve_inputs(found, options.inputs)

        progress(0.4, "converting with tf2onnx")
        # tf2onnx's large-model mode needs a TensorFlow graph, which a TFLite file does not
        # give it; a flatbuffer is under 2 GB anyway.
        with _quiet_tflite_deprecation():
            proto, storage = _run_converter(lambda: tf2onnx.convert.from_tflite(str(source), opset=options.opset))
        _rename_values(proto, renames)
        progress(0.6, "checking the ONNX model")
        converted = _write_onnx(proto, storage, specs, out_dir, large=False)

        def reference(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            for detail in input_details:
                value = feeds[renames.get(detail["name"], detail["name"])]
                interpreter.resize_tensor_input(detail["index"], value.shape)
            interpreter.allocate_tensors()
            for detail in input_details:
                interpreter.set_tensor(detail["index"], feeds[renames.get(detail["name"], detail["name"])])
            interpreter.invoke()
            return {
                renames.get(detail["name"], detail["name"]): interpreter.get_tensor(detail["index"]).copy()
                for detail in output_details
            }

        progress(0.7, "comparing the TFLite interpreter with onnxruntime")
        parity, parity_assumptions = check_parity(specs, converted.path, converted.outputs, reference, options)
        progress(1.0, "done")
        return _report(
            self,
            framework_version=tf.__version__,
            method="tf2onnx.convert.from_tflite",
            converted=converted,
            specs=specs,
            parity=parity,
            assumptions=(*assumptions, *parity_assumptions),
            notes=("Parity ran the original with tf.lite.Interpreter.", *notes),
        )


# --- versions and imports ----------------------------------------------------------------


def _installed_version(module: str, distributions: Sequence[str]) -> str | None:
    """The version of an installed package, without importing it (TensorFlow takes seconds)."""
    if importlib.util.find_spec(module) is None:
        return None
    for distribution in distributions:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(distribution)
    return "unknown"


def _converter_stack_available() -> bool:
    return all(importlib.util.find_spec(module) is not None for module in ("tensorflow", "tf2onnx", "onnx"))


def _import_tensorflow() -> Any:
    # TensorFlow's C++ start-up chatter (CPU features, XNNPACK) is noise in a job's log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def _tool_versions(extra: Mapping[str, str]) -> dict[str, str]:
    versions = {
        "tensorflow": _installed_version("tensorflow", TENSORFLOW_DISTRIBUTIONS) or "",
        "tf2onnx": _installed_version("tf2onnx", ("tf2onnx",)) or "",
        "onnx": _installed_version("onnx", ("onnx",)) or "",
        "onnxruntime": _installed_version("onnxruntime", ("onnxruntime", "onnxruntime-gpu")) or "",
        "numpy": _installed_version("numpy", ("numpy",)) or "",
    }
    versions.update(extra)
    return versions


# --- files and zips ------------------------------------------------------------------------


def _read_head(path: Path, size: int) -> bytes:
    try:
        with path.open("rb") as stream:
            return stream.read(size)
    except OSError:
        return b""


def _savedmodel_prefix(names: Iterable[str]) -> str | None:
    """The folder ("" or "name/") that holds saved_model.pb and variables/, if any does."""
    members = [name for name in names if not name.startswith("__MACOSX/")]
    for name in members:
        parts = name.split("/")
        if parts[-1] == SAVED_MODEL_PB and len(parts) <= 2:
            prefix = name[: -len(SAVED_MODEL_PB)]
            if any(other.startswith(f"{prefix}variables/") for other in members):
                return prefix
    return None


def _tree_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


# --- SavedModel ----------------------------------------------------------------------------


def _saved_model_ops(pb_path: Path) -> set[str]:
    """Every op type in saved_model.pb (graphs and function libraries), read before loading."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(pb_path.read_bytes())
    except DecodeError:
        raise ModelError(
            "not_a_model",
            "saved_model.pb in the zip is not a TensorFlow SavedModel (it cannot be parsed). Zip the folder that "
            "tf.saved_model.save wrote and upload it again.",
        ) from None
    ops: set[str] = set()
    for meta_graph in saved.meta_graphs:
        ops |= _graph_def_ops(meta_graph.graph_def)
    return ops


def _graph_def_ops(graph_def: Any) -> set[str]:
    """Op types of a GraphDef and its function library. A PrintV2 that writes to a file
    counts as a file op."""
    nodes = [*graph_def.node, *(node for function in graph_def.library.function for node in function.node_def)]
    ops: set[str] = set()
    for node in nodes:
        if node.op == "PrintV2" and node.attr["output_stream"].s.startswith(b"file://"):
            ops.add("PrintV2 (to a file)")
        else:
            ops.add(node.op)
    return ops


def _refuse_unsafe_ops(ops: set[str], unsafe: frozenset[str], where: str) -> None:
    found = sorted(op for op in ops if op in unsafe or op == "PrintV2 (to a file)")
    if found:
        raise ModelError(
            "unsafe_model",
            f"The {where} uses {', '.join(found)}, which read or write files or run Python code, so Slipway "
            "will not run it. Export a serving signature that only computes on its inputs.",
        )


def _pick_signature(signatures: Mapping[str, Any]) -> tuple[str, Any, tuple[str, ...]]:
    keys = sorted(signatures.keys())
    if not keys:
        raise ModelError(
            "no_signature",
            "The SavedModel has no signature, so Slipway can't tell which function to serve. Save it with a "
            "serving signature, e.g. tf.saved_model.save(model, path, signatures={'serving_default': "
            "model.__call__.get_concrete_function(tf.TensorSpec([None, ...], tf.float32))}), or from Keras "
            "with model.export(path).",
        )
    if "serving_default" in keys:
        key = "serving_default"
    elif len(keys) == 1:
        key = keys[0]
    else:
        raise ModelError(
            "no_signature",
            f"The SavedModel has signatures {', '.join(repr(k) for k in keys)} but none is 'serving_default', so "
            "Slipway can't tell which one to serve. Save it again with the one to serve under "
            "signatures={'serving_default': ...}.",
        )
    others = [k for k in keys if k != key]
    notes = (f"Other signatures ({', '.join(others)}) were not converted.",) if others else ()
    return key, signatures[key], notes


def _signature_inputs(function: Any, key: str, declared: Sequence[InputSpec]) -> list[InputSpec]:
    """The signature's inputs as InputSpecs (None for dynamic dims), in TensorFlow's order."""
    tf = _import_tensorflow()

    args, kwargs = function.structured_input_signature
    if args:
        raise ModelError(
            "unsupported_input",
            f"The signature '{key}' takes positional inputs; Slipway converts signatures with named inputs. "
            "Save the model with tf.saved_model.save(..., signatures=...).",
        )
    declared_by_name = {spec.name: spec for spec in declared}
    found = []
    for name in sorted(kwargs):
        spec = kwargs[name]
        if not isinstance(spec, tf.TensorSpec):
            raise ModelError(
                "unsupported_input",
                f"Input '{name}' of the signature '{key}' is a {type(spec).__name__}; Slipway converts dense "
                "tensor inputs only. Export a signature that takes dense tensors.",
            )
        if spec.shape.rank is None:
            if name not in declared_by_name:
                raise ModelError(
                    "unknown_inputs",
                    f"Input '{name}' of the signature '{key}' has no known rank. Declare its shape at upload, "
                    'for example [{"name": "' + name + '", "shape": ["batch", 224, 224, 3], "dtype": "float32"}].',
                )
            shape: tuple[int | None, ...] = (None,) * len(declared_by_name[name].shape)
        else:
            shape = tuple(spec.shape.as_list())
        found.append(InputSpec(name=name, shape=shape, dtype=_numpy_dtype_name(spec.dtype, name)))
    return found


def _numpy_dtype_name(dtype: Any, name: str) -> str:
    if not (dtype.is_floating or dtype.is_integer or dtype.is_bool) or dtype.name == "bfloat16":
        raise ModelError(
            "unsupported_input",
            f"Input '{name}' has dtype {dtype.name}; Slipway converts models whose inputs are numbers or booleans.",
        )
    return str(dtype.name)


def _tensor_spec(tf: Any, spec: InputSpec) -> Any:
    shape = [dim if isinstance(dim, int) else None for dim in spec.shape]
    return tf.TensorSpec(shape, tf.as_dtype(spec.dtype), name=spec.name)


# --- Keras ---------------------------------------------------------------------------------


def _load_keras_model(keras: Any, source: Path, workdir: Path, is_hdf5: bool) -> Any:
    if keras.backend.backend() != "tensorflow":
        raise ModelError(
            "framework_not_installed",
            f"Keras on this worker runs on the {keras.backend.backend()} backend, but converting to ONNX needs "
            "TensorFlow. Start the worker with KERAS_BACKEND=tensorflow.",
        )
    # Keras picks its loader by file extension; uploads are stored without one.
    link = workdir / ("model.h5" if is_hdf5 else "model.keras")
    try:
        link.symlink_to(source.resolve())
    except OSError:
        shutil.copyfile(source, link)
    try:
        return keras.saving.load_model(str(link), compile=False, safe_mode=True)
    except Exception as exc:
        raise _keras_load_error(exc) from exc


def _keras_load_error(exc: Exception) -> ModelError:
    text = str(exc)
    if "safe_mode" in text or "unsafe_deserialization" in text:
        return ModelError(
            "unsafe_model",
            "The Keras model contains Python code (for example a Lambda layer wrapping a Python function), and "
            "running it could execute anything, so Slipway refuses to load it. Replace the Lambda layer with "
            f"built-in Keras layers, or: {EXPORT_ADVICE}",
        )
    if "Not allowed" in text or "ExternalLink" in text or "SoftLink" in text:
        return ModelError(
            "unsafe_model",
            "The Keras file's HDF5 data points outside the file (an external link or dataset), which could read "
            "other files on the server, so Slipway refuses it. Save the model again with model.save('model.keras') "
            "and upload that file.",
        )
    if "Could not locate" in text or "Unknown layer" in text or "custom_objects" in text:
        return ModelError(
            "custom_objects",
            f"The Keras model uses a custom class or function that is not part of Keras ({_first_line(exc)}), "
            f"and Slipway does not load Python code from uploads. {EXPORT_ADVICE}",
        )
    if "No model config found" in text:
        return ModelError(
            "not_a_model",
            "The HDF5 file holds weights but no model architecture. Save the whole model with "
            "model.save('model.keras') and upload that file.",
        )
    return ModelError(
        "not_a_model",
        f"Keras could not load the file: {_first_line(exc)}. Save the model with model.save('model.keras') and "
        "upload it again.",
    )


def _keras_inputs(model: Any, declared: Sequence[InputSpec]) -> list[InputSpec]:
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        if declared:
            return [
                InputSpec(s.name, tuple(d if isinstance(d, int) else None for d in s.shape), s.dtype) for s in declared
            ]
        raise ModelError(
            "unknown_inputs",
            "The Keras model does not record its inputs (a model built without keras.Input, or a subclassed "
            "model). Declare the inputs at upload (name, shape, dtype), or build the model with keras.Input.",
        )
    found = []
    for tensor in inputs:
        dtype = str(tensor.dtype)
        if dtype in ("string", "bfloat16"):
            raise ModelError(
                "unsupported_input",
                f"Input '{tensor.name}' has dtype {dtype}; Slipway converts models whose inputs are numbers or "
                "booleans.",
            )
        found.append(InputSpec(name=str(tensor.name), shape=tuple(tensor.shape), dtype=dtype))
    return found


def _keras_output_names(model: Any) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    count = len(model.outputs)
    if len(names) != count or len(set(names)) != count:
        layers = getattr(model, "layers", None)
        names = [layers[-1].name] if count == 1 and layers else [f"output_{i}" for i in range(count)]
    return names


# --- TFLite --------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_tflite_deprecation() -> Iterator[None]:
    # tf.lite.Interpreter (which tf2onnx's TFLite reader uses too) warns that it moves to the
    # ai-edge-litert package; it is still the interpreter TensorFlow ships.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated", category=UserWarning
        )
        yield


def _tflite_interpreter(tf: Any, source: Path) -> Any:
    try:
        with _quiet_tflite_deprecation():
            return tf.lite.Interpreter(model_path=str(source))
    except (ValueError, RuntimeError) as exc:
        raise ModelError(
            "not_a_model",
            f"The TFLite interpreter could not read the file: {_first_line(exc)}. Upload the complete .tflite file.",
        ) from exc


def _tflite_signature_names(
    interpreter: Any, input_details: Sequence[Mapping[str, Any]], output_details: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, str], tuple[str, ...]]:
    """{tensor name: signature key} for the inputs and outputs of a TFLite model with one
    signature, so that the ONNX model has "image" rather than "serving_default_image:0"."""
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        return {}, ()
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    by_index: dict[int, str] = {}
    for key, detail in (*runner.get_input_details().items(), *runner.get_output_details().items()):
        by_index[int(detail["index"])] = key
    renames = {}
    for detail in (*input_details, *output_details):
        key = by_index.get(int(detail["index"]))
        if key:
            renames[detail["name"]] = key
    if len(set(renames.values())) != len(renames) or len(renames) != len(input_details) + len(output_details):
        return {}, ()
    listed = ", ".join(f"{old} -> {new}" for old, new in renames.items() if old != new)
    return renames, ((f"Inputs and outputs are named after the TFLite signature: {listed}.",) if listed else ())


# --- conversion, checking and saving -------------------------------------------------------


@dataclass(frozen=True)
class _Converted:
    path: Path
    files: tuple[Path, ...]
    opset: int
    outputs: tuple[str, ...]


@contextlib.contextmanager
def _numpy_product_alias() -> Iterator[None]:
    """tf2onnx 1.17's large-model path calls np.product, which NumPy 2 removed."""
    import numpy as np

    if hasattr(np, "product"):
        yield
        return
    setattr(np, "product", np.prod)  # noqa: B010
    try:
        yield
    finally:
        delattr(np, "product")


def _run_converter(convert: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
    try:
        with _numpy_product_alias():
            return convert()
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            "conversion_failed",
            f"tf2onnx could not convert the model: {_first_line(exc)}. Try another opset, or report the model "
            "to Slipway.",
        ) from exc


def _write_onnx(proto: Any, storage: Any, specs: Sequence[InputSpec], out_dir: Path, large: bool) -> _Converted:
    """Save the converted model as out_dir/model.onnx (weights in model.onnx.data when large)
    and run the ONNX checker on it."""
    import onnx

    if storage is not None and storage.name_to_tensor_data:
        _inline_external_tensors(proto, storage.name_to_tensor_data)
    opset = default_opset(proto)
    _refuse_unconverted_ops(proto, opset)
    _set_input_dims(proto, specs)

    path = out_dir / ONNX_NAME
    data_path = out_dir / EXTERNAL_DATA_NAME
    # onnx appends to an existing external data file; a retried job must start clean.
    path.unlink(missing_ok=True)
    data_path.unlink(missing_ok=True)
    if large or proto.ByteSize() > LARGE_MODEL_BYTES:
        onnx.save_model(
            proto,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=EXTERNAL_DATA_NAME,
            size_threshold=1024,
        )
    else:
        onnx.save_model(proto, str(path))
    check_onnx(path)
    files = (path, data_path) if data_path.exists() else (path,)
    return _Converted(path, files, int(opset), tuple(output.name for output in proto.graph.output))


def _all_graphs(graph: Any) -> Iterator[Any]:
    """A graph and, recursively, the subgraphs of its nodes (If, Loop, Scan bodies)."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _all_graphs(attribute.g)
            for subgraph in attribute.graphs:
                yield from _all_graphs(subgraph)


def _inline_external_tensors(proto: Any, data: Mapping[str, bytes]) -> None:
    """Put back the weights tf2onnx's large-model mode keeps beside the proto, so that
    onnx.save_model can write them to one external data file."""
    from onnx import TensorProto

    for graph in _all_graphs(proto.graph):
        tensors = [*graph.initializer]
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    tensors.append(attribute.t)
                tensors.extend(attribute.tensors)
        for tensor in tensors:
            if tensor.data_location != TensorProto.EXTERNAL:
                continue
            location = next(entry.value for entry in tensor.external_data if entry.key == "location")
            tensor.raw_data = data[location]
            del tensor.external_data[:]
            tensor.data_location = TensorProto.DEFAULT


def _refuse_unconverted_ops(proto: Any, opset: int) -> None:
    """tf2onnx leaves a TensorFlow op it cannot convert in the graph as is; say which."""
    import onnx

    unknown = sorted(
        {
            node.op_type
            for graph in _all_graphs(proto.graph)
            for node in graph.node
            if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type)
        }
    )
    if unknown:
        raise ModelError(
            "unsupported_op",
            f"tf2onnx could not convert the TensorFlow op(s) {', '.join(unknown)} to ONNX opset {opset}. Try a "
            "newer opset, or replace these ops in the model with ones ONNX supports.",
        )


def _set_input_dims(proto: Any, specs: Sequence[InputSpec]) -> None:
    """Name the ONNX inputs' dynamic dims as the report does (tf2onnx writes "unk__12")."""
    by_name = {spec.name: spec for spec in specs}
    for value in proto.graph.input:
        spec = by_name.get(value.name)
        if spec is None or not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(spec.shape):
            continue
        for dim, wanted in zip(dims, spec.shape, strict=True):
            if dim.HasField("dim_value"):
                continue
            if isinstance(wanted, str):
                dim.dim_param = wanted
            elif isinstance(wanted, int):
                dim.dim_value = wanted


def _rename_values(proto: Any, renames: Mapping[str, str]) -> None:
    """Rename graph inputs and outputs everywhere they are used; skipped on any name clash."""
    if not renames:
        return
    graphs = list(_all_graphs(proto.graph))
    existing = {name for graph in graphs for node in graph.node for name in (*node.input, *node.output)}
    existing |= {value.name for value in (*proto.graph.input, *proto.graph.output)}
    if any(new in existing and new != old for old, new in renames.items()):
        return
    for graph in graphs:
        for value in (*graph.input, *graph.output, *graph.value_info):
            value.name = renames.get(value.name, value.name)
        for node in graph.node:
            node.input[:] = [renames.get(name, name) for name in node.input]
            node.output[:] = [renames.get(name, name) for name in node.output]


# --- inputs and parity ----------------------------------------------------------------------


def _resolve_inputs(
    found: Sequence[InputSpec], declared: Sequence[InputSpec]
) -> tuple[tuple[InputSpec, ...], tuple[str, ...]]:
    """The inputs to convert with: the model's, refined by what the user declared, with each
    dynamic dim given a symbolic name ("batch" for the first axis, "dim_<axis>" otherwise)."""
    declared_by_name = {spec.name: spec for spec in declared}
    if declared and set(declared_by_name) != {spec.name for spec in found}:
        raise ModelError(
            "invalid_inputs",
            f"The declared inputs ({', '.join(sorted(declared_by_name))}) do not match the model's inputs "
            f"({', '.join(spec.name for spec in found)}). Declare one entry per model input under the model's "
            "names, or declare none and let Slipway read them from the model.",
        )
    resolved: list[InputSpec] = []
    assumptions: list[str] = []
    for spec in found:
        shape = list(spec.shape)
        user = declared_by_name.get(spec.name)
        if user is not None:
            shape = _merge_declared(spec, user)
        named: list[int | str | None] = []
        dynamic: list[str] = []
        for axis, dim in enumerate(shape):
            if isinstance(dim, str) or (isinstance(dim, int) and dim >= 0):
                named.append(dim)
            else:
                symbol = _dim_symbol(spec.name, axis, several=len(found) > 1)
                named.append(symbol)
                dynamic.append(f"axis {axis} as '{symbol}'")
        if dynamic:
            assumptions.append(
                f"Input '{spec.name}' has dynamic dims; the ONNX model keeps them symbolic ({', '.join(dynamic)}) "
                f"and the parity check gives them size {GENERATED_DIM}."
            )
        resolved.append(InputSpec(name=spec.name, shape=tuple(named), dtype=spec.dtype))
    return tuple(resolved), tuple(assumptions)


def _merge_declared(spec: InputSpec, user: InputSpec) -> list[int | str | None]:
    if user.dtype != spec.dtype:
        raise ModelError(
            "invalid_inputs",
            f"Input '{spec.name}' is {spec.dtype} in the model but declared as {user.dtype}. Declare it as "
            f"{spec.dtype}.",
        )
    if len(user.shape) != len(spec.shape):
        raise ModelError(
            "invalid_inputs",
            f"Input '{spec.name}' has {len(spec.shape)} dims in the model ({_shape_text(spec.shape)}) but "
            f"{len(user.shape)} were declared. Declare a shape of the model's rank.",
        )
    merged: list[int | str | None] = []
    for model_dim, user_dim in zip(spec.shape, user.shape, strict=True):
        fixed = isinstance(model_dim, int) and model_dim >= 0
        if fixed and isinstance(user_dim, int) and user_dim != model_dim:
            raise ModelError(
                "invalid_inputs",
                f"Input '{spec.name}' has shape {_shape_text(spec.shape)} in the model, which does not fit the "
                f"declared {_shape_text(user.shape)}. Declare the model's fixed dims as they are.",
            )
        merged.append(model_dim if fixed else user_dim)
    return merged


def _dim_symbol(name: str, axis: int, several: bool) -> str:
    if axis == 0:
        return "batch"
    if not several:
        return f"dim_{axis}"
    return f"{_NOT_IDENTIFIER.sub('_', name).strip('_') or 'input'}_dim_{axis}"


def _shape_text(shape: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("None" if dim is None else str(dim) for dim in shape) + "]"


# --- the report ----------------------------------------------------------------------------


def _report(
    importer: Importer,
    *,
    framework_version: str,
    method: str,
    converted: _Converted,
    specs: Sequence[InputSpec],
    parity: tuple[ImportParity, ...],
    fallback_reason: str = "",
    assumptions: tuple[str, ...] = (),
    notes: tuple[str, ...] = (),
    extra_versions: Mapping[str, str] | None = None,
) -> ImportReport:
    import tf2onnx

    return ImportReport(
        format=importer.format,
        framework=importer.framework,
        framework_version=framework_version,
        converter="tf2onnx",
        converter_version=tf2onnx.__version__,
        method=method,
        onnx_path=converted.path,
        files=converted.files,
        opset=converted.opset,
        inputs=tuple(specs),
        outputs=converted.outputs,
        parity=parity,
        fallback_reason=fallback_reason,
        assumptions=assumptions,
        notes=notes,
        tool_versions=_tool_versions(extra_versions or {}),
    )


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
