"""The TensorRT backend: profile shapes, precisions, calibration cache, engine stamps, support reports.

The pure parts run everywhere. Tests marked `gpu` build and run real engines; they skip,
saying why, where TensorRT or a CUDA GPU is missing (TensorRT cannot be installed in the
development workplace, so they run only on a GPU machine with the tensorrt package).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.modelzoo import make_cnn_onnx, make_mlp_onnx
from workers.engine.backends import tensorrt as trt_backend
from workers.engine.backends.base import BackendNotInstalled, Calibration, HardwareProfile, Variant
from workers.engine.backends.published import OPLIST_DIR, load_published_list
from workers.engine.backends.tensorrt import (
    CalibrationCache,
    EngineIncompatible,
    ParserNode,
    TensorRtBackend,
    check_engine_compatible,
    check_input_shape,
    engine_stamp,
    model_sha256,
    optimization_profile_shapes,
    precision_flags,
    report_from_parser,
    stamp_path,
)
from workers.engine.errors import ModelError
from workers.engine.inspection import TensorSpec

IMAGE = TensorSpec("image", "float32", (1, 3, 32, 32))
TOKENS = TensorSpec("tokens", "int64", ("batch", "sequence"))
MASK = TensorSpec("mask", "int64", ("batch", "sequence"))


# --- optimization profile shapes -------------------------------------------------------------


def test_fixed_inputs_get_one_shape() -> None:
    assert optimization_profile_shapes([IMAGE], [1, 8], {}) == {
        "image": ((1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 32, 32))
    }


def test_symbolic_batch_ranges_from_one_through_the_median_to_the_largest() -> None:
    spec = TensorSpec("input", "float32", ("batch", 16))
    shapes = optimization_profile_shapes([spec], [16, 1, 4, 8], None)
    assert shapes == {"input": ((1, 16), (4, 16), (16, 16))}
    # An unnamed (unknown) axis 0 is a batch axis too; no batch sizes means batch 1.
    unnamed = TensorSpec("input", "float32", (None, 16))
    assert optimization_profile_shapes([unnamed], [], None) == {"input": ((1, 16), (1, 16), (1, 16))}


def test_other_dynamic_dims_must_be_given() -> None:
    with pytest.raises(ModelError) as raised:
        optimization_profile_shapes([TOKENS], [1, 8], {})
    assert raised.value.code == "dynamic_shape_unknown"
    message = raised.value.message
    assert "'tokens'" in message and "'sequence'" in message and "axis 1" in message
    assert "input_shapes" in message and '"sequence": [min, opt, max]' in message


def test_dims_given_by_name_or_by_input_shape() -> None:
    by_name = optimization_profile_shapes([TOKENS, MASK], [1, 4, 8], {"sequence": [16, 128, 512]})
    # "batch" is axis 0 of both inputs, so it follows the batch sizes in both.
    assert by_name["tokens"] == ((1, 16), (4, 128), (8, 512))
    assert by_name["mask"] == by_name["tokens"]

    fixed = optimization_profile_shapes([TOKENS], [1, 4, 8], {"sequence": 64})
    assert fixed["tokens"] == ((1, 64), (4, 64), (8, 64))

    whole = optimization_profile_shapes([TOKENS], [2, 8], {"tokens": [None, [1, 32, 256]]})
    # With an even count, the typical batch is the lower middle one: a size that was asked for.
    assert whole["tokens"] == ((1, 1), (2, 32), (8, 256))
    pinned = optimization_profile_shapes([TOKENS], [1, 8], {"tokens": [4, 128]})
    assert pinned["tokens"] == ((4, 128), (4, 128), (4, 128))


def test_inputs_given_as_tuples_and_of_unknown_rank() -> None:
    shapes = optimization_profile_shapes([("x", "float32", ["n", 3])], [2], {})
    assert shapes == {"x": ((1, 3), (2, 3), (2, 3))}
    unknown = TensorSpec("x", "float32", None)
    with pytest.raises(ModelError, match="'x' has no known shape") as raised:
        optimization_profile_shapes([unknown], [1], {})
    assert raised.value.code == "dynamic_shape_unknown"
    assert optimization_profile_shapes([unknown], [1], {"x": [2, 3]}) == {"x": ((2, 3), (2, 3), (2, 3))}


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"sequence": [512, 128, 16]}, "min <= opt <= max"),
        ({"sequence": 0}, "1 or more"),
        ({"sequence": "long"}, "is not a size"),
        ({"tokens": [1, 2, 3]}, "does not have the 2 dimensions"),
        ({"tokens": 7}, "does not have the 2 dimensions"),
    ],
)
def test_given_sizes_that_do_not_fit_are_refused(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ModelError, match=fragment) as raised:
        optimization_profile_shapes([TOKENS], [1], overrides)
    assert raised.value.code == "dynamic_shape_invalid"


def test_a_given_shape_cannot_change_a_fixed_dim() -> None:
    with pytest.raises(ModelError, match="fixed size of 3 on axis 1") as raised:
        optimization_profile_shapes([IMAGE], [1], {"image": [1, 4, 32, 32]})
    assert raised.value.code == "dynamic_shape_invalid"
    with pytest.raises(ModelError, match="Batch sizes must be 1 or more"):
        optimization_profile_shapes([IMAGE], [0, 4], {})


def test_input_shapes_are_checked_against_the_engine_profile() -> None:
    stamp = engine_stamp("10.1.0", (8, 6), "NVIDIA A10", ["fp32"], {"input": ((1, 16), (4, 16), (16, 16))})
    ranges = stamp["profile_shapes"]
    assert check_input_shape("input", (8, 16), ranges) is None
    assert check_input_shape("other", (99,), ranges) is None
    too_big = check_input_shape("input", (32, 16), ranges)
    assert too_big is not None and "size 32 on axis 0" in too_big and "1 to 16" in too_big
    assert "has 1 dimensions" in (check_input_shape("input", (16,), ranges) or "")


# --- precisions ------------------------------------------------------------------------------


def test_each_precision_gets_its_flags() -> None:
    builds = precision_flags(["fp32", "fp16", "int8", "fp16"], True, True)
    assert [(build.variant, build.flags, build.skipped) for build in builds] == [
        ("trt-fp32", (), ""),
        ("trt-fp16", ("FP16",), ""),
        ("trt-int8", ("INT8", "FP16"), ""),
    ]


def test_precisions_this_gpu_cannot_speed_up_are_skipped_with_a_reason() -> None:
    fp16, int8 = precision_flags(["fp16", "int8"], False, False)
    assert fp16.flags == () and "platform_has_fast_fp16 is False" in fp16.skipped
    assert int8.flags == () and "platform_has_fast_int8 is False" in int8.skipped
    # Without fast FP16, INT8 layers that have no INT8 kernel fall back to FP32.
    (int8_only,) = precision_flags(["int8"], False, True)
    assert int8_only.flags == ("INT8",) and not int8_only.skipped


def test_int8_needs_calibration_and_unknown_precisions_are_named() -> None:
    int8, bf16 = precision_flags(["int8", "bf16"], True, True, calibration_given=False)
    assert "calibration" in int8.skipped and ".npz" in int8.skipped
    assert "'bf16' is not one of them" in bf16.skipped


def test_tensorrt_11_builds_fp16_from_a_converted_model_and_skips_calibrated_int8() -> None:
    fp16, int8 = precision_flags(["fp16", "int8"], None, None, weak_typing=False)
    assert (fp16.flags, fp16.convert_to_fp16, fp16.skipped) == ((), True, "")
    assert "Q/DQ" in int8.skipped and "IInt8EntropyCalibrator2" in int8.skipped


# --- calibration cache -----------------------------------------------------------------------


def _cache(path: Path, **changes: object) -> CalibrationCache:
    key: dict[str, object] = {
        "model_sha256": "a" * 64,
        "input_shapes": {"image": (1, 3, 32, 32)},
        "trt_version": "10.1.0",
        "data_sha256": "d" * 64,
    }
    key.update(changes)
    return CalibrationCache(path, **key)  # type: ignore[arg-type]


def test_calibration_cache_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "trt-int8.calibration.json"
    assert _cache(path).read() is None  # nothing yet, and nothing refused
    _cache(path).write(b"TRT-1001-EntropyCalibration2\nimage: 3c010a14\n")
    again = _cache(path)
    assert again.read() == b"TRT-1001-EntropyCalibration2\nimage: 3c010a14\n"
    assert (again.used, again.refused) == (True, "")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"model_sha256": "b" * 64}, "another model"),
        ({"input_shapes": {"image": (8, 3, 32, 32)}}, "other input shapes"),
        ({"trt_version": "10.2.0"}, "TensorRT 10.1.0 (this is 10.2.0)"),
        ({"data_sha256": "e" * 64}, "other calibration data"),
    ],
)
def test_a_cache_from_another_key_is_refused(tmp_path: Path, change: dict[str, object], fragment: str) -> None:
    path = tmp_path / "trt-int8.calibration.json"
    _cache(path).write(b"scales")
    other = _cache(path, **change)
    assert other.read() is None
    assert fragment in other.refused and "calibration runs again" in other.refused
    assert other.used is False


def test_an_unreadable_cache_is_refused_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "trt-int8.calibration.json"
    path.write_bytes(b"TRT-8601-EntropyCalibration2\nraw TensorRT cache without a key\n")
    cache = _cache(path)
    assert cache.read() is None
    assert "could not be read" in cache.refused


def test_model_hash_covers_external_weights(tmp_path: Path) -> None:
    model = make_mlp_onnx(tmp_path / "model.onnx", with_external_data=True)
    before = model_sha256(model)
    weights = tmp_path / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[0] ^= 1
    weights.write_bytes(bytes(data))
    assert model_sha256(model) != before


# --- engine stamps ---------------------------------------------------------------------------


def test_stamp_says_what_built_the_engine() -> None:
    stamp = engine_stamp("10.1.0", (8, 9), "NVIDIA L4", ["fp16"], {"image": ((1, 3), (2, 3), (4, 3))})
    assert stamp == {
        "stamp_version": 1,
        "tensorrt": "10.1.0",
        "compute_capability": "8.9",
        "gpu_name": "NVIDIA L4",
        "precisions": ["fp16"],
        "profile_shapes": {"image": {"min": [1, 3], "opt": [2, 3], "max": [4, 3]}},
    }
    assert json.loads(json.dumps(stamp)) == stamp


def test_engine_compatibility() -> None:
    stamp = engine_stamp("10.1.0", (8, 9), "NVIDIA L4", ["fp16"], {})
    assert check_engine_compatible(stamp, "10.1.0", (8, 9)) is None
    assert check_engine_compatible(stamp, "10.1.0", "8.9") is None

    other_version = check_engine_compatible(stamp, "10.2.0", (8, 9))
    assert other_version is not None
    assert "TensorRT 10.1.0" in other_version and "TensorRT 10.2.0" in other_version and "Rebuild" in other_version

    other_gpu = check_engine_compatible(stamp, "10.1.0", (9, 0))
    assert other_gpu is not None and "8.9 (NVIDIA L4)" in other_gpu and "9.0" in other_gpu

    assert "cannot be checked" in (check_engine_compatible({}, "10.1.0", (8, 9)) or "")
    assert stamp_path(Path("out/trt-fp16.plan")) == Path("out/trt-fp16.plan.json")


# --- support from the parser's answer --------------------------------------------------------


def _chain(*ops: str) -> list[ParserNode]:
    return [
        ParserNode(f"{op}_{index}", "ai.onnx", op, inputs=(f"t{index}",), outputs=(f"t{index + 1}",))
        for index, op in enumerate(ops)
    ]


def test_parser_report_for_a_supported_model() -> None:
    report = report_from_parser("tensorrt", "10.1.0", _chain("Conv", "Relu", "Gemm"), True, [([0, 1, 2], True)], [])
    assert (report.method, report.verdict, report.installed, report.runtime_version) == (
        "runtime",
        "full",
        True,
        "10.1.0",
    )
    assert {(op.op_type, op.status, op.device) for op in report.ops} == {
        ("Conv", "supported", "GPU"),
        ("Relu", "supported", "GPU"),
        ("Gemm", "supported", "GPU"),
    }
    assert [(part.device, part.node_count) for part in report.partitions] == [("GPU", 3)]
    assert report.notes == ()


def test_parser_report_maps_node_indices_to_nodes() -> None:
    nodes = _chain("Conv", "Relu", "Foo", "Sigmoid", "Bar")
    subgraphs = [([0, 1], False), ([3], False)]
    errors = [(2, "Foo: No importer registered for op: Foo"), (-1, "Graph input warning")]
    report = report_from_parser("tensorrt", "10.1.0", nodes, False, subgraphs, errors)
    assert report.verdict == "partial"
    ops = {op.op_type: op for op in report.ops}
    assert (ops["Foo"].status, ops["Foo"].reason, ops["Foo"].nodes) == (
        "unsupported",
        "Foo: No importer registered for op: Foo",
        ("Foo_2",),
    )
    assert ops["Bar"].status == "unsupported" and "left this node out" in ops["Bar"].reason
    assert (ops["Sigmoid"].status, ops["Sigmoid"].device) == ("supported", "GPU")
    assert [(part.device, part.nodes) for part in report.partitions] == [
        ("GPU", ("Conv_0", "Relu_1")),
        ("unsupported", ("Foo_2",)),
        ("GPU", ("Sigmoid_3",)),
        ("unsupported", ("Bar_4",)),
    ]
    assert any("stops converting" in note for note in report.notes)
    assert any("Graph input warning" in note for note in report.notes)


def test_parser_report_orders_partitions_topologically() -> None:
    # The file lists Relu before the Conv that feeds it.
    nodes = [
        ParserNode("relu", "ai.onnx", "Relu", inputs=("c",), outputs=("y",)),
        ParserNode("conv", "ai.onnx", "Conv", inputs=("x",), outputs=("c",)),
    ]
    report = report_from_parser("tensorrt", "10.1.0", nodes, True, [([1, 0], True)], [])
    assert report.partitions[0].nodes == ("conv", "relu")


def test_parser_errors_about_no_node_make_an_error_verdict() -> None:
    nodes = _chain("Relu")
    report = report_from_parser(
        "tensorrt", "10.1.0", nodes, False, [([0], False)], [(-1, "Unsupported ONNX data type: STRING")]
    )
    assert report.verdict == "error"
    assert report.error == "Unsupported ONNX data type: STRING"


class _FakeParserError:
    def __init__(self, node: int, desc: str, operator: str = "") -> None:
        self._node, self._desc, self._operator = node, desc, operator

    def node(self) -> int:
        return self._node

    def desc(self) -> str:
        return self._desc

    def node_operator(self) -> str:
        return self._operator


def _fake_tensorrt(subgraphs: list[tuple[list[int], bool]], errors: list[_FakeParserError], v2: bool) -> object:
    """Just enough of the tensorrt module, as documented, for `check_support` to call it."""
    import types

    class ILogger:
        class Severity:
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self) -> None:
            pass

    class Builder:
        def __init__(self, logger: object) -> None:
            self.logger = logger

        def create_network(self, flags: int) -> object:
            assert flags == 0  # TensorRT 10: explicit batch is the only mode
            return object()

    class OnnxParser:
        def __init__(self, network: object, logger: object) -> None:
            self.num_errors = len(errors)
            self.num_subgraphs = len(subgraphs)

        def supports_model(self, model: bytes, path: str) -> tuple[bool, list[tuple[list[int], bool]]]:
            assert model.startswith(b"\x08") and path.endswith(".onnx")
            return not errors, subgraphs

        def supports_model_v2(self, model: bytes, path: str) -> bool:
            return self.supports_model(model, path)[0]

        def get_subgraph_nodes(self, index: int) -> list[int]:
            return subgraphs[index][0]

        def is_subgraph_supported(self, index: int) -> bool:
            return subgraphs[index][1]

        def get_error(self, index: int) -> _FakeParserError:
            return errors[index]

    if not v2:
        del OnnxParser.supports_model_v2
    creation = types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    return types.SimpleNamespace(
        __version__="10.1.0",
        ILogger=ILogger,
        Logger=ILogger,
        Builder=Builder,
        OnnxParser=OnnxParser,
        NetworkDefinitionCreationFlag=creation,
    )


@pytest.mark.parametrize("v2", [True, False], ids=["supports_model_v2", "supports_model"])
def test_check_support_asks_the_parser(v2: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    errors = [_FakeParserError(2, "Assertion failed: only 2D pooling is supported", "MaxPool")]
    fake = _fake_tensorrt([([0, 1], False), ([3, 4], False)], errors, v2)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_backend, "_cuda_device_usable", lambda trt: True)
    backend = TensorRtBackend()
    assert backend.runtime_version() == "10.1.0"

    report = backend.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert (report.method, report.verdict, report.runtime_version) == ("runtime", "partial", "10.1.0")
    ops = {op.op_type: (op.status, op.device, op.reason, op.nodes) for op in report.ops}
    assert ops["MaxPool"] == (
        "unsupported",
        "",
        "MaxPool: Assertion failed: only 2D pooling is supported",
        ("MaxPool_2",),
    )
    assert ops["Conv"] == ("supported", "GPU", "", ("Conv_0",))
    assert [(part.device, part.node_count) for part in report.partitions] == [
        ("GPU", 2),
        ("unsupported", 1),
        ("GPU", 2),
    ]


# --- without TensorRT ------------------------------------------------------------------------


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> TensorRtBackend:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail, even where it is installed
    return TensorRtBackend()


def test_published_list_answers_when_tensorrt_is_missing(no_tensorrt: TensorRtBackend, tmp_path: Path) -> None:
    assert no_tensorrt.runtime_version() is None
    assert no_tensorrt.available() is False
    report = no_tensorrt.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert (report.backend, report.installed, report.method, report.verdict) == (
        "tensorrt",
        False,
        "published_list",
        "full",
    )
    assert {op.op_type: op.status for op in report.ops} == dict.fromkeys(
        ["Conv", "Flatten", "Gemm", "MaxPool", "Relu"], "supported"
    )
    assert "2D or 3D pooling only" in {op.op_type: op.reason for op in report.ops}["MaxPool"]
    assert "published operator list" in report.notes[0] and "10.1" in report.notes[0]


def test_published_list_names_unsupported_and_unknown_ops(no_tensorrt: TensorRtBackend, tmp_path: Path) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Det", ["a"], ["b"]),
            helper.make_node("Foo", ["b"], ["y"], domain="com.example"),
        ],
        "mixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "mixed.onnx"
    onnx.save_model(model, str(path))
    report = no_tensorrt.check_support(path)
    assert report.verdict == "partial"
    ops = {op.op_type: (op.status, op.reason) for op in report.ops}
    assert ops["Relu"][0] == "supported"
    assert ops["Det"] == ("unsupported", "Marked unsupported (N) in the onnx-tensorrt operator support matrix.")
    assert ops["Foo"][0] == "unsupported" and "not in tensorrt's published operator list" in ops["Foo"][1]


def test_without_a_published_list_the_report_says_not_installed(
    no_tensorrt: TensorRtBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trt_backend, "load_published_list", lambda runtime: None)
    report = no_tensorrt.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert report == no_tensorrt.not_installed_report()


def test_building_and_loading_need_tensorrt(no_tensorrt: TensorRtBackend, tmp_path: Path) -> None:
    model = make_cnn_onnx(tmp_path / "cnn.onnx")
    profile = HardwareProfile("nvidia-gpu", "gpu", ("tensorrt",), ("fp32", "fp16"), queue="gpu")
    with pytest.raises(BackendNotInstalled, match="TensorRT is not installed"):
        no_tensorrt.build_variants(model, profile, None, tmp_path / "out")
    with pytest.raises(BackendNotInstalled, match="cannot run"):
        no_tensorrt.load(tmp_path / "out" / "trt-fp32.plan")


def test_the_published_list_says_where_it_comes_from() -> None:
    data = json.loads((OPLIST_DIR / "tensorrt.json").read_text())
    assert data["runtime"] == "tensorrt" and data["version"] == "10.1"
    assert "onnx-tensorrt" in data["source"] and data["retrieved"]
    oplist = load_published_list("tensorrt")
    assert oplist is not None
    assert oplist.lookup("ai.onnx", "Conv")[0] == "supported"
    assert oplist.lookup("ai.onnx", "ConvInteger")[0] == "unsupported"
    statuses = {entry["status"] for entry in data["domains"]["ai.onnx"].values()}
    assert statuses == {"supported", "unsupported"}


# --- on a GPU with TensorRT --------------------------------------------------------------------


@pytest.fixture
def gpu_backend() -> TensorRtBackend:
    """A TensorRT backend that can build and run engines here, or a skip saying what is missing."""
    try:
        import tensorrt
    except ImportError:
        pytest.skip("TensorRT (the tensorrt package) is not installed on this machine; engine tests need it.")
    backend = TensorRtBackend()
    if backend.runtime_version() is None:
        pytest.skip(f"TensorRT {tensorrt.__version__} is installed, but no CUDA GPU is usable here.")
    try:
        import torch
    except ImportError:
        pytest.skip("PyTorch with CUDA is needed for the engines' input and output buffers; it is not installed.")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no CUDA GPU here.")
    return backend


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


def _reference(model: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _by_name(variants: list[Variant]) -> dict[str, Variant]:
    return {variant.name: variant for variant in variants}


@pytest.mark.gpu
def test_gpu_support_comes_from_the_parser(gpu_backend: TensorRtBackend, tmp_path: Path) -> None:
    report = gpu_backend.check_support(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert (report.method, report.verdict, report.installed) == ("runtime", "full", True)
    assert [(part.device, part.node_count) for part in report.partitions] == [("GPU", 5)]


@pytest.mark.gpu
def test_gpu_engines_match_onnxruntime(gpu_backend: TensorRtBackend, tmp_path: Path) -> None:
    model = make_mlp_onnx(tmp_path / "mlp.onnx")
    profile = HardwareProfile(
        "nvidia-gpu", "gpu", ("tensorrt",), ("fp32", "fp16"), queue="gpu", options={"batch_sizes": [1, 4, 8]}
    )
    built = gpu_backend.build_variants(model, profile, None, tmp_path / "out")
    variants = _by_name(built)
    assert set(variants) == {"trt-fp32", "trt-fp16"}, built.notes
    rng = np.random.default_rng(3)
    for batch in (1, 8):
        feeds = {"input": rng.standard_normal((batch, 16)).astype(np.float32)}
        (expected,) = _reference(model, feeds)
        for name, variant in variants.items():
            assert variant.format == "tensorrt-plan" and variant.path.suffix == ".plan"
            assert stamp_path(variant.path) in variant.files and stamp_path(variant.path).is_file()
            assert variant.options["stamp"]["profile_shapes"]["input"] == {
                "min": [1, 16],
                "opt": [4, 16],
                "max": [8, 16],
            }
            session = gpu_backend.load(variant.path)
            output = session.run(feeds)["output"]
            session.close()
            assert output.shape == expected.shape
            if name == "trt-fp32":
                np.testing.assert_allclose(output, expected, rtol=1e-3, atol=1e-3)
            else:
                assert _cosine(output, expected) > 0.99
    assert variants["trt-fp32"].options["timing_cache"] == "created"
    assert variants["trt-fp16"].options["timing_cache"] == "reused"


@pytest.mark.gpu
def test_gpu_engine_refuses_shapes_and_stamps_it_was_not_built_for(
    gpu_backend: TensorRtBackend, tmp_path: Path
) -> None:
    model = make_mlp_onnx(tmp_path / "mlp.onnx")
    profile = HardwareProfile("nvidia-gpu", "gpu", ("tensorrt",), ("fp32",), options={"batch_sizes": [2]})
    (variant,) = gpu_backend.build_variants(model, profile, None, tmp_path / "out")
    session = gpu_backend.load(variant.path)
    with pytest.raises(ValueError, match="size 3 on axis 0"):
        session.run({"input": np.zeros((3, 16), np.float32)})
    session.close()

    sidecar = stamp_path(variant.path)
    stamp = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**stamp, "tensorrt": "7.0.0"}))
    with pytest.raises(EngineIncompatible, match=r"TensorRT 7\.0\.0"):
        gpu_backend.load(variant.path)


@pytest.mark.gpu
def test_gpu_int8_engine_is_calibrated_and_its_cache_reused(gpu_backend: TensorRtBackend, tmp_path: Path) -> None:
    import tensorrt

    model = make_cnn_onnx(tmp_path / "cnn.onnx")
    images = np.random.default_rng(5).standard_normal((16, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "calibration.npz", image=images)
    calibration = Calibration(tmp_path / "calibration.npz", method="entropy")
    profile = HardwareProfile("nvidia-gpu", "gpu", ("tensorrt",), ("int8",), queue="gpu")
    variants = gpu_backend.build_variants(model, profile, calibration, tmp_path / "out")
    if not hasattr(tensorrt.BuilderFlag, "INT8"):
        assert not variants and "Q/DQ" in variants.notes[0]
        return
    (variant,) = variants
    assert variant.options["calibration"]["batches"] == 16
    assert variant.options["calibration"]["cache"].startswith("created")
    feeds = {"image": images[:1]}
    (expected,) = _reference(model, feeds)
    session = gpu_backend.load(variant.path)
    assert _cosine(session.run(feeds)["logits"], expected) > 0.9
    session.close()

    (again,) = gpu_backend.build_variants(model, profile, calibration, tmp_path / "out")
    assert again.options["calibration"]["cache"] == "reused"
