"""The upload handler: every file part is streamed to disk and hashed as it arrives."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from rest_framework import status

from apps.core.api.errors import ApiError
from apps.core.diskspace import NO_SPACE_ERRNOS, disk_full_message


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


class UploadTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(
            "upload_too_large",
            f"The upload is larger than this server's limit of {human_bytes(limit)}. "
            "Ask an admin to raise SLIPWAY_MAX_UPLOAD_BYTES if the model really is this large.",
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )


class UploadSpoolFull(ApiError):
    def __init__(self) -> None:
        super().__init__(
            "storage_full",
            disk_full_message(
                settings.FILE_UPLOAD_TEMP_DIR, "there was no room to receive the upload and nothing was stored"
            ),
            status.HTTP_507_INSUFFICIENT_STORAGE,
        )


class HashingUploadHandler(TemporaryFileUploadHandler):
    """Write to a temporary file in 1 MiB chunks, computing sha256 and size on the way."""

    chunk_size = 1024 * 1024

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self._sha256 = hashlib.sha256()
        self._size = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self._size += len(raw_data)
        if self._size > settings.MAX_UPLOAD_BYTES:
            self.file.close()  # removes the temporary file now, not at garbage collection
            raise UploadTooLarge(settings.MAX_UPLOAD_BYTES)
        self._sha256.update(raw_data)
        with self._no_space_is_507():
            super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size: int) -> TemporaryUploadedFile:
        self.file.sha256 = self._sha256.hexdigest()  # type: ignore[attr-defined]
        with self._no_space_is_507():  # the last buffered bytes are written here
            return super().file_complete(file_size)  # type: ignore[return-value]

    @contextlib.contextmanager
    def _no_space_is_507(self) -> Iterator[None]:
        # The spool folder sits on the data volume: when it is full, say so (507) and drop
        # the partial temporary file now, instead of a 500.
        try:
            yield
        except OSError as exc:
            if exc.errno not in NO_SPACE_ERRNOS:
                raise
            with contextlib.suppress(OSError):
                self.file.close()
            raise UploadSpoolFull() from exc
