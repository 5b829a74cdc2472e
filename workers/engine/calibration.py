"""Load and check calibration data: the representative inputs static quantization needs.

A calibration file is an .npz holding one array per model input, named like the input,
with the samples on axis 0 (the model's batch axis). `load_calibration` checks every
array against the model's inputs before any quantization starts, so that a wrong file
fails with a sentence naming the input instead of a runtime error deep inside a
calibrator. `calibration_feeds` then cuts the arrays into the feeds the model takes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from workers.engine.archive import MEMBER_PARSE_ERRORS, MEMBER_READ_ERRORS
from workers.engine.errors import ModelError
from workers.engine.inspection import Dim, TensorSpec

if TYPE_CHECKING:
    import numpy as np


def load_calibration(
    path: Path, input_specs: Sequence[TensorSpec], *, max_samples: int | None = None
) -> dict[str, np.ndarray]:
    """Read a calibration .npz and check it against the model inputs in `input_specs`.

    Returns one array per input, in the order of `input_specs`, with at most
    `max_samples` samples each. Arrays for names the model does not take are ignored.
    Each array must have the input's dtype and rank, and every fixed dim after the
    first (the batch axis) must match; a fixed batch size of k needs at least k samples.
    The file is read with `allow_pickle=False`, so it can never run code.

    Raises ModelError: "calibration_invalid" when the file is not a readable .npz of
    plain arrays; "calibration_mismatch" when an input is missing or an array has the
    wrong dtype, rank or dims, or the arrays hold different numbers of samples.
    """
    arrays = _read_npz(path)
    checked: dict[str, np.ndarray] = {}
    for spec in input_specs:
        if spec.name not in arrays:
            given = ", ".join(f"'{name}'" for name in sorted(arrays)) or "no arrays"
            raise ModelError(
                "calibration_mismatch",
                f"The calibration file has no array for model input '{spec.name}' (expected "
                f"{_describe(spec.dtype, spec.shape)}, samples on axis 0); "
                f"it holds {given}. Save one array per model input, named like the input.",
            )
        checked[spec.name] = _check_array(spec, arrays[spec.name])

    counts = {name: _sample_count(array) for name, array in checked.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"'{name}' has {count}" for name, count in counts.items())
        raise ModelError(
            "calibration_mismatch",
            f"The calibration arrays hold different numbers of samples ({listed}). Give every "
            "input the same number of samples on axis 0.",
        )
    if checked and not next(iter(counts.values())):
        raise ModelError(
            "calibration_mismatch",
            "The calibration arrays hold no samples. Save at least one sample per input.",
        )
    if max_samples is not None:
        checked = {name: array[:max_samples] for name, array in checked.items()}
    return checked


def calibration_feeds(
    arrays: Mapping[str, np.ndarray], input_specs: Sequence[TensorSpec]
) -> Iterator[dict[str, np.ndarray]]:
    """The model feeds in checked calibration arrays, one batch at a time.

    A fixed batch dim of k gives batches of k samples (a last, shorter one is dropped);
    a symbolic or unknown batch dim gives batches of one sample. A scalar input takes one
    value of its array per feed.
    """
    batch = min((_fixed_batch(spec) for spec in input_specs if spec.name in arrays), default=1)
    count = min((_sample_count(array) for array in arrays.values()), default=0)
    for start in range(0, count - batch + 1, batch):
        feed = {}
        for spec in input_specs:
            array = arrays[spec.name]
            feed[spec.name] = array[start, ...] if spec.shape == () else array[start : start + batch]
        yield feed


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    import numpy as np

    from workers.engine.npz import describe_npz

    # The upload's checks, again, before np.load: an array header that declares 2^40
    # elements, a zip bomb, or a member zipfile can't decompress must be a sentence here
    # too, not a MemoryError or a zlib.error (files stored before those checks existed).
    try:
        describe_npz(path)
    except ModelError as exc:
        raise ModelError("calibration_invalid", exc.message) from None
    unreadable = ModelError(
        "calibration_invalid",
        "The calibration file could not be read as a NumPy .npz archive. Save one array per "
        "model input with numpy.savez (for example np.savez('calibration.npz', image=images)).",
    )
    try:
        archive = np.load(path, allow_pickle=False)
    except MEMBER_PARSE_ERRORS:
        raise unreadable from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise unreadable  # a single .npy array
    arrays: dict[str, np.ndarray] = {}
    with archive:
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except ValueError:
                raise ModelError(
                    "calibration_invalid",
                    f"The calibration array '{name}' holds Python objects, which are never loaded "
                    "because unpickling can run code. Save plain numeric arrays with numpy.savez.",
                ) from None
            except MEMBER_READ_ERRORS:
                raise unreadable from None
    return arrays


def _check_array(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    import numpy as np

    expected = _describe(spec.dtype, spec.shape)
    given = _describe(str(array.dtype), tuple(array.shape))

    def mismatch(problem: str, advice: str) -> ModelError:
        return ModelError(
            "calibration_mismatch",
            f"The calibration array for input '{spec.name}' {problem}: the model expects {expected} "
            f"(samples on axis 0), the file gives {given}. {advice}",
        )

    if spec.dtype is not None:
        try:
            wanted = np.dtype(spec.dtype)
        except TypeError:
            raise mismatch(
                "cannot be used",
                f"Inputs of type {spec.dtype} cannot be calibrated; quantize this model without calibration.",
            ) from None
        if array.dtype != wanted:
            raise mismatch("has the wrong dtype", f"Convert it with .astype('{wanted}') and save it again.")
    if spec.shape is None:
        return array
    # A scalar input still gets a samples axis in the file.
    rank = max(len(spec.shape), 1)
    if array.ndim != rank:
        raise mismatch(
            f"has {array.ndim} dimensions instead of {rank}",
            "Stack the samples on axis 0 so that each array has the input's rank.",
        )
    for axis, dim in enumerate(spec.shape[1:], start=1):
        if isinstance(dim, int) and array.shape[axis] != dim:
            raise mismatch(
                f"has size {array.shape[axis]} on axis {axis} instead of {dim}",
                "Resize or crop the samples to the model's input size.",
            )
    batch = _fixed_batch(spec)
    if len(array) < batch:
        raise mismatch(
            f"holds {len(array)} samples, fewer than the model's fixed batch of {batch}",
            f"Save at least {batch} samples.",
        )
    return array


def _fixed_batch(spec: TensorSpec) -> int:
    if spec.shape and isinstance(spec.shape[0], int) and spec.shape[0] > 0:
        return spec.shape[0]
    return 1


def _sample_count(array: np.ndarray) -> int:
    return int(array.shape[0]) if array.ndim else 1


def _describe(dtype: str | None, shape: tuple[Dim, ...] | None) -> str:
    """Say "float32 of shape [batch, 3, 32, 32]"; unknown dims show as "?"."""
    if shape is None:
        return f"{dtype or 'any dtype'} of any shape"
    dims = ", ".join("?" if dim is None else str(dim) for dim in shape)
    return f"{dtype or 'any dtype'} of shape [{dims}]"
