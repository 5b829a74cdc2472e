"""What Slipway asks Triton to serve: safe names, checked specs, and config.pbtxt that Triton's own schema reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.engine.targets.conftest import make_mlp, mlp_spec
from workers.engine.inspection import TensorSpec
from workers.engine.targets.base import (
    DynamicBatching,
    InstanceGroup,
    RepositoryLocation,
    TargetError,
    TargetSettings,
    TensorSignature,
    signature_from_report,
)
from workers.engine.targets.triton_config import SYS_PATH_PARAMETER, TritonModelConfig, model_config
from workers.engine.targets.triton_repository import PYTHON_MODEL_NAME, prepare_version
from workers.engine.targets.triton_stores import MANIFEST_NAME


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_mlp(tmp_path / "variant" / "mlp-int8.onnx")


def _settings(tmp_path: Path, mode: str = "native", **changes: object) -> TargetSettings:
    return TargetSettings(name="t", url="http://127.0.0.1:8000", repository=str(tmp_path), backend_mode=mode, **changes)  # type: ignore[arg-type]


def _parse(text: str) -> Any:
    """config.pbtxt read with Triton's own ModelConfig schema, as the server reads it."""
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2.ModelConfig())


# --- names and specs -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "resnet50_int8", "A-1", "x" * 100])
def test_safe_model_names_are_accepted(model: Path, name: str) -> None:
    assert mlp_spec(model, 1, name=name).model_name == name


@pytest.mark.parametrize(
    "name", ["", "..", ".hidden", "a/b", "a\\b", "name.candidate", "white space", "-lead", "x" * 101, "é", "a\x00b"]
)
def test_unsafe_model_names_are_refused_with_a_sentence(model: Path, name: str) -> None:
    with pytest.raises(TargetError) as caught:
        mlp_spec(model, 1, name=name)
    assert caught.value.code == "invalid_spec"
    assert "letters, digits" in caught.value.message


@pytest.mark.parametrize("version", [0, -1, True, 1.5, "2"])
def test_versions_are_whole_numbers_from_one(model: Path, version: object) -> None:
    with pytest.raises(TargetError, match="whole number"):
        mlp_spec(model, version)  # type: ignore[arg-type]


def test_signature_comes_from_the_inspection_report_with_symbolic_dims_free() -> None:
    report_inputs: list[Any] = [
        TensorSpec("image", "float32", ("batch", 3, 224, None)),
        {"name": "ids", "dtype": "int64", "shape": ["n", 4]},
    ]
    assert signature_from_report(report_inputs) == (
        TensorSignature("image", "float32", (-1, 3, 224, -1)),
        TensorSignature("ids", "int64", (-1, 4)),
    )
    with pytest.raises(TargetError, match="no known rank"):
        signature_from_report([TensorSpec("seq", "float32", None)])


def test_batching_needs_a_free_first_dimension(model: Path) -> None:
    fixed = (TensorSignature("x", "float32", (1, 8)),)
    with pytest.raises(TargetError) as caught:
        mlp_spec(model, 1, inputs=fixed)
    assert caught.value.code == "not_batchable"
    assert "Set max_batch_size to 0" in caught.value.message
    assert mlp_spec(model, 1, inputs=fixed, max_batch_size=0, dynamic_batching=None).max_batch_size == 0


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"dynamic_batching": DynamicBatching((16,), 100)}, "outside 1..8"),
        ({"max_batch_size": 0, "inputs": (TensorSignature("x", "float32", (2, 8)),)}, "needs max_batch_size above 0"),
        ({"instance_group": InstanceGroup(count=0)}, "count of 1 or more"),
        ({"inputs": (TensorSignature("x", "complex64", (-1, 8)),)}, "can't carry"),
        ({"outputs": (TensorSignature("x", "float32", (-1, 3)),)}, "unique"),
        ({"reference_outputs": ()}, None),
    ],
)
def test_spec_problems_are_named(model: Path, changes: dict[str, Any], words: str | None) -> None:
    if words is None:  # no reference outputs is allowed: the smoke test then only checks the outputs come back
        assert mlp_spec(model, 1, **changes).reference_outputs == ()
        return
    with pytest.raises(TargetError, match=words):
        mlp_spec(model, 1, **changes)


