"""Content-addressed blob storage on top of Django's storage API.

A blob's key is derived from its sha256, so the same bytes are stored once however many
artifacts point at them. Local files are written aside and renamed into place, so a crash
never leaves a half-written blob under a real key (S3 objects appear whole by design).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages

from apps.core.diskspace import NO_SPACE_ERRNOS, disk_full_message

CHUNK_SIZE = 1024 * 1024


class AtomicFileSystemStorage(FileSystemStorage):
    """Local storage that writes to a temporary file in the target folder, then renames."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("allow_overwrite", True)  # same key means same bytes
        super().__init__(**kwargs)

    def _save(self, name: str, content: File) -> str:
        full_path = Path(self.path(name))
        full_path.parent.mkdir(parents=True, exist_ok=True)
        if hasattr(content, "temporary_file_path") and self._link_into_place(content.temporary_file_path(), full_path):
            return name
        fd, tmp_name = tempfile.mkstemp(dir=full_path.parent, prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as out:
                content.seek(0)
                for chunk in content.chunks(CHUNK_SIZE):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, full_path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return name

    @staticmethod
    def _link_into_place(source: str, full_path: Path) -> bool:
        """Hard-link an upload's spooled file into place: no second copy of a large model.

        The upload's temporary folder sits on the same disk as the artifacts by default; on
        another filesystem the link fails and the caller copies instead.
        """
        tmp_name = full_path.parent / f".partial-link-{os.urandom(8).hex()}"
        try:
            os.link(source, tmp_name)
        except OSError:
            return False
        try:
            with open(tmp_name, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, full_path)
        except BaseException:
            tmp_name.unlink(missing_ok=True)
            raise
        return True


class StorageFull(Exception):
    """The artifact storage has no room left (ENOSPC / EDQUOT). Nothing was stored: the
    partial file was removed. `code` is stable; `message` says what is full and what to do."""

    code = "storage_full"

    def __init__(self, size: int | None = None, location: str | None = None):
        needed = f" for {size / 2**20:.1f} MiB" if size else ""
        if location:  # local storage: name the folder, so the admin knows which disk to free
            self.message = disk_full_message(
                location, f"Slipway's artifact storage had no room{needed} and nothing was stored"
            )
        else:
            self.message = (
                f"Slipway's artifact storage is full: there was no room{needed}, so nothing was stored. "
                "Ask an admin to free space or enlarge the storage volume, then try again."
            )
        super().__init__(self.message)


def artifact_storage() -> Storage:
    return storages["artifacts"]


def blob_key(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return f"blobs/sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def put_blob(content: IO[bytes] | File, sha256: str) -> tuple[str, bool]:
    """Store bytes under their hash; return (key, created). Existing blobs are not rewritten."""
    storage = artifact_storage()
    key = blob_key(sha256)
    if storage.exists(key):
        return key, False
    try:
        saved = storage.save(key, content if isinstance(content, File) else File(content))
    except OSError as exc:
        # A full disk is a condition of the server, not a crash: callers turn it into a 507
        # (uploads) or a failed job with this sentence (pipeline steps). _save has already
        # removed its partial file, so no half-written blob stays under any name.
        if exc.errno in NO_SPACE_ERRNOS:
            raise StorageFull(getattr(content, "size", None), getattr(storage, "location", None)) from exc
        raise
    if saved != key:  # a storage that renames on collision: the blob already exists
        storage.delete(saved)
        return key, False
    return key, True


def delete_blob_if_unreferenced(key: str) -> bool:
    """Remove a blob no artifact points at (cleanup after a failed write)."""
    from apps.registry.models import Artifact

    if Artifact.objects.filter(storage_key=key).exists():
        return False
    artifact_storage().delete(key)
    return True


def sha256_file(path: Path) -> str:
    """Hash a file in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def materialize(key: str, dest: Path) -> Path:
    """Copy a blob to a local file for a worker, streaming in chunks."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with artifact_storage().open(key, "rb") as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK_SIZE)
    return dest
