"""Check and unpack a zip upload that holds an ONNX model and its external data files.

A zip comes from a stranger, so it is treated as hostile: `check_archive` reads only the
central directory and refuses unsafe paths, links, encrypted members, archives that
expand too far (zip bombs) and layouts without exactly one model; `extract_archive`
then streams each member out with its own byte count instead of trusting the sizes the
zip declares.
"""

from __future__ import annotations

import contextlib
import copy
import lzma
import posixpath
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from workers.engine.errors import ModelError


@dataclass(frozen=True)
class ArchiveLimits:
    """How far an uploaded zip may expand; the bounds guard against zip bombs.

    `max_ratio` is uncompressed size over compressed size, checked per entry and for the
    whole archive.
    """

    max_entries: int = 10_000
    max_total_bytes: int = 32 * 2**30
    max_ratio: float = 200.0


@dataclass(frozen=True)
class ArchiveSummary:
    """What `check_archive` found: the model member and every file that will be extracted."""

    model_member: str
    members: tuple[str, ...]
    total_uncompressed: int


DEFAULT_LIMITS = ArchiveLimits()

LAYOUT_ADVICE = "The zip must hold one model.onnx plus its external data files."

# Small entries may compress by any ratio: a short config file or a run of zero padding
# compresses far better than 200:1 and cannot hurt anyone.
_RATIO_EXEMPT_BYTES = 2**20
_CHUNK_BYTES = 2**20
# Finder adds AppleDouble copies ("__MACOSX/._model.onnx") to zips made on macOS; they
# are not the user's files and would otherwise look like a second model.
_MACOS_METADATA_DIR = "__MACOSX/"
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_ENCRYPTED_FLAG = 0x1
# What zipfile can unpack; any other method number fails only when a member is opened.
_SUPPORTED_METHODS = frozenset((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA))
# zipfile reads the whole central directory into memory and builds one ZipInfo per record
# before anyone can count them, so its size is bounded from the end record first: a record
# is 46 bytes plus its name, extra field and comment, and this allows names of several
# hundred characters for every entry the limits allow.
_DIRECTORY_BYTES_PER_ENTRY = 512
_END_RECORD = struct.Struct("<4s4H2LH")
# What reading a damaged member's data raises, by compression method: BadZipFile (a bad CRC
# or local header), zlib.error (deflate), OSError (bzip2's "Invalid data stream"),
# lzma.LZMAError (LZMA's properties or data), EOFError (a stream cut short), and
# RuntimeError, NotImplementedError among them (encryption, a method zipfile lacks), and
# UnicodeDecodeError (a local header flagged UTF-8 whose name is not; found by fuzzing).
MEMBER_READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    UnicodeDecodeError,
    zlib.error,
    OSError,
    lzma.LZMAError,
    EOFError,
    RuntimeError,
)
# ... and what parsing what was read raises: a damaged .npy header or JSON (ValueError).
MEMBER_PARSE_ERRORS: tuple[type[BaseException], ...] = (*MEMBER_READ_ERRORS, ValueError)
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")


