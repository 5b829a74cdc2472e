"""Inputs drawn from an input plan: seeded arrays that look like what the model takes.

`make_feeds` turns an `InputPlan` into arrays: smooth images with edges, token ids inside
the vocabulary, padded attention masks, tones under an envelope for audio, zero states, the
values a "values" input takes, and noise for the rest. It also bounds how large a generated
input may be and, after a model fails on generated inputs, says which values its scalar
inputs took. It is apart from `input_planning`, which decides what each input holds.

numpy is imported inside the functions that need it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from workers.engine.errors import ModelError
from workers.engine.inputs import InputPlan, InputRecipe

if TYPE_CHECKING:
    import numpy as np

# Generated inputs are made as float64/int64 and then cast: 2^28 elements take 2 GiB on the
# way. A model that declares an input of 2^40 elements gets a sentence, not a MemoryError.
MAX_GENERATED_ELEMENTS = 2**28


def make_feeds(plan: InputPlan, samples: int = 1, seed: int = 0, batch: int = 1) -> list[dict[str, np.ndarray]]:
    """`samples` feeds drawn from `plan`, each with `batch` samples per input, seeded.

    Images are smooth, correlated fields with edges (low-frequency noise and a few flat
    shapes) in the recipe's range; token ids lie in the vocabulary; attention masks are ones
    with a padded tail of zeros; audio is a few tones under an envelope plus noise in
    [-1, 1]; states are zeros; "values" inputs cycle through their values (feed i takes
    value i mod n) or are uniform in their range; other floats are standard normal and
    other integers lie in [0, 8) (valid as indices). Raises ModelError("unsupported_input")
    for an input too large to generate or of a dtype Slipway can't make.
    """
    import numpy as np

    shapes = plan.shapes(batch)
    feeds = []
    for index in range(samples):
        rng = np.random.default_rng(seed + index)
        feed = {}
        for recipe in plan.recipes:
            shape = shapes[recipe.name]
            check_generated_size(recipe.name, shape)
            feed[recipe.name] = np.asarray(_draw(recipe, shape, rng, index))
        feeds.append(feed)
    return feeds


def values_hint(feeds: Sequence[Mapping[str, Any]]) -> str:
    """For a model that failed on generated `feeds`: the values its scalar inputs took and the
    declaration that gives the ones they really take (a sample rate of 8000 or 16000, a flag
    of 0 or 1), as a sentence to append to the error; "" when no input is a scalar.

    A scalar whose valid values appear in no comparison in the graph gets invented values,
    and the model's own check then fails on them: the user must read which input that was."""
    if not feeds:
        return ""
    scalars = [name for name, value in feeds[0].items() if getattr(value, "size", 0) == 1]
    if not scalars:
        return ""
    taken = []
    for name in scalars:
        values = list(dict.fromkeys(feed[name].reshape(()).item() for feed in feeds if name in feed))
        verb = "was" if len(values) == 1 else "took"
        taken.append(f"'{name}' {verb} {', '.join(repr(value) for value in values)}")
    return (
        f" On these inputs {'; '.join(taken)}; if an input takes only some values, declare them at upload: "
        f'input_declarations {{"inputs": {{"{scalars[0]}": {{"values": [...]}}}}}}.'
    )


def check_generated_size(name: str, shape: Sequence[int]) -> None:
    """Raise ModelError("unsupported_input") when an input of `shape` is too large to generate."""
    elements = math.prod(shape)
    if elements > MAX_GENERATED_ELEMENTS:
        raise ModelError(
            "unsupported_input",
            f"Input '{name}' would hold {elements:,} elements at shape {list(shape)}, more than the "
            f"{MAX_GENERATED_ELEMENTS:,} Slipway generates test inputs for. Check the input's declared dims: "
            "export the model with its real sizes, or with symbolic dims for those that vary.",
        )


