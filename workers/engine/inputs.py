"""What a model takes, and how inputs that look like it are made: the engine's one tensor spec.

Every step that feeds a model without the user's data (the import-time parity check, variant
parity, the benchmark, the serving smoke test) makes its inputs from an `InputPlan`: one
`InputRecipe` per input (an image, token ids, an attention mask, an audio signal, a
recurrent state, a value from a set, or plain features) and a size for every symbolic dim.
This module holds those contracts and what the user declares (`InputDeclarations`, which
always win); `input_planning.plan_inputs` reads a plan off an ONNX graph and the
declarations, and `input_generation.make_feeds` draws seeded inputs from it. The plan says
what it assumed, and `InputPlan.describe` is the sentence reports carry about the inputs
their figures rest on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workers.engine.typed import ReportShapeError, from_dict

# A dimension: a fixed size, a symbolic name such as "batch", or None when unknown.
Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output.

    `dtype` is a numpy-style name ("float32", "int64"), or None when unknown; each dim in
    `shape` is an int, a symbolic name (str) or None when unknown; `shape` is None when
    even the rank is unknown. Inputs declared at upload default to float32.
    """

    name: str
    dtype: str | None = "float32"
    shape: tuple[Dim, ...] | None = None


# What an input holds. "values": a fixed value, a set or a range the user declared or the
# graph compares the input with; "features": anything else (standard-normal floats, small ints).
KINDS = ("image", "token_ids", "attention_mask", "audio", "state", "values", "features")

# The size of a symbolic dim when neither the user nor the model says more, and it is no image
# side, sequence or audio length (`input_planning` has typical sizes for those).
OTHER_DIM = 16


# ---- what the user declares ----------------------------------------------------------------


@dataclass(frozen=True)
class InputDeclaration:
    """What one input takes, as the user declared it: a kind, a fixed value, a set of values or
    a range, and the axis its samples go on in a calibration or validation array."""

    kind: str | None = None
    value: float | None = None
    values: tuple[float, ...] = ()
    range: tuple[float, float] | None = None
    batch_axis: int | None = None


@dataclass(frozen=True)
class DimDeclaration:
    """The sizes a symbolic dim takes: at least `min`, at most `max`, a multiple of `step`,
    and `typical` (the size benchmarks run at)."""

    min: int | None = None
    max: int | None = None
    step: int | None = None
    typical: int | None = None


@dataclass(frozen=True)
class InputDeclarations:
    """Everything the user declared about the inputs (`signature.parse_input_declarations`
    reads and checks it from JSON)."""

    inputs: Mapping[str, InputDeclaration] = field(default_factory=dict)
    dims: Mapping[str, DimDeclaration] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The declarations in the JSON form the upload takes, empty entries left out."""
        inputs = {}
        for name, item in self.inputs.items():
            entry: dict[str, Any] = {}
            if item.kind:
                entry["kind"] = item.kind
            if item.value is not None:
                entry["value"] = item.value
            if item.values:
                entry["values"] = list(item.values)
            if item.range is not None:
                entry["range"] = list(item.range)
            if item.batch_axis is not None:
                entry["batch_axis"] = item.batch_axis
            inputs[name] = entry
        dims = {
            name: {key: value for key, value in vars(item).items() if value is not None}
            for name, item in self.dims.items()
        }
        return {"inputs": inputs, "dims": dims}


NO_DECLARATIONS = InputDeclarations()


# ---- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputRecipe:
    """How to make one input: its spec, what it holds (`kind`), the range of its values, the
    values it takes (for kind "values"), and `source`: how that was decided, for the report."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]
    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple[float, ...] = ()
    batch_axis: int | None = None
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = dict(vars(self))
        data["shape"] = list(self.shape)
        data["values"] = list(self.values)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = False) -> InputRecipe:
        """A recipe from its stored JSON. Plans stored before a field existed read with its default;
        `strict` (a report read by its type: `workers.engine.typed`) checks every field instead and
        refuses keys the recipe does not declare."""
        if strict:
            return from_dict(cls, data, strict=True)
        if not isinstance(data, Mapping) or "name" not in data:
            raise ReportShapeError("InputRecipe should be an object with a name.")
        try:
            return cls(
                name=str(data["name"]),
                dtype=str(data.get("dtype") or "float32"),
                shape=tuple(data.get("shape") or ()),
                kind=str(data.get("kind") or "features"),
                low=data.get("low"),
                high=data.get("high"),
                values=tuple(data.get("values") or ()),
                batch_axis=data.get("batch_axis"),
                source=str(data.get("source") or ""),
            )
        except (TypeError, ValueError) as exc:
            raise ReportShapeError(f"InputRecipe {data['name']!r} does not read: {exc}") from None


