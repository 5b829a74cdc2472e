"""inspect_model: what a user learns about an uploaded model, and why a bad one is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.modelzoo import (
    CNN_FLOPS,
    MLP_FLOPS_PER_ROW,
    MLP_PARAMETERS,
    bitflip,
    make_cnn_onnx,
    make_function_onnx,
    make_if_onnx,
    make_mlp_onnx,
    make_zip,
    rapidocr_det_model_path,
    set_external_location,
    truncate,
)
from workers.engine.archive import extract_archive
from workers.engine.errors import ModelError
from workers.engine.formats import detect_format
from workers.engine.inspection import (
    DtypeParameters,
    InspectionReport,
    OpCount,
    TensorSpec,
    inspect_model,
)
from workers.engine.onnx_checks import ExternalDataFile


def _ops(report: InspectionReport) -> dict[str, int]:
    return {
        f"{count.domain}:{count.op_type}" if count.domain != "ai.onnx" else count.op_type: (count.count)
        for count in report.op_counts
    }


def _inspect_error(path: Path) -> ModelError:
    with pytest.raises(ModelError) as raised:
        inspect_model(path)
    return raised.value


@pytest.fixture
def external_model(tmp_path: Path) -> Path:
    folder = tmp_path / "exported"
    folder.mkdir()
    return make_mlp_onnx(folder / "model.onnx", with_external_data=True)


def test_mlp_report(tmp_path: Path) -> None:
    report = inspect_model(make_mlp_onnx(tmp_path / "model.onnx"))
    assert report.ir_version == 8
    assert report.opset_imports == {"ai.onnx": 17}
    assert (report.producer_name, report.producer_version) == ("slipway-tests", "1.0")
    assert report.doc_string == "A small MLP for tests."
    assert report.metadata == {"task": "regression", "author": "tests"}
    assert report.inputs == (TensorSpec("input", "float32", ("batch", 16)),)
    assert report.outputs == (TensorSpec("output", "float32", ("batch", 4)),)
    assert report.op_counts == (OpCount("ai.onnx", "Gemm", 2), OpCount("ai.onnx", "Relu", 1))
    assert report.node_count == 3
    assert report.parameters.count == MLP_PARAMETERS
    assert report.parameters.bytes == MLP_PARAMETERS * 4
    assert report.parameters.by_dtype == (DtypeParameters("float32", MLP_PARAMETERS, MLP_PARAMETERS * 4),)
    assert report.external_data == ()


def test_flops_count_symbolic_batch_as_one(tmp_path: Path) -> None:
    report = inspect_model(make_mlp_onnx(tmp_path / "model.onnx"))
    assert report.flops.total == MLP_FLOPS_PER_ROW
    assert report.flops.uncounted_op_types == ()
    assert "count as 1" in report.flops.assumptions


def test_fixed_batch_scales_flops(tmp_path: Path) -> None:
    report = inspect_model(make_mlp_onnx(tmp_path / "model.onnx", batch=8))
    assert report.inputs[0].shape == (8, 16)
    assert report.flops.total == 8 * MLP_FLOPS_PER_ROW


@pytest.mark.parametrize("batch", [None, -1], ids=["no-dim", "minus-one"])
def test_unknown_dims_are_null(tmp_path: Path, batch: int | None) -> None:
    report = inspect_model(make_mlp_onnx(tmp_path / "model.onnx", batch=batch))
    assert report.inputs[0].shape == (None, 16)
    assert report.to_dict()["inputs"][0]["shape"] == [None, 16]
    assert report.flops.total == MLP_FLOPS_PER_ROW


def test_cnn_flops_by_op_type(tmp_path: Path) -> None:
    report = inspect_model(make_cnn_onnx(tmp_path / "model.onnx"))
    assert report.flops.by_op_type == CNN_FLOPS
    assert report.flops.total == sum(CNN_FLOPS.values())
    assert report.flops.uncounted_op_types == ()
    assert report.inputs == (TensorSpec("image", "float32", (1, 3, 32, 32)),)
    assert _ops(report) == {"Conv": 1, "Relu": 1, "MaxPool": 1, "Flatten": 1, "Gemm": 1}


def test_progress_milestones(tmp_path: Path) -> None:
    calls: list[tuple[float, str]] = []
    inspect_model(make_mlp_onnx(tmp_path / "model.onnx"), lambda f, m: calls.append((f, m)))
    assert [fraction for fraction, _ in calls] == [0.1, 0.4, 0.7, 1.0]
    assert all(message for _, message in calls)


def test_report_is_json_serialisable(tmp_path: Path) -> None:
    data = inspect_model(make_cnn_onnx(tmp_path / "model.onnx")).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["flops"]["by_op_type"]["Conv"] == CNN_FLOPS["Conv"]
    assert data["op_counts"][0].keys() == {"domain", "op_type", "count"}


def test_real_text_detector() -> None:
    calls: list[float] = []
    report = inspect_model(rapidocr_det_model_path(), lambda fraction, _: calls.append(fraction))
    ops = _ops(report)
    assert ops["Conv"] == 62
    assert ops["ConvTranspose"] == 2
    assert report.node_count == sum(ops.values())
    (image,) = report.inputs
    assert image.dtype == "float32"
    assert image.shape is not None
    assert image.shape[1] == 3
    assert all(isinstance(dim, str) for dim in (image.shape[0], image.shape[2], image.shape[3]))
    assert report.flops.total > 0
    assert report.flops.by_op_type["Conv"] > 0
    assert report.parameters.count > 1_000_000
    assert calls == [0.1, 0.4, 0.7, 1.0]


def test_symbolic_dims_can_be_given_for_flops() -> None:
    path = rapidocr_det_model_path()
    shape = inspect_model(path).inputs[0].shape
    assert shape is not None
    height, width = shape[2:]
    at_one = inspect_model(path, symbolic_dims={str(height): 1, str(width): 1}).flops.total
    at_640 = inspect_model(path, symbolic_dims={str(height): 640, str(width): 640}).flops
    assert at_640.total > 100 * at_one
    assert "=640" in at_640.assumptions


def test_external_data_present(external_model: Path) -> None:
    report = inspect_model(external_model)
    assert report.external_data == (ExternalDataFile("weights.bin", MLP_PARAMETERS * 4),)
    assert report.parameters.count == MLP_PARAMETERS
    assert report.flops.total == MLP_FLOPS_PER_ROW


def test_external_data_missing(external_model: Path) -> None:
    (external_model.parent / "weights.bin").unlink()
    error = _inspect_error(external_model)
    assert error.code == "missing_external_data"
    assert error.message == (
        "The model keeps weights for initializer 'w1' in external file 'weights.bin', which "
        "is not in the upload. Upload a .zip holding model.onnx and its external data files."
    )


def test_external_data_too_short(external_model: Path) -> None:
    truncate(external_model.parent / "weights.bin", 0.5)
    error = _inspect_error(external_model)
    assert error.code == "missing_external_data"
    assert "'weights.bin' is too short" in error.message


@pytest.mark.parametrize("location", ["../weights.bin", "/etc/passwd", "sub/../../weights.bin"])
def test_external_data_outside_the_folder(external_model: Path, location: str) -> None:
    set_external_location(external_model, location)
    error = _inspect_error(external_model)
    assert error.code == "unsafe_archive"
    assert f"'{location}'" in error.message


def test_an_external_data_name_with_a_null_byte_is_refused(external_model: Path) -> None:
    """Found by fuzzing inspection: the path check raised Python's ValueError on it."""
    set_external_location(external_model, "weights\0.bin")
    error = _inspect_error(external_model)
    assert error.code == "invalid_model" and "null byte" in error.message