def _draw(recipe: InputRecipe, shape: tuple[int, ...], rng: Any, index: int) -> Any:
    import numpy as np

    try:
        dtype = np.dtype(recipe.dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "fiub":
        raise ModelError(
            "unsupported_input",
            f"Input '{recipe.name}' has dtype {recipe.dtype}, for which Slipway can't generate test inputs. "
            "Upload a validation set (.npz) with one array per model input.",
        )
    kind = recipe.kind
    if kind == "values":
        if recipe.values:
            return np.full(shape, recipe.values[index % len(recipe.values)]).astype(dtype)
        low, high = recipe.low or 0.0, recipe.high if recipe.high is not None else 1.0
        if dtype.kind in "iu":
            return rng.integers(int(low), int(high) + 1, size=shape).astype(dtype)
        return rng.uniform(low, high, size=shape).astype(dtype)
    if kind == "state":
        return np.zeros(shape, dtype=dtype)
    if kind == "attention_mask":
        return _mask(shape, rng).astype(dtype)
    if kind == "token_ids":
        low, high = int(recipe.low or 0), int(recipe.high if recipe.high is not None else 999)
        return rng.integers(low, high + 1, size=shape).astype(dtype)
    if kind == "image":
        unit = _images(shape, rng, channels_first=recipe.shape[1] in (1, 3))
        low, high = recipe.low or 0.0, recipe.high if recipe.high is not None else 1.0
        values = low + unit * (high - low)
        return np.rint(values).astype(dtype) if dtype.kind in "iu" else values.astype(dtype)
    if kind == "audio":
        return _audio(shape, rng, recipe.low, recipe.high).astype(dtype)
    if dtype.kind == "f":
        if recipe.low is not None and recipe.high is not None:
            return rng.uniform(recipe.low, recipe.high, size=shape).astype(dtype)
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if recipe.low is not None and recipe.high is not None:
        return rng.integers(int(recipe.low), int(recipe.high) + 1, size=shape).astype(dtype)
    return rng.integers(0, 8, size=shape).astype(dtype)


def _mask(shape: tuple[int, ...], rng: Any) -> Any:
    """Ones with a tail of zeros on the last axis (padding), at least half of each row ones."""
    import numpy as np

    if not shape:
        return np.ones(())
    length = shape[-1]
    rows = int(np.prod(shape[:-1]))
    kept = rng.integers(max(1, (length + 1) // 2), length + 1, size=rows)
    mask = (np.arange(length)[None, :] < kept[:, None]).astype(np.float64)
    return mask.reshape(shape)


def _images(shape: tuple[int, ...], rng: Any, channels_first: bool) -> Any:
    """Natural-image-like values in [0, 1]: smooth luminance at two scales, a few flat shapes
    with hard edges, colour channels that move together, and a little sensor noise."""
    import numpy as np

    if channels_first:
        batch, channels, height, width = shape
    else:
        batch, height, width, channels = shape
    images = np.empty((batch, channels, height, width))
    for b in range(batch):
        luminance = 0.6 * _smooth(rng, height, width, 4) + 0.4 * _smooth(rng, height, width, 16)
        for _ in range(int(rng.integers(2, 6))):  # objects: flat patches with edges
            top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
            tall = int(rng.integers(max(1, height // 8), max(2, height // 2)))
            wide = int(rng.integers(max(1, width // 8), max(2, width // 2)))
            luminance[top : top + tall, left : left + wide] = rng.uniform(0.05, 0.95)
        for c in range(channels):
            tint = 0.15 * _smooth(rng, height, width, 3) + rng.uniform(-0.1, 0.1)
            images[b, c] = luminance + tint
    images += rng.normal(0.0, 0.01, size=images.shape)
    images = np.clip(images, 0.0, 1.0)
    return images if channels_first else images.transpose(0, 2, 3, 1)


def _smooth(rng: Any, height: int, width: int, cells: int) -> Any:
    """A random field in [0, 1] that varies over about `cells` cells per side (bilinear)."""
    import numpy as np

    grid = rng.random((cells + 1, cells + 1))
    ys = np.linspace(0, cells, height)
    xs = np.linspace(0, cells, width)
    y0 = np.minimum(ys.astype(int), cells - 1)
    x0 = np.minimum(xs.astype(int), cells - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _audio(shape: tuple[int, ...], rng: Any, low: float | None, high: float | None) -> Any:
    """A few tones (100 Hz to 3 kHz at 16 kHz) under a slow envelope plus noise, per row, on
    the last axis, scaled into [low, high]."""
    import numpy as np

    if not shape:
        return np.zeros(())
    length = shape[-1]
    rows = int(np.prod(shape[:-1]))
    t = np.arange(length) / 16000.0
    signal = np.zeros((rows, length))
    for row in range(rows):
        for _ in range(3):
            signal[row] += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * rng.uniform(100, 3000) * t + rng.uniform(0, 6))
        signal[row] *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 4) * t) ** 2
        signal[row] += rng.normal(0, 0.01, size=length)
    peak = max(abs(low if low is not None else -1.0), abs(high if high is not None else 1.0))
    return np.clip(signal, -1.0, 1.0).reshape(shape) * peak
