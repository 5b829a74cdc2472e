"""Input signatures users declare at upload: parsed and checked before anything runs."""

from __future__ import annotations

import re
from typing import Any

from workers.engine.errors import ModelError
from workers.engine.importers.base import InputSpec

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
    return [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in specs]
