"""Reading an input plan off a model: what each input holds and the size of every symbolic dim.

`plan_inputs` reads the ONNX graph (the normalisation after an image input, the vocabulary
of the embedding an input indexes, the values a scalar input is compared with, how far the
network downsamples, image sizes in the metadata) and what the user declared, which always
wins, and says in sentences what it had to assume. It is the heuristic half of `inputs`,
apart from the contracts it fills in and from `input_generation`, which draws the arrays.

numpy and onnx are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workers.engine.errors import ModelError
from workers.engine.inputs import (
    NO_DECLARATIONS,
    OTHER_DIM,
    DimDeclaration,
    InputDeclaration,
    InputDeclarations,
    InputPlan,
    InputRecipe,
    TensorSpec,
    number_text,
)

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto

# Sizes for symbolic dims when neither the user nor the model says more. An image side of 224
# is what classifiers are trained at; detectors (feature pyramids: Resize and Concat after
# the backbone) run at 640. A streaming model with a recurrent state takes short chunks.
IMAGE_SIDE = 224
DETECTOR_IMAGE_SIDE = 640
SEQUENCE_LENGTH = 128
AUDIO_SAMPLES = 16000
AUDIO_CHUNK_SAMPLES = 512

_STATE_HINTS = ("state", "hidden", "cache", "past", "memory", "h0", "c0")
_AUDIO_HINTS = ("audio", "wav", "speech", "pcm", "signal", "input_values", "sound")
_MASK_HINTS = ("mask",)
_TOKEN_HINTS = ("input_ids", "token", "ids")
_METADATA_SIZE_KEYS = ("imgsz", "image_size", "img_size", "input_size", "imagesize")
# Ops the normalisation after an image input is made of, and ops it may pass through first.
_AFFINE_OPS = ("Sub", "Add", "Mul", "Div")
_PASS_THROUGH = ("Cast", "Transpose", "Identity", "Unsqueeze", "Squeeze", "Reshape")
_DOWNSAMPLING_OPS = ("Conv", "MaxPool", "AveragePool", "LpPool")


def plan_inputs(
    model: ModelProto | None,
    specs: Sequence[TensorSpec],
    declarations: InputDeclarations | None = None,
) -> InputPlan:
    """The plan for inputs `specs` of `model` (an ONNX graph, or None for a framework model
    whose graph Slipway can't read), with `declarations` taking precedence over what is inferred.

    From the graph: an image input's value range from the Sub/Div/Mul after it, the
    vocabulary of the embedding table an integer input indexes, the constants a scalar input
    is compared with (Equal), the total stride of the network (spatial sizes are multiples of
    it), and image sizes from the model's metadata. Raises ModelError("unsupported_input")
    for an input whose shape or dtype is unknown, and ("invalid_declarations") for a
    declaration naming an input the model does not have.
    """
    declarations = declarations or NO_DECLARATIONS
    names = {spec.name for spec in specs}
    unknown = sorted(set(declarations.inputs) - names)
    if unknown:
        raise ModelError(
            "invalid_declarations",
            f"The input declarations name {', '.join(repr(n) for n in unknown)}, which the model does not take; "
            f"its inputs are {', '.join(repr(n) for n in sorted(names)) or 'none'}.",
        )
    for spec in specs:
        if spec.shape is None or spec.dtype is None:
            missing = "shape" if spec.shape is None else "element type numpy knows"
            raise ModelError(
                "unsupported_input",
                f"Input '{spec.name}' has no {missing}, so Slipway can't generate inputs for it. Upload a "
                "validation set (.npz) with one array per model input.",
            )
    graph = _GraphFacts.read(model) if model is not None else _GraphFacts()
    assumptions: list[str] = []
    batch_symbols = _batch_symbols(specs)
    states = {spec.name for spec in specs if _kind_from_name(spec) == "state"}
    recipes = [
        _recipe(spec, declarations.inputs.get(spec.name), graph, batch_symbols, bool(states), assumptions)
        for spec in specs
    ]
    dims = _resolve_dims(recipes, declarations.dims, graph, batch_symbols, assumptions)
    return InputPlan(tuple(recipes), dims, tuple(sorted(batch_symbols)), tuple(assumptions))


@dataclass
class _GraphFacts:
    """What the ONNX graph says about its inputs."""

    ranges: dict[str, tuple[float, float, str]] = field(default_factory=dict)  # input -> (low, high, how)
    vocabularies: dict[str, int] = field(default_factory=dict)
    compared_values: dict[str, tuple[float, ...]] = field(default_factory=dict)
    stride: int = 1
    pyramid: bool = False  # upsampling merged with other branches: a detector's neck
    metadata_side: tuple[int, int] | None = None
    metadata_key: str = ""

    @classmethod
    def read(cls, model: ModelProto) -> _GraphFacts:
        facts = cls()
        graph = model.graph
        constants = _constants(graph)
        consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        inputs = [value.name for value in graph.input if value.name not in constants]
        for name in inputs:
            span = _normalisation_range(name, consumers, constants)
            if span is not None:
                facts.ranges[name] = span
            vocabulary = _vocabulary(name, consumers, constants)
            if vocabulary:
                facts.vocabularies[name] = vocabulary
            compared = _compared_values(name, consumers, constants)
            if compared:
                facts.compared_values[name] = compared
        facts.stride, facts.pyramid = _downsampling(graph, inputs)
        for prop in model.metadata_props:
            if prop.key.lower() in _METADATA_SIZE_KEYS:
                sizes = [int(v) for v in re.findall(r"\d+", prop.value)][:2]
                if sizes and all(8 <= s <= 8192 for s in sizes):
                    facts.metadata_side = (sizes[0], sizes[-1])
                    facts.metadata_key = prop.key
                    break
        return facts


def _constants(graph: GraphProto) -> dict[str, Any]:
    """Small constant tensors by name (initializers and Constant nodes), as numpy arrays; for
    large ones only the shape matters here, so they map to their dims."""
    from onnx import numpy_helper

    def array(tensor: Any) -> Any:
        try:
            return numpy_helper.to_array(tensor)
        except Exception:  # data that doesn't fit its dims, an unknown type...: the checker has its say
            return None

    found: dict[str, Any] = {}
    for tensor in graph.initializer:
        small = math.prod(tensor.dims) <= 4096 and tensor.data_location != 1  # 1: external data
        value = array(tensor) if small else tuple(tensor.dims)
        if value is not None:
            found[tensor.name] = value
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attribute in node.attribute:
                if attribute.name == "value" and math.prod(attribute.t.dims) <= 4096:
                    value = array(attribute.t)
                    if value is not None:
                        found[node.output[0]] = value
    return found


def _follow(name: str, consumers: Mapping[str, list[Any]]) -> Iterable[tuple[Any, str]]:
    """The nodes that read `name`, looking through casts, transposes and reshapes: (node, the
    name it reads)."""
    queue, seen = [name], set[str]()
    while queue:
        current = queue.pop(0)
        if current in seen or len(seen) > 16:
            continue
        seen.add(current)
        for node in consumers.get(current, ()):
            yield node, current
            if node.op_type in _PASS_THROUGH and node.input and node.input[0] == current:
                queue.append(node.output[0])


def _normalisation_range(
    name: str, consumers: Mapping[str, list[Any]], constants: Mapping[str, Any]
) -> tuple[float, float, str] | None:
    """The input range the affine ops after `name` turn into about unit scale: [0, 255] when
    the model divides by 255, [0, 1] when it subtracts an ImageNet mean and divides by its
    standard deviation, [-1, 1] ... None when no such ops follow the input."""
    import numpy as np

    scale, offset, current = 1.0, 0.0, name
    ops: list[str] = []
    for _ in range(4):
        step = next(
            (
                (node, other)
                for node, read in _follow(current, consumers)
                if node.op_type in _AFFINE_OPS
                for other in node.input
                if other != read and isinstance(constants.get(other), np.ndarray)
            ),
            None,
        )
        if step is None:
            break
        node, other = step
        value = float(np.mean(np.abs(constants[other].astype(np.float64)))) or 1.0
        if node.op_type == "Mul":
            scale *= value
        elif node.op_type == "Div":
            scale /= value
        elif not ops:
            offset = value  # a mean subtracted from the raw input
        ops.append(node.op_type)
        current = node.output[0]
    if not ops:
        return None
    how = f"the model's normalisation ({', '.join(ops)} after the input)"
    if scale == 1.0:
        # Only a mean is subtracted: its size says the scale (127 for bytes, 0.5 for [0, 1]).
        return (0.0, 255.0, how) if offset > 2.0 else (0.0, 1.0, how)
    # The candidate whose span after the ops is nearest to a few units is what the model expects.
    candidates = ((0.0, 1.0), (0.0, 255.0), (-1.0, 1.0))
    low, high = min(candidates, key=lambda c: abs(math.log(max(abs(scale) * (c[1] - c[0]), 1e-12) / 3.0)))
    return low, high, how


def _vocabulary(name: str, consumers: Mapping[str, list[Any]], constants: Mapping[str, Any]) -> int | None:
    """The number of rows of the embedding table (Gather data) this input indexes."""
    import numpy as np

    for node, read in _follow(name, consumers):
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == read:
            table = constants.get(node.input[0])
            dims = table.shape if isinstance(table, np.ndarray) else table
            if dims:
                return int(dims[0])
    return None


def _compared_values(name: str, consumers: Mapping[str, list[Any]], constants: Mapping[str, Any]) -> tuple[float, ...]:
    """The constants the graph tests this input for equality with (sr == 8000, sr == 16000)."""
    import numpy as np

    found: set[float] = set()
    for node, read in _follow(name, consumers):
        if node.op_type == "Equal":
            for other in node.input:
                value = constants.get(other)
                if other != read and isinstance(value, np.ndarray) and value.size == 1:
                    found.add(float(value.reshape(())))
    return tuple(sorted(found))


def _downsampling(graph: GraphProto, inputs: Sequence[str]) -> tuple[int, bool]:
    """The largest total stride from an input to any tensor (sizes must be multiples of it where
    branches are merged again), and whether upsampled maps are merged (a detector's neck)."""
    factor: dict[str, int] = dict.fromkeys(inputs, 1)
    upsampled: set[str] = set()
    pyramid = False
    for node in graph.node:
        reached = [factor[name] for name in node.input if name in factor]
        if not reached:
            continue
        current = max(reached)
        if node.op_type in _DOWNSAMPLING_OPS:
            strides = [a.ints for a in node.attribute if a.name == "strides"]
            current *= max(strides[0]) if strides and strides[0] else 1
        if node.op_type in ("Resize", "Upsample", "ConvTranspose"):
            upsampled.update(node.output)
        elif any(name in upsampled for name in node.input):
            if node.op_type in ("Concat", "Add", "Sum"):
                pyramid = True
            upsampled.update(node.output)
        for output in node.output:
            factor[output] = current
    return max(factor.values(), default=1), pyramid


def batch_axes(specs: Sequence[TensorSpec], declarations: InputDeclarations | None = None) -> dict[str, int | None]:
    """The axis of each input that holds samples: the declared `batch_axis`, else the axis of
    the dim that is the batch in the signature (a state [2, batch, 128] has it on axis 1),
    else axis 0; None for a scalar, or a 1-D input whose one dim is data (a calibration
    array stacks its samples on a new axis 0 then)."""
    symbols = _batch_symbols(specs)
    declared = (declarations or NO_DECLARATIONS).inputs
    axes = {}
    for spec in specs:
        item = declared.get(spec.name)
        axes[spec.name] = item.batch_axis if item and item.batch_axis is not None else _batch_axis(spec, symbols)
    return axes


def _batch_symbols(specs: Sequence[TensorSpec]) -> set[str]:
    """Symbolic dims that carry the batch: those on axis 0 of inputs of rank 2 or more."""
    symbols = set()
    for spec in specs:
        shape = spec.shape or ()
        if len(shape) >= 2 and isinstance(shape[0], str):
            symbols.add(shape[0])
    return symbols


def _batch_axis(spec: TensorSpec, batch_symbols: set[str]) -> int | None:
    shape = spec.shape or ()
    for axis, dim in enumerate(shape):
        if isinstance(dim, str) and dim in batch_symbols:
            return axis
    if len(shape) >= 2 or (shape and not isinstance(shape[0], str)):
        return 0
    return None


def _kind_from_name(spec: TensorSpec) -> str | None:
    lowered = spec.name.lower()
    if any(hint in lowered for hint in _MASK_HINTS):
        return "attention_mask"
    if any(hint in lowered for hint in _STATE_HINTS) and len(spec.shape or ()) >= 2:
        return "state"
    if (spec.dtype or "").startswith("float") and any(hint in lowered for hint in _AUDIO_HINTS):
        return "audio"
    return None


def _is_image(spec: TensorSpec) -> bool:
    shape = spec.shape or ()
    numeric = (spec.dtype or "").startswith("float") or spec.dtype == "uint8"
    return numeric and len(shape) == 4 and (shape[1] in (1, 3) or shape[3] in (1, 3))


def _recipe(
    spec: TensorSpec,
    declared: InputDeclaration | None,
    graph: _GraphFacts,
    batch_symbols: set[str],
    has_state: bool,
    assumptions: list[str],
) -> InputRecipe:
    shape = tuple(spec.shape or ())
    dtype = str(spec.dtype)
    batch_axis = _batch_axis(spec, batch_symbols)
    declared = declared or InputDeclaration()
    if declared.batch_axis is not None:
        batch_axis = declared.batch_axis
    base: dict[str, Any] = {"name": spec.name, "dtype": dtype, "shape": shape, "batch_axis": batch_axis}
    integer = dtype.startswith(("int", "uint"))
    if declared.value is not None or declared.values:
        values = (declared.value,) if declared.value is not None else declared.values
        return InputRecipe(**base, kind="values", values=tuple(values), source="your declaration")
    low, high = declared.range if declared.range is not None else (None, None)
    kind = declared.kind or _kind_from_name(spec)
    if kind is None and spec.name in graph.compared_values and len(shape) <= 1:
        values = graph.compared_values[spec.name]
        source = "the model's comparisons (Equal)"
        assumptions.append(
            f"Input '{spec.name}' took the values the model compares it with ({', '.join(map(number_text, values))}); "
            f'declare {{"inputs": {{"{spec.name}": {{"values": [...]}}}}}} if it takes others.'
        )
        return InputRecipe(**base, kind="values", values=values, source=source)
    if (
        kind is None
        and integer
        and (spec.name in graph.vocabularies or any(h in spec.name.lower() for h in _TOKEN_HINTS))
    ):
        kind = "token_ids"
    if kind is None and _is_image(spec):
        kind = "image"
    if kind is None and has_state and dtype.startswith("float") and len(shape) == 2:
        kind = "audio"
        assumptions.append(
            f"Input '{spec.name}' was taken for an audio signal (a 2-D float input beside a recurrent state); "
            f'declare {{"inputs": {{"{spec.name}": {{"kind": "..."}}}}}} if it is not.'
        )
    kind = kind or "features"
    source = "your declaration" if declared.range is not None else ""
    if kind == "image" and low is None:
        if spec.name in graph.ranges:
            low, high, source = graph.ranges[spec.name]
        else:
            low, high = (0.0, 255.0) if dtype == "uint8" else (0.0, 1.0)
            source = "the input's dtype (uint8)" if dtype == "uint8" else ""
            assumptions.append(
                f"Input '{spec.name}' was generated as images in [{number_text(low)}, {number_text(high)}]: "
                "no normalisation was found after it; declare "
                f'{{"inputs": {{"{spec.name}": {{"range": [low, high]}}}}}} if it expects another range.'
            )
    elif kind == "token_ids" and low is None:
        vocabulary = graph.vocabularies.get(spec.name)
        # Without the table, ids below 8 are the ones valid in any vocabulary a test would build.
        low, high = 0.0, float((vocabulary or 8) - 1)
        source = f"the embedding table (vocabulary {vocabulary})" if vocabulary else ""
        if not vocabulary:
            assumptions.append(
                f"Input '{spec.name}' took token ids below 8: no embedding table was found; declare "
                f'{{"inputs": {{"{spec.name}": {{"range": [0, <vocabulary - 1>]}}}}}} for real ids.'
            )
    elif kind == "audio" and low is None:
        low, high = -1.0, 1.0
    return InputRecipe(**base, kind=kind, low=low, high=high, source=source)


def _resolve_dims(
    recipes: Sequence[InputRecipe],
    declared: Mapping[str, DimDeclaration],
    graph: _GraphFacts,
    batch_symbols: set[str],
    assumptions: list[str],
) -> dict[str, int]:
    """A size for every symbolic dim that is not a batch dim: declared, else from the model's
    metadata, else typical for what the dim is (an image side, a sequence, an audio chunk)."""
    has_state = any(recipe.kind == "state" for recipe in recipes)
    sizes: dict[str, int] = {}
    explained: dict[str, str] = {}
    for recipe in recipes:
        spatial = _spatial_axes(recipe)
        for axis, dim in enumerate(recipe.shape):
            if (isinstance(dim, int) and dim > 0) or axis == recipe.batch_axis or dim in batch_symbols:
                continue
            key = dim if isinstance(dim, str) else f"{recipe.name}:{axis}"
            if key in sizes:
                continue
            if key in declared:
                sizes[key] = _declared_size(key, declared[key])
                continue
            if axis in spatial:
                step = graph.stride if graph.stride > 1 else 1
                if graph.metadata_side is not None:
                    side = graph.metadata_side[0 if axis == spatial[0] else -1]
                    why = f"the model's metadata ({graph.metadata_key})"
                else:
                    side = DETECTOR_IMAGE_SIDE if graph.pyramid else IMAGE_SIDE
                    why = "a typical " + ("detector" if graph.pyramid else "image") + " size"
                side = max(step, math.ceil(side / step) * step)
                if step > 1:
                    why += f"; the network downsamples by {step}, so sizes must be multiples of {step}"
            elif recipe.kind in ("token_ids", "attention_mask"):
                side, why = SEQUENCE_LENGTH, "a typical sequence length"
            elif recipe.kind == "audio":
                side = AUDIO_CHUNK_SAMPLES if has_state else AUDIO_SAMPLES
                why = "a typical streaming chunk" if has_state else "one second at 16 kHz"
            else:
                side, why = OTHER_DIM, "no size was known"
            sizes[key] = side
            explained.setdefault(why, "")
            explained[why] += ("" if not explained[why] else ", ") + f"{key}={side}"
    for why, listed in explained.items():
        assumptions.append(
            f"Symbolic dims {listed}: {why}. Declare "
            '{"dims": {"<name>": {"typical": <size>, "min": ..., "max": ..., "step": ...}}} to set them.'
        )
    return sizes


def _spatial_axes(recipe: InputRecipe) -> tuple[int, ...]:
    if recipe.kind != "image":
        return ()
    return (2, 3) if recipe.shape[1] in (1, 3) else (1, 2)


def _declared_size(name: str, dim: DimDeclaration) -> int:
    if dim.typical is not None:
        return dim.typical
    low = dim.min or 1
    step = dim.step or 1
    return max(step, math.ceil(low / step) * step)


# ---- plans for framework models, whose graph Slipway can't read ---------------------------------


def plan_from_specs(
    specs: Sequence[TensorSpec], declarations: InputDeclarations | None = None, default_dim: int = OTHER_DIM
) -> InputPlan:
    """A plan from names, shapes and dtypes alone (framework importers), symbolic dims at
    `default_dim` unless declared."""
    plan = plan_inputs(None, specs, declarations)
    sizes = {key: default_dim for key in plan.dims if key not in (declarations or NO_DECLARATIONS).dims}
    return plan.with_dims(sizes)
