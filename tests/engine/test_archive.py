"""check_archive and extract_archive: zips of a model and its weights, and hostile zips."""

from __future__ import annotations

import errno
import os
import time
import zipfile
from pathlib import Path

import pytest

from tests.modelzoo import (
    make_hostile_zip,
    make_mlp_onnx,
    make_zip,
    make_zip_bomb,
    patch_central_directory,
)
from workers.engine.archive import ArchiveLimits, check_archive, extract_archive
from workers.engine.errors import ModelError


@pytest.fixture
def external_model(tmp_path: Path) -> Path:
    """model.onnx with its initializers in weights.bin, in a folder of their own."""
    folder = tmp_path / "exported"
    folder.mkdir()
    return make_mlp_onnx(folder / "model.onnx", with_external_data=True)


@pytest.fixture
def model_zip(tmp_path: Path, external_model: Path) -> Path:
    return make_zip(
        tmp_path / "upload.zip",
        {
            "model.onnx": external_model,
            "weights.bin": external_model.parent / "weights.bin",
        },
    )


def _check_error(path: Path, limits: ArchiveLimits | None = None) -> ModelError:
    with pytest.raises(ModelError) as raised:
        check_archive(path, limits or ArchiveLimits())
    return raised.value


def _refused_extraction(archive: Path, tmp_path: Path) -> ModelError:
    """Extract `archive` expecting a refusal: the error, with nothing left behind."""
    dest = tmp_path / "unpacked"
    with pytest.raises(ModelError) as raised:
        extract_archive(archive, dest)
    assert not dest.exists()
    return raised.value


def _files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def test_summary_of_a_model_with_external_data(model_zip: Path) -> None:
    summary = check_archive(model_zip)
    assert summary.model_member == "model.onnx"
    assert set(summary.members) == {"model.onnx", "weights.bin"}
    assert summary.total_uncompressed > 2704  # the weights alone are 676 float32s


def test_model_in_a_folder_with_directory_entries(tmp_path: Path, external_model: Path) -> None:
    archive = make_zip(
        tmp_path / "upload.zip",
        {
            "export/": b"",
            "export/model.onnx": external_model,
            "export/weights.bin": external_model.parent / "weights.bin",
        },
    )
    summary = check_archive(archive)
    assert summary.model_member == "export/model.onnx"
    assert "export/" not in summary.members


def test_model_onnx_wins_among_several_onnx_files(tmp_path: Path, external_model: Path) -> None:
    archive = make_zip(
        tmp_path / "upload.zip",
        {"model.onnx": external_model, "extras/postprocess.onnx": external_model},
    )
    assert check_archive(archive).model_member == "model.onnx"


def test_single_onnx_member_need_not_be_called_model(tmp_path: Path, external_model: Path) -> None:
    archive = make_zip(tmp_path / "upload.zip", {"resnet50.onnx": external_model})
    assert check_archive(archive).model_member == "resnet50.onnx"


def test_several_onnx_files_without_model_onnx(tmp_path: Path, external_model: Path) -> None:
    archive = make_zip(tmp_path / "upload.zip", {"encoder.onnx": external_model, "decoder.onnx": external_model})
    error = _check_error(archive)
    assert error.code == "archive_layout"
    assert "'encoder.onnx'" in error.message
    assert "one model.onnx plus its external data files" in error.message


def test_zip_without_onnx_file(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "upload.zip", {"weights.bin": b"\x00" * 16})
    error = _check_error(archive)
    assert error.code == "archive_layout"
    assert "holds no .onnx file" in error.message


def test_pytorch_checkpoint_zip_gets_a_hint(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "model.pt", {"archive/data.pkl": b"\x80\x02", "archive/version": b"3"})
    error = _check_error(archive)
    assert error.code == "archive_layout"
    assert "torch.onnx.export" in error.message


def test_macos_metadata_is_ignored(tmp_path: Path, external_model: Path) -> None:
    archive = make_zip(
        tmp_path / "upload.zip",
        {"model.onnx": external_model, "__MACOSX/._model.onnx": b"\x00\x05\x16\x07"},
    )
    summary = check_archive(archive)
    assert summary.model_member == "model.onnx"
    assert summary.members == ("model.onnx",)


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "upload.zip"
    path.write_bytes(b"PK\x03\x04 but nothing else")
    assert _check_error(path).code == "not_a_model"


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ("../evil.sh", "'..'"),
        ("weights/../../evil.sh", "'..'"),
        ("/etc/cron.d/evil", "absolute path"),
        ("C:/Windows/evil.dll", "drive letter"),
        ("..\\evil.sh", "backslash"),
    ],
)
def test_unsafe_member_names(tmp_path: Path, member: str, reason: str) -> None:
    archive = make_hostile_zip(tmp_path / "upload.zip", member)
    error = _check_error(archive)
    assert error.code == "unsafe_archive"
    assert f"'{member}'" in error.message
    assert reason in error.message


