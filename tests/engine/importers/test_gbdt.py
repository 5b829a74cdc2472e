"""XGBoost (JSON and UBJSON) and LightGBM (text) models to ONNX, and telling their files apart."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.modelzoo import make_mlp_onnx, make_zip
from workers.engine.errors import ModelError
from workers.engine.importers.base import ImportOptions, ImportReport, InputSpec
from workers.engine.importers.gbdt import LightGBMImporter, XGBoostImporter
from workers.engine.importers.sklearn import SkopsImporter, sniff_pickle

pytest.importorskip("onnxmltools", reason="onnxmltools is not installed (pip install onnxmltools)")


def _progress(fraction: float, message: str) -> None:
    pass


def _data(rows: int = 300, features: int = 6) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((rows, features)).astype(np.float32)


@pytest.fixture(scope="module")
def xgboost_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    xgboost = pytest.importorskip("xgboost", reason="xgboost is not installed (pip install xgboost-cpu)")
    folder = tmp_path_factory.mktemp("xgboost")
    X = _data()
    binary = (X[:, 0] + X[:, 1] > 0).astype(int)
    three = np.digitize(X[:, 2], [-0.5, 0.5])
    files = {}
    models = {
        "binary": xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(X, binary),
        "softprob": xgboost.XGBClassifier(n_estimators=10, max_depth=3).fit(X, three),
        "softmax": xgboost.XGBClassifier(n_estimators=10, max_depth=3, objective="multi:softmax").fit(X, three),
        "regressor": xgboost.XGBRegressor(n_estimators=20, max_depth=4).fit(X, X[:, 0] * 2 - X[:, 3]),
    }
    for name, model in models.items():
        for suffix in ("json", "ubj"):
            path = folder / f"{name}.{suffix}"
            model.save_model(path)
            # Uploads keep no extension: the importer must read the content, not the name.
            files[f"{name}.{suffix}"] = path.rename(folder / f"{name}-{suffix}")
    return files


@pytest.fixture(scope="module")
def lightgbm_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    lightgbm = pytest.importorskip("lightgbm", reason="lightgbm is not installed (pip install lightgbm)")
    folder = tmp_path_factory.mktemp("lightgbm")
    X = _data()
    models = {
        "regressor": lightgbm.LGBMRegressor(n_estimators=20, verbose=-1).fit(X, X[:, 0] * 2 - X[:, 3]),
        "binary": lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(X, (X[:, 0] > 0).astype(int)),
        "multiclass": lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, np.digitize(X[:, 2], [-0.5, 0.5])),
    }
    files = {}
    for name, model in models.items():
        files[name] = folder / f"{name}.txt"
        model.booster_.save_model(files[name])
    return files


def _assert_passed(report: ImportReport) -> None:
    assert report.parity and all(result.passed for result in report.parity), report.parity
    assert report.onnx_path.is_file()
    assert report.inputs == (InputSpec("input", (None, 6), "float32"),)
    assert report.opset > 0


@pytest.mark.parametrize("suffix", ["json", "ubj"])
@pytest.mark.parametrize("name", ["binary", "softprob", "softmax"])
def test_xgboost_classifier_converts_with_parity(
    xgboost_files: dict[str, Path], tmp_path: Path, name: str, suffix: str
) -> None:
    path = xgboost_files[f"{name}.{suffix}"]
    assert XGBoostImporter.sniff(path)

    report = XGBoostImporter().convert(path, tmp_path, ImportOptions(), _progress)

    _assert_passed(report)
    assert report.outputs == ("label", "probabilities")
    assert report.parity[0].max_abs_error == 0.0  # labels match exactly
    assert report.parity[1].max_abs_error < 1e-5


@pytest.mark.parametrize("suffix", ["json", "ubj"])
def test_xgboost_regressor_converts_with_parity(xgboost_files: dict[str, Path], tmp_path: Path, suffix: str) -> None:
    report = XGBoostImporter().convert(xgboost_files[f"regressor.{suffix}"], tmp_path, ImportOptions(), _progress)

    _assert_passed(report)
    assert report.outputs == ("variable",)
    assert report.parity[0].max_abs_error < 1e-4


def test_xgboost_with_declared_input_and_parity_rows(xgboost_files: dict[str, Path], tmp_path: Path) -> None:
    parity = tmp_path / "rows.npz"
    np.savez(parity, features=_data(rows=50) * 3)
    options = ImportOptions(inputs=(InputSpec("features", (None, 6)),), parity_inputs=parity)

    report = XGBoostImporter().convert(xgboost_files["regressor.json"], tmp_path / "out", options, _progress)

    assert report.inputs == options.inputs and report.assumptions == ()
    assert any("50 rows" in note for note in report.notes)


def test_xgboost_refuses_inputs_of_the_wrong_width(xgboost_files: dict[str, Path], tmp_path: Path) -> None:
    options = ImportOptions(inputs=(InputSpec("features", (None, 5)),))

    with pytest.raises(ModelError) as caught:
        XGBoostImporter().convert(xgboost_files["regressor.json"], tmp_path, options, _progress)

    assert caught.value.code == "invalid_inputs"
    assert "[batch, 6]" in caught.value.message


@pytest.mark.parametrize("name", ["regressor", "binary", "multiclass"])
def test_lightgbm_converts_with_parity(lightgbm_files: dict[str, Path], tmp_path: Path, name: str) -> None:
    path = lightgbm_files[name]
    assert LightGBMImporter.sniff(path)

    report = LightGBMImporter().convert(path, tmp_path, ImportOptions(), _progress)

    _assert_passed(report)
    assert report.outputs == (("variable",) if name == "regressor" else ("label", "probabilities"))
    assert report.parity[-1].max_abs_error < 1e-4


def test_lightgbm_label_output_has_a_dynamic_batch(lightgbm_files: dict[str, Path], tmp_path: Path) -> None:
    import onnx

    report = LightGBMImporter().convert(lightgbm_files["binary"], tmp_path, ImportOptions(), _progress)

    label = onnx.load(str(report.onnx_path)).graph.output[0]
    assert not label.type.tensor_type.shape.dim[0].HasField("dim_value")


def test_damaged_xgboost_model_is_a_model_error(xgboost_files: dict[str, Path], tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.json"
    damaged.write_bytes(xgboost_files["binary.json"].read_bytes()[:-300])

    with pytest.raises(ModelError) as caught:
        XGBoostImporter().convert(damaged, tmp_path / "out", ImportOptions(), _progress)

    assert caught.value.code == "invalid_model"


def test_sniffers_do_not_confuse_formats(
    xgboost_files: dict[str, Path], lightgbm_files: dict[str, Path], tmp_path: Path
) -> None:
    onnx_path = make_mlp_onnx(tmp_path / "model.onnx")
    others = {
        "onnx": onnx_path,
        "zip": make_zip(tmp_path / "model.zip", {"model.onnx": onnx_path}),
        "random": tmp_path / "random.bin",
        "pickle": tmp_path / "model.pkl",
        "json": tmp_path / "config.json",
        "empty": tmp_path / "empty",
    }
    others["random"].write_bytes(np.random.default_rng(3).bytes(4096))
    others["pickle"].write_bytes(pickle.dumps({"learner": "version"}))
    others["json"].write_bytes(b'{"model": {"learner": 1}, "version": 2}')
    others["empty"].write_bytes(b"")

    for name, path in xgboost_files.items():
        assert XGBoostImporter.sniff(path) and not LightGBMImporter.sniff(path), name
        assert not SkopsImporter.sniff(path) and not sniff_pickle(path), name
    for name, path in lightgbm_files.items():
        assert LightGBMImporter.sniff(path) and not XGBoostImporter.sniff(path), name
        assert not SkopsImporter.sniff(path) and not sniff_pickle(path), name
    for name, path in others.items():
        assert not XGBoostImporter.sniff(path) and not LightGBMImporter.sniff(path), name


def test_parity_rows_of_the_wrong_width_are_refused(xgboost_files: dict[str, Path], tmp_path: Path) -> None:
    parity = tmp_path / "rows.npz"
    np.savez(parity, input=_data(rows=10, features=5))

    with pytest.raises(ModelError) as caught:
        XGBoostImporter().convert(
            xgboost_files["regressor.json"], tmp_path / "out", ImportOptions(parity_inputs=parity), _progress
        )

    assert caught.value.code == "invalid_parity_inputs"
    assert "float32 [10, 5]" in caught.value.message and "[None, 6]" in caught.value.message
