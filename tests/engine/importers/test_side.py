"""Caffe, MXNet and PaddlePaddle zips: telling them apart by their members, picking each file's
role, refusing what is incomplete or ambiguous; and the framework environments' bookkeeping.

The conversions themselves (which run the frameworks in their own environments) are in
tests/engine/importers/test_side_conversions.py."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from workers.engine import framework_envs
from workers.engine.errors import ModelError
from workers.engine.importers.registry import detect_upload_format, sniff_format
from workers.engine.importers.side import CaffeImporter, MxnetImporter, PaddleImporter


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


CAFFE = {
    "net/deploy.prototxt": b'name: "n"\nlayer { name: "data" type: "Input" top: "data" }\n',
    "net/w.caffemodel": b"\x0a\x01n",
}
MXNET = {"resnet-symbol.json": b'{"nodes": [], "heads": []}', "resnet-0000.params": b"\x12\x01\x00"}
PADDLE = {"inference.json": b'{"base_code": {}}', "inference.pdiparams": b"\x00" * 16, "inference.pdiparams.info": b""}


@pytest.mark.parametrize(
    ("members", "fmt"), [(CAFFE, "caffe"), (MXNET, "mxnet"), (PADDLE, "paddle")], ids=["caffe", "mxnet", "paddle"]
)
def test_each_multi_file_format_is_known_by_its_members(tmp_path, members, fmt):
    path = _zip(tmp_path / "upload.zip", members)
    assert sniff_format(path) == fmt
    assert detect_upload_format(path) == fmt


def test_an_onnx_zip_with_a_json_file_is_not_taken_for_paddle_or_mxnet(tmp_path):
    path = _zip(tmp_path / "upload.zip", {"model.onnx": b"\x08\x07", "config.json": b"{}"})
    assert sniff_format(path) is None


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ({"deploy.prototxt": CAFFE["net/deploy.prototxt"]}, "no trained weights (.caffemodel)"),
        ({"w.caffemodel": b"x"}, "a network definition (.prototxt)"),
        ({"resnet-symbol.json": MXNET["resnet-symbol.json"]}, "its parameters (.params)"),
        ({"inference.pdiparams": b"\x00"}, "a Paddle program (.json or .pdmodel)"),
    ],
    ids=["prototxt-alone", "caffemodel-alone", "symbol-alone", "params-alone"],
)
def test_a_zip_with_part_of_a_model_is_told_what_it_lacks(tmp_path, members, says):
    path = _zip(tmp_path / "upload.zip", members)
    with pytest.raises(ModelError) as raised:
        detect_upload_format(path)
    assert raised.value.code == "archive_layout"
    message = raised.value.message.replace("holds no", "no").replace("but not", "no")
    assert says.split(" (")[0].replace("no ", "") in message, message
    assert "zip" in raised.value.message


def test_roles_are_picked_and_choices_explained():
    roles, notes = CaffeImporter().pick(
        ["a/train_val.prototxt", "a/deploy.prototxt", "a/solver.prototxt", "a/net.caffemodel"]
    )
    assert roles == {"prototxt": "a/deploy.prototxt", "caffemodel": "a/net.caffemodel"}
    assert "deploy" in notes[0]

    roles, notes = MxnetImporter().pick(["m-symbol.json", "m-0001.params", "m-0010.params"])
    assert roles == {"symbol": "m-symbol.json", "params": "m-0010.params"}
    assert "last one" in notes[0]

    roles, _ = PaddleImporter().pick(
        ["inference.json", "other.json", "inference.pdiparams", "inference.pdiparams.info"]
    )
    assert roles == {"model": "inference.json", "params": "inference.pdiparams"}


def test_an_ambiguous_zip_is_refused_with_the_candidates_named():
    with pytest.raises(ModelError) as raised:
        CaffeImporter().pick(["a.prototxt", "b.prototxt", "w.caffemodel"])
    assert raised.value.code == "archive_layout"
    assert "a.prototxt" in raised.value.message and "b.prototxt" in raised.value.message


@pytest.fixture
def envs_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SLIPWAY_FRAMEWORK_ENVS", str(tmp_path / "envs"))
    return tmp_path / "envs"


def _fake_built(env: framework_envs.FrameworkEnv, fingerprint: str) -> None:
    (env.path / "bin").mkdir(parents=True)
    (env.path / "bin" / "python").symlink_to("/bin/true")
    (env.path / ".slipway-env.json").write_text(
        json.dumps({"fingerprint": fingerprint, "packages": {"mxnet": "1.9.1"}})
    )


def test_an_environment_is_used_only_when_built_from_the_pinned_requirements(envs_root):
    env = framework_envs.get("mxnet")
    assert env.path == envs_root / "mxnet"
    assert not framework_envs.is_ready("mxnet")
    assert MxnetImporter().framework_version() is None
    with pytest.raises(ModelError) as raised:
        framework_envs.require("mxnet")
    assert raised.value.code == "framework_not_installed"
    assert "make framework-envs" in raised.value.message and "numpy" in raised.value.message

    _fake_built(env, "built-from-other-pins")
    assert not framework_envs.is_ready("mxnet"), "a stale environment is not used"
    assert "mxnet" not in framework_envs.available()

    (env.path / ".slipway-env.json").write_text(
        json.dumps({"fingerprint": framework_envs.fingerprint(env), "packages": {"mxnet": "1.9.1"}})
    )
    assert framework_envs.is_ready("mxnet")
    assert MxnetImporter().framework_version() == "1.9.1"
    assert framework_envs.available()["mxnet"]["packages"] == {"mxnet": "1.9.1"}


def test_every_environment_pins_its_requirements():
    for env in framework_envs.ENVS.values():
        assert env.requirements, env.name
        for path in env.requirements:
            pins = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
            pins = [pin for pin in pins if pin]
            assert pins, path
            assert all("==" in pin for pin in pins), (path, pins)


def test_a_side_that_crashes_is_a_readable_failure(envs_root, tmp_path):
    env = framework_envs.get("caffe")
    _fake_built(env, framework_envs.fingerprint(env))
    # /bin/true runs, exits 0 and writes no result: the side did not answer.
    with pytest.raises(ModelError) as raised:
        framework_envs.run_side("caffe", {"action": "convert"}, tmp_path / "side")
    assert raised.value.code == "conversion_failed"
    assert "Caffe stopped" in raised.value.message
