"""The checks that refuse an uploaded ONNX file before anything reads it deeply.

Parsing without the external weights, the ONNX checker, the depth of nested If/Loop/Scan
bodies and every external data location (inside the model's folder, present, long enough)
each end in a `ModelError` whose sentence says what to fix. They are kept apart from
`inspection`, which describes a model these checks have let through.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

from workers.engine.errors import ModelError
from workers.engine.onnx_walk import all_tensors, proto_text, subgraphs, tensor_bytes

if TYPE_CHECKING:
    from onnx import ModelProto


@dataclass(frozen=True)
class ExternalDataFile:
    """A file next to the model that holds some of its weights."""

    location: str
    size_bytes: int


# --- parsing and the checker ----------------------------------------------------------


def load_without_external_data(model_path: Path) -> ModelProto:
    """The model's graph and embedded tensors, external weights left on disk; ModelError
    "invalid_model" when the file does not parse as ONNX."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        # format="protobuf": onnx otherwise guesses the format from the file extension,
        # and an upload saved as ".json" or ".txt" would be read as text.
        return onnx.load(str(model_path), format="protobuf", load_external_data=False)
    except (DecodeError, ValueError, RuntimeError):
        raise ModelError(
            "invalid_model",
            "The file could not be parsed as ONNX: it may be corrupted or saved in another "
            "format. Export the model to ONNX again and upload the new file.",
        ) from None


def run_checker(model_path: Path) -> None:
    """Run the ONNX checker (full check) on the file; ModelError "invalid_model" with its first line when it fails."""
    import onnx

    try:
        # The path form lets the checker handle models over 2 GB and external data.
        onnx.checker.check_model(str(model_path), full_check=True)
    except (
        onnx.checker.ValidationError,
        onnx.shape_inference.InferenceError,
        onnx.defs.SchemaError,
    ) as exc:
        first_line = next((line for line in str(exc).splitlines() if line.strip()), "")
        first_line = first_line.strip().rstrip(".") or type(exc).__name__
        raise ModelError(
            "invalid_model",
            f"The ONNX checker rejected the model: {first_line}. Fix the model or export it "
            "again, then upload the new file.",
        ) from None
    except UnicodeDecodeError:
        # The checker failed and its message quotes a name from the model that is not UTF-8
        # text, so Python can't even read the message: found by bit-flipping models.
        raise ModelError(
            "invalid_model",
            "The ONNX checker rejected the model, and its reason quotes a name that is not valid "
            "UTF-8 text, so the file is most likely corrupted. Export the model again and upload the new file.",
        ) from None
    except ValueError as exc:
        # Some C++ failures reach Python as a plain ValueError ("Invalid tensor data type 58.",
        # found by fuzzing) rather than as a ValidationError.
        first_line = next((line for line in str(exc).splitlines() if line.strip()), "").strip().rstrip(".")
        raise ModelError(
            "invalid_model",
            f"The ONNX checker rejected the model: {first_line or 'ValueError'}. Fix the model or export it "
            "again, then upload the new file.",
        ) from None


# --- nesting ---------------------------------------------------------------------------

# Legitimate models nest If/Loop/Scan bodies a few levels deep. OpenVINO's ONNX frontend takes
# time exponential in the depth (measured: 3 s at 16, 26 s at 20, over a minute at 22), so a
# 1 KB model nested 30 deep would hold a worker until the sandbox's timeout, once per backend.
MAX_SUBGRAPH_DEPTH = 16


def check_nesting(model: ModelProto) -> None:
    """Raise ModelError("too_complex") when subgraphs nest deeper than MAX_SUBGRAPH_DEPTH."""
    pending = [(model.graph, 0)] + [
        (graph, 1) for function in model.functions for node in function.node for graph in subgraphs(node)
    ]
    deepest = 0
    while pending:
        graph, depth = pending.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_SUBGRAPH_DEPTH:
            raise ModelError(
                "too_complex",
                f"The model nests If/Loop/Scan subgraphs more than {MAX_SUBGRAPH_DEPTH} levels deep, more than "
                "Slipway accepts: some runtimes take time exponential in the depth. Flatten the control flow "
                "(or unroll it) and export the model again.",
            )
        pending.extend((inner, depth + 1) for node in graph.node for inner in subgraphs(node))


# --- external data ------------------------------------------------------------------


def check_external_data(model: ModelProto, model_dir: Path) -> tuple[ExternalDataFile, ...]:
    """Check every external tensor's file is inside `model_dir` and long enough."""
    import onnx

    root = model_dir.resolve()
    sizes: dict[str, int] = {}
    for tensor in all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {proto_text(entry.key): proto_text(entry.value) for entry in tensor.external_data}
        location = entries.get("location", "")
        tensor_name = f"initializer '{tensor.name}'" if tensor.name else "a tensor"
        if not location:
            raise ModelError(
                "invalid_model",
                f"The model says {tensor_name} is stored in an external file but does not "
                "name the file. Export the model again and upload the new file.",
            )
        path = _external_data_path(root, location, tensor_name)
        if location not in sizes:
            if not path.is_file():
                raise ModelError(
                    "missing_external_data",
                    f"The model keeps weights for {tensor_name} in external file "
                    f"'{location}', which is not in the upload. Upload a .zip holding "
                    "model.onnx and its external data files.",
                )
            sizes[location] = path.stat().st_size
        try:
            offset = int(entries.get("offset", "0"))
            length = int(entries["length"]) if "length" in entries else tensor_bytes(tensor)
        except ValueError:
            raise ModelError(
                "invalid_model",
                f"The model's external data entry for {tensor_name} has an offset or length "
                "that is not a number. Export the model again and upload the new file.",
            ) from None
        if offset < 0 or length < 0:
            # onnx and the runtimes would seek or read backwards from the file's start.
            raise ModelError(
                "invalid_model",
                f"The model's external data entry for {tensor_name} has a negative offset or length "
                f"({offset}, {length}). Export the model again and upload the new file.",
            )
        needed = offset + length
        if sizes[location] < needed:
            raise ModelError(
                "missing_external_data",
                f"The external data file '{location}' is too short for {tensor_name}: it "
                f"needs {needed:,} bytes but has {sizes[location]:,}. Upload a .zip holding "
                "model.onnx and its complete external data files.",
            )
    return tuple(ExternalDataFile(location, size) for location, size in sorted(sizes.items()))


def _external_data_path(root: Path, location: str, tensor_name: str) -> Path:
    """Where `location` is under `root`; ModelError when it names no file or one outside the folder."""
    if "\0" in location:
        raise ModelError(
            "invalid_model",
            f"The model says the weights for {tensor_name} are in a file whose name holds a null byte, which "
            "no file can have. Export the model again, with its external data files saved next to it.",
        )
    unsafe = (
        PurePosixPath(location).is_absolute()
        or PureWindowsPath(location).is_absolute()
        or bool(PureWindowsPath(location).drive)
        or ".." in location.replace("\\", "/").split("/")
    )
    path = (root / location).resolve()
    if unsafe or not path.is_relative_to(root) or path == root:
        raise ModelError(
            "unsafe_archive",
            f"The model says the weights for {tensor_name} are in '{location}', which is "
            "outside the model's folder. Export the model with its external data files "
            "saved next to it, and upload them together in a .zip.",
        )
    return path
