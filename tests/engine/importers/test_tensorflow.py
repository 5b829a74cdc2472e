"""TensorFlow importers: a SavedModel zip, Keras (.keras and .h5) and TFLite become ONNX that
matches the original, and unsafe or unusable files are refused with sentences."""

from __future__ import annotations

import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed here; the TensorFlow importers need it.")
pytest.importorskip("tf2onnx", reason="tf2onnx is not installed here; the TensorFlow importers convert with it.")
keras = pytest.importorskip("keras", reason="Keras is not installed here; the Keras importer needs it.")

import onnx  # noqa: E402

from workers.engine.errors import ModelError  # noqa: E402
from workers.engine.importers import tensorflow as tf_importers  # noqa: E402
from workers.engine.importers.base import ImportOptions, ImportReport, InputSpec  # noqa: E402
from workers.engine.importers.tensorflow import KerasImporter, SavedModelImporter, TfliteImporter  # noqa: E402

IMPORTERS = (SavedModelImporter, KerasImporter, TfliteImporter)
# Keras 3.15 saving weights under NumPy 2.4: harmless, and not the importers' doing.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def _progress(fraction: float, message: str) -> None:
    assert 0.0 <= fraction <= 1.0
    assert message


def _zip_folder(folder: Path, target: Path, top: str = "") -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(folder.rglob("*")):
            name = top + path.relative_to(folder).as_posix()
            zipped.write(path, name + "/" if path.is_dir() else name)
    return target