def check_archive(path: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> ArchiveSummary:
    """Check a zip upload from its central directory alone, without extracting anything.

    Raises ModelError: the codes of `check_members`; "archive_layout" unless there is
    exactly one .onnx member (a member named model.onnx wins among several).
    """
    members, total_uncompressed = check_members(path, limits)
    return ArchiveSummary(
        model_member=_pick_model_member(members),
        members=tuple(members),
        total_uncompressed=total_uncompressed,
    )


def check_members(
    path: Path, limits: ArchiveLimits = DEFAULT_LIMITS, *, entries_advice: str = LAYOUT_ADVICE
) -> tuple[list[str], int]:
    """The safety checks of any zip from a stranger, from its central directory alone.

    Returns the regular files to extract (macOS metadata left out) and the uncompressed
    size of all regular files. Raises ModelError: "not_a_model" when the zip cannot be
    read, a member uses a compression method zipfile lacks or points outside the file;
    "unsafe_archive" for empty, absolute or `..` paths, backslashes or drive letters, links
    and other special files, duplicate names, encrypted members and entries that declare
    more compressed data than the file holds (overlapping entries); "archive_too_large"
    when the entry count or the central directory's size (its message ends with
    `entries_advice`), the total size or the compression ratio passes `limits`.
    """
    infos = _read_directory(path, limits, entries_advice)
    if len(infos) > limits.max_entries:
        raise _too_many_entries(len(infos), limits, entries_advice)

    seen: set[str] = set()
    members: list[str] = []
    total_uncompressed = 0
    total_compressed = 0
    for info in infos:
        name = info.filename
        _check_member_name(name)
        key = posixpath.normpath(name.rstrip("/"))
        if key in seen:
            raise ModelError(
                "unsafe_archive",
                f"The zip holds '{name}' more than once. Re-create the zip so that each file appears once.",
            )
        seen.add(key)
        _check_member_type(info)
        if info.is_dir():
            continue
        if info.flag_bits & _ENCRYPTED_FLAG:
            raise ModelError(
                "unsafe_archive",
                f"The zip member '{name}' is password-protected. Re-create the zip without "
                "encryption and upload it again.",
            )
        if info.compress_type not in _SUPPORTED_METHODS:
            # Refused here, at upload, rather than as a NotImplementedError when a worker
            # opens the member.
            raise ModelError(
                "not_a_model",
                f"The zip member '{name}' is compressed with method {info.compress_type}, which Slipway "
                "can't unpack. Re-create the zip with a standard zip tool (deflate or no compression).",
            )
        _check_ratio(f"The zip member '{name}'", info.file_size, info.compress_size, limits)
        total_uncompressed += info.file_size
        total_compressed += info.compress_size
        if name.startswith(_MACOS_METADATA_DIR):
            continue
        members.append(name)

    if total_uncompressed > limits.max_total_bytes:
        raise ModelError(
            "archive_too_large",
            f"The zip expands to {total_uncompressed:,} bytes; the limit is "
            f"{limits.max_total_bytes:,} bytes. Upload a smaller model.",
        )
    _check_ratio("The zip as a whole", total_uncompressed, total_compressed, limits)
    _check_layout(path, infos)
    return members, total_uncompressed


def check_zip_directory(
    path: Path, limits: ArchiveLimits = DEFAULT_LIMITS, *, entries_advice: str = LAYOUT_ADVICE
) -> None:
    """Refuse a zip whose central directory is too large for `limits` or can't be read, before
    anything lists its members. Raises ModelError "archive_too_large" or "not_a_model"."""
    _read_directory(path, limits, entries_advice)


def check_directory_size(
    path: Path, limits: ArchiveLimits = DEFAULT_LIMITS, *, entries_advice: str = LAYOUT_ADVICE
) -> None:
    """Refuse a file whose zip central directory declares more entries or bytes than `limits`
    allow, reading only its end records: zipfile would load that directory into memory
    whole, whatever the file's first bytes. A file without a real central directory passes.
    Raises ModelError "archive_too_large"."""
    declared = _declared_directory(path)
    if declared is None:
        return
    entries, directory_bytes = declared
    if entries > limits.max_entries:
        raise _too_many_entries(entries, limits, entries_advice)
    max_bytes = limits.max_entries * _DIRECTORY_BYTES_PER_ENTRY
    if directory_bytes > max_bytes:
        raise ModelError(
            "archive_too_large",
            f"The zip's table of contents is {directory_bytes:,} bytes, more than the {max_bytes:,} bytes "
            f"that {limits.max_entries:,} entries need. {entries_advice}",
        )


def _read_directory(path: Path, limits: ArchiveLimits, entries_advice: str) -> list[zipfile.ZipInfo]:
    check_directory_size(path, limits, entries_advice=entries_advice)
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.infolist()
    # NotImplementedError: a member needing a zip feature version zipfile lacks ("zip file
    # version 24.0", found by fuzzing), raised while the directory is read.
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError):
        raise unreadable_archive() from None


