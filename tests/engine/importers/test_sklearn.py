"""scikit-learn from skops files to ONNX, the allow-list of types, and pickle files refused unread."""

from __future__ import annotations

import io
import pickle
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="scikit-learn is not installed")
pytest.importorskip("skops", reason="skops is not installed (pip install skops)")
pytest.importorskip("skl2onnx", reason="skl2onnx is not installed (pip install skl2onnx)")

import numpy as np
import skops.io
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from tests.modelzoo import make_mlp_onnx, make_zip
from workers.engine.errors import ModelError
from workers.engine.formats import detect_format
from workers.engine.importers.base import ImportOptions, InputSpec
from workers.engine.importers.sklearn import (
    PICKLE_REFUSED_MESSAGE,
    PickleRefusal,
    SkopsImporter,
    is_allowed_type,
    pickle_references,
    refuse_pickle,
    sniff_pickle,
)

# Set by Smuggled.__setstate__: proof that a refused file's object was never constructed.
CONSTRUCTED: list[str] = []


class Smuggled:
    """A custom class: Slipway must refuse a skops file that holds one."""

    def __init__(self) -> None:
        self.note = "not a scikit-learn type"

    def __setstate__(self, state: dict[str, object]) -> None:
        CONSTRUCTED.append("Smuggled")
        self.__dict__.update(state)


