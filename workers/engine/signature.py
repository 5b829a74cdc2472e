"""Input signatures and input declarations users give at upload: parsed and checked before anything runs."""

from __future__ import annotations

import math
import re
from typing import Any

from workers.engine.errors import ModelError
from workers.engine.importers.base import InputSpec
from workers.engine.inputs import KINDS, DimDeclaration, InputDeclaration, InputDeclarations

DTYPES = (
    "float16", "float32", "float64", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool",
)  # fmt: skip
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
EXAMPLE = '[{"name": "input", "shape": ["batch", 3, 224, 224], "dtype": "float32"}]'


def parse_input_specs(data: Any) -> tuple[InputSpec, ...]:
    """Validate a JSON list of {name, shape, dtype}; symbolic dims are names like "batch"."""

    def bad(problem: str) -> ModelError:
        return ModelError("invalid_inputs", f"The input signature is not valid: {problem}. Example: {EXAMPLE}")

    if not isinstance(data, list):
        raise bad("it must be a JSON list with one object per input")
    if len(data) > 256:
        raise bad(f"{len(data)} inputs is more than the 256 Slipway accepts")
    specs = []
    seen = set()
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise bad(f"entry {index} is not an object")
        unknown = set(item) - {"name", "shape", "dtype"}
        if unknown:
            raise bad(f"entry {index} has unknown keys {sorted(unknown)}")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise bad(f"entry {index} needs a non-empty 'name'")
        if name in seen:
            raise bad(f"input '{name}' is declared twice")
        seen.add(name)
        shape = item.get("shape")
        if not isinstance(shape, list) or len(shape) > 16:
            raise bad(f"input '{name}' needs a 'shape' list of at most 16 dims")
        dims: list[int | str | None] = []
        for dim in shape:
            symbolic = dim is None or (isinstance(dim, str) and bool(_SYMBOL.match(dim)))
            fixed = isinstance(dim, int) and not isinstance(dim, bool) and 1 <= dim <= 2**31
            if symbolic or fixed:
                dims.append(dim)
            else:
                raise bad(f"input '{name}' has dim {dim!r}; use a positive integer, a name like \"batch\", or null")
        dtype = item.get("dtype", "float32")
        if dtype not in DTYPES:
            raise bad(f"input '{name}' has dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        specs.append(InputSpec(name=name, shape=tuple(dims), dtype=dtype))
    return tuple(specs)


def specs_to_json(specs: tuple[InputSpec, ...]) -> list[dict[str, Any]]:
    return [{"name": s.name, "shape": list(s.shape or ()), "dtype": s.dtype} for s in specs]


DECLARATIONS_EXAMPLE = (
    '{"inputs": {"images": {"kind": "image", "range": [0, 1]}, "sr": {"values": [8000, 16000]}, '
    '"state": {"kind": "state", "batch_axis": 1}}, "dims": {"height": {"min": 320, "max": 1280, "step": 32, '
    '"typical": 640}}}'
)


def parse_input_declarations(data: Any) -> InputDeclarations:
    """Validate what the user declares about the inputs: per input a `kind` (one of
    inputs.KINDS), a fixed `value`, a set of `values`, a `range` [low, high] and a
    `batch_axis`; per symbolic dim its `min`, `max`, `step` and `typical` size. An empty
    dict or None declares nothing. Raises ModelError("invalid_declarations") with a sentence
    naming the entry and an example."""

    def bad(problem: str) -> ModelError:
        return ModelError(
            "invalid_declarations", f"The input declarations are not valid: {problem}. Example: {DECLARATIONS_EXAMPLE}"
        )

    if data is None or data == {}:
        return InputDeclarations()
    if not isinstance(data, dict):
        raise bad("they must be a JSON object with 'inputs' and/or 'dims'")
    unknown = set(data) - {"inputs", "dims"}
    if unknown:
        raise bad(f"unknown keys {sorted(unknown)}; use 'inputs' and 'dims'")
    inputs_data, dims_data = data.get("inputs") or {}, data.get("dims") or {}
    if not isinstance(inputs_data, dict) or not isinstance(dims_data, dict):
        raise bad("'inputs' and 'dims' must be objects keyed by input or dim name")
    if len(inputs_data) > 256 or len(dims_data) > 256:
        raise bad("at most 256 inputs and 256 dims can be declared")
    inputs = {}
    for name, entry in inputs_data.items():
        if not isinstance(entry, dict):
            raise bad(f"input '{name}' must be an object")
        extra = set(entry) - {"kind", "value", "values", "range", "batch_axis"}
        if extra:
            raise bad(f"input '{name}' has unknown keys {sorted(extra)}")
        kind = entry.get("kind")
        if kind is not None and kind not in KINDS:
            raise bad(f"input '{name}' has kind {kind!r}; use one of {', '.join(KINDS)}")
        value = entry.get("value")
        if value is not None and not _is_number(value):
            raise bad(f"input '{name}' has value {value!r}; use a number")
        values = entry.get("values") or []
        if not isinstance(values, list) or len(values) > 1000 or not all(_is_number(v) for v in values):
            raise bad(f"input '{name}' needs 'values' as a list of at most 1000 numbers")
        if value is not None and values:
            raise bad(f"input '{name}' declares both 'value' and 'values'; give one")
        span = entry.get("range")
        if span is not None and (
            not isinstance(span, list) or len(span) != 2 or not all(_is_number(v) for v in span) or span[0] > span[1]
        ):
            raise bad(f"input '{name}' needs 'range' as [low, high] with low <= high")
        axis = entry.get("batch_axis")
        if axis is not None and (not isinstance(axis, int) or isinstance(axis, bool) or not 0 <= axis < 16):
            raise bad(f"input '{name}' has batch_axis {axis!r}; use an axis number from 0 to 15")
        inputs[str(name)] = InputDeclaration(
            kind=kind,
            value=None if value is None else float(value),
            values=tuple(float(v) for v in values),
            range=None if span is None else (float(span[0]), float(span[1])),
            batch_axis=axis,
        )
    dims = {}
    for name, entry in dims_data.items():
        if not isinstance(entry, dict):
            raise bad(f"dim '{name}' must be an object")
        extra = set(entry) - {"min", "max", "step", "typical"}
        if extra:
            raise bad(f"dim '{name}' has unknown keys {sorted(extra)}")
        sizes = {}
        for key in ("min", "max", "step", "typical"):
            size = entry.get(key)
            if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 2**31):
                raise bad(f"dim '{name}' has {key} {size!r}; use a positive integer")
            sizes[key] = size
        dim = DimDeclaration(**sizes)
        if dim.min is not None and dim.max is not None and dim.min > dim.max:
            raise bad(f"dim '{name}' has min {dim.min} above max {dim.max}")
        if dim.typical is not None:
            if (dim.min is not None and dim.typical < dim.min) or (dim.max is not None and dim.typical > dim.max):
                raise bad(f"dim '{name}' has typical {dim.typical} outside [min, max]")
            if dim.step is not None and dim.typical % dim.step:
                raise bad(f"dim '{name}' has typical {dim.typical}, not a multiple of its step {dim.step}")
        dims[str(name)] = dim
    return InputDeclarations(inputs=inputs, dims=dims)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
