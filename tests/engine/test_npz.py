"""Calibration files are described from their headers; pickles and junk are refused."""

import zipfile

import numpy as np
import pytest

from workers.engine.errors import ModelError
from workers.engine.npz import describe_npz


def test_shapes_and_dtypes_come_from_headers(tmp_path):
    path = tmp_path / "calib.npz"
    np.savez(path, input=np.zeros((8, 16), np.float32), ids=np.zeros((8, 4), np.int64))
    assert describe_npz(path) == {"input": ((8, 16), "float32"), "ids": ((8, 4), "int64")}


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p.write_bytes(b"not a zip at all"), "not an .npz"),
        (lambda p: np.savez(p, bad=np.array([{"a": 1}], dtype=object)), "Python objects"),
        (lambda p: np.savez(p), "no arrays"),
    ],
)
def test_bad_calibration_files_are_refused(tmp_path, make, fragment):
    path = tmp_path / "calib.npz"
    make(path)
    with pytest.raises(ModelError) as info:
        describe_npz(path)
    assert info.value.code == "invalid_calibration" and fragment in info.value.message


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_damaged_array_data_is_refused_whatever_the_compression(tmp_path, compression):
    """Found by fuzzing: a bzip2 or LZMA member with damaged data raised OSError or LZMAError."""
    path = tmp_path / "calib.npz"
    with zipfile.ZipFile(path, "w", compression=compression) as archive, archive.open("input.npy", "w") as member:
        np.save(member, np.arange(4096, dtype=np.float32))
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo("input.npy").header_offset + 30 + len("input.npy")
    with path.open("r+b") as stream:
        stream.seek(offset)
        stream.write(bytes(range(0x55, 0x55 + 12)))
    with pytest.raises(ModelError) as info:
        describe_npz(path)
    assert info.value.code == "invalid_calibration" and "could not be read" in info.value.message