class Payload:
    """Unpickling this creates `marker`: what a hostile pickle's os.system call would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def double(values: np.ndarray) -> np.ndarray:
    return values * 2


def _progress(fraction: float, message: str) -> None:
    pass


def _iris_like(rows: int = 150) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), rows // 3)
    centers = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]])
    return centers[y] + rng.normal(scale=0.4, size=(len(y), 4)), y


def _dump(model: object, path: Path) -> Path:
    skops.io.dump(model, path)
    return path


def _convert(path: Path, tmp_path: Path, options: ImportOptions | None = None):
    return SkopsImporter().convert(path, tmp_path / "out", options or ImportOptions(), _progress)


def test_pipeline_classifier_converts_with_parity(tmp_path: Path) -> None:
    X, y = _iris_like()
    model = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=500))]).fit(X, y)
    path = _dump(model, tmp_path / "model.skops")

    assert SkopsImporter.sniff(path)
    refuse_pickle(path)  # the registry's first check lets a skops file through
    report = _convert(path, tmp_path)

    assert (report.format, report.framework, report.converter) == ("sklearn-skops", "sklearn", "skl2onnx")
    assert report.outputs == ("label", "probabilities")
    assert report.inputs == (InputSpec("input", (None, 4), "float32"),)
    assert any("n_features_in_" in text for text in report.assumptions)
    assert any("ZipMap" in text for text in report.notes)
    assert all(result.passed for result in report.parity)
    probabilities = report.parity[1]
    assert probabilities.max_abs_error < 1e-5 and probabilities.cosine > 0.99999
    assert report.onnx_path.is_file() and report.opset >= 13

    import onnxruntime as ort

    session = ort.InferenceSession(str(report.onnx_path), providers=["CPUExecutionProvider"])
    labels, _ = session.run(None, {"input": X.astype(np.float32)})
    assert (labels == model.predict(X)).all()


def test_random_forest_regressor_converts_with_parity(tmp_path: Path) -> None:
    X, _ = _iris_like()
    model = RandomForestRegressor(n_estimators=20, max_depth=6, random_state=0).fit(X[:, 1:], X[:, 0])
    path = _dump(model, tmp_path / "forest.skops")

    report = _convert(path, tmp_path)

    assert report.outputs == ("variable",)
    assert report.parity[0].passed and report.parity[0].max_abs_error < 1e-4


def test_custom_class_is_refused_and_never_constructed(tmp_path: Path) -> None:
    X, y = _iris_like()
    model = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=500))]).fit(X, y)
    model.steps[0][1].extra = Smuggled()
    path = _dump(model, tmp_path / "smuggled.skops")
    CONSTRUCTED.clear()

    with pytest.raises(ModelError) as caught:
        _convert(path, tmp_path)

    assert caught.value.code == "untrusted_types"
    assert f"{__name__}.Smuggled" in caught.value.message
    assert "scikit-learn estimators" in caught.value.message
    assert CONSTRUCTED == []


def test_custom_function_is_refused(tmp_path: Path) -> None:
    X, y = _iris_like()
    model = Pipeline([("double", FunctionTransformer(double)), ("classify", LogisticRegression(max_iter=500))])
    path = _dump(model.fit(X, y), tmp_path / "function.skops")

    with pytest.raises(ModelError) as caught:
        _convert(path, tmp_path)

    assert caught.value.code == "untrusted_types"
    assert f"{__name__}.double" in caught.value.message


def test_hist_gradient_boosting_is_refused_with_a_reason(tmp_path: Path) -> None:
    X, y = _iris_like()
    path = _dump(HistGradientBoostingClassifier(max_iter=3).fit(X, y), tmp_path / "hgb.skops")

    with pytest.raises(ModelError) as caught:
        _convert(path, tmp_path)

    assert caught.value.code == "untrusted_types"
    assert "TreePredictor" in caught.value.message and "bounds checks" in caught.value.message


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [("left_child", 10**6, "node 0 pointing outside the tree"), ("feature", 99, "on feature 99, but only 3")],
)
def test_tampered_tree_is_refused_before_predict(tmp_path: Path, field: str, value: int, problem: str) -> None:
    X, _ = _iris_like()
    model = RandomForestRegressor(n_estimators=2, max_depth=3, random_state=0).fit(X[:, 1:], X[:, 0])
    path = _dump(model, tmp_path / "forest.skops")
    tampered = tmp_path / "tampered.skops"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tampered, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith(".npy"):
                array = np.load(io.BytesIO(data), allow_pickle=False)
                if array.dtype.names and "left_child" in array.dtype.names:
                    array[field][0] = value  # would send predict far outside the nodes or the row
                    buffer = io.BytesIO()
                    np.save(buffer, array, allow_pickle=False)
                    data = buffer.getvalue()
            target.writestr(info, data)

    with pytest.raises(ModelError) as caught:
        _convert(tampered, tmp_path)

    assert caught.value.code == "invalid_model"
    assert problem in caught.value.message


def _mixed_pipeline() -> tuple[Pipeline, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    X = np.empty((120, 2), dtype=object)
    X[:, 0] = rng.standard_normal(120)
    X[:, 1] = rng.choice(["red", "green", "blue"], 120)
    y = (X[:, 1] == "red").astype(int)
    columns = ColumnTransformer([("number", StandardScaler(), [0]), ("colour", OneHotEncoder(), [1])])
    return Pipeline([("columns", columns), ("classify", LogisticRegression())]).fit(X, y), X, y


def test_mixed_column_types_need_declared_inputs(tmp_path: Path) -> None:
    model, _, _ = _mixed_pipeline()
    path = _dump(model, tmp_path / "mixed.skops")

    with pytest.raises(ModelError) as caught:
        _convert(path, tmp_path)

    assert caught.value.code == "inputs_required"
    assert "OneHotEncoder encodes text categories" in caught.value.message
    assert "declare the model's inputs" in caught.value.message


def test_mixed_column_types_convert_with_declared_inputs(tmp_path: Path) -> None:
    model, _, _ = _mixed_pipeline()
    path = _dump(model, tmp_path / "mixed.skops")
    rng = np.random.default_rng(2)
    parity = tmp_path / "parity.npz"
    np.savez(
        parity,
        number=rng.standard_normal((40, 1)).astype(np.float32),
        colour=rng.choice(["red", "green", "blue"], (40, 1)),
    )
    inputs = (InputSpec("number", (None, 1), "float32"), InputSpec("colour", (None, 1), "string"))

    report = _convert(path, tmp_path, ImportOptions(inputs=inputs, parity_inputs=parity))

    assert report.inputs == inputs and report.assumptions == ()
    assert all(result.passed for result in report.parity)
    assert any("40 rows" in text for text in report.notes)


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("sklearn.linear_model._logistic.LogisticRegression", True),
        ("sklearn.tree._tree.Tree", True),
        ("numpy.dtype", True),
        ("numpy.ndarray", True),
        ("scipy.sparse._csr.csr_matrix", True),
        ("builtins.dict", True),
        ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor", False),
        ("sklearn.neighbors._kd_tree.KDTree", False),
        ("sklearn.utils.validation.check_array", False),
        ("numpy.load", False),
        ("builtins.eval", False),
        ("os.system", False),
        ("slipway_not_a_module.Anything", False),
    ],
)
def test_allow_list(name: str, allowed: bool) -> None:
    assert is_allowed_type(name) is allowed


@pytest.mark.parametrize("name", ["numpy.f2py.__main__.main", "sklearn.conftest.pytest_configure"])
def test_modules_that_act_on_import_are_never_imported(name: str) -> None:
    module = name.rpartition(".")[0]
    sys.modules.pop(module, None)

    assert not is_allowed_type(name)
    assert module not in sys.modules


def test_skops_sniff_rejects_other_files(tmp_path: Path) -> None:
    onnx_path = make_mlp_onnx(tmp_path / "model.onnx")
    plain_zip = make_zip(tmp_path / "plain.zip", {"model.onnx": onnx_path})
    no_protocol = make_zip(tmp_path / "fake.skops", {"schema.json": b'{"__loader__": "ObjectNode"}'})
    random_bytes = tmp_path / "random.bin"
    random_bytes.write_bytes(np.random.default_rng(3).bytes(4096))
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))

    for path in (onnx_path, plain_zip, no_protocol, random_bytes, pickled):
        assert not SkopsImporter.sniff(path), path.name
    for path in (onnx_path, plain_zip, random_bytes):
        assert not sniff_pickle(path), path.name
        refuse_pickle(path)  # returns: not a pickle


def _payload_files(tmp_path: Path, marker: Path) -> list[Path]:
    import joblib

    paths = []
    for protocol in range(6):
        path = tmp_path / f"payload-{protocol}.pkl"
        path.write_bytes(pickle.dumps(Payload(marker), protocol=protocol))
        paths.append(path)
    for compress in (0, ("zlib", 3), ("gzip", 3), ("bz2", 3), ("xz", 3)):
        path = tmp_path / f"payload-{compress[0] if compress else 'plain'}.joblib"
        joblib.dump(Payload(marker), path, compress=compress)
        paths.append(path)
    return paths


def test_the_payload_is_live(tmp_path: Path) -> None:
    """Control: unpickling the payload does create its marker, so the next test means something."""
    marker = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(Payload(marker))).close()  # noqa: S301 - our own payload, to prove it works
    assert marker.exists()


def test_pickles_are_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    options = ImportOptions()

    for path in _payload_files(tmp_path, marker):
        assert sniff_pickle(path), path.name
        assert PickleRefusal.sniff(path)
        assert not SkopsImporter.sniff(path)
        with pytest.raises(ModelError) as refused:
            PickleRefusal().convert(path, tmp_path / "out", options, _progress)
        assert refused.value.code == "pickle_refused"
        assert refused.value.message.startswith(PICKLE_REFUSED_MESSAGE)
        assert "io.open" in refused.value.message or "builtins.open" in refused.value.message, path.name
        with pytest.raises(ModelError, match="does not load pickle files"):
            refuse_pickle(path)
        with pytest.raises(ModelError) as skops_refused:
            _convert(path, tmp_path)
        assert skops_refused.value.code == "not_a_model"
        with pytest.raises(ModelError):
            detect_format(path)

    assert not marker.exists()


def test_pickle_references_name_a_scikit_learn_model(tmp_path: Path) -> None:
    X, y = _iris_like()
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(X, y), protocol=5))

    assert sniff_pickle(path)
    assert "sklearn.linear_model._logistic.LogisticRegression" in pickle_references(path)


def test_files_that_start_like_pickles_are_not_pickles(tmp_path: Path) -> None:
    safetensors = (0x380).to_bytes(8, "little") + b'{"weight": {"dtype": "F32"}}'  # starts 0x80 0x03
    texts = [b"col1,col2\n1,2\n3,4\n", b"(note) hello\n", b"class Model:\n    pass\n", b"}{", safetensors]
    for index, data in enumerate(texts):
        path = tmp_path / f"file-{index}"
        path.write_bytes(data)
        assert not sniff_pickle(path), data