def test_symlink_member(tmp_path: Path) -> None:
    archive = make_hostile_zip(tmp_path / "upload.zip", "weights.bin", b"/etc/passwd", 0o120777)
    error = _check_error(archive)
    assert error.code == "unsafe_archive"
    assert "'weights.bin' is a symbolic link" in error.message


def test_duplicate_names(tmp_path: Path) -> None:
    archive = make_hostile_zip(tmp_path / "upload.zip", "model.onnx")
    error = _check_error(archive)
    assert error.code == "unsafe_archive"
    assert "'model.onnx' more than once" in error.message


def test_encrypted_member(tmp_path: Path, model_zip: Path) -> None:
    patch_central_directory(model_zip, "weights.bin", flag_bits=0x1)
    error = _check_error(model_zip)
    assert error.code == "unsafe_archive"
    assert "password-protected" in error.message


def test_too_many_entries(tmp_path: Path, external_model: Path) -> None:
    files: dict[str, bytes | Path] = {"model.onnx": external_model}
    files.update({f"extra/{index}.txt": b"x" for index in range(5)})
    archive = make_zip(tmp_path / "upload.zip", files)
    error = _check_error(archive, ArchiveLimits(max_entries=4))
    assert error.code == "archive_too_large"
    assert "6 entries" in error.message
    assert "limit is 4" in error.message


def test_too_large_in_total(model_zip: Path) -> None:
    error = _check_error(model_zip, ArchiveLimits(max_total_bytes=1000))
    assert error.code == "archive_too_large"
    assert "limit is 1,000 bytes" in error.message


def test_zip_bomb_is_refused_from_the_directory_alone(tmp_path: Path) -> None:
    started = time.monotonic()
    archive = make_zip_bomb(tmp_path / "bomb.zip", 200 * 2**20, model=b"\x08\x08")
    error = _check_error(archive)
    assert error.code == "archive_too_large"
    assert "'weights.bin'" in error.message
    assert "209,715,200" in error.message
    assert "limit is 200 times" in error.message
    dest = tmp_path / "out"
    with pytest.raises(ModelError):
        extract_archive(archive, dest)
    assert not dest.exists()
    assert time.monotonic() - started < 30


def test_small_highly_compressible_files_are_fine(tmp_path: Path, external_model: Path) -> None:
    archive = make_zip(tmp_path / "upload.zip", {"model.onnx": external_model, "padding.bin": bytes(500_000)})
    assert check_archive(archive).model_member == "model.onnx"


def test_extract_writes_members_and_returns_the_model(tmp_path: Path, model_zip: Path) -> None:
    dest = tmp_path / "unpacked"
    model_path = extract_archive(model_zip, dest)
    assert model_path == (dest / "model.onnx").resolve()
    assert model_path.read_bytes()[:1] == b"\x08"
    assert (dest / "weights.bin").stat().st_size == 2704


def test_extract_into_subfolders(tmp_path: Path, external_model: Path) -> None:
    archive = make_zip(
        tmp_path / "upload.zip",
        {
            "export/model.onnx": external_model,
            "export/weights.bin": external_model.parent / "weights.bin",
        },
    )
    model_path = extract_archive(archive, tmp_path / "unpacked")
    assert model_path == (tmp_path / "unpacked" / "export" / "model.onnx").resolve()
    assert (model_path.parent / "weights.bin").is_file()


def test_extract_refuses_unsafe_zip_before_writing(tmp_path: Path) -> None:
    archive = make_hostile_zip(tmp_path / "upload.zip", "../evil.sh")
    dest = tmp_path / "unpacked"
    with pytest.raises(ModelError) as raised:
        extract_archive(archive, dest)
    assert raised.value.code == "unsafe_archive"
    assert not (tmp_path / "evil.sh").exists()
    assert not dest.exists()


