"""Seed corpora for the fuzz targets, built by code: small valid inputs the fuzzer mutates."""

from __future__ import annotations

import io
import json
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from tests import hostile, modelzoo


def _zip(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def model_seeds() -> dict[str, bytes]:
    """Small valid ONNX models (each under 4 KiB) that the engine inspects fine."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        seeds = {
            "relu.onnx": hostile._tiny_model_bytes(),
            "if.onnx": modelzoo.make_if_onnx(root / "if.onnx").read_bytes(),
            "function.onnx": modelzoo.make_function_onnx(root / "function.onnx").read_bytes(),
            "mlp.onnx": modelzoo.make_mlp_onnx(root / "mlp.onnx").read_bytes(),
            "nested-if-3.onnx": hostile.nested_if(3)(root).read_bytes(),
            "custom-op.onnx": hostile.custom_domain_op(root).read_bytes(),
            "constant-of-shape.onnx": hostile.huge_constant_of_shape(root).read_bytes(),
        }
        external = modelzoo.make_mlp_onnx(root / "ext" / "model.onnx", with_external_data=True)
        seeds["external.onnx"] = external.read_bytes()
    return seeds


def upload_seeds() -> dict[str, bytes]:
    """One small file of every kind the upload path tells apart."""
    models = model_seeds()
    tiny = models["relu.onnx"]
    seeds = {
        **models,
        "model.zip": _zip({"model.onnx": models["external.onnx"], "weights.bin": bytes(2704)}),
        "stored.zip": _zip({"dir/model.onnx": tiny}, zipfile.ZIP_STORED),
        "calibration.npz": _npz(input=np.zeros((2, 16), np.float32), ids=np.arange(4)),
        "object.npz": _npz(bad=np.array([{"a": 1}], dtype=object)),
        "pickle.pkl": pickle.dumps({"weights": [1.0, 2.0]}, protocol=2),
        "pickle0.pkl": pickle.dumps({"weights": [1.0, 2.0]}, protocol=0),
        "skops.skops": _zip({"schema.json": json.dumps({"__class__": "X", "protocol": 2}).encode()}),
        "keras.keras": _zip({"config.json": b"{}", "metadata.json": b"{}", "model.weights.h5": b"\x89HDF\r\n\x1a\n"}),
        "savedmodel.zip": _zip({"m/saved_model.pb": b"\x08\x01", "m/variables/variables.index": b""}),
        "torchscript.pt": _zip({"a/data.pkl": b"\x80\x02}q\x00.", "a/constants.pkl": b"\x80\x02).", "a/version": b"8"}),
        "program.pt2": _zip({"p/archive_format": b"pt2", "p/models/model.json": b'{"graph_module": {}}'}),
        "xgboost.json": b'{"learner": {"attributes": {}}, "version": [2, 1, 0]}',
        "lightgbm.txt": b"tree\nversion=v4\nnum_class=1\n\n",
        "tflite.tflite": b"\x1c\x00\x00\x00TFL3" + bytes(24),
    }
    with tempfile.TemporaryDirectory() as folder:
        link = modelzoo.make_hostile_zip(Path(folder) / "link.zip", "weights.bin", b"/etc/passwd", unix_mode=0o120777)
        seeds["symlink.zip"] = link.read_bytes()
    return seeds


def signature_seeds() -> dict[str, bytes]:
    """JSON signatures, each after a 0 byte: fuzz_signature's mode byte for raw JSON text."""
    texts = {
        "image.json": b'[{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]',
        "two.json": b'[{"name": "ids", "shape": [null, 128], "dtype": "int64"}, {"name": "mask", "shape": [1]}]',
        "scalar.json": b'[{"name": "flag", "shape": [], "dtype": "bool"}]',
    }
    return {name: b"\x00" + text for name, text in texts.items()}


def write(seeds: dict[str, bytes], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (folder / name).write_bytes(data)
    return folder