@dataclass(frozen=True)
class InputPlan:
    """How inputs are made for a model: one recipe per input, a size for every symbolic dim that
    is not a batch dim (unnamed ones keyed "input:axis"), and what was assumed.

    `batch_symbols` are the dims that take the batch size.
    """

    recipes: tuple[InputRecipe, ...]
    dims: Mapping[str, int]
    batch_symbols: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = ()

    def shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        """Every input's concrete shape at `batch` samples per run."""
        return {recipe.name: self.shape(recipe, batch) for recipe in self.recipes}

    def shape(self, recipe: InputRecipe, batch: int = 1) -> tuple[int, ...]:
        dims = []
        for axis, dim in enumerate(recipe.shape):
            if isinstance(dim, int) and dim > 0:
                dims.append(dim)
            elif axis == recipe.batch_axis or (isinstance(dim, str) and dim in self.batch_symbols):
                dims.append(batch)
            elif isinstance(dim, str) and dim in self.dims:
                dims.append(int(self.dims[dim]))
            else:
                dims.append(int(self.dims.get(f"{recipe.name}:{axis}", OTHER_DIM)))
        return tuple(dims)

    def describe(self, batch: int = 1) -> str:
        """One sentence on how the inputs are made, e.g. "generated: image-like 1x3x640x640 in
        [0, 1] from the model's normalisation"."""
        shapes = self.shapes(batch)
        parts = [_describe_recipe(recipe, shapes[recipe.name]) for recipe in self.recipes]
        return "generated: " + "; ".join(parts) if parts else "generated: the model takes no inputs"

    def batch_axes(self) -> dict[str, int | None]:
        """The axis each input's samples go on in a calibration or validation array."""
        return {recipe.name: recipe.batch_axis for recipe in self.recipes}

    def with_dims(self, sizes: Mapping[str, int]) -> InputPlan:
        """The same plan with some symbolic dims at other sizes."""
        return InputPlan(self.recipes, {**self.dims, **sizes}, self.batch_symbols, self.assumptions)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON, as inspection reports carry it."""
        return {
            "recipes": [recipe.to_dict() for recipe in self.recipes],
            "dims": dict(self.dims),
            "batch_symbols": list(self.batch_symbols),
            "assumptions": list(self.assumptions),
            "description": self.describe(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputPlan:
        return cls(
            recipes=tuple(InputRecipe.from_dict(item) for item in data.get("recipes") or ()),
            dims={str(k): int(v) for k, v in (data.get("dims") or {}).items()},
            batch_symbols=tuple(data.get("batch_symbols") or ()),
            assumptions=tuple(data.get("assumptions") or ()),
        )


def _describe_recipe(recipe: InputRecipe, shape: tuple[int, ...]) -> str:
    size = "x".join(map(str, shape)) or "scalar"
    span = f" in [{number_text(recipe.low)}, {number_text(recipe.high)}]" if recipe.low is not None else ""
    source = f" from {recipe.source}" if recipe.source else ""
    if recipe.kind == "image":
        return f"{recipe.name}: image-like {size}{span}{source}"
    if recipe.kind == "token_ids":
        return f"{recipe.name}: token ids {size}{span}{source}"
    if recipe.kind == "attention_mask":
        return f"{recipe.name}: attention mask {size} of ones with trailing zeros"
    if recipe.kind == "audio":
        return f"{recipe.name}: audio-like signal {size}{span}{source}"
    if recipe.kind == "state":
        return f"{recipe.name}: zeros {size} (a recurrent state starts at zero)"
    if recipe.kind == "values":
        if recipe.values:
            listed = ", ".join(number_text(v) for v in recipe.values)
            return f"{recipe.name}: {size} {'=' if len(recipe.values) == 1 else 'one of'} {listed}{source}"
        return f"{recipe.name}: {size}{span}{source}"
    return f"{recipe.name}: {'standard-normal noise' if recipe.dtype.startswith('float') else 'small integers'} {size}"


def number_text(value: float | None) -> str:
    """A value as a sentence shows it: 3 rather than 3.0, "?" for None."""
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