def test_member_that_expands_past_its_declared_size(tmp_path: Path, model_zip: Path) -> None:
    patch_central_directory(model_zip, "weights.bin", file_size=1000)
    refused = _refused_extraction(model_zip, tmp_path)
    assert refused.code == "archive_too_large"
    assert "'weights.bin' expands past the 1,000 bytes its header declares" in refused.message


def test_member_shorter_than_declared(tmp_path: Path, model_zip: Path) -> None:
    patch_central_directory(model_zip, "weights.bin", file_size=5000)
    refused = _refused_extraction(model_zip, tmp_path)
    assert refused.code == "not_a_model"
    assert "'weights.bin' is damaged" in refused.message


def _scramble_member_data(path: Path, member: str) -> None:
    """Overwrite the start of a member's compressed data, leaving every header intact."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    with path.open("r+b") as stream:
        stream.seek(info.header_offset + 26)
        name_length, extra_length = int.from_bytes(stream.read(2), "little"), int.from_bytes(stream.read(2), "little")
        stream.seek(info.header_offset + 30 + name_length + extra_length)
        stream.write(bytes(range(0x55, 0x55 + 12)))


# Found by fuzzing: bzip2 reports damaged data as OSError and LZMA as lzma.LZMAError, which
# escaped extraction as a crash instead of a refusal.
@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_damaged_member_data_is_refused(tmp_path: Path, external_model: Path, compression: int) -> None:
    upload = make_zip(
        tmp_path / "upload.zip",
        {"model.onnx": external_model, "weights.bin": external_model.parent / "weights.bin"},
        compression=compression,
    )
    _scramble_member_data(upload, "weights.bin")
    check_archive(upload)  # the directory is intact: only the data is damaged
    refused = _refused_extraction(upload, tmp_path)
    assert refused.code == "not_a_model"
    assert "'weights.bin' is damaged" in refused.message


# Found by fuzzing: zipfile decodes a local header's name as UTF-8 when its flags say so, and a
# name that is not UTF-8 escaped extraction as UnicodeDecodeError.
def test_a_local_header_name_that_is_not_utf8_is_refused(tmp_path: Path, model_zip: Path) -> None:
    with zipfile.ZipFile(model_zip) as archive:
        info = archive.getinfo("weights.bin")
    with model_zip.open("r+b") as stream:
        stream.seek(info.header_offset + 6)
        flags = int.from_bytes(stream.read(2), "little") | 0x800
        stream.seek(info.header_offset + 6)
        stream.write(flags.to_bytes(2, "little"))
        stream.seek(info.header_offset + 30)
        stream.write(b"\x8c")  # the first byte of the local copy of the name
    check_archive(model_zip)  # the central directory is intact
    refused = _refused_extraction(model_zip, tmp_path)
    assert refused.code == "not_a_model"
    assert "'weights.bin' is damaged" in refused.message


def test_a_failed_write_is_not_called_a_damaged_zip(
    tmp_path: Path, model_zip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while extracting is the platform's problem, not the upload's: the OSError
    goes up as it is (the job fails as an infrastructure error), not as "your zip is damaged"."""

    class FullDisk:
        def __init__(self, handle):
            self._handle = handle

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc_info) -> None:
            self._handle.close()

    real_open = Path.open

    def open_on_a_full_disk(self: Path, mode: str = "r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        return FullDisk(handle) if mode == "xb" else handle

    monkeypatch.setattr(Path, "open", open_on_a_full_disk)
    dest = tmp_path / "unpacked"
    with pytest.raises(OSError) as raised:
        extract_archive(model_zip, dest)
    assert raised.value.errno == errno.ENOSPC
    assert not dest.exists()


def test_failed_extract_keeps_files_it_did_not_write(tmp_path: Path, model_zip: Path) -> None:
    dest = tmp_path / "unpacked"
    dest.mkdir()
    (dest / "notes.txt").write_text("kept")
    patch_central_directory(model_zip, "weights.bin", file_size=1000)
    with pytest.raises(ModelError):
        extract_archive(model_zip, dest)
    assert _files_under(dest) == [dest / "notes.txt"]


def test_extract_does_not_follow_links_in_dest(tmp_path: Path, external_model: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "unpacked"
    dest.mkdir()
    os.symlink(outside, dest / "export")
    archive = make_zip(tmp_path / "upload.zip", {"export/model.onnx": external_model})
    with pytest.raises(ModelError) as raised:
        extract_archive(archive, dest)
    assert raised.value.code == "unsafe_archive"
    assert _files_under(outside) == []