def _input_dims(path: Path) -> dict[str, list[int | str]]:
    model = onnx.load(str(path), load_external_data=False)
    return {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in model.graph.input
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every model file the tests import, built once: TensorFlow takes seconds to warm up."""
    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("tf-models")

    image = keras.Input((8, 8, 3), name="image")
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(image)
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    cnn = keras.Model(image, keras.layers.Dense(5, name="logits")(hidden))
    cnn.save(root / "cnn.keras")
    cnn.save(root / "cnn.h5")

    mlp = keras.Sequential(
        [keras.Input((6,), name="features"), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)]
    )
    mlp.save(root / "mlp.keras")

    left, right = keras.Input((4,), name="left"), keras.Input((3,), name="right")
    joined = keras.layers.Concatenate()([left, right])
    two_heads = keras.Model(
        [left, right], [keras.layers.Dense(2, name="score")(joined), keras.layers.Dense(1, name="gate")(joined)]
    )
    two_heads.save(root / "two_heads.keras")

    numbers = keras.Input((4,), name="numbers")
    lambda_model = keras.Model(numbers, keras.layers.Lambda(lambda x: x * 2)(numbers))
    lambda_model.save(root / "lambda.keras")
    lambda_model.save(root / "lambda.h5")

    module = tf.Module()
    module.model = cnn

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image")])
    def serve(image: Any) -> dict[str, Any]:
        return {"logits": cnn(image, training=False)}

    tf.saved_model.save(module, str(root / "savedmodel"), signatures={"serving_default": serve})
    _zip_folder(root / "savedmodel", root / "savedmodel.zip", top="exported/")

    # Weights of more than 1024 elements: tf2onnx's large-model mode keeps them outside the proto.
    wide = keras.Sequential([keras.Input((64,), name="wide_in"), keras.layers.Dense(64)])
    wide.export(str(root / "wide"), verbose=False)
    _zip_folder(root / "wide", root / "wide.zip")

    unsigned = tf.Module()
    unsigned.weight = tf.Variable([1.0, 2.0])
    tf.saved_model.save(unsigned, str(root / "unsigned"))
    _zip_folder(root / "unsigned", root / "unsigned.zip")

    reader = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def read_secret(x: Any) -> dict[str, Any]:
        secret = tf.io.read_file("/etc/hostname")
        return {"y": x + tf.cast(tf.strings.length(secret), tf.float32) * 0.0}

    tf.saved_model.save(reader, str(root / "reader"), signatures={"serving_default": read_secret})
    _zip_folder(root / "reader", root / "reader.zip")

    (root / "cnn.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(cnn).convert())

    with zipfile.ZipFile(root / "onnx.zip", "w") as zipped:
        zipped.writestr("model.onnx", b"\x08\x07")
        zipped.writestr("weights.bin", b"\x00" * 16)
    with zipfile.ZipFile(root / "plain.zip", "w") as zipped:
        zipped.writestr("README.txt", "hello")
    (root / "model.pkl").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    return {path.name: path for path in root.iterdir() if path.is_file()}


def _convert(importer: type, source: Path, tmp_path: Path, **options: object) -> ImportReport:
    report = importer().convert(source, tmp_path, ImportOptions(**options), _progress)  # type: ignore[arg-type]
    assert report.onnx_path == tmp_path / "model.onnx"
    assert report.files[0] == report.onnx_path
    assert all(path.exists() for path in report.files)
    assert report.converter == "tf2onnx"
    assert {"tensorflow", "tf2onnx", "onnx"} <= set(report.tool_versions)
    assert all(p.passed for p in report.parity)
    assert not [p for p in tmp_path.iterdir() if p not in report.files], "temporary files were left behind"
    return report


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("savedmodel.zip", "tf-savedmodel"),
        ("cnn.keras", "keras"),
        ("cnn.h5", "keras"),
        ("cnn.tflite", "tflite"),
        ("onnx.zip", None),
        ("plain.zip", None),
        ("model.pkl", None),
    ],
)
def test_sniffers_tell_the_formats_apart(models: dict[str, Path], name: str, expected: str | None) -> None:
    claimed = [importer.format for importer in IMPORTERS if importer.sniff(models[name])]
    assert claimed == ([expected] if expected else [])


def test_savedmodel_sniff_needs_a_variables_folder(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "no-variables.zip", "w") as zipped:
        zipped.writestr("saved_model.pb", b"")
    with zipfile.ZipFile(tmp_path / "too-deep.zip", "w") as zipped:
        zipped.writestr("a/b/saved_model.pb", b"")
        zipped.writestr("a/b/variables/variables.index", b"")
    with zipfile.ZipFile(tmp_path / "root.zip", "w") as zipped:
        zipped.writestr("saved_model.pb", b"")
        zipped.writestr("variables/", b"")
    assert not SavedModelImporter.sniff(tmp_path / "no-variables.zip")
    assert not SavedModelImporter.sniff(tmp_path / "too-deep.zip")
    assert SavedModelImporter.sniff(tmp_path / "root.zip")


def test_savedmodel_converts_with_parity_and_symbolic_batch(models: dict[str, Path], tmp_path: Path) -> None:
    report = _convert(SavedModelImporter, models["savedmodel.zip"], tmp_path)
    assert (report.format, report.framework, report.method) == (
        "tf-savedmodel",
        "tensorflow",
        "tf2onnx.convert.from_function",
    )
    assert report.inputs == (InputSpec("image", ("batch", 8, 8, 3), "float32"),)
    assert report.outputs == ("logits",)
    assert _input_dims(report.onnx_path) == {"image": ["batch", 8, 8, 3]}
    assert any("'batch'" in text for text in report.assumptions)
    assert report.opset == onnx.load(str(report.onnx_path)).opset_import[0].version
    print("savedmodel parity", report.parity)


def test_savedmodel_opset_and_declared_batch(models: dict[str, Path], tmp_path: Path) -> None:
    declared = (InputSpec("image", (3, 8, 8, 3), "float32"),)
    report = _convert(SavedModelImporter, models["savedmodel.zip"], tmp_path, opset=17, inputs=declared)
    assert report.opset == 17
    assert report.inputs == declared
    assert _input_dims(report.onnx_path) == {"image": [3, 8, 8, 3]}


def test_savedmodel_large_model_writes_external_data(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tf_importers, "LARGE_MODEL_BYTES", 0)
    report = _convert(SavedModelImporter, models["wide.zip"], tmp_path, parity_samples=1)
    assert [path.name for path in report.files] == ["model.onnx", "model.onnx.data"]
    assert report.files[1].stat().st_size >= 64 * 64 * 4
    assert report.inputs == (InputSpec("wide_in", ("batch", 64), "float32"),)


def test_savedmodel_without_signature_is_refused(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        SavedModelImporter().convert(models["unsigned.zip"], tmp_path, ImportOptions(), _progress)
    assert caught.value.code == "no_signature"
    assert "signatures=" in caught.value.message


def test_savedmodel_that_reads_files_is_refused_before_loading(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        SavedModelImporter().convert(models["reader.zip"], tmp_path, ImportOptions(), _progress)
    assert caught.value.code == "unsafe_model"
    assert "ReadFile" in caught.value.message


def test_savedmodel_zip_with_unsafe_path_is_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zipped:
        zipped.writestr("saved_model.pb", b"")
        zipped.writestr("variables/../../escape.txt", b"x")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ModelError) as caught:
        SavedModelImporter().convert(tmp_path / "evil.zip", out, ImportOptions(), _progress)
    assert caught.value.code == "unsafe_archive"
    assert not (tmp_path / "escape.txt").exists()


def test_declared_inputs_must_match_the_model(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        SavedModelImporter().convert(
            models["savedmodel.zip"], tmp_path, ImportOptions(inputs=(InputSpec("pixels", (1, 8, 8, 3)),)), _progress
        )
    assert caught.value.code == "invalid_inputs"
    assert "image" in caught.value.message


def test_keras_v3_converts_with_from_keras(models: dict[str, Path], tmp_path: Path) -> None:
    report = _convert(KerasImporter, models["cnn.keras"], tmp_path)
    assert (report.format, report.framework, report.method) == ("keras", "keras", "tf2onnx.convert.from_keras")
    assert report.fallback_reason == ""
    assert report.inputs == (InputSpec("image", ("batch", 8, 8, 3), "float32"),)
    assert report.outputs == ("logits",)
    assert _input_dims(report.onnx_path) == {"image": ["batch", 8, 8, 3]}
    assert report.tool_versions["keras"] == keras.__version__
    print("keras parity", report.parity)


def test_keras_sequential_falls_back_to_from_function(models: dict[str, Path], tmp_path: Path) -> None:
    report = _convert(KerasImporter, models["mlp.keras"], tmp_path)
    assert report.method == "tf2onnx.convert.from_function"
    assert "from_keras failed" in report.fallback_reason
    assert report.inputs == (InputSpec("features", ("batch", 6), "float32"),)
    assert len(report.outputs) == 1
    print("sequential parity", report.parity)


def test_keras_two_inputs_two_outputs(models: dict[str, Path], tmp_path: Path) -> None:
    report = _convert(KerasImporter, models["two_heads.keras"], tmp_path)
    assert [spec.name for spec in report.inputs] == ["left", "right"]
    assert report.outputs == ("score", "gate")
    assert [p.name for p in report.parity] == ["score", "gate"]


def test_keras_hdf5_converts(models: dict[str, Path], tmp_path: Path) -> None:
    report = _convert(KerasImporter, models["cnn.h5"], tmp_path, parity_samples=1)
    assert any("HDF5" in note for note in report.notes)


@pytest.mark.parametrize("name", ["lambda.keras", "lambda.h5"])
def test_keras_lambda_is_refused_in_safe_mode(models: dict[str, Path], tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelError) as caught:
        KerasImporter().convert(models[name], tmp_path, ImportOptions(), _progress)
    assert caught.value.code == "unsafe_model"
    assert "Lambda" in caught.value.message


def test_keras_hdf5_pointing_at_other_files_is_refused(models: dict[str, Path], tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    shutil.copy(models["cnn.h5"], tmp_path / "linked.h5")
    with h5py.File(tmp_path / "linked.h5", "a") as h5:
        del h5["model_weights"]
        h5["model_weights"] = h5py.ExternalLink(str(models["cnn.h5"]), "/model_weights")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ModelError) as caught:
        KerasImporter().convert(tmp_path / "linked.h5", out, ImportOptions(), _progress)
    assert caught.value.code == "unsafe_model"


def test_keras_parity_inputs_from_npz(models: dict[str, Path], tmp_path: Path) -> None:
    npz = tmp_path / "inputs.npz"
    np.savez(npz, image=np.ones((3, 8, 8, 3), dtype=np.float32))
    out = tmp_path / "out"
    out.mkdir()
    report = _convert(KerasImporter, models["cnn.keras"], out, parity_inputs=npz)
    assert not any("generated" in text for text in report.assumptions)


def test_parity_failure_is_reported_with_numbers(models: dict[str, Path], tmp_path: Path) -> None:
    impossible = ImportOptions(max_abs_error=-1.0, max_rel_error=-1.0, min_cosine=2.0, parity_samples=1)
    with pytest.raises(ModelError) as caught:
        KerasImporter().convert(models["cnn.keras"], tmp_path, impossible, _progress)
    assert caught.value.code == "parity_failed"
    assert "max abs error" in caught.value.message


def test_tflite_converts_with_signature_names(models: dict[str, Path], tmp_path: Path) -> None:
    report = _convert(TfliteImporter, models["cnn.tflite"], tmp_path)
    assert (report.format, report.framework, report.method) == ("tflite", "tflite", "tf2onnx.convert.from_tflite")
    assert report.inputs == (InputSpec("image", ("batch", 8, 8, 3), "float32"),)
    assert _input_dims(report.onnx_path) == {"image": ["batch", 8, 8, 3]}
    print("tflite parity", report.outputs, report.parity)


def test_keras_zip_is_checked_before_keras_opens_it(tmp_path: Path, models: dict[str, Path]) -> None:
    shutil.copy(models["cnn.keras"], tmp_path / "evil.keras")
    with zipfile.ZipFile(tmp_path / "evil.keras", "a") as zipped:
        zipped.writestr("../escape.txt", b"x")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ModelError) as caught:
        KerasImporter().convert(tmp_path / "evil.keras", out, ImportOptions(), _progress)
    assert caught.value.code == "unsafe_archive"


def test_availability_and_versions() -> None:
    for importer in IMPORTERS:
        assert importer().available()
        assert importer().framework_version()