def _declared_directory(path: Path) -> tuple[int, int] | None:
    """(entry count, central directory bytes) as the zip's end record declares them, or None
    when there is no end record with a central directory just before it (where zipfile
    looks for it): a stray "PK\x05\x06" in an ONNX file's weights is not a zip."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        # The end record is the last 22 bytes, followed by a comment of at most 64 KiB.
        tail_size = min(size, _END_RECORD.size + 0xFFFF)
        stream.seek(size - tail_size)
        tail = stream.read(tail_size)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _END_RECORD.size > len(tail):
            return None
        fields = _END_RECORD.unpack_from(tail, at)
        entries, directory_bytes = fields[4], fields[5]
        record_at = size - tail_size + at
        locator_at = at - _ZIP64_LOCATOR.size
        if locator_at >= 0 and tail[locator_at : locator_at + 4] == b"PK\x06\x07":
            record_offset = _ZIP64_LOCATOR.unpack_from(tail, locator_at)[2]
            stream.seek(min(record_offset, size))
            record = stream.read(_ZIP64_END_RECORD.size)
            if len(record) == _ZIP64_END_RECORD.size and record[:4] == b"PK\x06\x06":
                fields64 = _ZIP64_END_RECORD.unpack(record)
                entries, directory_bytes = fields64[7], fields64[8]
                record_at = min(record_offset, size)
        if entries == 0 and directory_bytes == 0:
            return entries, directory_bytes
        start = record_at - directory_bytes
        if start < 0:
            return None
        stream.seek(start)
        if stream.read(4) != b"PK\x01\x02":
            return None
    return entries, directory_bytes


def _too_many_entries(count: int, limits: ArchiveLimits, entries_advice: str) -> ModelError:
    return ModelError(
        "archive_too_large",
        f"The zip holds {count:,} entries; the limit is {limits.max_entries:,}. {entries_advice}",
    )


def _check_layout(path: Path, infos: Sequence[zipfile.ZipInfo]) -> None:
    size = path.stat().st_size
    for info in infos:
        # An offset outside the file makes zipfile's seek fail with a bare OSError when the
        # member is opened (found by fuzzing): say so now, at upload.
        if not 0 <= info.header_offset < size:
            raise _damaged_member(info.filename)
    # Entries whose data overlap (the "better zip bomb" trick: many entries point at one
    # compressed kernel) or whose compressed sizes lie declare more compressed bytes than
    # the file holds; each entry may look harmless, but together they expand without bound.
    declared = sum(info.compress_size for info in infos)
    if declared > size:
        raise ModelError(
            "unsafe_archive",
            f"The zip's entries declare {declared:,} bytes of compressed data, but the file holds only "
            f"{size:,} bytes: entries overlap or lie about their sizes, a zip bomb trick. Re-create the "
            "zip with a standard zip tool.",
        )


def unreadable_archive() -> ModelError:
    """The error for a zip whose table of contents cannot be read."""
    return ModelError(
        "not_a_model",
        "The file looks like a zip archive but its table of contents cannot be read, so "
        "it is damaged or cut short. Re-create the zip and upload it again.",
    )


def extract_archive(path: Path, dest: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> Path:
    """Extract a checked zip upload into `dest` and return the path of its model file.

    Runs `check_archive` first, then streams each regular member out with
    `extract_members`, which counts the bytes and removes what it created on failure.
    """
    summary = check_archive(path, limits)
    return extract_members(path, summary.members, dest, limits) / summary.model_member


def extract_members(path: Path, members: Sequence[str], dest: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> Path:
    """Stream each of `members` (names `check_members` returned) to a file inside `dest`.

    Counts the bytes: an entry that decompresses past its declared size, or a running
    total past `limits.max_total_bytes`, stops extraction with "archive_too_large". A
    member whose data is damaged raises "not_a_model". On any failure the files and
    folders this call created (`dest` among them) are removed again. Returns `dest`,
    resolved.
    """
    dest_existed = dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    written: list[Path] = []
    made_dirs: list[Path] = []
    try:
        with zipfile.ZipFile(path) as archive:
            total = 0
            for name in members:
                target = _target_path(root, name)
                _make_parents(target.parent, root, made_dirs)
                info = archive.getinfo(name)
                total = _extract_member(archive, info, target, total, limits, written)
    except BaseException:
        # Whatever went wrong (including a worker's time limit), leave no partial model
        # behind for a later step to pick up.
        _remove(written, made_dirs, None if dest_existed else root)
        raise
    return root


# A zip starts with a local file header, or with its end-of-central-directory record when it
# has no members.
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def zip_names(path: Path) -> list[str] | None:
    """The member names of a zip, or None when the file is not a readable zip (what the
    importers' sniffers read a multi-file format by)."""
    try:
        with path.open("rb") as stream:
            if stream.read(4) not in ZIP_MAGICS:
                return None
    except OSError:
        return None
    try:
        with zipfile.ZipFile(path) as zipped:
            return zipped.namelist()
    # NotImplementedError: "zip file version 25.5" in the directory (found by fuzzing); this
    # runs in the web process at upload.
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return None


def check_zip_members(path: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> list[str]:
    """`check_archive`'s safety checks without its one-.onnx-file layout rule: refuse unsafe
    paths, links, duplicates, encrypted members and zip bombs. Returns the regular files."""
    try:
        members, _ = check_members(path, limits, entries_advice="Upload a smaller model.")
    except OSError:
        raise unreadable_archive() from None
    return members


def extract_zip(path: Path, dest: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> list[str]:
    """Check a framework's zip (`check_zip_members`), then stream each regular member into
    `dest` counting its bytes, as `extract_archive` does. Returns the extracted member names."""
    members = check_zip_members(path, limits)
    extract_members(path, members, dest, limits)
    return members


def _check_member_name(name: str) -> None:
    reason = None
    if not name:
        # zipfile's ZipInfo.is_dir() raises IndexError on it (found by fuzzing).
        raise ModelError(
            "unsafe_archive", "The zip holds a member without a name. Re-create the zip with a standard zip tool."
        )
    if name.startswith("/"):
        reason = "has an absolute path"
    elif "\\" in name:
        reason = "has a backslash in its path"
    elif _DRIVE_LETTER.match(name):
        reason = "starts with a drive letter"
    elif ".." in name.split("/"):
        reason = "has a '..' component in its path"
    elif "\x00" in name:
        reason = "has a NUL character in its name"
    if reason:
        raise ModelError(
            "unsafe_archive",
            f"The zip member '{name}' {reason}, so it could be written outside the upload "
            "folder. Re-create the zip with paths relative to its top folder.",
        )


def _check_member_type(info: zipfile.ZipInfo) -> None:
    # Unix zips keep the file mode in the high 16 bits; zips from Windows leave it 0.
    mode = info.external_attr >> 16
    if not stat.S_IFMT(mode) or stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = "a symbolic link" if stat.S_ISLNK(mode) else "a special file"
    raise ModelError(
        "unsafe_archive",
        f"The zip member '{info.filename}' is {kind}. Re-create the zip with the real files in place of links.",
    )


def _check_ratio(subject: str, uncompressed: int, compressed: int, limits: ArchiveLimits) -> None:
    if uncompressed <= _RATIO_EXEMPT_BYTES:
        return
    ratio = uncompressed / max(compressed, 1)
    if ratio > limits.max_ratio:
        raise ModelError(
            "archive_too_large",
            f"{subject} expands {ratio:,.0f} times (from {compressed:,} to {uncompressed:,} "
            f"bytes); the limit is {limits.max_ratio:,.0f} times, which guards against zip "
            "bombs. Check the files, or zip them with less compression and upload again.",
        )


def _pick_model_member(members: list[str]) -> str:
    onnx_members = [name for name in members if name.lower().endswith(".onnx")]
    if len(onnx_members) == 1:
        return onnx_members[0]
    if not onnx_members:
        hint = ""
        if any(posixpath.basename(name) == "data.pkl" for name in members):
            hint = " It looks like a PyTorch checkpoint; export it with torch.onnx.export first."
        raise ModelError("archive_layout", f"The zip holds no .onnx file.{hint} {LAYOUT_ADVICE}")
    named_model = [name for name in onnx_members if posixpath.basename(name) == "model.onnx"]
    if len(named_model) == 1:
        return named_model[0]
    listed = ", ".join(f"'{name}'" for name in onnx_members[:5])
    more = f" and {len(onnx_members) - 5} more" if len(onnx_members) > 5 else ""
    raise ModelError(
        "archive_layout",
        f"The zip holds {len(onnx_members)} .onnx files ({listed}{more}), so it is not clear "
        f"which one is the model. {LAYOUT_ADVICE}",
    )


def _target_path(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    # check_archive already refused '..' and absolute names; this also catches a folder
    # inside an existing `dest` that is a link to somewhere else.
    if not target.is_relative_to(root) or target == root:
        raise ModelError(
            "unsafe_archive",
            f"The zip member '{name}' would be written outside the upload folder. Re-create "
            "the zip with paths relative to its top folder.",
        )
    return target


def _make_parents(folder: Path, root: Path, made_dirs: list[Path]) -> None:
    missing = []
    while folder != root and not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for new_folder in reversed(missing):
        new_folder.mkdir()
        made_dirs.append(new_folder)


def _extract_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    target: Path,
    total: int,
    limits: ArchiveLimits,
    written: list[Path],
) -> int:
    """Stream one member to a new file `target`; return the running total of bytes."""
    # zipfile stops reading at the size the zip declares and then reports only a
    # checksum error. Lift its stop well past the declared size so that our own count is
    # what trips, and the user hears the real reason.
    probe = copy.copy(info)
    probe.file_size = info.file_size + 2 * _CHUNK_BYTES
    count = 0
    with target.open("xb") as sink:
        written.append(target)
        for chunk in _member_chunks(archive, probe):
            count += len(chunk)
            total += len(chunk)
            if count > info.file_size:
                raise ModelError(
                    "archive_too_large",
                    f"The zip member '{info.filename}' expands past the "
                    f"{info.file_size:,} bytes its header declares, so extraction "
                    "was stopped. Re-create the zip with a standard zip tool.",
                )
            if total > limits.max_total_bytes:
                raise ModelError(
                    "archive_too_large",
                    f"The zip expands past the limit of {limits.max_total_bytes:,} "
                    "bytes, so extraction was stopped. Upload a smaller model.",
                )
            # outside _member_chunks' error handling: a full disk is not a damaged zip
            sink.write(chunk)
    if count < info.file_size:
        raise _damaged_member(info.filename)
    return total


def _member_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """The member's decompressed data in chunks; ModelError when it cannot be read.

    Only reading is guarded: bzip2 reports damaged data as OSError, which a failed write to
    the destination must not be mistaken for."""
    try:
        with archive.open(info) as source:
            while chunk := source.read(_CHUNK_BYTES):
                yield chunk
    # RuntimeError, NotImplementedError among them: a method check_members did not refuse
    # (zips checked by an older version, or a local header that disagrees with the directory).
    except MEMBER_READ_ERRORS:
        raise _damaged_member(info.filename) from None


def _damaged_member(name: str) -> ModelError:
    return ModelError(
        "not_a_model",
        f"The zip member '{name}' is damaged (its data does not match its header), so the "
        "zip is corrupt or cut short. Re-create the zip and upload it again.",
    )


def _remove(written: list[Path], made_dirs: list[Path], root: Path | None) -> None:
    for file in written:
        file.unlink(missing_ok=True)
    for folder in [*reversed(made_dirs), *([root] if root else [])]:
        # A folder that is not empty holds files that are not ours to delete.
        with contextlib.suppress(OSError):
            folder.rmdir()
