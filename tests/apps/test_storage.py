"""Content-addressed storage: keys from hashes, atomic local writes, dedupe."""

from __future__ import annotations

import errno
import hashlib
import io
from pathlib import Path

import pytest

from apps.registry.storage import AtomicFileSystemStorage, StorageFull, blob_key, put_blob


def test_blob_key_is_derived_from_the_hash_and_refuses_anything_else():
    digest = hashlib.sha256(b"x").hexdigest()
    assert blob_key(digest) == f"blobs/sha256/{digest[:2]}/{digest[2:4]}/{digest}"
    for bad in ("../../etc/passwd", digest.upper(), digest[:-1]):
        with pytest.raises(ValueError):
            blob_key(bad)


def test_same_bytes_are_stored_once(settings):
    data = b"model bytes" * 1000
    digest = hashlib.sha256(data).hexdigest()
    key1, created1 = put_blob(io.BytesIO(data), digest)
    key2, created2 = put_blob(io.BytesIO(data), digest)
    assert key1 == key2 and (created1, created2) == (True, False)
    assert (Path(settings.ARTIFACT_ROOT) / key1).read_bytes() == data


def test_a_failed_write_leaves_no_partial_file(tmp_path):
    storage = AtomicFileSystemStorage(location=str(tmp_path))

    class Exploding(io.BytesIO):
        def read(self, *args):
            raise OSError("disk full")

    from django.core.files import File

    with pytest.raises(OSError):
        storage.save("blobs/x", File(Exploding(b"abc"), name="x"))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_full_disk_is_storage_full_naming_the_artifact_folder(settings, monkeypatch):
    def no_room(self, name, content):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(AtomicFileSystemStorage, "_save", no_room)
    data = b"weights" * 100
    with pytest.raises(StorageFull) as raised:
        put_blob(io.BytesIO(data), hashlib.sha256(data).hexdigest())
    assert raised.value.code == "storage_full"
    assert raised.value.message.startswith(f"The disk holding {settings.ARTIFACT_ROOT} is full")