def test_zip_upload_end_to_end(tmp_path: Path, external_model: Path) -> None:
    upload = make_zip(
        tmp_path / "upload.zip",
        {"model.onnx": external_model, "weights.bin": external_model.parent / "weights.bin"},
    )
    assert detect_format(upload) == "onnx-zip"
    report = inspect_model(extract_archive(upload, tmp_path / "unpacked"))
    assert report.external_data == (ExternalDataFile("weights.bin", MLP_PARAMETERS * 4),)


def test_zip_without_external_data_file(tmp_path: Path, external_model: Path) -> None:
    upload = make_zip(tmp_path / "upload.zip", {"model.onnx": external_model})
    error = _inspect_error(extract_archive(upload, tmp_path / "unpacked"))
    assert error.code == "missing_external_data"


def test_subgraph_nodes_are_counted(tmp_path: Path) -> None:
    report = inspect_model(make_if_onnx(tmp_path / "model.onnx"))
    assert _ops(report) == {"If": 1, "Add": 1, "Mul": 1, "Neg": 1}
    assert report.node_count == 4
    assert report.inputs == (
        TensorSpec("flag", "bool", ()),
        TensorSpec("x", "float32", (4,)),
    )
    assert report.flops.uncounted_op_types == ("If",)


def test_local_function_nodes_are_counted(tmp_path: Path) -> None:
    report = inspect_model(make_function_onnx(tmp_path / "model.onnx"))
    assert _ops(report) == {"slipway.tests:ScaledRelu": 1, "Relu": 1, "Mul": 1}
    assert report.opset_imports == {"ai.onnx": 17, "slipway.tests": 1}
    assert report.flops.uncounted_op_types == ("slipway.tests.ScaledRelu",)


def test_checker_rejection(tmp_path: Path) -> None:
    path = make_mlp_onnx(tmp_path / "model.onnx")
    bitflip(path, path.read_bytes().index(b"Gemm"), bit=0)  # "Gemm" becomes "Femm"
    error = _inspect_error(path)
    assert error.code == "invalid_model"
    assert error.message.startswith("The ONNX checker rejected the model: ")
    assert "Femm" in error.message
    assert "\n" not in error.message


def test_unparseable_graph(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    # ir_version 8, then a 10-byte graph field that is not a GraphProto
    path.write_bytes(b"\x08\x08\x3a\x0a" + b"\xff" * 10)
    error = _inspect_error(path)
    assert error.code == "invalid_model"
    assert "could not be parsed as ONNX" in error.message


def test_truncated_model(tmp_path: Path) -> None:
    path = tmp_path / "det.onnx"
    shutil.copyfile(rapidocr_det_model_path(), path)
    assert _inspect_error(truncate(path, 0.7)).code == "truncated"


def test_empty_model_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.touch()
    assert _inspect_error(path).code == "empty_file"
