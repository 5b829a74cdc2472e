"""Shape inference that can't take the machine down, and the memory it needs freed first.

Data propagation (shape inference that also computes small shape-like values) can be made to
allocate without bound by a model of a few hundred bytes, and plain shape inference copies the
whole model several times. `infer_shapes` skips propagation for models that plainly ask for too
much and caps the address space for the rest; `drop_large_payloads` frees embedded weights,
whose dims are all that is read from here on. Inspection and the FLOP estimate both infer shapes.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from workers.engine.onnx_walk import DEFAULT_DOMAIN, all_tensors

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto, TensorProto

# --- memory for the copies shape inference makes ------------------------------------------

_LARGE_PAYLOAD_BYTES = 64 * 2**10
# Every TensorProto field that holds values, except string_data, which is counted.
_PAYLOAD_FIELDS = (
    "raw_data",
    "float_data",
    "int32_data",
    "int64_data",
    "double_data",
    "uint64_data",
)


def drop_large_payloads(model: ModelProto) -> None:
    """Free the bytes of large embedded tensors; only their dims are needed from here on.

    Shape inference copies the whole model several times, so a model with 1.5 GB of
    embedded weights would otherwise need several times that in memory. Tensors whose
    values shape inference reads (Reshape targets, Resize scales) are tiny and stay.
    """
    for tensor in all_tensors(model):
        if tensor.ByteSize() > _LARGE_PAYLOAD_BYTES:
            for payload in _PAYLOAD_FIELDS:
                tensor.ClearField(payload)


# --- shape inference with data propagation, guarded -------------------------------------

# Data propagation (shape inference that also computes small shape-like values, so that a
# Reshape to Concat(Shape(x)[0], -1) gets a known shape) keeps every propagated value as a
# protobuf dim. A 200-byte model whose ConstantOfShape, Range, Tile or Expand makes a
# 2^40-element constant (or whose declared input dims are that large) makes it allocate
# until the process runs out: about 250 MB and 1 s per 4 million values. Models that plainly
# ask for that (`_propagation_would_explode`) skip it; the others get this much address space
# beyond what the process maps already (plus room for copies of the model), and past that
# shapes are inferred without it. (Near that limit glibc may abort rather than fail an
# allocation; in the sandbox that still ends as a readable out_of_memory.)
_DATA_PROPAGATION_HEADROOM_BYTES = 512 * 2**20
_NO_PROPAGATION_NOTE = (
    "Shapes were inferred without propagating constant values: the model builds tensors too large "
    "to propagate (for example a ConstantOfShape, Range or Tile of billions of elements)."
)


def infer_shapes(model: ModelProto, notes: list[str]) -> ModelProto:
    """`model` with inferred shapes (data propagation too, where it is safe), or `model` itself
    when inference fails; what was given up on goes into `notes` as a sentence."""
    import onnx

    failures = (onnx.shape_inference.InferenceError, ValueError, RuntimeError)
    if _NO_PROPAGATION_NOTE not in notes and _propagation_would_explode(model):
        notes.append(_NO_PROPAGATION_NOTE)
    if _NO_PROPAGATION_NOTE not in notes:  # a second pass (the FLOP estimate) need not fail again
        try:
            with _address_space_headroom(_DATA_PROPAGATION_HEADROOM_BYTES + 4 * model.ByteSize()):
                return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except MemoryError:
            notes.append(_NO_PROPAGATION_NOTE)
        except failures as exc:
            notes.append(f"Shape inference failed, so shapes are as declared: {exc}")
            return model
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except failures as exc:
        notes.append(f"Shape inference failed, so shapes are as declared: {exc}")
        return model


# Ops whose output size comes from the values of an input: what makes data propagation explode.
_AMPLIFYING_OPS = frozenset(("ConstantOfShape", "Expand", "Tile", "Range"))
_MAX_PROPAGATED_VALUES = 2**20


def _propagation_would_explode(model: ModelProto) -> bool:
    """True when the main graph plainly asks data propagation for more than
    _MAX_PROPAGATED_VALUES values: an amplifying op whose size input is a constant that says
    so, or a graph input declared that large (Shape of it can feed one). The address-space
    guard catches what this misses."""
    graph = model.graph
    amplifiers = [
        node for node in graph.node if node.op_type in _AMPLIFYING_OPS and node.domain in ("", DEFAULT_DOMAIN)
    ]
    if not amplifiers:
        return False
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else []
        if math.prod(max(dim.dim_value, 1) for dim in dims) > _MAX_PROPAGATED_VALUES:
            return True
    constants: dict[str, TensorProto] = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.HasField("t"):
                    constants[node.output[0]] = attribute.t

    def values(node: NodeProto, index: int) -> list[float] | None:
        """The values of a small constant input, else None."""
        name = node.input[index] if index < len(node.input) else ""
        tensor = constants.get(name)
        if tensor is None or math.prod(tensor.dims) > 64:
            return None
        from onnx import numpy_helper

        try:
            return [float(v) for v in numpy_helper.to_array(tensor).reshape(-1)]
        except Exception:  # a constant numpy can't read (misfit data, an unknown type): the checker has its say
            return None

    for node in amplifiers:
        count = 0.0
        if node.op_type in ("ConstantOfShape", "Expand", "Tile"):
            sizes = values(node, 0 if node.op_type == "ConstantOfShape" else 1)
            count = math.prod(max(size, 1.0) for size in sizes) if sizes else 0.0
        else:  # Range: start, limit, delta
            bounds = [values(node, index) for index in range(3)]
            if all(bound is not None and len(bound) == 1 for bound in bounds):
                (start,), (limit,), (delta,) = bounds  # type: ignore[misc]
                count = abs((limit - start) / delta) if delta else 0.0
        if count > _MAX_PROPAGATED_VALUES:
            return True
    return False


@contextlib.contextmanager
def _address_space_headroom(extra_bytes: int) -> Iterator[None]:
    """Lower the soft RLIMIT_AS to the address space mapped now plus `extra_bytes` for the
    block, so that an allocation past it raises MemoryError instead of taking the whole
    sandbox limit (or the machine). Does nothing where the limit can't be read or set, or
    where the current limit is already lower."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):
        yield
        return
    wanted = mapped + extra_bytes
    unlimited = resource.RLIM_INFINITY
    if (soft != unlimited and soft <= wanted) or (hard != unlimited and hard < wanted):
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
