"""Caffe, MXNet and PaddlePaddle models, built by the frameworks themselves, converted in their own
environments and checked here against the framework (OpenCV's Caffe reader for Caffe); and
what each converter can't take, refused with the layer named.

Slow: each framework starts in a process of its own several times (convert, then each parity
sample), and its environment is built first on a fresh machine."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from tests.framework_envs import framework_model
from workers.engine.errors import ModelError
from workers.engine.importers.base import ImportOptions, InputSpec
from workers.engine.importers.side import CaffeImporter, MxnetImporter, PaddleImporter, SideImporter

pytestmark = pytest.mark.slow


def _progress(fraction: float, message: str) -> None:
    pass


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("framework-models")


def _convert(importer: SideImporter, source: Path, out: Path, **options):
    return importer.convert(source, out, ImportOptions(parity_samples=2, **options), _progress)


@pytest.mark.parametrize(
    ("importer", "env", "inputs"),
    [
        (CaffeImporter(), "caffe", ()),
        (MxnetImporter(), "mxnet", (InputSpec("data", (1, 3, 32, 32)),)),
        (PaddleImporter(), "paddle", ()),
    ],
    ids=["caffe", "mxnet", "paddle"],
)
def test_a_small_network_converts_and_matches_its_framework(importer, env, inputs, models, tmp_path):
    source = framework_model(env, "small", models / env)
    report = _convert(importer, source, tmp_path / "out", inputs=inputs)
    onnx.checker.check_model(str(report.onnx_path), full_check=True)
    assert report.format == importer.format and report.framework == importer.framework
    assert report.framework_version and report.converter_version
    assert report.parity and all(item.passed for item in report.parity), report.parity
    assert max(item.max_abs_error for item in report.parity) < 1e-3
    assert report.tool_versions["environment"] == env
    assert any("environment" in note for note in report.notes)
    assert any("Parity reference" in note for note in report.notes)
    assert [spec.name for spec in report.inputs]
    assert report.outputs == tuple(output.name for output in onnx.load(str(report.onnx_path)).graph.output)


def test_a_caffe_layer_the_converter_lacks_is_named_with_its_type(models, tmp_path):
    with pytest.raises(ModelError) as raised:
        _convert(CaffeImporter(), framework_model("caffe", "custom_layer", models / "caffe"), tmp_path)
    assert raised.value.code == "unsupported_layer"
    assert "Python" in raised.value.message


def test_a_caffemodel_for_another_prototxt_is_refused_naming_the_layer(models, tmp_path):
    with pytest.raises(ModelError) as raised:
        _convert(CaffeImporter(), framework_model("caffe", "mismatch", models / "caffe"), tmp_path)
    assert raised.value.code == "weights_mismatch"
    assert "conv" in raised.value.message.lower()


def test_mxnet_asks_for_the_input_shape_it_cannot_read_from_the_symbol(models, tmp_path):
    with pytest.raises(ModelError) as raised:
        _convert(MxnetImporter(), framework_model("mxnet", "small", models / "mxnet"), tmp_path)
    assert raised.value.code == "inputs_required"
    assert "data" in raised.value.message


def test_mxnet_params_of_another_symbol_are_refused(models, tmp_path):
    with pytest.raises(ModelError) as raised:
        _convert(
            MxnetImporter(),
            framework_model("mxnet", "wrong_params", models / "mxnet"),
            tmp_path,
            inputs=(InputSpec("data", (1, 3, 32, 32)),),
        )
    assert raised.value.code == "weights_mismatch"


def test_paddle_control_flow_the_converter_refuses_is_said(models, tmp_path):
    with pytest.raises(ModelError) as raised:
        _convert(PaddleImporter(), framework_model("paddle", "control_flow", models / "paddle"), tmp_path)
    assert raised.value.code == "unsupported_operator"


def test_paddle_params_of_another_model_are_refused(models, tmp_path):
    with pytest.raises(ModelError) as raised:
        _convert(PaddleImporter(), framework_model("paddle", "mismatch", models / "paddle"), tmp_path)
    assert raised.value.code in ("weights_mismatch", "invalid_model")
