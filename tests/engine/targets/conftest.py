"""Fixtures for the serving-target tests: small ONNX models, and a real Triton server per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.triton_server import TritonServer, start_triton_server, triton_skip_reason
from workers.engine.targets.base import DeploymentSpec, DynamicBatching, TargetSettings, TensorSignature


def make_mlp(path: Path, seed: int = 0, batch: str | int = "batch") -> Path:
    """A small MLP, x [batch, 8] -> MatMul 8x16 -> Relu -> MatMul 16x3 -> y [batch, 3]; weights from `seed`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((8, 16)).astype(np.float32)
    w2 = rng.standard_normal((16, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["hidden"]),
            helper.make_node("Relu", ["hidden"], ["hidden_relu"]),
            helper.make_node("MatMul", ["hidden_relu", "w2"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def reference_run(model: Path, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The model's outputs in plain onnxruntime, the reference a deployment must match."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return [dict(zip(["y"], session.run(["y"], feed), strict=True)) for feed in feeds]


def mlp_feeds(count: int = 2, batch: int = 2) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(42)
    return [{"x": rng.standard_normal((batch, 8)).astype(np.float32)} for _ in range(count)]


def mlp_spec(model: Path, version: int, name: str = "mlp", **changes: object) -> DeploymentSpec:
    """A python-mode-ready spec for `make_mlp`'s model, its reference computed by onnxruntime."""
    feeds = mlp_feeds()
    values: dict[str, object] = {
        "model_name": name,
        "version": version,
        "model_file": model,
        "engine_backend": "onnxruntime",
        "model_format": "onnx",
        "inputs": (TensorSignature("x", "float32", (-1, 8)),),
        "outputs": (TensorSignature("y", "float32", (-1, 3)),),
        "max_batch_size": 8,
        "dynamic_batching": DynamicBatching((4,), 200),
        "reference_inputs": tuple(feeds),
        "reference_outputs": tuple(reference_run(model, feeds)),
        **changes,
    }
    return DeploymentSpec(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A real tritonserver (explicit model control, HTTP on a free loopback port) for the module's tests."""
    reason = triton_skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("triton")
    repository = root / "repository"
    repository.mkdir()
    server = start_triton_server(repository, root / "server")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def python_target(triton_server: TritonServer) -> TargetSettings:
    """Settings for the module's server in python mode, the paths from this interpreter."""
    return TargetSettings(
        name="test-triton",
        url=triton_server.url,
        repository=str(triton_server.repository),
        backend_mode="python",
        request_timeout_seconds=30,
        load_timeout_seconds=60,
    )
