"""Repository entries are written whole or not at all, never over another version, and found again on retry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.engine.targets.conftest import make_mlp, mlp_spec
from workers.engine.targets import triton_stores
from workers.engine.targets.base import RepositoryLocation, TargetError, TargetSettings
from workers.engine.targets.triton_repository import CONFIG_NAME, ENTRY_MARKER_NAME, TritonRepository, prepare_version
from workers.engine.targets.triton_stores import MANIFEST_NAME, LocalStore, S3Store


@pytest.fixture
def repository_dir(tmp_path: Path) -> Path:
    path = tmp_path / "repository"
    path.mkdir()
    return path


def _settings(repository: str, mode: str = "native") -> TargetSettings:
    return TargetSettings(name="t", url="http://127.0.0.1:1", repository=repository, backend_mode=mode)  # type: ignore[arg-type]


def _prepared(tmp_path: Path, version: int, seed: int = 0, mode: str = "native") -> Any:
    model = make_mlp(tmp_path / f"variants/v{version}-{seed}/mlp.onnx", seed=seed)
    return prepare_version(mlp_spec(model, version), _settings(str(tmp_path), mode))


def _tree(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_a_new_entry_appears_whole(tmp_path: Path, repository_dir: Path) -> None:
    repository = TritonRepository(LocalStore(RepositoryLocation.parse(str(repository_dir))))
    push = repository.push(_prepared(tmp_path, 1), "mlp", [1])
    assert _tree(repository_dir) == [
        "mlp",
        "mlp/1",
        "mlp/1/model.onnx",
        f"mlp/1/{MANIFEST_NAME}",
        f"mlp/{CONFIG_NAME}",
        f"mlp/{ENTRY_MARKER_NAME}",
    ]
    assert push.location == str(repository_dir / "mlp" / "1")
    assert push.bytes_written > 0 and not push.reused
    assert "versions: [ 1 ]" in (repository_dir / "mlp" / CONFIG_NAME).read_text()
    manifest = json.loads((repository_dir / "mlp" / "1" / MANIFEST_NAME).read_text())
    assert manifest["model_file"] == "model.onnx"
    assert set(manifest["files"]) == {"model.onnx"}
    assert repository.versions("mlp") == (1,)


def test_a_second_version_joins_the_entry_and_the_config_is_replaced(tmp_path: Path, repository_dir: Path) -> None:
    repository = TritonRepository(LocalStore(RepositoryLocation.parse(str(repository_dir))))
    repository.push(_prepared(tmp_path, 1), "mlp", [1])
    repository.push(_prepared(tmp_path, 2, seed=1), "mlp", [1, 2])
    assert repository.versions("mlp") == (1, 2)
    assert "versions: [ 1, 2 ]" in repository.config_text("mlp")  # type: ignore[operator]
    assert not [path for path in _tree(repository_dir) if ".slipway-" in path and not path.endswith("-lock")]


def test_a_failed_write_leaves_nothing_behind(
    tmp_path: Path, repository_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = TritonRepository(LocalStore(RepositoryLocation.parse(str(repository_dir))))
    repository.push(_prepared(tmp_path, 1), "mlp", [1])
    before = _tree(repository_dir)
    config_before = repository.config_text("mlp")
    written: list[Path] = []
    real_write = triton_stores._write_file

    def fail_on_the_second_file(target: Path, source: Any) -> None:
        written.append(target)
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        real_write(target, source)

    monkeypatch.setattr(triton_stores, "_write_file", fail_on_the_second_file)
    with pytest.raises(TargetError) as caught:
        repository.push(_prepared(tmp_path, 2, seed=1), "mlp", [1, 2])
    assert caught.value.code == "repository_not_writable"
    assert "No space left on device" in caught.value.message
    assert _tree(repository_dir) == before  # no half-written version, no staging directory
    assert repository.config_text("mlp") == config_before


def test_a_failed_new_entry_leaves_no_entry(
    tmp_path: Path, repository_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = TritonRepository(LocalStore(RepositoryLocation.parse(str(repository_dir))))

    def interrupted(target: Path, source: Any) -> None:
        raise KeyboardInterrupt  # a worker stopped mid-copy: cleanup runs for any exception

    monkeypatch.setattr(triton_stores, "_write_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        repository.push(_prepared(tmp_path, 1), "mlp", [1])
    assert _tree(repository_dir) == []


def test_a_failed_config_replace_keeps_the_old_config(
    tmp_path: Path, repository_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = TritonRepository(LocalStore(RepositoryLocation.parse(str(repository_dir))))
    prepared = _prepared(tmp_path, 1)
    repository.push(prepared, "mlp", [1])
    before = _tree(repository_dir)

    def broken_replace(source: Any, target: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(triton_stores.os, "replace", broken_replace)
    with pytest.raises(TargetError, match="Input/output error"):
        repository.serve("mlp", prepared.config, [7])
    assert "versions: [ 1 ]" in repository.config_text("mlp")  # type: ignore[operator]
    assert _tree(repository_dir) == before


def test_an_identical_version_is_reused_and_a_different_one_refused(tmp_path: Path, repository_dir: Path) -> None:
    repository = TritonRepository(LocalStore(RepositoryLocation.parse(str(repository_dir))))
    repository.push(_prepared(tmp_path, 1), "mlp", [1])
    again = repository.push(_prepared(tmp_path, 1), "mlp", [1])  # a retried task
    assert again.reused and again.bytes_written == 0
    with pytest.raises(TargetError) as caught:
        repository.push(_prepared(tmp_path, 1, seed=5), "mlp", [1])
    assert caught.value.code == "version_exists"
    assert "deploy under a new version number" in caught.value.message


def test_removing_a_version_takes_it_out_in_one_step(tmp_path: Path, repository_dir: Path) -> None:
    repository = TritonRepository(LocalStore(RepositoryLocation.parse(str(repository_dir))))
    repository.push(_prepared(tmp_path, 1), "mlp", [1])
    repository.push(_prepared(tmp_path, 2, seed=1), "mlp", [2])
    repository.remove_version("mlp", 1)
    assert repository.versions("mlp") == (2,)
    assert [path for path in _tree(repository_dir) if "removing" in path] == []
    repository.remove_version("mlp", 9)  # absent: nothing to do


def test_an_unwritable_repository_is_named(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    repository = TritonRepository(LocalStore(RepositoryLocation.parse(str(not_a_directory / "repository"))))
    with pytest.raises(TargetError) as caught:
        repository.push(_prepared(tmp_path, 1), "mlp", [1])
    assert caught.value.code == "repository_not_writable"
    assert "is mounted on this worker and is writable" in caught.value.message


def test_the_version_config_is_kept_for_rollbacks(tmp_path: Path, repository_dir: Path) -> None:
    repository = TritonRepository(LocalStore(RepositoryLocation.parse(str(repository_dir))))
    prepared = _prepared(tmp_path, 1)
    repository.push(prepared, "mlp", [1])
    assert repository.version_config("mlp", 1) == prepared.config
    with pytest.raises(TargetError) as caught:
        repository.version_config("mlp", 2)
    assert caught.value.code == "version_missing"


def test_the_lock_serializes_deploys_of_one_model(repository_dir: Path) -> None:
    import threading
    import time

    store = LocalStore(RepositoryLocation.parse(str(repository_dir)))
    order: list[str] = []

    def hold(label: str) -> None:
        with store.lock("mlp"):
            order.append(f"{label} in")
            time.sleep(0.05)
            order.append(f"{label} out")

    threads = [threading.Thread(target=hold, args=(label,)) for label in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert order[1].endswith("out") and order[3].endswith("out")


# --- S3 ----------------------------------------------------------------------------------


class _Missing(Exception):
    response = {"Error": {"Code": "NoSuchKey"}}


class FakeS3:
    """The handful of boto3 S3 client calls the store makes, over a dict; `fail_on` breaks one key."""

    def __init__(self, fail_on: str = "") -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.fail_on = fail_on

    def _put(self, bucket: str, key: str, body: bytes) -> None:
        if self.fail_on and key.endswith(self.fail_on):
            raise ConnectionError("the endpoint went away")
        self.objects[(bucket, key)] = body

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        self._put(Bucket, Key, Body)

    def upload_file(self, filename: str, bucket: str, key: str) -> None:
        self._put(bucket, key, Path(filename).read_bytes())

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        import io

        if (Bucket, Key) not in self.objects:
            raise _Missing()
        return {"Body": io.BytesIO(self.objects[(Bucket, Key)])}

    def list_objects_v2(self, Bucket: str, Prefix: str, Delimiter: str = "", **_: Any) -> dict[str, Any]:
        keys = sorted(key for bucket, key in self.objects if bucket == Bucket and key.startswith(Prefix))
        if not Delimiter:
            return {"Contents": [{"Key": key} for key in keys], "IsTruncated": False}
        prefixes = sorted(
            {Prefix + key[len(Prefix) :].split("/")[0] + "/" for key in keys if "/" in key[len(Prefix) :]}
        )
        return {"CommonPrefixes": [{"Prefix": prefix} for prefix in prefixes], "IsTruncated": False}

    def copy(self, source: dict[str, str], bucket: str, key: str) -> None:
        self._put(bucket, key, self.objects[(source["Bucket"], source["Key"])])

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> None:
        for item in Delete["Objects"]:
            self.objects.pop((Bucket, item["Key"]), None)


def test_an_s3_entry_is_written_with_its_manifest_last_and_moved(tmp_path: Path) -> None:
    client = FakeS3()
    store = S3Store(RepositoryLocation.parse("s3://models/triton"), {}, client=client)
    repository = TritonRepository(store)
    push = repository.push(_prepared(tmp_path, 1), "mlp.candidate", [1])
    assert push.location == "s3://models/triton/mlp.candidate/1"
    assert repository.versions("mlp.candidate") == (1,)
    repository.move_version("mlp.candidate", "mlp", 1)
    repository.remove_entry("mlp.candidate")
    assert sorted(key for _, key in client.objects) == [
        "triton/mlp/1/model.onnx",
        f"triton/mlp/1/{MANIFEST_NAME}",
        f"triton/mlp/{ENTRY_MARKER_NAME}",
    ]
    assert repository.manifest("mlp", 1) is not None


def test_a_failed_s3_upload_removes_what_it_wrote(tmp_path: Path) -> None:
    client = FakeS3(fail_on=MANIFEST_NAME)
    repository = TritonRepository(S3Store(RepositoryLocation.parse("s3://models"), {}, client=client))
    with pytest.raises(TargetError) as caught:
        repository.push(_prepared(tmp_path, 1), "mlp", [1])
    assert caught.value.code == "repository_not_writable"
    assert "the endpoint went away" in caught.value.message
    assert client.objects == {}


# --- only what Slipway wrote (issue 14) ---------------------------------------------------


def _files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def test_a_model_of_the_same_name_that_slipway_did_not_write_is_refused_and_left_alone(
    tmp_path: Path, repository_dir: Path
) -> None:
    (repository_dir / "mlp" / "1").mkdir(parents=True)
    (repository_dir / "mlp" / CONFIG_NAME).write_text('name: "mlp"\nplatform: "onnxruntime_onnx"\n')
    (repository_dir / "mlp" / "1" / "model.onnx").write_bytes(b"someone else's model")
    before = _files(repository_dir)
    repository = TritonRepository(LocalStore(RepositoryLocation.parse(str(repository_dir))))

    for write in (
        lambda: repository.push(_prepared(tmp_path, 2), "mlp", [2]),
        lambda: repository.serve("mlp", _prepared(tmp_path, 2).config, [1]),
    ):
        with pytest.raises(TargetError) as caught:
            write()
        assert caught.value.code == "foreign_entry"
        assert f"already holds 'mlp' ({repository_dir / 'mlp'}), which Slipway did not write" in caught.value.message
    assert repository.remove_entry("mlp") == (
        f"Left 'mlp' ({repository_dir / 'mlp'}) in place: Slipway did not write it.",
    )
    assert repository.remove_version("mlp", 1)[0].startswith("Left version 1 of 'mlp'")
    repository.restore_config("mlp", None)
    assert _files(repository_dir) == before


def test_removals_take_out_only_the_files_slipway_wrote(tmp_path: Path, repository_dir: Path) -> None:
    (repository_dir / "README.txt").write_text("ops notes: do not delete")
    repository = TritonRepository(LocalStore(RepositoryLocation.parse(str(repository_dir))))
    repository.push(_prepared(tmp_path, 1), "mlp", [1])
    repository.push(_prepared(tmp_path, 2, seed=1), "mlp", [2])
    # files people put there later, and a version directory Slipway did not write
    (repository_dir / "mlp" / "labels.txt").write_text("cat\ndog\n")
    (repository_dir / "mlp" / "1" / "notes.txt").write_text("hand-made")
    (repository_dir / "mlp" / "7").mkdir()
    (repository_dir / "mlp" / "7" / "model.onnx").write_bytes(b"hand-made model")
    kept = {name: content for name, content in _files(repository_dir).items() if "/2/" not in name}

    assert repository.remove_version("mlp", 2) == ()  # all Slipway's: gone in one step
    assert not (repository_dir / "mlp" / "2").exists()
    (note,) = repository.remove_version("mlp", 1)
    assert note == (
        f"Removed what Slipway wrote in {repository_dir / 'mlp' / '1'} and left what it did not write there: notes.txt."
    )
    assert (repository_dir / "mlp" / "7").is_dir() and repository.remove_version("mlp", 7) == (
        f"Left version 7 of 'mlp' ({repository_dir / 'mlp' / '7'}) in place: Slipway did not write it "
        f"(it has no {MANIFEST_NAME}).",
    )
    (note,) = repository.remove_entry("mlp")
    assert "left what it did not write there: 1/notes.txt, 7/model.onnx, labels.txt." in note
    left = _files(repository_dir)
    assert {name: left[name] for name in ("README.txt", "mlp/labels.txt", "mlp/1/notes.txt", "mlp/7/model.onnx")} == {
        name: kept[name] for name in ("README.txt", "mlp/labels.txt", "mlp/1/notes.txt", "mlp/7/model.onnx")
    }
    assert sorted(left) == [
        "README.txt",
        "mlp/1/notes.txt",
        "mlp/7/model.onnx",
        "mlp/labels.txt",
        f"mlp/{ENTRY_MARKER_NAME}",
    ]


def test_an_entry_written_before_markers_is_still_slipways(tmp_path: Path, repository_dir: Path) -> None:
    repository = TritonRepository(LocalStore(RepositoryLocation.parse(str(repository_dir))))
    repository.push(_prepared(tmp_path, 1), "mlp", [1])
    (repository_dir / "mlp" / ENTRY_MARKER_NAME).unlink()  # as Slipway wrote entries before
    assert repository.owns("mlp")
    repository.push(_prepared(tmp_path, 2, seed=1), "mlp", [2])
    assert (repository_dir / "mlp" / ENTRY_MARKER_NAME).is_file()
    assert repository.remove_entry("mlp") == () and list(repository_dir.iterdir()) == []


def test_a_repository_outside_the_allowed_folders_is_never_written(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    for folder in (allowed, outside):
        folder.mkdir()
    (allowed / "escape").symlink_to(outside)
    prepared = _prepared(tmp_path, 1)
    for repository_path in (outside, allowed / "escape", Path("/etc/triton")):
        settings = TargetSettings(
            name="t", url="http://127.0.0.1:1", repository=str(repository_path), allowed_roots=(str(allowed),)
        )
        with pytest.raises(TargetError) as caught:
            TritonRepository(triton_stores.open_store(settings)).push(prepared, "mlp", [1])
        assert caught.value.code == "repository_not_allowed"
        assert f"(SLIPWAY_TARGET_ROOTS): {allowed}." in caught.value.message
    assert list(outside.iterdir()) == []
    # inside the allowed folder, a link from the repository out of it is refused, never followed
    repository_dir = allowed / "repository"
    repository_dir.mkdir()
    (repository_dir / "mlp").symlink_to(outside)
    store = LocalStore(RepositoryLocation.parse(str(repository_dir)), (str(allowed),))
    with pytest.raises(TargetError) as caught:
        TritonRepository(store).push(prepared, "mlp", [1])
    assert caught.value.code == "repository_not_allowed" and "through a symbolic link" in caught.value.message
    with pytest.raises(TargetError):
        TritonRepository(store).remove_entry("mlp")
    assert list(outside.iterdir()) == []
    assert TritonRepository(store).push(prepared, "mlp2", [1]).location == str(repository_dir / "mlp2" / "1")


@pytest.mark.parametrize("path", ["/", "/etc", "/root", "/usr/local/models", "code", "the python installation"])
def test_system_folders_and_slipways_code_are_refused_even_without_a_list(path: str) -> None:
    import sys

    from workers.engine.targets.base import check_repository_folder

    code = Path(triton_stores.__file__).resolve().parents[3]
    where = {"code": str(code), "the python installation": str(Path(sys.prefix) / "models")}.get(path, path)
    with pytest.raises(TargetError) as caught:
        check_repository_folder(where, None)
    assert caught.value.code == "repository_not_allowed"
