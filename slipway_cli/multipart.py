"""A multipart/form-data body streamed from disk, with its length known up front.

`requests` would read a file given in `files=` whole into memory; a model can be several
GB. This body is an iterable of chunks read as the socket sends them (constant memory), and
has a `len()`, so the request carries a Content-Length: the server can refuse an oversized
upload before reading it, and no proxy has to cope with chunked encoding.
"""

from __future__ import annotations

import mimetypes
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from slipway_cli.errors import CliError

CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class FilePart:
    """A file field: read from `path` while sending, under the name `filename`."""

    field: str
    path: Path
    size: int
    filename: str
    content_type: str


def file_part(field: str, path: Path) -> FilePart:
    """The part for a file on disk; a CliError naming the option when it is not a readable file."""
    try:
        info = path.stat()
    except OSError as exc:
        raise CliError(f"Can't read {path}: {exc.strerror}.") from exc
    if not path.is_file():
        raise CliError(f"{path} is not a file.")
    if not os.access(path, os.R_OK):
        raise CliError(f"Can't read {path}: permission denied.")
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FilePart(field, path, info.st_size, path.name, content_type)


def _quote(value: str) -> str:
    # What browsers do (HTML's multipart encoding): the quote and line breaks are escaped,
    # the rest is sent as UTF-8.
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartBody:
    """The body of one request: text fields first (the server reads them before the big file),
    then the files. Iterate it to get the bytes; `len()` is their total.

    `on_progress(sent, total)` is called after each chunk is handed to the socket.
    """

    def __init__(
        self,
        fields: Sequence[tuple[str, str]],
        files: Sequence[FilePart],
        *,
        boundary: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ):
        self.boundary = boundary or f"slipway-{secrets.token_hex(16)}"
        self.on_progress = on_progress
        self._segments: list[bytes | FilePart] = []
        for name, value in fields:
            self._segments.append(
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode()
                + value.encode("utf-8")
                + b"\r\n"
            )
        for part in files:
            self._segments.append(
                f"--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="{_quote(part.field)}"; filename="{_quote(part.filename)}"\r\n'
                f"Content-Type: {part.content_type}\r\n\r\n".encode()
            )
            self._segments.append(part)
            self._segments.append(b"\r\n")
        self._segments.append(f"--{self.boundary}--\r\n".encode())
        self._length = sum(len(s) if isinstance(s, bytes) else s.size for s in self._segments)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self._length

    # Deliberately no read(): urllib3 reads a file-like body 16 KiB at a time, while it sends
    # an iterable's chunks as they come (1 MiB here), far fewer system calls for a big model.
    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for segment in self._segments:
            chunks = [segment] if isinstance(segment, bytes) else _file_chunks(segment)
            for chunk in chunks:
                yield chunk
                sent += len(chunk)
                if self.on_progress is not None:
                    self.on_progress(sent, self._length)


def _file_chunks(part: FilePart) -> Iterator[bytes]:
    """The file's bytes; exactly `part.size` of them, or a CliError if it changed meanwhile."""
    left = part.size
    with part.path.open("rb") as source:
        while left > 0:
            chunk = source.read(min(CHUNK_BYTES, left))
            if not chunk:
                raise CliError(
                    f"{part.path} got shorter while it was being uploaded ({part.size} bytes at the start). "
                    "Upload a file that is no longer being written."
                )
            left -= len(chunk)
            yield chunk
