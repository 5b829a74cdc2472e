"""The playground: run the original model and its variants on one input a user gives, and say
what came out.

A user's file (an image, a WAV, an .npz, or JSON) becomes the model's feeds by `read_feeds`,
which says exactly what it did ("resized 640x480 -> 224x224 bilinear, RGB, /255, mean [...],
std [...], NCHW float32"); an image's preprocessing comes from the version's input plan
(`default_preprocessing`) and the user may change any of it (`Preprocessing.from_dict`).
Outputs are told by what they are (`outputs.OutputSemantics`): the top classes of a
classifier, the decoded boxes of a detection head in the original image's pixels, and a
bounded summary (shape, min/max/mean, first values) for the rest (`summarize_outputs`).
Output arrays are never returned whole.

This module runs inside the sandbox (entry points "trial" and "trial_variant"); numpy, Pillow
and onnx are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.engine.errors import ModelError

if TYPE_CHECKING:
    import numpy as np

    from workers.engine.inputs import InputPlan, InputRecipe
    from workers.engine.outputs import OutputSemantics

MAX_INPUT_BYTES = 20 * 2**20
MAX_PIXELS = 40_000_000  # decoded image pixels (a 40-megapixel photograph)
MAX_AUDIO_SAMPLES = 16000 * 600  # ten minutes at 16 kHz
MAX_ELEMENTS = 2**26  # per input array from .npz or JSON
MAX_BOXES = 100
FIRST_VALUES = 8
LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR", "GRAY")
DTYPES = ("float32", "float16", "uint8", "int8")
RESAMPLES = ("bilinear", "nearest", "bicubic")


def _bad(message: str) -> ModelError:
    return ModelError("bad_trial_input", message)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes an input tensor: resized to `size` (height, width) with `resample`,
    channels in `channel_order`, multiplied by `scale`, then (x - mean) / std per channel, laid
    out as `layout` (batch 1) in `dtype`."""

    size: tuple[int, int] = (224, 224)
    layout: str = "NCHW"
    channel_order: str = "RGB"
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    dtype: str = "float32"
    resample: str = "bilinear"

    def __post_init__(self) -> None:
        channels = 1 if self.channel_order == "GRAY" else 3
        checks = [
            (
                len(self.size) == 2 and all(isinstance(s, int) and 1 <= s <= 8192 for s in self.size),
                "preprocessing.size should be [height, width], whole numbers from 1 to 8192",
            ),
            (self.layout in LAYOUTS, f"preprocessing.layout should be one of {', '.join(LAYOUTS)}"),
            (
                self.channel_order in CHANNEL_ORDERS,
                f"preprocessing.channel_order should be one of {', '.join(CHANNEL_ORDERS)}",
            ),
            (
                math.isfinite(self.scale) and self.scale != 0,
                "preprocessing.scale should be a non-zero number, e.g. 0.00392 for /255",
            ),
            (
                len(self.mean) in (1, channels) and all(math.isfinite(m) for m in self.mean),
                f"preprocessing.mean should hold 1 or {channels} numbers (one per channel)",
            ),
            (
                len(self.std) in (1, channels) and all(math.isfinite(s) and s > 0 for s in self.std),
                f"preprocessing.std should hold 1 or {channels} positive numbers (one per channel)",
            ),
            (self.dtype in DTYPES, f"preprocessing.dtype should be one of {', '.join(DTYPES)}"),
            (self.resample in RESAMPLES, f"preprocessing.resample should be one of {', '.join(RESAMPLES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise _bad(message + ".")

    @property
    def channels(self) -> int:
        return 1 if self.channel_order == "GRAY" else 3

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"], data["mean"], data["std"] = list(self.size), list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, defaults: Preprocessing | None = None) -> Preprocessing:
        """`defaults` (the plan's, or the class defaults) with the fields in `data` changed;
        raises ModelError("bad_trial_input") naming the field that does not read."""
        base = (defaults or cls()).to_dict()
        unknown = sorted(set(data or {}) - set(base))
        if unknown:
            raise _bad(f"preprocessing has no field {', '.join(unknown)}; the fields are {', '.join(sorted(base))}.")
        merged = {**base, **(data or {})}
        try:
            return cls(
                size=tuple(int(s) for s in merged["size"]),  # type: ignore[arg-type]
                layout=str(merged["layout"]).upper(),
                channel_order=str(merged["channel_order"]).upper(),
                scale=float(merged["scale"]),
                mean=tuple(float(m) for m in merged["mean"]),
                std=tuple(float(s) for s in merged["std"]),
                dtype=str(merged["dtype"]),
                resample=str(merged["resample"]).lower(),
            )
        except (TypeError, ValueError) as exc:
            raise _bad(f"preprocessing does not read ({exc}): give numbers for size, scale, mean and std.") from None


def default_preprocessing(plan: InputPlan, recipe: InputRecipe) -> Preprocessing:
    """The preprocessing an image input's plan implies: its size and layout from its shape, its
    channel count, and the scale from its value range ([0, 1] -> /255, [0, 255] -> 1, [-1, 1]
    -> /255 then mean 0.5 std 0.5)."""
    shape = plan.shape(recipe)
    if len(shape) != 4:
        raise _bad(f"Input '{recipe.name}' has shape {list(shape)}; an image input has 4 dims (batch, channels, H, W).")
    channels_first = shape[1] in (1, 3) or shape[3] not in (1, 3)
    channels = shape[1] if channels_first else shape[3]
    height, width = (shape[2], shape[3]) if channels_first else (shape[1], shape[2])
    order = "GRAY" if channels == 1 else "RGB"
    count = 1 if channels == 1 else 3
    low, high = recipe.low if recipe.low is not None else 0.0, recipe.high if recipe.high is not None else 1.0
    scale, mean, std = 1 / 255, (0.0,) * count, (1.0,) * count
    if high > 2:
        scale = 1.0
    elif low < -0.5:
        mean, std = (0.5,) * count, (0.5,) * count
    dtype = recipe.dtype if recipe.dtype in DTYPES else "float32"
    return Preprocessing(
        size=(height, width),
        layout="NCHW" if channels_first else "NHWC",
        channel_order=order,
        scale=scale,
        mean=mean,
        std=std,
        dtype=dtype,
    )


def sniff(path: Path) -> str:
    """What the file is by its first bytes: "image", "npz", "audio" or "json"."""
    head = path.read_bytes()[:16]
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff"):
        return "image"
    if head.startswith(b"PK"):
        return "npz"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    raise _bad(
        "The file is not a PNG or JPEG image, a WAV file, an .npz archive or JSON. Give one of those "
        "(JSON: {input name: nested list}, or a list of token ids)."
    )


@dataclass(frozen=True)
class Feeds:
    """The model's inputs made from the user's file, and what was done to make them."""

    feeds: dict[str, Any]
    kind: str
    applied: tuple[str, ...]
    preprocessing: dict[str, Any] | None = None  # for an image: as applied
    image_size: tuple[int, int] | None = None  # for an image: the original (width, height)


def read_feeds(path: Path, plan: InputPlan, preprocessing: Mapping[str, Any] | None = None) -> Feeds:
    """The feeds for one run (batch 1) of the model whose inputs `plan` describes, from the
    user's file at `path`. Raises ModelError("bad_trial_input") with a sentence on what to change."""
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        raise _bad(
            f"The file is {size / 2**20:.1f} MiB; the playground takes files up to {MAX_INPUT_BYTES // 2**20} MiB."
        )
    if size == 0:
        raise _bad("The file is empty. Give an image, a WAV file, an .npz archive or JSON.")
    kind = sniff(path)
    if kind == "image":
        return _image_feeds(path, plan, preprocessing)
    if kind == "audio":
        return _audio_feeds(path, plan)
    if kind == "npz":
        return _array_feeds(_load_npz(path), plan, "npz")
    return _json_feeds(path, plan)


def _single(plan: InputPlan, kinds: Sequence[str], what: str) -> InputRecipe:
    matching = [r for r in plan.recipes if r.kind in kinds]
    others = [r for r in plan.recipes if r.kind not in kinds and r.kind not in ("attention_mask", "state")]
    names = ", ".join(f"'{r.name}' ({r.kind})" for r in plan.recipes) or "none"
    if len(matching) != 1 or others:
        raise _bad(
            f"{what} fills one {'/'.join(kinds)} input, but the model's inputs are {names}. "
            "Give an .npz or JSON with one array per input instead."
        )
    return matching[0]


def _auxiliary(plan: InputPlan, main: InputRecipe, shape: tuple[int, ...], applied: list[str]) -> dict[str, Any]:
    """Attention masks (ones) and recurrent states (zeros) beside the main input."""
    import numpy as np

    extra: dict[str, Any] = {}
    for recipe in plan.recipes:
        if recipe.name == main.name:
            continue
        if recipe.kind == "attention_mask":
            extra[recipe.name] = np.ones(shape, dtype=recipe.dtype)
            applied.append(f"{recipe.name}: ones {'x'.join(map(str, shape))} (attend to every token)")
        else:
            recipe_shape = plan.shape(recipe)
            extra[recipe.name] = np.zeros(recipe_shape, dtype=recipe.dtype)
            applied.append(f"{recipe.name}: zeros {'x'.join(map(str, recipe_shape))} (initial state)")
    return extra


def _image_feeds(path: Path, plan: InputPlan, given: Mapping[str, Any] | None) -> Feeds:
    import numpy as np

    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise _bad(
            "Pillow is not installed on this worker, so images can't be decoded; give an .npz instead."
        ) from None
    recipe = _single(plan, ("image",), "An image")
    defaults = default_preprocessing(plan, recipe)
    prep = Preprocessing.from_dict(given, defaults)
    shape = plan.shape(recipe)
    channels = defaults.channels
    if prep.layout != defaults.layout:
        raise _bad(
            f"The model's input '{recipe.name}' has shape {list(shape)}, which is {defaults.layout}; the preprocessing "
            f"asks for {prep.layout}. Set the layout to {defaults.layout}."
        )
    if channels != prep.channels:
        raise _bad(
            f"The image is made {prep.channels}-channel ({prep.channel_order}) but the model's input '{recipe.name}' "
            f"takes {channels} channel{'s' if channels != 1 else ''} (shape {list(shape)}). Set the channel order "
            f"to {'GRAY' if channels == 1 else 'RGB or BGR'}."
        )
    fixed = (shape[2], shape[3]) if prep.layout == "NCHW" else (shape[1], shape[2])
    for axis, (want, have) in enumerate(zip(prep.size, fixed, strict=True)):
        dim = recipe.shape[(2 if prep.layout == "NCHW" else 1) + axis]
        if isinstance(dim, int) and dim > 0 and want != have:
            raise _bad(
                f"The model's input '{recipe.name}' takes images of {fixed[0]}x{fixed[1]} (height x width); "
                f"the preprocessing asks for {prep.size[0]}x{prep.size[1]}. Set the size to [{fixed[0]}, {fixed[1]}]."
            )
    Image.MAX_IMAGE_PIXELS = None  # the cap below says it as a sentence, before decoding
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise _bad(
                    f"The image is {width}x{height} ({width * height / 1e6:.0f} megapixels); the playground decodes "
                    f"up to {MAX_PIXELS / 1e6:.0f} megapixels. Give a smaller image."
                )
            source_mode = image.mode
            # A phone's JPEG stores its rotation in EXIF; browsers show it upright, and so must the
            # model see it, or boxes drawn over the browser's picture would land elsewhere.
            upright = ImageOps.exif_transpose(image) or image
            width, height = upright.size
            converted = upright.convert("L" if prep.channel_order == "GRAY" else "RGB")
            resample = {
                "bilinear": Image.Resampling.BILINEAR,
                "nearest": Image.Resampling.NEAREST,
                "bicubic": Image.Resampling.BICUBIC,
            }[prep.resample]
            resized = converted.resize((prep.size[1], prep.size[0]), resample)
    except ModelError:
        raise
    except Exception as exc:  # Pillow raises many types for a broken file
        raise _bad(f"The image could not be decoded ({exc}). Give a PNG or JPEG file.") from None
    pixels = np.asarray(resized, dtype=np.float64)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if prep.channel_order == "BGR":
        pixels = pixels[:, :, ::-1]
    values = (pixels * prep.scale - np.asarray(prep.mean)) / np.asarray(prep.std)
    values = values[None]  # batch 1, NHWC
    if prep.layout == "NCHW":
        values = values.transpose(0, 3, 1, 2)
    dtype = np.dtype(prep.dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    array = np.ascontiguousarray(values.astype(dtype))
    mode_note = "" if source_mode in ("RGB", "L") else f" (converted from {source_mode})"
    scale_text = "/255" if abs(prep.scale - 1 / 255) < 1e-9 else f"x{prep.scale:g}"
    applied = [
        f"resized {width}x{height} -> {prep.size[1]}x{prep.size[0]} {prep.resample}{mode_note}, {prep.channel_order}, "
        f"{scale_text}, mean {_numbers(prep.mean)}, std {_numbers(prep.std)}, {prep.layout} {prep.dtype}"
    ]
    feeds = {recipe.name: array, **_auxiliary(plan, recipe, array.shape, applied)}
    return Feeds(feeds, "image", tuple(applied), prep.to_dict(), (width, height))


def _numbers(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def _audio_feeds(path: Path, plan: InputPlan) -> Feeds:
    import wave

    import numpy as np

    recipe = _single(plan, ("audio",), "A WAV file")
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate, frames = wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()
            if frames > MAX_AUDIO_SAMPLES:
                raise _bad(f"The WAV file has {frames} samples; the playground takes up to {MAX_AUDIO_SAMPLES}.")
            raw = wav.readframes(frames)
    except ModelError:
        raise
    except (wave.Error, EOFError) as exc:
        raise _bad(f"The WAV file could not be read ({exc}). Give 8-, 16- or 32-bit PCM WAV.") from None
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128) / 128
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2**31
    else:
        raise _bad(f"The WAV file has {width * 8}-bit samples; give 8-, 16- or 32-bit PCM.")
    samples = samples.reshape(-1, channels).mean(axis=1)
    applied = [f"WAV {rate} Hz, {channels} channel{'s' if channels > 1 else ''}"]
    if channels > 1:
        applied.append("mixed down to mono")
    shape = list(plan.shape(recipe))
    length = shape[-1]
    declared = recipe.shape[-1] if recipe.shape else None
    if isinstance(declared, int) and declared > 0:
        if len(samples) < length:
            applied.append(f"padded {len(samples)} -> {length} samples with zeros")
            samples = np.pad(samples, (0, length - len(samples)))
        elif len(samples) > length:
            applied.append(f"cut {len(samples)} -> {length} samples (the model's fixed length)")
            samples = samples[:length]
    else:
        shape[-1] = len(samples)
    if int(np.prod(shape)) != len(samples):
        raise _bad(f"The model's audio input '{recipe.name}' has shape {shape}; give an .npz with that array instead.")
    array = samples.reshape(shape).astype(recipe.dtype if recipe.dtype.startswith("float") else "float32")
    applied.append(f"mono float in [-1, 1], shape {'x'.join(map(str, array.shape))} {array.dtype}")
    feeds = {recipe.name: array, **_auxiliary(plan, recipe, array.shape, applied)}
    return Feeds(feeds, "audio", tuple(applied))


def _load_npz(path: Path) -> dict[str, Any]:
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise _bad(
            f"The .npz archive could not be read ({exc}). Save it with numpy.savez, one array per input."
        ) from None


def _json_feeds(path: Path, plan: InputPlan) -> Feeds:
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(
            f"The JSON does not read ({exc}). Give {{input name: nested list}} or a list of token ids."
        ) from None
    if isinstance(data, list):
        recipe = _single(plan, ("token_ids",), "A list of token ids")
        if not data or not all(isinstance(t, int) and not isinstance(t, bool) for t in data):
            raise _bad("A list of token ids should hold whole numbers, e.g. [101, 2023, 102].")
        return _token_feeds(data, recipe, plan)
    if not isinstance(data, dict):
        raise _bad("The JSON should be an object {input name: nested list} or a list of token ids.")
    return _array_feeds(data, plan, "json")


def _token_feeds(tokens: list[int], recipe: InputRecipe, plan: InputPlan) -> Feeds:
    import numpy as np

    if recipe.high is not None and (max(tokens) > recipe.high or min(tokens) < (recipe.low or 0)):
        raise _bad(
            f"Token ids should lie in [{int(recipe.low or 0)}, {int(recipe.high)}] (the model's vocabulary); "
            f"the list holds {min(tokens)} to {max(tokens)}."
        )
    array = np.asarray([tokens], dtype=recipe.dtype)
    applied = [f"{recipe.name}: {len(tokens)} token ids as 1x{len(tokens)} {recipe.dtype}"]
    feeds = {recipe.name: array, **_auxiliary(plan, recipe, array.shape, applied)}
    return Feeds(feeds, "tokens", tuple(applied))


def _array_feeds(arrays: Mapping[str, Any], plan: InputPlan, kind: str) -> Feeds:
    """Named arrays (from .npz or JSON) as feeds: every model input present, batch 1 added when
    an array lacks it, cast to the input's dtype."""
    import numpy as np

    names = [r.name for r in plan.recipes]
    missing = [n for n in names if n not in arrays]
    extra = sorted(set(arrays) - set(names))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(repr(n) for n in missing)}")
        if extra:
            parts.append(f"has {', '.join(repr(n) for n in extra)}, which the model does not take")
        raise _bad(
            f"The {kind} {' and '.join(parts)}; the model's inputs are {', '.join(repr(n) for n in names)}. "
            "Give one array per input, by name."
        )
    feeds: dict[str, Any] = {}
    applied = []
    for recipe in plan.recipes:
        try:
            value = np.asarray(arrays[recipe.name])
        except ValueError as exc:
            raise _bad(f"Input '{recipe.name}' is not a rectangular array ({exc}).") from None
        if value.size > MAX_ELEMENTS:
            raise _bad(f"Input '{recipe.name}' has {value.size} values; the playground takes up to {MAX_ELEMENTS}.")
        if value.dtype.kind not in "fiub":
            raise _bad(f"Input '{recipe.name}' holds {value.dtype} values; give numbers.")
        rank = len(recipe.shape)
        note = ""
        if value.ndim == rank - 1 and recipe.batch_axis == 0:
            value, note = value[None], ", batch axis added"
        if value.ndim != rank:
            raise _bad(
                f"Input '{recipe.name}' takes {rank} dims (shape {list(recipe.shape)}); the {kind} gives "
                f"{value.ndim} (shape {list(value.shape)})."
            )
        for axis, dim in enumerate(recipe.shape):
            if isinstance(dim, int) and dim > 0 and value.shape[axis] != dim:
                raise _bad(
                    f"Input '{recipe.name}' takes shape {list(recipe.shape)}; the {kind} gives {list(value.shape)} "
                    f"(axis {axis} should be {dim})."
                )
        if value.shape and recipe.batch_axis is not None and value.shape[recipe.batch_axis] != 1:
            raise _bad(
                f"Input '{recipe.name}' holds a batch of {value.shape[recipe.batch_axis]}; "
                "the playground runs one sample."
            )
        cast = "" if str(value.dtype) == recipe.dtype else f", cast {value.dtype} -> {recipe.dtype}"
        feeds[recipe.name] = np.ascontiguousarray(value.astype(recipe.dtype))
        applied.append(f"{recipe.name}: {'x'.join(map(str, value.shape)) or 'scalar'} {recipe.dtype}{note}{cast}")
    return Feeds(feeds, kind, tuple(applied))


# --- what came out ---------------------------------------------------------------------------


def summarize_outputs(
    outputs: Mapping[str, Any],
    semantics: Mapping[str, OutputSemantics],
    feeds: Feeds,
    input_size: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """One bounded summary per output: "classifier" (top-k classes), "detection" (boxes in the
    original image's pixels) or "raw" (shape and statistics). `input_size` is the model's
    input (width, height) for an image; boxes are mapped from it to `feeds.image_size`."""
    from workers.engine.parity import is_classifier_output

    summaries = []
    for name, value in outputs.items():
        import numpy as np

        array = np.asarray(value)
        meaning = semantics.get(name)
        kind = meaning.kind if meaning is not None else None
        if kind is None and is_classifier_output(name, array.shape, array.dtype):
            kind = "classifier"
        summary: dict[str, Any] = {
            "name": name,
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "kind": kind or "raw",
            "kind_source": meaning.source if meaning is not None else ("assumed" if kind else ""),
        }
        if kind == "classifier" and array.size and array.dtype.kind == "f":
            summary.update(_top_classes(array, meaning.axis if meaning else -1, meaning.top_k if meaning else 5))
        elif kind == "detection" and meaning is not None and meaning.detection is not None:
            summary.update(_boxes(array, meaning, feeds, input_size))
        summary["stats"] = _stats(array)
        summaries.append(summary)
    return summaries


def _top_classes(array: np.ndarray, axis: int, top_k: int) -> dict[str, Any]:
    import numpy as np

    scores = np.moveaxis(np.asarray(array, dtype=np.float64), axis, -1).reshape(-1, array.shape[axis])[0]
    finite = scores[np.isfinite(scores)]
    is_probability = bool(finite.size and finite.min() >= 0 and finite.max() <= 1 and abs(finite.sum() - 1) < 1e-3)
    if is_probability:
        probabilities, note = scores, "the output already sums to 1: read as probabilities"
    else:
        shifted = np.exp(scores - np.nanmax(scores))
        probabilities, note = shifted / np.nansum(shifted), "the output reads as logits: softmax applied"
    order = np.argsort(-np.nan_to_num(probabilities, nan=-1), kind="stable")[:top_k]
    return {
        "top": [{"class": int(i), "probability": float(probabilities[i]), "score": float(scores[i])} for i in order],
        "scores": note,
    }


def _boxes(
    array: np.ndarray, meaning: OutputSemantics, feeds: Feeds, input_size: tuple[int, int] | None
) -> dict[str, Any]:
    from workers.engine.detections import decode

    assert meaning.detection is not None
    layout = meaning.detection
    found = decode(array, layout)[0]
    sx = sy = 1.0
    frame = "the model's input pixels"
    if input_size and feeds.image_size:
        sx, sy = feeds.image_size[0] / input_size[0], feeds.image_size[1] / input_size[1]
        frame = f"the original image's pixels ({feeds.image_size[0]}x{feeds.image_size[1]})"
    boxes = []
    for box, score, cls in list(zip(found.boxes, found.scores, found.classes, strict=True))[:MAX_BOXES]:
        x1, y1, x2, y2 = (float(v) for v in box)
        boxes.append({"class": int(cls), "score": float(score), "box": [x1 * sx, y1 * sy, x2 * sx, y2 * sy]})
    return {
        "boxes": boxes,
        "detections": len(found.scores),
        "box_frame": frame,
        "layout": {
            "box_format": layout.box_format,
            "boxes": list(layout.boxes),
            "scores": list(layout.scores),
            "score_threshold": layout.score_threshold,
            "iou_threshold": layout.iou_threshold,
        },
    }


def _stats(array: np.ndarray) -> dict[str, Any]:
    import numpy as np

    values = np.asarray(array).reshape(-1)
    if values.dtype.kind == "b":
        values = values.astype(np.int64)
    numeric = values.astype(np.float64) if values.dtype.kind in "fiu" else np.zeros(0)
    finite = numeric[np.isfinite(numeric)]
    return {
        "min": float(finite.min()) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "mean": float(finite.mean()) if finite.size else None,
        "nonfinite": int(numeric.size - finite.size),
        "first": [_json_number(v) for v in numeric[:FIRST_VALUES]],
    }


def _json_number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def model_input_size(feeds: Feeds) -> tuple[int, int] | None:
    """The (width, height) the image was resized to, for mapping boxes back."""
    if feeds.preprocessing is None:
        return None
    height, width = feeds.preprocessing["size"]
    return int(width), int(height)


def difference(
    reference: Mapping[str, Any], outputs: Mapping[str, Any], semantics: Mapping[str, OutputSemantics]
) -> dict[str, Any]:
    """How a variant's outputs differ from the original's on this input (`parity.compare_variant`
    under the default tolerance), bounded: per output the errors, cosine, top-1 agreement and
    the detection match."""
    from workers.engine.parity import Tolerance, compare_variant

    verdict = compare_variant(reference, outputs, Tolerance(), semantics)
    keep = ("name", "max_abs_error", "cosine", "top1_agreement", "topk_agreement", "detection", "kind")
    return {
        "within_default_tolerance": verdict.passed,
        "reasons": list(verdict.reasons)[:10],
        "outputs": [{key: getattr(output, key) for key in keep} for output in verdict.outputs],
    }


def json_safe(value: Any) -> Any:
    """`value` with non-finite floats as None and numpy scalars as Python numbers: results go to
    PostgreSQL's JSON, which has no NaN."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None
