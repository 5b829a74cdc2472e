"""A full disk, said as what it is: which disk (the folder or file Slipway was writing), and
what to do. Used by the API (a 503 naming the disk, not "check the database server"), the
upload handler, artifact storage and pipeline steps (a `disk_full` failure, not an internal error).
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How a child process (the sandbox) reports an OSError it could not handle: str(exc), e.g.
# "[Errno 28] No space left on device: '/data/work/job-3/out.onnx'".
_REPORTED = re.compile(rf"\[Errno (?:{errno.ENOSPC}|{errno.EDQUOT})\][^'\n]*(?:'([^'\n]+)')?")


def out_of_space(exc: BaseException, default_path: str | Path) -> str | None:
    """The path whose disk is full if `exc` (or what caused it) is ENOSPC/EDQUOT, else None.

    An OSError that names no file (a write to an open file) is blamed on `default_path`, the
    folder the caller was writing into."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in NO_SPACE_ERRNOS:
            return str(current.filename or default_path)
        current = current.__cause__ or current.__context__
    return None


def reported_out_of_space(text: str, default_path: str | Path) -> str | None:
    """The same, for an error a child process reported as text."""
    match = _REPORTED.search(text)
    if match is None:
        return None
    return match.group(1) or str(default_path)


def disk_full_message(path: str | Path, consequence: str, then: str = "try again") -> str:
    """'The disk holding <path> is full, so <consequence>. Free space on that disk ... then <then>.'"""
    return (
        f"The disk holding {path} is full, so {consequence}. Free space on that disk (or move "
        f"SLIPWAY_DATA_DIR to a larger one), then {then}."
    )
