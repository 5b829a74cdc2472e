"""`slipway pull`: the chosen artifact lands whole under its server-given name, checked by
sha256; anything else leaves nothing behind and says what to do."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import version_in
from tests.cli.fake_api import DROP, FakeApi, Reply

VERSIONS = "/api/v1/models/scorer/versions/"
DETAIL = "/api/v1/versions/17/"
INT8 = b"int8 weights \x00\x01\x02" * 1000
SOURCE = b"the uploaded model"


def _artifact(pk: int, kind: str, name: str, data: bytes, fmt: str = "onnx") -> dict[str, Any]:
    return {
        "id": pk,
        "kind": kind,
        "name": name,
        "format": fmt,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "parent_id": None,
        "created_at": "2026-12-01T10:00:00Z",
        "download_url": f"/api/v1/artifacts/{pk}/download/",
    }


def _file(data: bytes, filename: str, sha256: str | None = None) -> Reply:
    return Reply(
        200,
        data,
        {
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Slipway-SHA256": sha256 or hashlib.sha256(data).hexdigest(),
        },
    )


def _serve_version(api: FakeApi, *artifacts: dict[str, Any], source_format: str = "onnx") -> None:
    source = _artifact(1, "source", "source", SOURCE, source_format)
    api.add("GET", VERSIONS, (200, {"results": [{"id": 17, "number": 3}], "next": None}))
    api.add("GET", DETAIL, (200, version_in("ready", artifacts=[source, *artifacts], source_artifact=source)))


def _left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_pull_a_variant_by_its_short_name(api: FakeApi, cli, tmp_path: Path):
    _serve_version(api, _artifact(5, "variant", "x86-cpu/ort-int8", INT8))
    api.add("GET", "/api/v1/artifacts/5/download/", _file(INT8, "scorer-v3-x86-cpu_ort-int8.onnx"))
    out = tmp_path / "models"
    result = cli("pull", "scorer:3", "--variant", "ort-int8", "-o", str(out))
    assert result.code == 0, result.err
    saved = out / "scorer-v3-x86-cpu_ort-int8.onnx"
    assert saved.read_bytes() == INT8
    assert _left_in(out) == [saved.name], "no partial file stays behind"
    digest = hashlib.sha256(INT8).hexdigest()
    assert result.out.splitlines() == [str(saved), f"  size    {len(INT8):,} bytes (15.6 KiB)", f"  sha256  {digest}"]
    assert api.calls("GET", "/api/v1/artifacts/5/download/")[0].headers["authorization"].startswith("Bearer ")


def test_a_large_file_arrives_whole_with_progress_on_stderr(api: FakeApi, cli, tmp_path: Path):
    big = bytes(range(256)) * (3 * 4096 + 7)  # several chunks, not a whole number of them
    _serve_version(api, _artifact(5, "variant", "x86-cpu/ort-int8", big))
    api.add("GET", "/api/v1/artifacts/5/download/", _file(big, "big.onnx"))
    result = cli("pull", "17", "--variant", "ort-int8", "-o", str(tmp_path))
    assert result.code == 0, result.err
    assert hashlib.sha256((tmp_path / "big.onnx").read_bytes()).hexdigest() == hashlib.sha256(big).hexdigest()
    assert "Downloading big.onnx: 100.0%" in result.err and "received 3.0 MiB" in result.err


def test_the_original_and_the_onnx_model(api: FakeApi, cli, tmp_path: Path):
    _serve_version(api)
    api.add("GET", "/api/v1/artifacts/1/download/", _file(SOURCE, "scorer-v3-source.onnx"))
    assert cli("pull", "17", "--original", "-o", str(tmp_path)).code == 0
    assert (tmp_path / "scorer-v3-source.onnx").read_bytes() == SOURCE
    # an ONNX upload is its own ONNX model
    assert cli("pull", "17", "--onnx", "-o", str(tmp_path / "onnx")).code == 0
    assert (tmp_path / "onnx" / "scorer-v3-source.onnx").read_bytes() == SOURCE


def test_onnx_of_a_framework_upload_not_converted_yet(api: FakeApi, cli, tmp_path: Path):
    _serve_version(api, source_format="pytorch")
    result = cli("pull", "17", "--onnx", "-o", str(tmp_path))
    assert result.code == 2
    assert "has no ONNX model yet" in result.err and "--original" in result.err


def test_a_damaged_download_is_deleted_and_fails(api: FakeApi, cli, tmp_path: Path):
    _serve_version(api, _artifact(5, "variant", "x86-cpu/ort-int8", INT8))
    api.add("GET", "/api/v1/artifacts/5/download/", _file(INT8, "m.onnx", sha256="0" * 64))
    result = cli("pull", "scorer:3", "--variant", "ort-int8", "-o", str(tmp_path))
    assert result.code == 2
    assert f"have sha256 {hashlib.sha256(INT8).hexdigest()}, not {'0' * 64}" in result.err
    assert "nothing was saved" in result.err
    assert _left_in(tmp_path) == []
    assert result.out == ""


def test_without_a_selector_it_lists_what_there_is(api: FakeApi, cli, tmp_path: Path):
    _serve_version(
        api,
        _artifact(4, "variant", "x86-cpu/ort-opt", b"opt"),
        _artifact(5, "variant", "x86-cpu/ort-int8", INT8),
        _artifact(6, "variant", "arm64-cpu/ort-int8", b"arm"),
        _artifact(7, "calibration", "calibration", b"npz", "npz"),
    )
    result = cli("pull", "scorer:3", "-o", str(tmp_path))
    assert result.code == 2
    assert "Say which artifact of scorer v3 (id 17) to download" in result.err
    assert "--variant ort-opt " in result.err  # unique: the short name does
    assert "--variant x86-cpu/ort-int8" in result.err and "--variant arm64-cpu/ort-int8" in result.err
    assert "--original" in result.err and "--artifact 7" in result.err
    assert _left_in(tmp_path) == [] and not api.calls(path="/api/v1/artifacts/5/download/")


def test_an_unknown_variant_names_the_ones_that_exist(api: FakeApi, cli, tmp_path: Path):
    _serve_version(
        api, _artifact(4, "variant", "x86-cpu/ort-opt", b"opt"), _artifact(5, "variant", "x86-cpu/int8", b"q")
    )
    result = cli("pull", "scorer:3", "--variant", "trt-fp16", "-o", str(tmp_path))
    assert result.code == 2
    assert "scorer v3 (id 17) has no variant called trt-fp16; it has: int8, ort-opt." in result.err


def test_a_name_several_profiles_built_needs_its_profile(api: FakeApi, cli, tmp_path: Path):
    _serve_version(
        api, _artifact(5, "variant", "x86-cpu/ort-int8", INT8), _artifact(6, "variant", "arm/ort-int8", b"a")
    )
    result = cli("pull", "17", "--variant", "ort-int8", "-o", str(tmp_path))
    assert result.code == 2 and "give one as --variant PROFILE/NAME" in result.err
    api.add("GET", "/api/v1/artifacts/6/download/", _file(b"a", "scorer-v3-arm_ort-int8.onnx"))
    assert cli("pull", "17", "--variant", "arm/ort-int8", "-o", str(tmp_path)).code == 0
    assert (tmp_path / "scorer-v3-arm_ort-int8.onnx").read_bytes() == b"a"


def test_a_rerun_variant_is_pulled_from_its_newest_build(api: FakeApi, cli, tmp_path: Path):
    _serve_version(
        api, _artifact(5, "variant", "x86-cpu/ort-int8", b"old"), _artifact(9, "variant", "x86-cpu/ort-int8", INT8)
    )
    api.add("GET", "/api/v1/artifacts/9/download/", _file(INT8, "new.onnx"))
    assert cli("pull", "17", "--variant", "ort-int8", "-o", str(tmp_path)).code == 0
    assert (tmp_path / "new.onnx").read_bytes() == INT8


def test_the_servers_file_name_cannot_point_elsewhere(api: FakeApi, cli, tmp_path: Path):
    _serve_version(api, _artifact(5, "variant", "x86-cpu/ort-int8", INT8))
    api.add("GET", "/api/v1/artifacts/5/download/", _file(INT8, "../../.bashrc"))
    out = tmp_path / "here"
    assert cli("pull", "17", "--variant", "ort-int8", "-o", str(out)).code == 0
    assert _left_in(out) == ["bashrc"] and _left_in(tmp_path) == ["here"]


def test_a_dropped_connection_is_retried(api: FakeApi, cli, tmp_path: Path):
    _serve_version(api, _artifact(5, "variant", "x86-cpu/ort-int8", INT8))
    api.add("GET", "/api/v1/artifacts/5/download/", DROP, _file(INT8, "m.onnx"))
    result = cli("pull", "17", "--variant", "ort-int8", "-o", str(tmp_path))
    assert result.code == 0, result.err
    assert "Retrying" in result.err and (tmp_path / "m.onnx").read_bytes() == INT8
    assert _left_in(tmp_path) == ["m.onnx"]


def test_the_servers_refusal_is_its_sentence(api: FakeApi, cli, tmp_path: Path):
    _serve_version(api, _artifact(5, "variant", "x86-cpu/ort-int8", INT8))
    gone = "The file of artifact 5 is missing from Slipway's artifact storage, so it can't be downloaded."
    api.add("GET", "/api/v1/artifacts/5/download/", (410, {"code": "artifact_missing", "message": gone, "fields": {}}))
    result = cli("pull", "17", "--variant", "ort-int8", "-o", str(tmp_path))
    assert result.code == 2 and gone in result.err
    assert _left_in(tmp_path) == []


def test_output_must_be_a_folder(api: FakeApi, cli, tmp_path: Path):
    _serve_version(api, _artifact(5, "variant", "x86-cpu/ort-int8", INT8))
    (tmp_path / "file").write_text("x")
    result = cli("pull", "17", "--variant", "ort-int8", "-o", str(tmp_path / "file"))
    assert result.code == 2 and "is a file, not a folder" in result.err


def test_one_selector_at_a_time(cli):
    with pytest.raises(SystemExit) as exited:
        cli("pull", "17", "--original", "--onnx")
    assert exited.value.code == 2
