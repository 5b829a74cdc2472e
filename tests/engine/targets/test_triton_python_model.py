"""The python-backend model.py, run outside Triton against a stand-in for `triton_python_backend_utils`."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.engine.targets.conftest import make_mlp, mlp_feeds, mlp_spec, reference_run
from workers.engine.targets.base import RepositoryLocation, TargetSettings
from workers.engine.targets.triton_repository import TritonRepository, prepare_version
from workers.engine.targets.triton_stores import LocalStore


class _Tensor:
    """What the stub hands a model: a named tensor that exports DLPack."""

    def __init__(self, name: str, value: np.ndarray) -> None:
        self._name = name
        self.value = value

    def name(self) -> str:
        return self._name

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self.value.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self.value.__dlpack_device__()

    def as_numpy(self) -> np.ndarray:
        return self.value

    @staticmethod
    def from_dlpack(name: str, value: Any) -> _Tensor:
        return _Tensor(name, np.from_dlpack(value))


class _Response:
    def __init__(self, output_tensors: list[_Tensor], error: Any = None) -> None:
        self.outputs = {tensor.name(): tensor.value for tensor in output_tensors}
        self.error = error


def _stand_in() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = _Tensor  # type: ignore[attr-defined]
    module.InferenceResponse = _Response  # type: ignore[attr-defined]
    module.TritonError = lambda text: text  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda request, name: (  # type: ignore[attr-defined]
        _Tensor(name, request[name]) if name in request else None
    )
    module.Logger = types.SimpleNamespace(log_info=lambda text: None)  # type: ignore[attr-defined]
    return module


@pytest.fixture
def entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path]:
    """A python-mode entry written by Slipway, its model.py imported as the stub would."""
    model = make_mlp(tmp_path / "variant" / "mlp.onnx")
    repository_dir = tmp_path / "repository"
    repository_dir.mkdir()
    settings = TargetSettings(
        name="t",
        url="http://127.0.0.1:1",
        repository=str(repository_dir),
        backend_mode="python",
        python_paths=(str(tmp_path / "site-a"), str(tmp_path / "site-b")),
    )
    TritonRepository(LocalStore(RepositoryLocation.parse(str(repository_dir)))).push(
        prepare_version(mlp_spec(model, 1), settings), "mlp", [1]
    )
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    # initialize() confines its process for good (Landlock, seccomp): here that process is
    # pytest's, so these tests run it unconfined; test_triton_server.py proves the confinement
    # in a real stub and test_confine.py each of its rules.
    monkeypatch.setenv("SLIPWAY_SANDBOX_ISOLATION", "limits")
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _stand_in())
    spec = importlib.util.spec_from_file_location("slipway_test_model", repository_dir / "mlp" / "1" / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, model


def _initialized(module: Any, tmp_path: Path) -> Any:
    repository = tmp_path / "repository" / "mlp"
    config = {
        "max_batch_size": 8,
        "input": [{"name": "x", "data_type": "TYPE_FP32"}],
        "output": [{"name": "y", "data_type": "TYPE_FP32"}],
    }
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(repository), "model_version": "1"})
    return model


def test_importing_the_model_puts_the_configs_paths_before_the_systems_packages(
    entry: tuple[Any, Path], tmp_path: Path
) -> None:
    module, _ = entry
    entries = [str(tmp_path / "site-a"), str(tmp_path / "site-b")]
    assert entries == module._SYS_PATH
    start = sys.path.index(entries[0])
    assert sys.path[start : start + 2] == entries
    first_packages = next(index for index, path in enumerate(sys.path) if path.endswith("-packages"))
    assert first_packages == start + 2  # after the standard library, right before every site-packages


def test_requests_batched_together_run_as_one_batch(entry: tuple[Any, Path], tmp_path: Path) -> None:
    module, onnx_model = entry
    model = _initialized(module, tmp_path)
    calls: list[tuple[int, ...]] = []
    real_run = model._session.run

    def counting_run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(feed["x"].shape)
        return real_run(feed)

    model._session.run = counting_run
    feeds = mlp_feeds(count=3, batch=2)
    responses = model.execute(feeds)
    assert calls == [(6, 8)]
    for response, expected in zip(responses, reference_run(onnx_model, feeds), strict=True):
        assert response.error is None
        np.testing.assert_allclose(response.outputs["y"], expected["y"], rtol=1e-6)
    model.finalize()


def test_a_bad_request_fails_alone(entry: tuple[Any, Path], tmp_path: Path) -> None:
    module, onnx_model = entry
    model = _initialized(module, tmp_path)
    good = mlp_feeds(count=1)[0]
    responses = model.execute([good, {"x": np.zeros((2, 5), np.float32)}, {}])
    np.testing.assert_allclose(responses[0].outputs["y"], reference_run(onnx_model, [good])[0]["y"], rtol=1e-6)
    assert "Got invalid dimensions for input: x" in responses[1].error  # onnxruntime's own words
    assert responses[2].error == "The request has no input 'x'."


def test_string_tensors_are_refused_under_numpy_2(entry: tuple[Any, Path], tmp_path: Path) -> None:
    module, _ = entry
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip("numpy 1 carries strings through the stub")
    config = {"max_batch_size": 0, "input": [{"name": "x", "data_type": "TYPE_STRING"}], "output": []}
    args = {
        "model_config": json.dumps(config),
        "model_repository": str(tmp_path / "repository/mlp"),
        "model_version": "1",
    }
    with pytest.raises(RuntimeError, match="numpy<2 on the Triton host"):
        module.TritonPythonModel().initialize(args)


def test_a_runtime_missing_on_the_triton_host_is_named_with_what_to_install(
    entry: tuple[Any, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.engine.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend

    module, _ = entry
    monkeypatch.setattr(OnnxRuntimeCpuBackend, "runtime_version", lambda self: None)
    with pytest.raises(RuntimeError) as raised:
        _initialized(module, tmp_path)
    assert "runs on onnxruntime" in str(raised.value)
    assert "pip install numpy onnx onnxruntime" in str(raised.value)
