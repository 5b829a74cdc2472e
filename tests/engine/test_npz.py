"""Calibration files are described from their headers; pickles and junk are refused."""

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
