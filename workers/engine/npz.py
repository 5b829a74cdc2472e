"""Read what an .npz holds (names, shapes, dtypes) from its headers alone, refusing pickles."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

from workers.engine.archive import MEMBER_PARSE_ERRORS, ArchiveLimits, check_members
from workers.engine.errors import ModelError

MAX_ARRAYS = 1000
# An .npz is a zip like any upload: the same limits on entries, expansion and overlap apply,
# since the calibration and parity steps read every array into memory.
NPZ_LIMITS = ArchiveLimits(max_entries=MAX_ARRAYS)


def describe_npz(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{array name: (shape, dtype)} without loading the data.

    Raises ModelError("invalid_calibration") for anything that is not a plain numeric .npz:
    not a zip, a zip that fails the archive checks (unsafe names, zip bombs, too many
    members), members that are not .npy, object arrays (which would need unpickling), and
    arrays whose header declares more or less data than the member holds.
    """
    import numpy as np
    from numpy.lib import format as npy_format

    how_to = "Save it with numpy.savez(path, <input name>=array, ...), one array per model input."
    try:
        is_zip = zipfile.is_zipfile(path)
    except zipfile.BadZipFile:  # is_zipfile itself raises on a multi-disk ZIP64 record (found by fuzzing)
        is_zip = False
    if not is_zip:
        raise ModelError("invalid_calibration", f"The calibration file is not an .npz archive. {how_to}")
    try:
        check_members(path, NPZ_LIMITS, entries_advice=f"A calibration file holds at most {MAX_ARRAYS} arrays.")
    except ModelError as exc:
        reason = exc.message[:1].lower() + exc.message[1:]
        raise ModelError("invalid_calibration", f"The calibration file was refused: {reason}") from None
    arrays: dict[str, tuple[tuple[int, ...], str]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ModelError(
                        "invalid_calibration",
                        f"The calibration file contains '{info.filename}', which is not a NumPy array. {how_to}",
                    )
                name = info.filename[:-4]
                with archive.open(info) as member:
                    version = npy_format.read_magic(member)
                    read_header = (
                        npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
                    )
                    shape, _fortran, dtype = read_header(member)
                    header_bytes = member.tell()
                if dtype.hasobject:
                    raise ModelError(
                        "invalid_calibration",
                        f"Array '{name}' in the calibration file holds Python objects, which Slipway "
                        "does not unpickle. Use numeric arrays.",
                    )
                # The header's shape is what np.load allocates before reading a byte of data:
                # a 100-byte member declaring 2^40 elements must not get that far.
                declared = math.prod(int(d) for d in shape) * dtype.itemsize
                held = info.file_size - header_bytes
                if declared != held:
                    raise ModelError(
                        "invalid_calibration",
                        f"Array '{name}' in the calibration file declares shape {tuple(shape)} of "
                        f"{np.dtype(dtype).name} ({declared:,} bytes) but holds {held:,} bytes of data, so "
                        f"the file is damaged or was not written by NumPy. {how_to}",
                    )
                arrays[name] = (tuple(int(d) for d in shape), np.dtype(dtype).name)
    # A damaged member (archive.MEMBER_READ_ERRORS, LZMA's and bzip2's among them) or a damaged
    # .npy header (ValueError). A web request must never see these.
    except MEMBER_PARSE_ERRORS as exc:
        raise ModelError("invalid_calibration", f"The calibration file could not be read ({exc}). {how_to}") from exc
    if not arrays:
        raise ModelError("invalid_calibration", f"The calibration file holds no arrays. {how_to}")
    return arrays
