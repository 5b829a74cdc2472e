"""load_calibration: a calibration file that fits the model is accepted, one that does not is named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workers.engine.calibration import calibration_feeds, calibration_size_note, load_calibration
from workers.engine.errors import ModelError
from workers.engine.inspection import TensorSpec

IMAGE = TensorSpec("image", "float32", ("batch", 3, 32, 32))
MASK = TensorSpec("mask", "int64", (None, 32))


def _npz(tmp_path: Path, **arrays: Any) -> Path:
    path = tmp_path / "calibration.npz"
    np.savez(path, **arrays)
    return path


def _images(count: int, size: int = 32, dtype: type = np.float32) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((count, 3, size, size)).astype(dtype)


def _mismatch(path: Path, specs: list[TensorSpec]) -> str:
    with pytest.raises(ModelError) as raised:
        load_calibration(path, specs)
    assert raised.value.code == "calibration_mismatch"
    return raised.value.message


def test_matching_arrays_are_returned_and_extra_ones_ignored(tmp_path: Path) -> None:
    path = _npz(tmp_path, image=_images(5), mask=np.zeros((5, 32), np.int64), notes=np.arange(3))
    arrays = load_calibration(path, [IMAGE, MASK])
    assert list(arrays) == ["image", "mask"]
    assert arrays["image"].shape == (5, 3, 32, 32)


def test_max_samples_keeps_the_first_samples(tmp_path: Path) -> None:
    images = _images(10)
    arrays = load_calibration(_npz(tmp_path, image=images), [IMAGE], max_samples=4)
    np.testing.assert_array_equal(arrays["image"], images[:4])


def test_missing_input_names_it_with_the_expected_shape(tmp_path: Path) -> None:
    message = _mismatch(_npz(tmp_path, images=_images(2)), [IMAGE])
    assert "'image'" in message
    assert "float32 of shape [batch, 3, 32, 32]" in message
    assert "'images'" in message  # what the file holds instead


def test_wrong_dtype_says_expected_and_given(tmp_path: Path) -> None:
    message = _mismatch(_npz(tmp_path, image=_images(2, dtype=np.float64)), [IMAGE])
    assert "'image'" in message and "wrong dtype" in message
    assert "float32 of shape [batch, 3, 32, 32]" in message
    assert "float64 of shape [2, 3, 32, 32]" in message


def test_wrong_rank(tmp_path: Path) -> None:
    message = _mismatch(_npz(tmp_path, image=np.zeros((3, 32, 32), np.float32)), [IMAGE])
    assert "3 dimensions instead of 4" in message


def test_fixed_non_batch_dim_must_match(tmp_path: Path) -> None:
    message = _mismatch(_npz(tmp_path, image=_images(2, size=64)), [IMAGE])
    assert "size 64 on axis 2 instead of 32" in message
    assert "float32 of shape [2, 3, 64, 64]" in message


def test_dynamic_dims_accept_any_size(tmp_path: Path) -> None:
    spec = TensorSpec("image", "float32", ("batch", 3, "height", None))
    arrays = load_calibration(_npz(tmp_path, image=np.zeros((2, 3, 48, 20), np.float32)), [spec])
    assert arrays["image"].shape == (2, 3, 48, 20)


def test_fixed_batch_needs_enough_samples(tmp_path: Path) -> None:
    spec = TensorSpec("image", "float32", (4, 3, 32, 32))
    message = _mismatch(_npz(tmp_path, image=_images(2)), [spec])
    assert "fewer than the model's fixed batch of 4" in message


def test_inputs_must_hold_the_same_number_of_samples(tmp_path: Path) -> None:
    message = _mismatch(_npz(tmp_path, image=_images(4), mask=np.zeros((3, 32), np.int64)), [IMAGE, MASK])
    assert "different numbers of samples" in message


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    path = _npz(tmp_path, image=np.array([{"pickled": "payload"}], dtype=object))
    with pytest.raises(ModelError) as raised:
        load_calibration(path, [IMAGE])
    assert raised.value.code == "calibration_invalid"
    assert "'image'" in raised.value.message and "Python objects" in raised.value.message


@pytest.mark.parametrize("content", [b"not a zip at all", b""], ids=["garbage", "empty"])
def test_unreadable_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "calibration.npz"
    path.write_bytes(content)
    with pytest.raises(ModelError) as raised:
        load_calibration(path, [IMAGE])
    assert raised.value.code == "calibration_invalid"


def test_a_single_npy_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "calibration.npy"
    np.save(path, _images(2))
    with pytest.raises(ModelError) as raised:
        load_calibration(path, [IMAGE])
    assert raised.value.code == "calibration_invalid"
    assert "numpy.savez" in raised.value.message


def test_feeds_follow_the_model_batch(tmp_path: Path) -> None:
    images = _images(5)
    dynamic = list(calibration_feeds({"image": images}, [IMAGE]))
    assert [feed["image"].shape[0] for feed in dynamic] == [1] * 5

    fixed = TensorSpec("image", "float32", (2, 3, 32, 32))
    batches = list(calibration_feeds({"image": images}, [fixed]))
    assert [feed["image"].shape for feed in batches] == [(2, 3, 32, 32)] * 2  # the fifth sample is left over
    np.testing.assert_array_equal(batches[1]["image"], images[2:4])


def test_scalar_inputs_take_one_value_per_feed(tmp_path: Path) -> None:
    spec = TensorSpec("scale", "float32", ())
    arrays = load_calibration(_npz(tmp_path, scale=np.array([0.5, 2.0], np.float32)), [spec])
    feeds = list(calibration_feeds(arrays, [spec]))
    assert [feed["scale"].shape for feed in feeds] == [(), ()]
    assert float(feeds[1]["scale"]) == 2.0


AUDIO = TensorSpec("input", "float32", ("batch", 512))
STATE = TensorSpec("state", "float32", (2, "batch", 128))


def test_a_state_takes_its_samples_on_its_batch_axis(tmp_path: Path) -> None:
    audio = np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32)
    state = np.arange(2 * 3 * 128, dtype=np.float32).reshape(2, 3, 128)
    arrays = load_calibration(_npz(tmp_path, input=audio, state=state), [AUDIO, STATE], max_samples=2)
    assert arrays["state"].shape == (2, 2, 128)  # max_samples cut on axis 1, not axis 0
    feeds = list(calibration_feeds(arrays, [AUDIO, STATE]))
    assert [feed["state"].shape for feed in feeds] == [(2, 1, 128)] * 2
    np.testing.assert_array_equal(feeds[1]["state"], state[:, 1:2])


def test_samples_on_the_wrong_axis_name_the_input_and_what_to_declare(tmp_path: Path) -> None:
    path = _npz(tmp_path, input=np.zeros((3, 512), np.float32), state=np.zeros((3, 2, 128), np.float32))
    message = _mismatch(path, [AUDIO, STATE])
    assert "'state'" in message and "samples on axis 1" in message
    assert '{"inputs": {"state": {"batch_axis": <axis>}}}' in message
    # Declared, the same file is read with the samples where the user put them.
    arrays = load_calibration(path, [AUDIO, STATE], axes={"state": 0})
    assert arrays["state"].shape == (3, 2, 128)


def test_a_calibration_set_too_small_for_its_method_is_named(tmp_path: Path) -> None:
    arrays = load_calibration(_npz(tmp_path, image=_images(3), mask=np.zeros((3, 32), np.int64)), [IMAGE, MASK])
    note = calibration_size_note(arrays, [IMAGE, MASK])
    assert note.startswith("The calibration set holds 3 samples, fewer than the 8 that minmax calibration needs")
    assert "Upload at least 100 representative samples" in note
    assert "32 that entropy" in calibration_size_note(arrays, [IMAGE, MASK], "entropy")
    enough = load_calibration(_npz(tmp_path, image=_images(8), mask=np.zeros((8, 32), np.int64)), [IMAGE, MASK])
    assert calibration_size_note(enough, [IMAGE, MASK]) == ""
    assert "32 that percentile" in calibration_size_note(enough, [IMAGE, MASK], "percentile")