def test_target_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="not an http"):
        TargetSettings(name="t", url="triton:8000", repository=str(tmp_path))
    with pytest.raises(TargetError, match="relative path"):
        TargetSettings(name="t", url="http://triton:8000", repository="models")
    with pytest.raises(TargetError, match="without ':'"):
        _settings(tmp_path, "python", python_paths=("/opt/a:b",))
    assert RepositoryLocation.parse("s3://minio:9000/models/triton/prod") == RepositoryLocation(
        uri="s3://minio:9000/models/triton/prod",
        kind="s3",
        bucket="models",
        prefix="triton/prod",
        endpoint="minio:9000",
    )
    assert RepositoryLocation.parse("s3://bucket").prefix == ""


# --- config.pbtxt ----------------------------------------------------------------------


def test_native_onnx_config_reads_back_with_tritons_schema(model: Path, tmp_path: Path) -> None:
    spec = mlp_spec(
        model,
        3,
        dynamic_batching=DynamicBatching((4, 8), 250),
        instance_group=InstanceGroup(count=2, kind="GPU", gpus=(0, 1)),
    )
    config = model_config(spec, "native")
    parsed = _parse(config.render([2, 3]))
    assert parsed.name == "mlp"
    assert parsed.platform == "onnxruntime_onnx"
    assert parsed.max_batch_size == 8
    assert list(parsed.version_policy.specific.versions) == [2, 3]
    # Triton adds the batch dimension itself: the config leaves it out.
    assert [(tensor.name, tensor.data_type, list(tensor.dims)) for tensor in parsed.input] == [("x", 11, [8])]
    assert [(tensor.name, list(tensor.dims)) for tensor in parsed.output] == [("y", [3])]
    assert list(parsed.dynamic_batching.preferred_batch_size) == [4, 8]
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 250
    group = parsed.instance_group[0]
    assert (group.count, group.kind, list(group.gpus)) == (2, 1, [0, 1])  # KIND_GPU is 1


def test_unbatched_config_keeps_every_dim(model: Path) -> None:
    spec = mlp_spec(
        model,
        1,
        inputs=(TensorSignature("x", "float32", (1, 8)),),
        outputs=(TensorSignature("y", "float32", (1, 3)),),
        max_batch_size=0,
        dynamic_batching=None,
    )
    parsed = _parse(model_config(spec, "native").render([1]))
    assert parsed.max_batch_size == 0
    assert list(parsed.input[0].dims) == [1, 8]
    assert not parsed.HasField("dynamic_batching")


def test_python_mode_config_carries_the_sys_path_for_the_stub(model: Path, tmp_path: Path) -> None:
    paths = ("/opt/slipway", "/opt/venv/lib/python3.11/site-packages")
    parsed = _parse(model_config(mlp_spec(model, 1), "python", paths).render([1]))
    assert parsed.backend == "python"
    assert parsed.platform == ""
    assert parsed.parameters[SYS_PATH_PARAMETER].string_value == ":".join(paths)


def test_tensor_names_with_quotes_are_escaped(model: Path) -> None:
    spec = mlp_spec(model, 1, inputs=(TensorSignature('in"put\\0', "float32", (-1, 8)),))
    assert _parse(model_config(spec, "native").render([1])).input[0].name == 'in"put\\0'


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("float16", "TYPE_FP16"), ("int64", "TYPE_INT64"), ("bool", "TYPE_BOOL"), ("string", "TYPE_STRING")],
)
def test_data_types_are_tritons(model: Path, dtype: str, expected: str) -> None:
    spec = mlp_spec(model, 1, outputs=(TensorSignature("y", dtype, (-1, 3)),))
    assert f"data_type: {expected}" in model_config(spec, "native").render([1])


def test_config_survives_the_manifest_round_trip(model: Path) -> None:
    config = model_config(mlp_spec(model, 1, instance_group=InstanceGroup(2, "GPU", (1,))), "python", ("/a",))
    assert TritonModelConfig.from_dict(config.to_dict()) == config


def test_formats_without_a_native_backend_say_to_use_python_mode(model: Path) -> None:
    spec = mlp_spec(model, 1, model_format="mnn", engine_backend="mnn")
    with pytest.raises(TargetError) as caught:
        model_config(spec, "native")
    assert caught.value.code == "unsupported_format"
    assert "python mode" in caught.value.message
    assert model_config(spec, "python", ("/a",)).backend == "python"


