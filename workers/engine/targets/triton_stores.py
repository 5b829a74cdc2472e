"""Where Triton model-repository entries are written: a local directory or an S3 bucket, atomically.

Stores write atomically. On a local filesystem a directory is assembled under a hidden
name beside its final place, flushed, then renamed into place (a rename within one
filesystem is atomic), and config.pbtxt is replaced the same way; whatever fails is
removed. S3 has no rename: objects are uploaded under their final keys with the manifest
last, and removed again on failure; Triton only reads a bucket when it is asked to load,
which happens after the upload completes. `triton_repository` decides what an entry holds;
the stores only move bytes, and every path is checked against the repository first.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from workers.engine.targets.base import (
    RepositoryLocation,
    TargetError,
    TargetSettings,
    check_repository_folder,
)

# What Slipway wrote into a version directory (`triton_repository` writes it). A version
# without one is unfinished, so S3, which has no rename, uploads and copies it last.
MANIFEST_NAME = "slipway.json"

_CHUNK_BYTES = 1 << 20


class RepositoryStore(ABC):
    """A model repository that entries are written to. Paths are "/"-separated, relative to its root."""

    location: RepositoryLocation

    @abstractmethod
    def uri(self, relpath: str) -> str:
        """Where `relpath` is, for people: an absolute path or an s3:// URL."""

    @abstractmethod
    def read_text(self, relpath: str) -> str | None:
        """The file's text, or None when there is no such file."""

    @abstractmethod
    def exists(self, relpath: str) -> bool:
        """Whether a file or a non-empty directory is at `relpath`."""

    @abstractmethod
    def list_dirs(self, relpath: str) -> list[str]:
        """The names of the directories directly under `relpath`."""

    @abstractmethod
    def list_files(self, relpath: str) -> list[str]:
        """Every file under `relpath` (hidden ones included), as paths relative to it."""

    @abstractmethod
    def write_directory(self, relpath: str, files: Mapping[str, Path | bytes]) -> None:
        """Create the directory `relpath` holding `files` (name, which may hold "/" -> source),
        all or nothing. Raises TargetError("version_exists") when something is already there."""

    @abstractmethod
    def write_text(self, relpath: str, text: str) -> None:
        """Replace the file at `relpath` with `text` in one step."""

    @abstractmethod
    def move_directory(self, source: str, target: str) -> None:
        """Move a directory to `target`, which must not exist."""

    @abstractmethod
    def remove(self, relpath: str) -> None:
        """Remove a file or a directory tree; nothing happens when it is not there."""

    @contextlib.contextmanager
    def lock(self, model_name: str) -> Iterator[None]:
        """Hold the model's lock while changing its entry (where the store can lock)."""
        yield


def open_store(settings: TargetSettings, *, s3_client: Any = None) -> RepositoryStore:
    """The store for the target's repository (`s3_client` replaces boto3's, for tests)."""
    location = settings.location
    if location.kind == "local":
        return LocalStore(location, settings.allowed_roots)
    return S3Store(location, dict(settings.repository_options), client=s3_client)


def _not_writable(location: str, exc: BaseException) -> TargetError:
    reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
    if location.startswith("s3://"):
        hint = "Check the bucket, the endpoint and that the worker's credentials may write there."
    else:
        hint = "Check that the repository exists, is mounted on this worker and is writable by the worker's user."
    return TargetError(
        "repository_not_writable",
        f"Slipway can't write the model repository at {location}: {reason}. {hint}",
        detail=str(exc),
    )


