"""detect_format and scan_onnx_header: telling ONNX, zip and everything else apart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.modelzoo import (
    bitflip,
    make_cnn_onnx,
    make_mlp_onnx,
    make_zip,
    rapidocr_det_model_path,
    truncate,
)
from workers.engine.errors import ModelError
from workers.engine.formats import detect_format, scan_onnx_header


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire_type: int, body: bytes = b"") -> bytes:
    return _varint(number << 3 | wire_type) + body


def _len_field(number: int, body: bytes) -> bytes:
    return _field(number, 2, _varint(len(body)) + body)


def _write(tmp_path: Path, data: bytes, name: str = "upload.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _detect_error(path: Path) -> ModelError:
    with pytest.raises(ModelError) as raised:
        detect_format(path)
    return raised.value


def test_small_onnx_model_is_onnx(tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "model.onnx")
    assert detect_format(path) == "onnx"
    header = scan_onnx_header(path)
    assert header["ir_version"] == 8
    assert header["size_bytes"] == path.stat().st_size
    assert 0 < header["graph_bytes"] < header["size_bytes"]


def test_real_detector_model_is_onnx() -> None:
    path = rapidocr_det_model_path()
    assert detect_format(path) == "onnx"
    assert scan_onnx_header(path)["ir_version"] == 8


def test_detection_goes_by_content_not_extension(tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "model.onnx")
    renamed = path.rename(tmp_path / "upload.bin")
    assert detect_format(renamed) == "onnx"


def test_zip_with_one_model_is_onnx_zip(tmp_path: Path) -> None:
    model = make_mlp_onnx(tmp_path / "model.onnx")
    archive = make_zip(tmp_path / "upload.zip", {"model.onnx": model})
    assert detect_format(archive) == "onnx-zip"


def test_zip_without_a_model_is_refused_by_the_archive_check(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "upload.zip", {"readme.txt": b"hello"})
    assert _detect_error(archive).code == "archive_layout"


def test_empty_zip_is_refused_for_its_layout(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "upload.zip", {})
    assert _detect_error(archive).code == "archive_layout"


def test_zip_cut_short_is_not_a_model(tmp_path: Path) -> None:
    model = make_cnn_onnx(tmp_path / "model.onnx")
    archive = truncate(make_zip(tmp_path / "upload.zip", {"model.onnx": model}), 0.5)
    error = _detect_error(archive)
    assert error.code == "not_a_model"
    assert "Re-create the zip" in error.message


def test_empty_file(tmp_path: Path) -> None:
    error = _detect_error(_write(tmp_path, b""))
    assert error.code == "empty_file"
    assert error.message == ("The uploaded file is empty (0 bytes). Choose the model file again and re-upload.")
    assert str(error) == error.message


@pytest.mark.parametrize(
    "content",
    [
        b"hello, this is a README and not a model\n",
        b"\x00" * 64,
        bytes(range(256)) * 4,
        b"\xff" * 32,
    ],
    ids=["text", "zeros", "byte-ramp", "ff"],
)
def test_other_files_are_not_models(tmp_path: Path, content: bytes) -> None:
    error = _detect_error(_write(tmp_path, content))
    assert error.code == "not_a_model"
    assert ".onnx" in error.message
    assert ".zip" in error.message


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"\x89HDF\r\n\x1a\n" + bytes(64), "Keras/HDF5"),
        (b"\x80\x04\x95" + bytes(64), "pickle"),
        (b"\x1c\x00\x00\x00TFL3" + bytes(64), "TensorFlow Lite"),
    ],
    ids=["hdf5", "pickle", "tflite"],
)
def test_common_other_formats_are_named(tmp_path: Path, content: bytes, named: str) -> None:
    error = _detect_error(_write(tmp_path, content))
    assert error.code == "not_a_model"
    assert named in error.message
    assert "which Slipway can't read in this form" in error.message


@pytest.mark.parametrize("frac", [0.02, 0.3, 0.5, 0.9, 0.999])
def test_truncated_model(tmp_path: Path, frac: float) -> None:
    path = truncate(make_cnn_onnx(tmp_path / "model.onnx"), frac)
    error = _detect_error(path)
    assert error.code == "truncated"
    assert error.message.startswith("The ONNX file ends in the middle of ")
    assert f"({path.stat().st_size:,} of at least " in error.message
    assert error.message.endswith("Upload the complete file.")


def test_truncated_real_model(tmp_path: Path) -> None:
    path = tmp_path / "det.onnx"
    shutil.copyfile(rapidocr_det_model_path(), path)
    truncate(path, 0.5)
    error = _detect_error(path)
    assert error.code == "truncated"
    assert "'graph'" in error.message


def test_length_past_end_is_reported_without_reading_it(tmp_path: Path) -> None:
    # A graph that claims 3 GB in a 20-byte file: the scan must seek, not read.
    path = _write(tmp_path, _field(1, 0, b"\x08") + _field(7, 2, _varint(3 * 2**30)) + b"x" * 8)
    error = _detect_error(path)
    assert error.code == "truncated"
    assert "at least 3,221,225,4" in error.message


def test_model_without_a_graph_is_not_a_model(tmp_path: Path) -> None:
    path = _write(tmp_path, _field(1, 0, b"\x08") + _len_field(2, b"exporter"))
    assert _detect_error(path).code == "not_a_model"


def test_graph_without_ir_version_is_not_a_model(tmp_path: Path) -> None:
    path = _write(tmp_path, _len_field(7, b"\x0a\x00"))
    assert _detect_error(path).code == "not_a_model"


def test_implausible_ir_version_is_not_a_model(tmp_path: Path) -> None:
    path = _write(tmp_path, _field(1, 0, _varint(5000)) + _len_field(7, b""))
    assert _detect_error(path).code == "not_a_model"


def test_known_field_with_wrong_wire_type_is_not_a_model(tmp_path: Path) -> None:
    # field 7 (graph) as a varint instead of a length-delimited message
    path = _write(tmp_path, _field(1, 0, b"\x08") + _field(7, 0, b"\x01"))
    assert _detect_error(path).code == "not_a_model"


def test_unknown_small_field_numbers_are_tolerated(tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "model.onnx")
    with path.open("ab") as stream:
        stream.write(_field(50, 0, b"\x05") + _len_field(40, b"future") + _field(33, 5, b"abcd"))
    assert detect_format(path) == "onnx"
    assert scan_onnx_header(path)["field_count"] > 3


@pytest.mark.parametrize("wire_type", [3, 4, 6, 7])
def test_invalid_wire_types_are_not_a_model(tmp_path: Path, wire_type: int) -> None:
    path = _write(tmp_path, _field(1, 0, b"\x08") + _field(40, wire_type) + _len_field(7, b""))
    assert _detect_error(path).code == "not_a_model"


def test_large_field_numbers_are_not_a_model(tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "model.onnx")
    with path.open("ab") as stream:
        stream.write(_field(100, 0, b"\x05"))
    assert _detect_error(path).code == "not_a_model"


def test_bitflip_in_the_first_tag_is_not_a_model(tmp_path: Path) -> None:
    # 0x08 (field 1, varint) becomes 0x09 (field 1, fixed64): not how ONNX stores ir_version
    path = bitflip(make_mlp_onnx(tmp_path / "model.onnx"), 0, bit=0)
    assert _detect_error(path).code == "not_a_model"


def test_single_file_over_2_gib_is_too_large(tmp_path: Path) -> None:
    # A sparse file: the graph field claims 2.5 GiB and the file really is that long.
    graph_bytes = 5 * 2**29
    path = _write(tmp_path, _field(1, 0, b"\x08") + _field(7, 2, _varint(graph_bytes)))
    with path.open("r+b") as stream:
        stream.truncate(path.stat().st_size + graph_bytes)
    error = _detect_error(path)
    assert error.code == "too_large"
    assert "2.5 GiB" in error.message
    assert "external data" in error.message


def test_too_many_tiny_fields_are_not_a_model(tmp_path: Path) -> None:
    path = _write(tmp_path, _field(1, 0, b"\x08") + _field(40, 0, b"\x00") * 200_000)
    assert _detect_error(path).code == "not_a_model"