@pytest.mark.parametrize(
    ("model_format", "engine_backend", "precision", "expected"),
    [
        ("openvino-ir", "openvino", "bf16", {"HINT_BF16": "YES"}),
        ("openvino-ir", "openvino", "fp32", {}),
        ("openvino-ir", "openvino", "int8", {}),
        ("onnx", "onnxruntime", "bf16", {}),
    ],
)
def test_a_bf16_openvino_variant_is_served_in_bf16(
    model: Path, model_format: str, engine_backend: str, precision: str, expected: dict[str, str]
) -> None:
    spec = mlp_spec(model, 1, model_format=model_format, engine_backend=engine_backend, precision=precision)
    parsed = _parse(model_config(spec, "native").render([1]))
    assert {key: value.string_value for key, value in parsed.parameters.items()} == expected


def test_tensorrt_engines_need_gpu_instances(model: Path) -> None:
    spec = mlp_spec(model, 1, model_format="tensorrt-plan", engine_backend="tensorrt")
    with pytest.raises(TargetError, match="GPU only"):
        model_config(spec, "native")
    gpu = mlp_spec(
        model, 1, model_format="tensorrt-plan", engine_backend="tensorrt", instance_group=InstanceGroup(1, "GPU")
    )
    assert model_config(gpu, "native").platform == "tensorrt_plan"


# --- a version's files -----------------------------------------------------------------


def test_native_versions_use_tritons_file_names(tmp_path: Path) -> None:
    xml = tmp_path / "ov-fp16.xml"
    xml.write_text("<net/>")
    (tmp_path / "ov-fp16.bin").write_bytes(b"\0" * 8)
    spec = mlp_spec(
        make_mlp(tmp_path / "m.onnx"),
        1,
        model_file=xml,
        extra_files=(tmp_path / "ov-fp16.bin",),
        engine_backend="openvino",
        model_format="openvino-ir",
        reference_outputs=(),
        reference_inputs=(),
    )
    prepared = prepare_version(spec, _settings(tmp_path))
    assert set(prepared.files) == {"model.xml", "model.bin", MANIFEST_NAME}
    assert prepared.config.backend == "openvino"


def test_onnx_external_data_keeps_the_name_the_model_refers_to(tmp_path: Path) -> None:
    main = make_mlp(tmp_path / "mlp.onnx")
    weights = tmp_path / "mlp.onnx.data"
    weights.write_bytes(b"weights")
    spec = mlp_spec(main, 1, extra_files=(weights,))
    assert set(prepare_version(spec, _settings(tmp_path)).files) == {"model.onnx", "mlp.onnx.data", MANIFEST_NAME}


def test_python_versions_keep_the_variant_names_and_add_the_model(model: Path, tmp_path: Path) -> None:
    prepared = prepare_version(mlp_spec(model, 4), _settings(tmp_path, "python", python_paths=("/srv/slipway",)))
    assert set(prepared.files) == {"mlp-int8.onnx", PYTHON_MODEL_NAME, MANIFEST_NAME}
    assert prepared.model_file == "mlp-int8.onnx"
    assert prepared.config.parameters == ((SYS_PATH_PARAMETER, "/srv/slipway"),)


def test_python_mode_defaults_to_this_workers_paths(model: Path, tmp_path: Path) -> None:
    import workers

    paths = _settings(tmp_path, "python").effective_python_paths
    assert str(Path(workers.__file__).resolve().parents[1]) in paths
    assert any(Path(path, "numpy").is_dir() for path in paths)


def test_missing_variant_files_are_named(model: Path, tmp_path: Path) -> None:
    spec = mlp_spec(model, 1, extra_files=(tmp_path / "gone.bin",))
    with pytest.raises(TargetError, match=r"gone\.bin. is not on this worker"):
        prepare_version(spec, _settings(tmp_path))


def test_files_named_like_slipways_own_are_refused(tmp_path: Path) -> None:
    main = make_mlp(tmp_path / "model.py")
    with pytest.raises(TargetError, match="which Slipway writes itself"):
        prepare_version(mlp_spec(main, 1), _settings(tmp_path, "python", python_paths=("/a",)))
