"""Load and check calibration data: the representative inputs static quantization needs.

A calibration file is an .npz holding one array per model input, named like the input,
with the samples on the input's batch axis: axis 0 for most inputs, the axis of the batch
dim where the signature puts it elsewhere (a recurrent state [2, batch, 128] has its
samples on axis 1), or the `batch_axis` the user declared (`input_planning.batch_axes`); a scalar
input's values are stacked on a new axis 0. `load_calibration` checks every array against
the model's inputs before any quantization starts, so that a wrong file fails with a
sentence naming the input instead of a runtime error deep inside a calibrator.
`calibration_feeds` then cuts the arrays into the feeds the model takes. Validation sets
(parity) are read the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from workers.engine.archive import MEMBER_PARSE_ERRORS, MEMBER_READ_ERRORS
from workers.engine.errors import ModelError
from workers.engine.input_planning import batch_axes
from workers.engine.inputs import Dim, TensorSpec

if TYPE_CHECKING:
    import numpy as np

BatchAxes = Mapping[str, int | None]


def load_calibration(
    path: Path,
    input_specs: Sequence[TensorSpec],
    *,
    max_samples: int | None = None,
    axes: BatchAxes | None = None,
) -> dict[str, np.ndarray]:
    """Read a calibration .npz and check it against the model inputs in `input_specs`.

    Returns one array per input, in the order of `input_specs`, with at most
    `max_samples` samples each. Arrays for names the model does not take are ignored.
    `axes` gives each input's sample axis (default: `input_planning.batch_axes` of the specs).
    Each array must have the input's dtype and rank, and every fixed dim off the sample
    axis must match; a fixed batch size of k needs at least k samples. The file is read
    with `allow_pickle=False`, so it can never run code.

    Raises ModelError: "calibration_invalid" when the file is not a readable .npz of
    plain arrays; "calibration_mismatch" when an input is missing or an array has the
    wrong dtype, rank or dims, or the arrays hold different numbers of samples (each
    sentence names the input, the axis its samples are expected on, and how to declare
    another one).
    """
    axes = {**batch_axes(input_specs), **(axes or {})}
    arrays = _read_npz(path)
    checked: dict[str, np.ndarray] = {}
    for spec in input_specs:
        if spec.name not in arrays:
            given = ", ".join(f"'{name}'" for name in sorted(arrays)) or "no arrays"
            raise ModelError(
                "calibration_mismatch",
                f"The calibration file has no array for model input '{spec.name}' (expected "
                f"{_describe(spec.dtype, spec.shape)}, {_where(axes.get(spec.name))}); "
                f"it holds {given}. Save one array per model input, named like the input.",
            )
        checked[spec.name] = _check_array(spec, arrays[spec.name], axes.get(spec.name))

    counts = {name: _sample_count(array, axes.get(name)) for name, array in checked.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"'{name}' has {count} on axis {axes.get(name) or 0}" for name, count in counts.items())
        raise ModelError(
            "calibration_mismatch",
            f"The calibration arrays hold different numbers of samples ({listed}). Give every input the same "
            "number of samples on its batch axis; if an array holds its samples on another axis, declare it: "
            '{"inputs": {"<input>": {"batch_axis": <axis>}}} in the input declarations.',
        )
    if checked and not next(iter(counts.values())):
        raise ModelError(
            "calibration_mismatch",
            "The calibration arrays hold no samples. Save at least one sample per input.",
        )
    if max_samples is not None:
        checked = {name: _take(array, axes.get(name), 0, max_samples) for name, array in checked.items()}
    return checked


# Fewer samples than this rarely cover the range real inputs reach: static INT8 scales fitted
# to them clip the rest. Histogram methods estimate a distribution's tail and want more.
MIN_CALIBRATION_SAMPLES = {"minmax": 8, "entropy": 32, "percentile": 32}


def calibration_size_note(
    arrays: Mapping[str, np.ndarray],
    input_specs: Sequence[TensorSpec],
    method: str = "minmax",
    axes: BatchAxes | None = None,
) -> str:
    """A sentence when checked calibration `arrays` hold fewer samples than `method` needs to
    be representative (the static INT8 variants are still built, and parity on other inputs
    judges them), else ""."""
    if not arrays:
        return ""
    axes = {**batch_axes(input_specs), **(axes or {})}
    count = min(_sample_count(array, axes.get(name)) for name, array in arrays.items())
    needed = MIN_CALIBRATION_SAMPLES.get(method, MIN_CALIBRATION_SAMPLES["minmax"])
    if count >= needed:
        return ""
    return (
        f"The calibration set holds {count} sample{'s' if count != 1 else ''}, fewer than the {needed} that "
        f"{method} calibration needs to cover the values real inputs reach; the static INT8 variants were "
        f"built from {'it' if count == 1 else 'them'}, and parity on other inputs decides whether they pass. "
        "Upload at least 100 representative samples for scales you can rely on."
    )


def calibration_feeds(
    arrays: Mapping[str, np.ndarray], input_specs: Sequence[TensorSpec], axes: BatchAxes | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """The model feeds in checked calibration arrays, one batch at a time.

    A fixed batch dim of k gives batches of k samples (a last, shorter one is dropped);
    a symbolic or unknown batch dim gives batches of one sample, cut on the input's sample
    axis. A scalar input takes one value of its array per feed.
    """
    axes = {**batch_axes(input_specs), **(axes or {})}
    present = [spec for spec in input_specs if spec.name in arrays]
    batch = min((_fixed_batch(spec, axes.get(spec.name)) for spec in present), default=1)
    count = min((_sample_count(arrays[spec.name], axes.get(spec.name)) for spec in present), default=0)
    for start in range(0, count - batch + 1, batch):
        feed = {}
        for spec in input_specs:
            axis = axes.get(spec.name)
            array = arrays[spec.name]
            feed[spec.name] = array[start, ...] if axis is None else _take(array, axis, start, start + batch)
        yield feed


def _take(array: np.ndarray, axis: int | None, start: int, stop: int) -> np.ndarray:
    """Samples start..stop-1 on `axis` (axis 0 of the file for a scalar input)."""
    index = [slice(None)] * array.ndim
    if array.ndim:
        index[axis or 0] = slice(start, stop)
    return array[tuple(index)]


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


def _where(axis: int | None) -> str:
    return "samples stacked on a new axis 0" if axis is None else f"samples on axis {axis}"


def _check_array(spec: TensorSpec, array: np.ndarray, axis: int | None) -> np.ndarray:
    import numpy as np

    expected = _describe(spec.dtype, spec.shape)
    given = _describe(str(array.dtype), tuple(array.shape))

    def mismatch(problem: str, advice: str) -> ModelError:
        return ModelError(
            "calibration_mismatch",
            f"The calibration array for input '{spec.name}' {problem}: the model expects {expected} "
            f"({_where(axis)}), the file gives {given}. {advice}",
        )

    declare = (
        "If the samples are on another axis of the array, declare it: "
        + json.dumps({"inputs": {spec.name: {"batch_axis": "<axis>"}}}).replace('"<axis>"', "<axis>")
        + " in the input declarations."
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
    # A scalar input (or one whose only dim is data) gets a new samples axis in the file.
    rank = len(spec.shape) + (1 if axis is None else 0)
    if array.ndim != rank:
        stack = "on a new axis 0" if axis is None else f"on axis {axis}"
        raise mismatch(
            f"has {array.ndim} dimensions instead of {rank}",
            f"Stack the samples {stack} so that each array has that rank.",
        )
    for model_axis in range(len(spec.shape)):
        if model_axis == axis:
            continue
        dim = spec.shape[model_axis]
        file_axis = model_axis + (1 if axis is None else 0)
        if isinstance(dim, int) and array.shape[file_axis] != dim:
            raise mismatch(
                f"has size {array.shape[file_axis]} on axis {file_axis} instead of {dim}",
                "Resize or crop the samples to the model's input size. " + declare,
            )
    batch = _fixed_batch(spec, axis)
    count = _sample_count(array, axis)
    if count < batch:
        raise mismatch(
            f"holds {count} samples, fewer than the model's fixed batch of {batch}",
            f"Save at least {batch} samples.",
        )
    return array


def _fixed_batch(spec: TensorSpec, axis: int | None) -> int:
    if axis is None or not spec.shape or axis >= len(spec.shape):
        return 1
    dim = spec.shape[axis]
    return dim if isinstance(dim, int) and dim > 0 else 1


def _sample_count(array: np.ndarray, axis: int | None) -> int:
    if not array.ndim:
        return 1
    return int(array.shape[axis or 0]) if (axis or 0) < array.ndim else 0


def _describe(dtype: str | None, shape: tuple[Dim, ...] | None) -> str:
    """Say "float32 of shape [batch, 3, 32, 32]"; unknown dims show as "?"."""
    if shape is None:
        return f"{dtype or 'any dtype'} of any shape"
    dims = ", ".join("?" if dim is None else str(dim) for dim in shape)
    return f"{dtype or 'any dtype'} of shape [{dims}]"
