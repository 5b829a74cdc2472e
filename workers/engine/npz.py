"""Read what an .npz holds (names, shapes, dtypes) from its headers alone, refusing pickles."""

from __future__ import annotations

import zipfile
from pathlib import Path

from workers.engine.errors import ModelError

MAX_ARRAYS = 1000


def describe_npz(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{array name: (shape, dtype)} without loading the data.

    Raises ModelError("invalid_calibration") for anything that is not a plain numeric .npz:
    not a zip, members that are not .npy, object arrays (which would need unpickling).
    """
    import numpy as np
    from numpy.lib import format as npy_format

    how_to = "Save it with numpy.savez(path, <input name>=array, ...), one array per model input."
    if not zipfile.is_zipfile(path):
        raise ModelError("invalid_calibration", f"The calibration file is not an .npz archive. {how_to}")
    arrays: dict[str, tuple[tuple[int, ...], str]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_ARRAYS:
                raise ModelError(
                    "invalid_calibration", f"The calibration file holds {len(members)} arrays; at most {MAX_ARRAYS}."
                )
            for info in members:
                if not info.filename.endswith(".npy"):
                    raise ModelError(
                        "invalid_calibration",
                        f"The calibration file contains '{info.filename}', which is not a NumPy array. {how_to}",
                    )
                with archive.open(info) as member:
                    version = npy_format.read_magic(member)
                    read_header = (
                        npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
                    )
                    shape, _fortran, dtype = read_header(member)
                if dtype.hasobject:
                    raise ModelError(
                        "invalid_calibration",
                        f"Array '{info.filename[:-4]}' in the calibration file holds Python objects, which Slipway "
                        "does not unpickle. Use numeric arrays.",
                    )
                arrays[info.filename[:-4]] = (tuple(int(d) for d in shape), np.dtype(dtype).name)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ModelError("invalid_calibration", f"The calibration file could not be read ({exc}). {how_to}") from exc
    if not arrays:
        raise ModelError("invalid_calibration", f"The calibration file holds no arrays. {how_to}")
    return arrays