class LocalStore(RepositoryStore):
    """A repository directory on this worker's filesystem (shared with the server).

    Before every read and write the repository is checked again (`check_repository_folder`:
    inside `allowed_roots`, never a system folder or Slipway's code, symbolic links
    resolved), and so is the path itself: a link inside the repository that leads out of
    it is refused, never followed.
    """

    def __init__(self, location: RepositoryLocation, allowed_roots: Sequence[str] | None = None) -> None:
        assert location.path is not None
        self.location = location
        self.root = location.path
        self.allowed_roots = allowed_roots

    def _path(self, relpath: str) -> Path:
        parts = PurePosixPath(relpath).parts
        if any(part in ("", ".", "..") for part in parts) or PurePosixPath(relpath).is_absolute():
            raise ValueError(f"not a path inside the repository: {relpath!r}")
        root = check_repository_folder(self.root, self.allowed_roots)
        path = self.root.joinpath(*parts)
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            raise TargetError(
                "repository_not_allowed",
                f"{path} leads out of the model repository {self.root} (to {resolved}) through a symbolic link; "
                "Slipway writes only inside the repository. Remove the link.",
            )
        return path

    def uri(self, relpath: str) -> str:
        return str(self._path(relpath))

    def read_text(self, relpath: str) -> str | None:
        try:
            return self._path(relpath).read_text()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def exists(self, relpath: str) -> bool:
        path = self._path(relpath)
        return path.is_file() or (path.is_dir() and any(path.iterdir()))

    def list_dirs(self, relpath: str) -> list[str]:
        path = self._path(relpath) if relpath else self.root
        if not path.is_dir():
            return []
        return sorted(child.name for child in path.iterdir() if child.is_dir() and not child.name.startswith("."))

    def list_files(self, relpath: str) -> list[str]:
        path = self._path(relpath)
        if not path.is_dir():
            return []
        files: list[str] = []
        for directory, _, names in os.walk(path):
            files.extend(str((Path(directory) / name).relative_to(path)) for name in names)
        return sorted(files)

    def write_directory(self, relpath: str, files: Mapping[str, Path | bytes]) -> None:
        final = self._path(relpath)
        if self.exists(relpath):
            raise TargetError("version_exists", f"{final} already exists; Slipway never writes over it.")
        created_parent = not final.parent.exists()
        staging = final.with_name(f".{final.name}.slipway-staging-{uuid.uuid4().hex[:12]}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
            for name, source in files.items():
                target = staging.joinpath(*PurePosixPath(name).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                _write_file(target, source)
            _fsync_tree(staging)
            if final.is_dir():
                final.rmdir()  # an empty leftover: the rename below needs the name free
            os.rename(staging, final)
            _fsync_directory(final.parent)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if created_parent:
                with contextlib.suppress(OSError):
                    final.parent.rmdir()
            if isinstance(exc, OSError):
                raise _not_writable(str(self.root), exc) from exc
            raise

    def write_text(self, relpath: str, text: str) -> None:
        final = self._path(relpath)
        temporary = final.with_name(f".{final.name}.slipway-tmp-{uuid.uuid4().hex[:12]}")
        try:
            _write_file(temporary, text.encode())
            os.replace(temporary, final)
            _fsync_directory(final.parent)
        except BaseException as exc:
            temporary.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise _not_writable(str(self.root), exc) from exc
            raise

    def move_directory(self, source: str, target: str) -> None:
        destination = self._path(target)
        if self.exists(target):
            raise TargetError("version_exists", f"{destination} already exists; Slipway never writes over it.")
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.is_dir():
                destination.rmdir()
            os.rename(self._path(source), destination)
            _fsync_directory(destination.parent)
        except OSError as exc:
            raise _not_writable(str(self.root), exc) from exc

    def remove(self, relpath: str) -> None:
        path = self._path(relpath)
        if not path.exists():
            return
        try:
            if path.is_dir():
                # Out of sight first, in one step, so the server never reads a half-removed version.
                hidden = path.with_name(f".{path.name}.slipway-removing-{uuid.uuid4().hex[:12]}")
                os.rename(path, hidden)
                shutil.rmtree(hidden)
            else:
                path.unlink()
        except OSError as exc:
            raise _not_writable(str(self.root), exc) from exc

    @contextlib.contextmanager
    def lock(self, model_name: str) -> Iterator[None]:
        """An exclusive flock on "<repository>/.<model>.slipway-lock": one deploy of a model at a time."""
        try:
            handle = self._path(f".{model_name}.slipway-lock").open("a")
        except OSError as exc:
            raise _not_writable(str(self.root), exc) from exc
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _write_file(target: Path, source: Path | bytes) -> None:
    with target.open("wb") as out:
        if isinstance(source, bytes):
            out.write(source)
        else:
            with source.open("rb") as handle:
                shutil.copyfileobj(handle, out, _CHUNK_BYTES)
        out.flush()
        os.fsync(out.fileno())


def _fsync_tree(root: Path) -> None:
    for directory, _, _ in os.walk(root):
        _fsync_directory(Path(directory))


def _fsync_directory(path: Path) -> None:
    # A rename is only durable once the directory holding it is flushed.
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class S3Store(RepositoryStore):
    """A repository under a prefix of an S3-compatible bucket, written with boto3.

    `options` go to `boto3.client("s3", ...)` (endpoint_url, region_name, ...); a private
    endpoint named in the location ("s3://host:port/bucket") becomes endpoint_url
    "http://host:port" unless `options` set one. Credentials come from boto3's usual
    sources (environment, config files, instance roles). There is no lock: the platform
    must not run two deploys of one model at once.
    """

    def __init__(self, location: RepositoryLocation, options: dict[str, str], client: Any = None) -> None:
        self.location = location
        self.bucket = location.bucket
        self.prefix = location.prefix
        if client is None:
            try:
                import boto3
            except ImportError:
                raise TargetError(
                    "repository_not_writable",
                    f"The model repository {location.uri} is in S3, and boto3 is not installed on this worker; "
                    "install boto3 (pip install boto3) on the workers that deploy.",
                ) from None
            if location.endpoint and "endpoint_url" not in options:
                options = {**options, "endpoint_url": f"http://{location.endpoint}"}
            client = boto3.client("s3", **options)
        self.client = client

    def _key(self, relpath: str) -> str:
        parts = PurePosixPath(relpath).parts
        if any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"not a path inside the repository: {relpath!r}")
        return "/".join([self.prefix, relpath] if self.prefix else [relpath])

    def uri(self, relpath: str) -> str:
        return f"s3://{self.bucket}/{self._key(relpath)}"

    def _keys(self, relpath: str) -> list[str]:
        prefix = self._key(relpath) + "/"
        keys: list[str] = []
        token = None
        while True:
            page = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=prefix, **({"ContinuationToken": token} if token else {})
            )
            keys.extend(item["Key"] for item in page.get("Contents", ()))
            if not page.get("IsTruncated"):
                return keys
            token = page["NextContinuationToken"]

    def read_text(self, relpath: str) -> str | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(relpath))
        except Exception as exc:
            if _s3_missing(exc):
                return None
            raise self._failed(exc) from exc
        return str(response["Body"].read().decode())

    def exists(self, relpath: str) -> bool:
        return self.read_text(relpath) is not None or bool(self._keys(relpath))

    def list_files(self, relpath: str) -> list[str]:
        prefix = self._key(relpath) + "/"
        return sorted(key[len(prefix) :] for key in self._keys(relpath))

    def list_dirs(self, relpath: str) -> list[str]:
        prefix = self._key(relpath) + "/" if relpath else (self.prefix + "/" if self.prefix else "")
        page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, Delimiter="/")
        names = [item["Prefix"][len(prefix) :].rstrip("/") for item in page.get("CommonPrefixes", ())]
        return sorted(name for name in names if name and not name.startswith("."))

    def write_directory(self, relpath: str, files: Mapping[str, Path | bytes]) -> None:
        if self.exists(relpath):
            raise TargetError("version_exists", f"{self.uri(relpath)} already exists; Slipway never writes over it.")
        written: list[str] = []
        # The manifest goes last: a version without one is unfinished, to Slipway and to people.
        ordered = sorted(files.items(), key=lambda item: item[0].endswith(MANIFEST_NAME))
        try:
            for name, source in ordered:
                key = self._key(f"{relpath}/{name}")
                if isinstance(source, bytes):
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=source)
                else:
                    # upload_file streams (multipart for large files): the model is never read whole.
                    self.client.upload_file(str(source), self.bucket, key)
                written.append(key)
        except BaseException as exc:
            self._delete(written)
            if isinstance(exc, TargetError):
                raise
            raise self._failed(exc) from exc

    def write_text(self, relpath: str, text: str) -> None:
        # One PUT replaces an object in one step.
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(relpath), Body=text.encode())
        except Exception as exc:
            raise self._failed(exc) from exc

    def move_directory(self, source: str, target: str) -> None:
        if self.exists(target):
            raise TargetError("version_exists", f"{self.uri(target)} already exists; Slipway never writes over it.")
        keys = sorted(self._keys(source), key=lambda key: key.endswith(MANIFEST_NAME))
        old_prefix, new_prefix = self._key(source), self._key(target)
        copied: list[str] = []
        try:
            for key in keys:
                new_key = new_prefix + key[len(old_prefix) :]
                self.client.copy({"Bucket": self.bucket, "Key": key}, self.bucket, new_key)
                copied.append(new_key)
        except Exception as exc:
            self._delete(copied)
            raise self._failed(exc) from exc
        self._delete(keys)

    def remove(self, relpath: str) -> None:
        keys = self._keys(relpath)
        if self.read_text(relpath) is not None:
            keys.append(self._key(relpath))
        self._delete(keys)

    def _delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):  # S3's limit per request
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def _failed(self, exc: BaseException) -> TargetError:
        return _not_writable(self.location.uri, exc)


def _s3_missing(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in ("NoSuchKey", "404", "NotFound")
