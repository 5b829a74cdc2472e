"""Tell what kind of model file an upload is, without loading it into memory.

An ONNX file is a serialized protobuf `ModelProto`. Rather than parsing it (which needs
the whole file in memory and fails above 2 GB), `scan_onnx_header` walks the top-level
fields in the protobuf wire format: it reads each field's tag and, for length-delimited
fields such as the graph, seeks past the body. That takes one small read per top-level
field, so it is quick and uses constant memory however large the file is.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from workers.engine.archive import check_archive
from workers.engine.errors import ModelError

ZIP_MAGIC = b"PK\x03\x04"
# An archive with no members starts with its end-of-central-directory record.
EMPTY_ZIP_MAGIC = b"PK\x05\x06"

ACCEPTED_FORMATS = (
    "Slipway accepts an ONNX model (.onnx, or a .zip holding one .onnx file plus its external data "
    "files), TorchScript (torch.jit.save) or ExportedProgram (torch.export.save) files, a zipped "
    "TensorFlow SavedModel, a Keras .keras file, a TFLite file, a scikit-learn model saved with skops, "
    "an XGBoost (.json/.ubj) or LightGBM (.txt) model, or a .zip of a Caffe (.prototxt + .caffemodel), "
    "MXNet (-symbol.json + .params) or PaddlePaddle (.json or .pdmodel + .pdiparams) model."
)

EMPTY_FILE_MESSAGE = "The uploaded file is empty (0 bytes). Choose the model file again and re-upload."

_VARINT = 0
_FIXED64 = 1
_LENGTH_DELIMITED = 2
_FIXED32 = 5
_VALID_WIRE_TYPES = {_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32}

# Top-level fields of onnx.ModelProto: field number -> (name, wire type).
_MODEL_PROTO_FIELDS = {
    1: ("ir_version", _VARINT),
    2: ("producer_name", _LENGTH_DELIMITED),
    3: ("producer_version", _LENGTH_DELIMITED),
    4: ("domain", _LENGTH_DELIMITED),
    5: ("model_version", _VARINT),
    6: ("doc_string", _LENGTH_DELIMITED),
    7: ("graph", _LENGTH_DELIMITED),
    8: ("opset_import", _LENGTH_DELIMITED),
    14: ("metadata_props", _LENGTH_DELIMITED),
    20: ("training_info", _LENGTH_DELIMITED),
    25: ("functions", _LENGTH_DELIMITED),
    26: ("configuration", _LENGTH_DELIMITED),
}
_IR_VERSION_FIELD = 1
_GRAPH_FIELD = 7
# Future ONNX versions may add fields; numbers far above the current ones mean the bytes
# are something else that happens to decode as protobuf.
_MAX_FIELD_NUMBER = 64
# Released IR versions are small (11 in 2025); anything far above is not ONNX.
_MAX_IR_VERSION = 100
# A real model has a few dozen top-level fields (opset imports, metadata, functions).
# Bounding the count keeps a crafted file of millions of tiny fields from tying up the
# web process that calls detect_format.
_MAX_TOP_LEVEL_FIELDS = 100_000
# Protobuf cannot parse a message of 2 GiB or more, so larger weights must live in
# external data files.
_MAX_PROTOBUF_BYTES = 2**31 - 1


def detect_format(path: Path) -> str:
    """Return the format of an uploaded model file: "onnx" or "onnx-zip".

    A zip is recognised by its magic bytes and checked with `archive.check_archive`
    (central directory only); anything else must scan as an ONNX `ModelProto`.
    Raises ModelError ("empty_file", "not_a_model", "truncated", "too_large", or an
    archive code) when the file is neither.
    """
    with path.open("rb") as stream:
        head = stream.read(4)
    if not head:
        raise ModelError("empty_file", EMPTY_FILE_MESSAGE)
    if head in (ZIP_MAGIC, EMPTY_ZIP_MAGIC):
        check_archive(path)
        return "onnx-zip"
    scan_onnx_header(path)
    return "onnx"


def scan_onnx_header(path: Path) -> dict[str, int]:
    """Check that `path` is laid out like an ONNX ModelProto, reading only field headers.

    Returns {"ir_version", "size_bytes", "graph_bytes", "field_count"}. Raises ModelError
    "empty_file" for a 0-byte file, "not_a_model" when the field numbers or wire types
    are not those of an ONNX model (or the ir_version or graph is missing), "truncated"
    when a field runs past the end of the file, and "too_large" for a file of 2 GiB or
    more, which protobuf cannot parse.
    """
    size = path.stat().st_size
    if size == 0:
        raise ModelError("empty_file", EMPTY_FILE_MESSAGE)

    ir_version: int | None = None
    graph_bytes: int | None = None
    field_count = 0
    with path.open("rb") as stream:
        position = 0
        while position < size:
            field_name = "a field header"
            try:
                tag = _read_varint(stream)
                field_number, wire_type = tag >> 3, tag & 0x7
                _check_field(path, field_number, wire_type)
                field_name = _field_name(field_number)
                if wire_type == _VARINT:
                    value = _read_varint(stream)
                    if field_number == _IR_VERSION_FIELD:
                        if not 1 <= value <= _MAX_IR_VERSION:
                            raise _not_a_model(path)
                        ir_version = value
                    end = stream.tell()
                else:
                    if wire_type == _LENGTH_DELIMITED:
                        length = _read_varint(stream)
                    else:
                        length = 8 if wire_type == _FIXED64 else 4
                    end = stream.tell() + length
                    if field_number == _GRAPH_FIELD:
                        graph_bytes = length
            except EOFError:
                raise _truncated_or_not_a_model(path, field_name, ir_version, size, size + 1) from None
            except ValueError:
                raise _not_a_model(path) from None
            if end > size:
                raise _truncated_or_not_a_model(path, field_name, ir_version, size, end)
            stream.seek(end)
            position = end
            field_count += 1
            if field_count > _MAX_TOP_LEVEL_FIELDS:
                raise _not_a_model(path)

    if ir_version is None:
        raise _not_a_model(path)
    if graph_bytes is None:
        raise ModelError(
            "not_a_model",
            "The file starts like an ONNX model but holds no graph, so it is cut short or "
            "is not a model. Export the model again and upload the complete .onnx file.",
        )
    if size > _MAX_PROTOBUF_BYTES:
        raise ModelError(
            "too_large",
            f"The ONNX file is {size / 2**30:.1f} GiB, but a single .onnx file must be under "
            "2 GiB. Save the weights as external data (onnx.save_model with "
            "save_as_external_data=True) and upload a .zip holding model.onnx and its data "
            "files.",
        )
    return {
        "ir_version": ir_version,
        "size_bytes": size,
        "graph_bytes": graph_bytes,
        "field_count": field_count,
    }


def _read_varint(stream: BinaryIO) -> int:
    """Read one protobuf base-128 varint.

    Raises EOFError if the file ends inside it and ValueError if it is longer than the
    10 bytes a 64-bit value can take.
    """
    result = 0
    for shift in range(0, 70, 7):
        byte = stream.read(1)
        if not byte:
            raise EOFError
        result |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return result
    raise ValueError("varint longer than 10 bytes")


def _check_field(path: Path, field_number: int, wire_type: int) -> None:
    if field_number == 0 or field_number > _MAX_FIELD_NUMBER:
        raise _not_a_model(path)
    if wire_type not in _VALID_WIRE_TYPES:
        raise _not_a_model(path)
    known = _MODEL_PROTO_FIELDS.get(field_number)
    if known is not None and known[1] != wire_type:
        raise _not_a_model(path)


def _field_name(field_number: int) -> str:
    known = _MODEL_PROTO_FIELDS.get(field_number)
    if known is None:
        return f"field {field_number}"
    return f"the '{known[0]}' field"


def _truncated_or_not_a_model(
    path: Path, field_name: str, ir_version: int | None, size: int, needed: int
) -> ModelError:
    # Random bytes also "run past the end" sooner or later; only call the file truncated
    # when it started like a real model, with a plausible ir_version.
    if ir_version is None:
        return _not_a_model(path)
    return ModelError(
        "truncated",
        f"The ONNX file ends in the middle of {field_name}: it is truncated "
        f"({size:,} of at least {needed:,} bytes). Upload the complete file.",
    )


def _not_a_model(path: Path) -> ModelError:
    guess = _guess_other_format(path)
    if guess:
        return ModelError(
            "not_a_model",
            f"This file looks like {guess}, which Slipway can't read in this form. {ACCEPTED_FORMATS}",
        )
    return ModelError("not_a_model", f"This file is not a model format Slipway recognizes. {ACCEPTED_FORMATS}")


def _guess_other_format(path: Path) -> str | None:
    """Name a common non-ONNX model format from the file's first bytes, if one matches."""
    with path.open("rb") as stream:
        head = stream.read(16)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "a Keras/HDF5 file (.h5)"
    if head[4:8] == b"TFL3":
        return "a TensorFlow Lite model (.tflite)"
    if head.startswith(b"GGUF"):
        return "a GGUF model (llama.cpp)"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file (.gz or .tar.gz)"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a Python pickle (for example a PyTorch .pt/.pth or scikit-learn checkpoint)"
    if len(head) >= 10 and head[8:10] == b'{"':
        header_length = struct.unpack("<Q", head[:8])[0]
        if header_length < 100 * 2**20:
            return "a safetensors weights file"
    return None
