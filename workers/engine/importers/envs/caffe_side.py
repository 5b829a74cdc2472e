"""The Caffe side: prototxt + caffemodel to ONNX with caffe2onnx, and OpenCV's Caffe reader as the reference.

Runs in the Caffe environment (caffe2onnx, onnx, protobuf, numpy, opencv-python-headless),
never in Slipway's: caffe2onnx pins onnx 1.6 and ships protobuf code generated in 2019, and
Caffe itself no longer builds, so OpenCV's dnn module (which reads Caffe files natively) is what
runs the original model for the parity check.

Before converting, the files are read here with the same caffe.proto schema and checked, so that
what caffe2onnx would fail on (it prints and calls exit(-1)) or silently get wrong is refused
with a message that names the layers: layer types it can't convert, weights that don't belong to
the prototxt, training-only prototxts without an input shape. The net is then normalised into
the deploy form caffe2onnx expects (Input layers, TEST phase, no loss/accuracy layers, V1 layers
upgraded), converted, and the ONNX is fixed up until it passes onnx's full check.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.metadata
import importlib.util
import io
import itertools
import math
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from workers.engine.importers.envs.protocol import Refused, first_line, serve

# The opset caffe2onnx's node builders were written for: it ran with onnx 1.6, whose default this was.
CAFFE2ONNX_OPSET = 11
CAFFE2ONNX_IR_VERSION = 6  # onnx 1.6's IR version, the one that goes with opset 11

# Layer types caffe2onnx turns into standard ONNX operators (its dispatcher in caffe2onnx/src/caffe2onnx.py).
# PriorBox and DetectionOutput are left out on purpose: it emits them as non-standard ops no runtime has.
# fmt: off
SUPPORTED = frozenset((
    "Axpy", "BN", "BatchNorm", "Concat", "Convolution", "ConvolutionDepthwise", "Crop", "Deconvolution", "Dropout",
    "Eltwise", "Flatten", "InnerProduct", "Interp", "LRN", "Log", "MVN", "MaxUnpool", "Normalize", "PReLU",
    "Permute", "Pooling", "Power", "ReLU", "ReLU6", "Reshape", "Scale", "ShuffleChannel", "Sigmoid", "Slice",
    "Softmax", "TanH", "Upsample",
))
DATA_LAYERS = frozenset((
    "AnnotatedData", "Data", "DummyData", "HDF5Data", "ImageData", "MemoryData", "Python", "WindowData",
))
TRAINING_ONLY = frozenset((
    "Accuracy", "ContrastiveLoss", "EuclideanLoss", "HDF5Output", "HingeLoss", "InfogainLoss", "MultiBoxLoss",
    "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss", "Silence", "SoftmaxWithLoss",
))
SHAPE_PRESERVING = frozenset((
    "AbsVal", "BN", "BNLL", "BatchNorm", "Bias", "Clip", "Dropout", "ELU", "Exp", "LRN", "Log", "MVN", "Normalize",
    "PReLU", "Power", "ReLU", "ReLU6", "Scale", "Sigmoid", "Softmax", "Swish", "TanH", "Threshold",
))
# Caffe's UpgradeV1LayerType, for caffemodels and prototxts of 2014 (`layers { type: CONVOLUTION }`).
V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL", "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution",
    "DATA": "Data", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col", "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power",
    "RELU": "ReLU", "SIGMOID": "Sigmoid", "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence", "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split",
    "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold", "UPSAMPLE": "Upsample",
}
# fmt: on

Shape = list[int | None]


@functools.cache
def caffe_pb2() -> types.ModuleType:
    """caffe2onnx's compiled caffe.proto, built for whichever protobuf runtime is installed.

    Its generated module (protoc of 2019) only imports under protobuf's pure-Python runtime
    (PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python), which takes ~20 s and gigabytes to parse a
    ResNet-size caffemodel and far more for VGG. The module's whole content is one serialized
    FileDescriptorProto, so it is read out of the source and compiled with the fast runtime
    instead; the module is installed under its own name so that caffe2onnx imports this one.
    The classes are the same schema, and caffe2onnx's output is byte-identical either way.
    """
    from google.protobuf import descriptor_pool, message_factory
    from google.protobuf.internal import enum_type_wrapper

    name = "caffe2onnx.proto.caffe_upsample_pb2"
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, "caffe2onnx is not installed"
    tree = ast.parse(Path(spec.origin).read_text())
    serialized = next(
        keyword.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg == "serialized_pb" and isinstance(keyword.value, ast.Constant)
    )
    pool = descriptor_pool.DescriptorPool()  # a pool of its own: onnx's messages live in the default one
    pool.AddSerializedFile(serialized)
    file = pool.FindFileByName("caffe_upsample.proto")
    module = types.ModuleType(name)
    module.DESCRIPTOR = file  # type: ignore[attr-defined]
    for message_name, descriptor in file.message_types_by_name.items():
        setattr(module, message_name, message_factory.GetMessageClass(descriptor))
    for enum_name, descriptor in file.enum_types_by_name.items():
        setattr(module, enum_name, enum_type_wrapper.EnumTypeWrapper(descriptor))
        for value in descriptor.values:
            setattr(module, value.name, value.number)
    sys.modules[name] = module
    return module


def reason(exc: BaseException) -> str:
    """The exception's first line, to go inside a sentence of ours."""
    return first_line(exc).rstrip(".")


# --- reading and normalising ---------------------------------------------------------------------------------


def read_prototxt(path: str) -> Any:
    from google.protobuf import text_format

    net = caffe_pb2().NetParameter()
    try:
        text_format.Merge(Path(path).read_text(errors="replace"), net)
    except text_format.ParseError as exc:
        raise Refused(
            "invalid_model",
            f"The prototxt can't be read as a Caffe NetParameter: {reason(exc)}. If it uses layer parameters of "
            "a Caffe fork, those are not part of the standard caffe.proto this importer reads.",
        ) from exc
    return net


def read_caffemodel(path: str) -> Any:
    from google.protobuf.message import DecodeError

    model = caffe_pb2().NetParameter()
    try:
        model.ParseFromString(Path(path).read_bytes())
    except DecodeError as exc:
        raise Refused(
            "invalid_model",
            f"The caffemodel can't be read as a binary Caffe NetParameter: {reason(exc)}. Upload the .caffemodel "
            "file Caffe saved (binary protobuf), not a text or HDF5 snapshot.",
        ) from exc
    if not (model.layer or model.layers):
        raise Refused("invalid_model", "The caffemodel holds no layers: it is not a Caffe weights file.")
    return model


def v2_layers(net: Any, what: str) -> list[Any]:
    """The net's layers as LayerParameter, upgrading V1 `layers` the way Caffe's UpgradeV1LayerParameter does."""
    pb = caffe_pb2()
    if net.layer:
        return list(net.layer)
    upgraded = []
    layer_fields = pb.LayerParameter.DESCRIPTOR.fields_by_name
    for old in net.layers:
        if old.HasField("layer"):
            raise Refused(
                "invalid_model",
                f"The {what} is in Caffe's V0 format (2013), which this importer doesn't read; upgrade it with Caffe's "
                "upgrade_net_proto_text / upgrade_net_proto_binary tools.",
            )
        layer = pb.LayerParameter(name=old.name, type=V1_TYPES.get(pb.V1LayerParameter.LayerType.Name(old.type), ""))
        layer.bottom.extend(old.bottom)
        layer.top.extend(old.top)
        layer.blobs.extend(old.blobs)
        layer.include.extend(old.include)
        layer.exclude.extend(old.exclude)
        for field, value in old.ListFields():
            if field.name.endswith("_param") and field.name in layer_fields:
                getattr(layer, field.name).CopyFrom(value)
        upgraded.append(layer)
    return upgraded


def in_test_phase(layer: Any) -> bool:
    """Caffe's StateMeetsRule for phase alone: deployment is the TEST phase."""
    pb = caffe_pb2()
    if layer.include:
        return any(not rule.HasField("phase") or rule.phase == pb.TEST for rule in layer.include)
    return not any(rule.HasField("phase") and rule.phase == pb.TEST for rule in layer.exclude)


def declared_shape(declared: dict[str, Any] | None, prototxt: list[int] | None, blob: str, notes: list[str]) -> Shape:
    """The input's shape: the user's dims where concrete, the prototxt's elsewhere (Caffe nets are static)."""
    if declared is None:
        return list(prototxt) if prototxt is not None else []
    dims = list(declared.get("shape") or [])
    if prototxt is not None and dims and len(dims) != len(prototxt):
        raise Refused(
            "invalid_inputs",
            f"Input '{blob}' is declared with {len(dims)} dims {dims}, but the prototxt gives it {len(prototxt)}: "
            f"{prototxt}.",
        )
    shape: Shape = []
    for index, dim in enumerate(dims or (prototxt or [])):
        if isinstance(dim, int) and dim > 0:
            shape.append(dim)
        elif prototxt is not None:
            shape.append(prototxt[index])
            notes.append(
                f"Input '{blob}' dim {index} declared as {dim!r}: Caffe nets are static, kept the prototxt's "
                f"{prototxt[index]}."
            )
        else:
            shape.append(None)
    return shape


def deploy_net(net: Any, declared: list[dict[str, Any]], notes: list[str], assumptions: list[str]) -> tuple[Any, dict]:
    """The net in the deploy form caffe2onnx handles, and its inputs {blob: shape}.

    Inputs become Input layers at the front (caffe2onnx only wires net-level `input` into the first
    layer), TEST-phase rules apply, loss/accuracy layers go, data layers become Input layers when
    the user declared their shape, and Split layers are bypassed (caffe2onnx has no Split).
    """
    pb = caffe_pb2()
    layers = v2_layers(net, "prototxt")
    dropped = [layer for layer in layers if not in_test_phase(layer)]
    layers = [layer for layer in layers if in_test_phase(layer)]
    by_name = {str(item.get("name")): item for item in declared if item.get("name") is not None}

    blob_names = list(net.input)
    for layer in layers:
        if layer.type == "Input":
            blob_names.extend(layer.top)
        elif layer.type in DATA_LAYERS and layer.top and not layer.bottom:
            blob_names.append(layer.top[0])
    count = len(blob_names)
    by_position = len(declared) == count and not {name.removesuffix("_input") for name in by_name} & set(blob_names)

    def declared_for(blob: str, index: int, count: int) -> dict[str, Any] | None:
        item = by_name.get(blob) or by_name.get(f"{blob}_input")
        if item is None and by_position:
            item = declared[index]  # names differ but counts agree: match by position
            assumptions.append(f"Declared input '{item.get('name')}' taken as the Caffe input blob '{blob}'.")
        return item

    def record(blob: str, prototxt: list[int] | None, source: str) -> None:
        if inputs[blob] == prototxt:
            assumptions.append(f"Input '{blob}' has shape {prototxt}, from {source}.")
        else:
            assumptions.append(f"Input '{blob}' has shape {inputs[blob]}, as declared (the prototxt says {prototxt}).")

    # Net-level inputs (`input:` with `input_shape` or `input_dim`).
    inputs: dict[str, Shape] = {}
    legacy_dims = list(net.input_dim)
    for index, blob in enumerate(net.input):
        if index < len(net.input_shape):
            prototxt: list[int] | None = list(net.input_shape[index].dim)
            source = "the prototxt's input_shape"
        elif legacy_dims:
            prototxt = legacy_dims[4 * index : 4 * index + 4]
            source = "the prototxt's input_dim"
        else:
            prototxt, source = None, ""
        inputs[blob] = declared_shape(declared_for(blob, index, count), prototxt, blob, notes)
        if source:
            record(blob, prototxt, source)
    kept = []
    training_data = []
    for layer in layers:
        if layer.type == "Input":
            for index, blob in enumerate(layer.top):
                shapes = layer.input_param.shape
                prototxt = list(shapes[min(index, len(shapes) - 1)].dim) if shapes else None
                inputs[blob] = declared_shape(declared_for(blob, len(inputs), count), prototxt, blob, notes)
                record(blob, prototxt, "the prototxt's Input layer")
        elif layer.type in DATA_LAYERS and layer.top and not layer.bottom:
            training_data.append(layer)
            blob = layer.top[0]  # data; the other tops (labels) only feed losses and accuracy
            item = declared_for(blob, len(inputs), count)
            inputs[blob] = declared_shape(item, None, blob, notes) if item else []
            if item:
                assumptions.append(
                    f"Input '{blob}' (from data layer '{layer.name}') has shape {inputs[blob]}, as declared."
                )
        elif layer.type in TRAINING_ONLY:
            training_data.append(layer)
        else:
            kept.append(layer)
    if training_data:
        notes.append(
            "This is a training prototxt ("
            + ", ".join(f"'{lay.name}' ({lay.type})" for lay in training_data[:6])
            + "): data, loss and accuracy layers were left out and the net converted as deployed (TEST phase). "
            "A deploy prototxt is the usual input."
            + (
                " The outputs are what fed the loss layers (logits: a loss's own softmax is not part of the model)."
                if any(lay.type.endswith("Loss") for lay in training_data)
                else ""
            )
        )
    if dropped:
        notes.append(
            f"{len(dropped)} layer(s) excluded from the TEST phase left out: "
            + ", ".join(f"'{lay.name}'" for lay in dropped[:6])
            + "."
        )
    for blob, shape in inputs.items():
        if not shape or any(dim is None for dim in shape):
            raise Refused(
                "invalid_inputs",
                f"Input '{blob}' has no complete shape: "
                + ("it comes from a training data layer. " if not shape else f"{shape}. ")
                + "Upload the deploy prototxt (with an Input layer or input_shape), or declare the input's shape.",
            )
    if not inputs:
        raise Refused("invalid_model", "The prototxt declares no input (no Input layer, no `input:`).")
    # Split layers copy a blob to several tops; point consumers at the source instead.
    alias: dict[str, str] = {}
    layers = []
    for layer in kept:
        layer.bottom[:] = [alias.get(bottom, bottom) for bottom in layer.bottom]
        if layer.type == "Split":
            alias.update(dict.fromkeys(layer.top, layer.bottom[0]))
        else:
            layers.append(layer)
    deploy = pb.NetParameter(name=net.name)
    for blob, shape in inputs.items():
        layer = deploy.layer.add(name=blob, type="Input")
        layer.top.append(blob)
        layer.input_param.shape.add().dim.extend(shape)
    deploy.layer.extend(layers)
    return deploy, inputs


# --- checks ---------------------------------------------------------------------------------------------------


def refuse_unsupported(layers: list[Any]) -> None:
    bad = [layer for layer in layers if layer.type not in SUPPORTED and layer.type != "Input"]
    if not bad:
        return
    known = set(caffe_pb2().LayerParameter.DESCRIPTOR.fields_by_name)

    def why(layer: Any) -> str:
        if layer.type == "Python":
            where = f"{layer.python_param.module}.{layer.python_param.layer}".strip(".")
            return f"'{layer.name}' (Python layer {where}: Python code that runs only inside Caffe)"
        if layer.type in ("PriorBox", "DetectionOutput"):
            return f"'{layer.name}' ({layer.type}: caffe2onnx emits a non-standard op no ONNX runtime runs)"
        if f"{layer.type.lower()}_param" in known or layer.type in V1_TYPES.values():
            return f"'{layer.name}' ({layer.type}: a Caffe layer caffe2onnx has no conversion for)"
        return f"'{layer.name}' ({layer.type or 'no type'}: a custom layer type, not part of Caffe itself)"

    raise Refused(
        "unsupported_layer",
        f"caffe2onnx can't convert {len(bad)} layer(s) of this network: " + "; ".join(why(lay) for lay in bad) + ". "
        "It converts: " + ", ".join(sorted(SUPPORTED)) + ". Replace these layers in the prototxt with supported ones "
        "(and re-export the weights), or export the model from the framework it was trained in straight to ONNX.",
    )


def conv_geometry(param: Any, spatial: int = 2) -> tuple[list[int], list[int], list[int], list[int]]:
    """kernel, stride, pad, dilation per spatial axis, with Caffe's defaults and _h/_w overrides."""

    def each(repeated: Any, h: int, w: int, default: int) -> list[int]:
        if h or w:
            return [h, w]
        # PoolingParameter's are singular, ConvolutionParameter's repeated.
        values = ([repeated] if isinstance(repeated, int) else list(repeated)) if repeated else []
        values = [value for value in values if value] or [default]
        return [values[min(i, len(values) - 1)] for i in range(spatial)]

    kernel = each(param.kernel_size, param.kernel_h, param.kernel_w, 1)
    stride = each(param.stride, param.stride_h, param.stride_w, 1)
    pad = each(param.pad, param.pad_h, param.pad_w, 0)
    dilation = each(param.dilation, 0, 0, 1) if hasattr(param, "dilation") else [1] * spatial  # Pooling has none
    return kernel, stride, pad, dilation


def infer_shapes(layers: list[Any], inputs: dict[str, Shape]) -> dict[str, Shape | None]:
    """Blob shapes for the common layer types (None where a type's shape isn't worked out here)."""
    shapes: dict[str, Shape | None] = {blob: list(shape) for blob, shape in inputs.items()}
    for layer in layers:
        bottoms = [shapes.get(bottom) for bottom in layer.bottom]
        first = bottoms[0] if bottoms else None
        out: Shape | None = None
        if first is not None and all(dim is not None for dim in first):
            dims: list[int] = [int(dim) for dim in first if dim is not None]
            if layer.type in SHAPE_PRESERVING or layer.type == "Eltwise":
                out = list(dims)
            elif layer.type in ("Convolution", "ConvolutionDepthwise", "Deconvolution") and len(dims) == 4:
                param = layer.convolution_param
                kernel, stride, pad, dilation = conv_geometry(param)
                extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
                if layer.type == "Deconvolution":
                    spatial = [
                        s * (x - 1) + e - 2 * p for x, s, e, p in zip(dims[2:], stride, extent, pad, strict=True)
                    ]
                else:
                    spatial = [
                        (x + 2 * p - e) // s + 1 for x, s, e, p in zip(dims[2:], stride, extent, pad, strict=True)
                    ]
                out = [dims[0], param.num_output or dims[1], *spatial]
            elif layer.type == "Pooling" and len(dims) == 4:
                param = layer.pooling_param
                if param.global_pooling:
                    out = [*dims[:2], 1, 1]
                else:
                    kernel, stride, pad, _ = conv_geometry(param)
                    spatial = []
                    for x, k, s, p in zip(dims[2:], kernel, stride, pad, strict=True):
                        size = (math.floor if param.round_mode == 1 else math.ceil)((x + 2 * p - k) / s) + 1
                        if p and (size - 1) * s >= x + p:
                            size -= 1
                        spatial.append(size)
                    out = [*dims[:2], *spatial]
            elif layer.type == "InnerProduct":
                axis = layer.inner_product_param.axis % len(dims)
                out = [*dims[:axis], layer.inner_product_param.num_output]
            elif layer.type == "Flatten":
                axis = layer.flatten_param.axis % len(dims)
                end = layer.flatten_param.end_axis % len(dims)
                out = [*dims[:axis], math.prod(dims[axis : end + 1]), *dims[end + 1 :]]
            elif layer.type == "Concat" and all(shape is not None for shape in bottoms):
                param = layer.concat_param
                axis = (param.concat_dim if param.HasField("concat_dim") else param.axis) % len(dims)
                out = list(dims)
                out[axis] = sum(int(shape[axis] or 0) for shape in bottoms if shape is not None)
        for top in layer.top:
            shapes[top] = out
    return shapes


def expected_blobs(layer: Any, bottom: Shape | None) -> list[Shape] | None:
    """The blob shapes Caffe would allocate for the layer (None dims: unknown here); None: no weights checked."""
    channels = bottom[1] if bottom and len(bottom) > 1 else None
    if layer.type in ("Convolution", "ConvolutionDepthwise", "Deconvolution"):
        param = layer.convolution_param
        kernel, *_ = conv_geometry(param)
        group = channels if layer.type == "ConvolutionDepthwise" else param.group or 1
        per_group = channels // group if channels and group else None
        out = param.num_output
        weight: Shape = (
            [channels, out // (group or 1), *kernel] if layer.type == "Deconvolution" else [out, per_group, *kernel]
        )
        return [weight, [out]] if param.bias_term else [weight]
    if layer.type == "InnerProduct":
        param = layer.inner_product_param
        fan_in = (
            math.prod(int(d or 0) for d in bottom[param.axis % len(bottom) :])
            if bottom and None not in bottom
            else None
        )
        weight = [fan_in, param.num_output] if param.transpose else [param.num_output, fan_in]
        return [weight, [param.num_output]] if param.bias_term else [weight]
    if layer.type in ("BatchNorm", "BN"):
        return [[channels], [channels], [1]]
    if layer.type == "Scale" and len(layer.bottom) == 1:
        return [[channels], [channels]] if layer.scale_param.bias_term else [[channels]]
    if layer.type == "PReLU":
        return [[1 if layer.prelu_param.channel_shared else channels]]
    return None


def blob_shape(blob: Any) -> Shape:
    if blob.HasField("shape"):
        return list(blob.shape.dim)
    return [blob.num, blob.channels, blob.height, blob.width]  # legacy 4-D blobs (before BlobShape)


def shapes_match(expected: Shape, found: Shape) -> bool:
    """Caffe's legacy rule: a 4-D (num, channels, height, width) blob matches a shape padded with leading 1s."""
    if len(expected) != len(found):
        width = max(len(expected), len(found))
        expected = [*([1] * (width - len(expected))), *expected]
        found = [*([1] * (width - len(found))), *found]
    return all(want is None or want == got for want, got in zip(expected, found, strict=True))


def show(shape: Shape) -> str:
    return "x".join("?" if dim is None else str(dim) for dim in shape) or "scalar"


def check_weights(layers: list[Any], weights: list[Any], inputs: dict[str, Shape], notes: list[str]) -> None:
    shapes = infer_shapes(layers, inputs)
    saved = {layer.name: layer for layer in weights}
    problems = []
    for layer in layers:
        bottom = shapes.get(layer.bottom[0]) if layer.bottom else None
        expected = expected_blobs(layer, bottom)
        if expected is None:
            continue
        found = saved.get(layer.name)
        if found is None or not found.blobs:
            problems.append(
                f"layer '{layer.name}' ({layer.type}) has no weights in the caffemodel "
                f"(expected {', '.join(show(shape) for shape in expected)})"
            )
            continue
        have = [blob_shape(blob) for blob in found.blobs]
        # A BatchNorm saved by older Caffe forks has no third (moving-average factor) blob.
        wants = [expected, expected[:2]] if layer.type in ("BatchNorm", "BN") else [expected]
        if not any(len(want) == len(have) for want in wants):
            problems.append(
                f"layer '{layer.name}' ({layer.type}) expects {len(expected)} blob(s) "
                f"({', '.join(show(s) for s in expected)}), the caffemodel has {len(have)} "
                f"({', '.join(show(s) for s in have)})"
            )
            continue
        for index, (want, got) in enumerate(zip(expected, have, strict=False)):
            blob = found.blobs[index]
            values = len(blob.data) or len(blob.double_data)
            if not shapes_match(want, got):
                problems.append(
                    f"layer '{layer.name}' ({layer.type}) blob {index} expects shape {show(want)}, "
                    f"the caffemodel has {show(got)}"
                )
            elif values != math.prod(dim or 0 for dim in got):
                problems.append(
                    f"layer '{layer.name}' ({layer.type}) blob {index} has shape {show(got)} but {values} values"
                )
    if problems:
        raise Refused(
            "weights_mismatch",
            "The caffemodel does not match the prototxt: "
            + "; ".join(problems[:8])
            + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
            + ". "
            "Upload the .caffemodel that was trained with this prototxt (same layer names and sizes).",
        )
    names = {layer.name for layer in layers}
    extra = [layer.name for layer in weights if layer.blobs and layer.name not in names]
    if extra:
        notes.append(
            f"The caffemodel has weights for {len(extra)} layer(s) the prototxt lacks (ignored): "
            + ", ".join(f"'{name}'" for name in extra[:8])
            + ("..." if len(extra) > 8 else "")
            + "."
        )


def check_wiring(layers: list[Any]) -> None:
    """Every bottom must be produced earlier: caffe2onnx exits the process on a dangling one."""
    produced: set[str] = set()
    for layer in layers:
        missing = [bottom for bottom in layer.bottom if bottom not in produced]
        if missing:
            raise Refused(
                "invalid_model",
                f"Layer '{layer.name}' ({layer.type}) reads blob(s) {missing} that no earlier layer produces.",
            )
        produced.update(layer.top)
    inputs = [layer for layer in layers if layer.type == "Input"]
    first = next((layer for layer in layers if layer.type != "Input"), None)
    if len(inputs) > 1 and first is not None and sorted(first.bottom) != sorted(lay.top[0] for lay in inputs):
        # caffe2onnx wires every graph input into the first layer, whatever its bottoms say.
        raise Refused(
            "unsupported_layer",
            f"This net has {len(inputs)} inputs and its first layer '{first.name}' does not take all of them; "
            "caffe2onnx can only convert such nets when the first layer reads every input. Export the model to ONNX "
            "from the framework it was trained in.",
        )


def merge_bn_scale_tops(layers: list[Any]) -> None:
    """caffe2onnx fuses a BatchNorm with the Scale after it and names the result after the BatchNorm's output,
    so a Scale with a top of its own would leave its consumers dangling: make the pair write that top."""
    for bn, scale in itertools.pairwise(layers):
        if bn.type not in ("BatchNorm", "BN") or scale.type != "Scale":
            continue
        if list(scale.bottom) != list(bn.top) or len(scale.bottom) != 1:
            raise Refused(
                "unsupported_layer",
                f"Scale layer '{scale.name}' follows BatchNorm '{bn.name}' but doesn't scale its output; caffe2onnx "
                "fuses such neighbours. Put each Scale right after the BatchNorm it belongs to.",
            )
        if list(scale.top) != list(bn.top):
            readers = [lay.name for lay in layers if lay is not scale and bn.top[0] in lay.bottom]
            if bn.top[0] in bn.bottom or readers:
                raise Refused(
                    "unsupported_layer",
                    f"BatchNorm '{bn.name}' output is read by {readers or 'an in-place chain'} besides Scale "
                    f"'{scale.name}', which caffe2onnx fuses away.",
                )
            bn.top[:] = list(scale.top)
            scale.bottom[:] = list(scale.top)


# --- conversion and ONNX fix-ups -----------------------------------------------------------------------------


def run_caffe2onnx(net: Any, weights: Any) -> Any:
    """caffe2onnx on the parsed messages; its prints go to the log, its exit(-1) becomes a refusal."""
    if not hasattr(np, "float"):
        np.float = float  # type: ignore[attr-defined]  # its BatchNorm-without-Scale path uses np.float (numpy < 1.24)
    from caffe2onnx.src.caffe2onnx import Caffe2Onnx

    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            return Caffe2Onnx(net, weights, net.name or "caffe").createOnnxModel()
    except SystemExit as exc:
        said = [line for line in log.getvalue().splitlines() if line and not line.startswith("convert layer")]
        raise Refused("conversion_failed", f"caffe2onnx stopped: {said[-1] if said else exc}") from exc
    finally:
        sys.stderr.write(log.getvalue())


def fix_onnx(model: Any, net: Any, weights: Any, inputs: dict[str, Shape], notes: list[str]) -> None:
    """Make caffe2onnx's graph a valid, faithful model for today's onnx.

    - stamp opset 11 / IR 6 (what caffe2onnx targeted; make_model would stamp today's opset);
    - weights only as initializers, not also graph inputs (IR < 4 style, makes them overridable);
    - drop its hand-computed intermediate shapes (shape inference redoes them);
    - Dropout (inference: identity) becomes Identity; the max-pooling pad value -1.8e308 (-inf in float32)
      becomes float32's lowest; a BatchNorm without Scale gets bias 0, not caffe2onnx's 0.001;
    - BatchNorm statistics divided by the moving-average factor exactly as Caffe does (caffe2onnx divides
      the variance by factor + 1e-5, and by 0 where Caffe's factor 0 means zero statistics);
    - Softmax over a non-last axis of a >2-D blob: opset 11 Softmax flattens from the axis, Caffe's
      normalises that one axis, so it runs between two Transposes;
    - graph inputs named like the Caffe blobs ('data', not 'data_input') where no other value has the name.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid("", CAFFE2ONNX_OPSET)])
    model.ir_version = CAFFE2ONNX_IR_VERSION
    model.producer_name, model.producer_version = "caffe2onnx", importlib.metadata.version("caffe2onnx")
    initialized = {tensor.name for tensor in graph.initializer}
    kept_inputs = [value for value in graph.input if value.name not in initialized]
    del graph.input[:]
    graph.input.extend(kept_inputs)
    del graph.value_info[:]
    for node in graph.node:
        if node.op_type == "Dropout":
            node.op_type = "Identity"
            del node.attribute[:]
            del node.output[1:]
    layers = list(net.layer)
    zero_bias = {
        f"{bn.name}_b"
        for index, bn in enumerate(layers)
        if bn.type in ("BatchNorm", "BN") and not (index + 1 < len(layers) and layers[index + 1].type == "Scale")
    }
    statistics = {}
    saved = {layer.name: layer for layer in v2_layers(weights, "caffemodel")}
    for layer in layers:
        if layer.type in ("BatchNorm", "BN") and layer.name in saved and len(saved[layer.name].blobs) >= 2:
            blobs = [np.asarray(blob.data, dtype=np.float32) for blob in saved[layer.name].blobs]
            factor = float(blobs[2][0]) if len(blobs) > 2 and blobs[2].size else 1.0
            factor = 0.0 if factor == 0 else 1.0 / factor
            statistics[f"{layer.name}_mean"] = blobs[0] * factor
            statistics[f"{layer.name}_var"] = blobs[1] * factor
    for tensor in graph.initializer:
        array = numpy_helper.to_array(tensor)
        if tensor.name in statistics and statistics[tensor.name].size == array.size:
            exact = statistics[tensor.name].reshape(array.shape).astype(array.dtype)
            tensor.CopyFrom(numpy_helper.from_array(exact, tensor.name))
        elif tensor.name.endswith("_constant_value") and np.isneginf(array).all():
            tensor.CopyFrom(numpy_helper.from_array(np.full_like(array, np.finfo(np.float32).min), tensor.name))
        elif tensor.name in zero_bias:
            tensor.CopyFrom(numpy_helper.from_array(np.zeros_like(array), tensor.name))
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {value.name: len(value.type.tensor_type.shape.dim) for value in (*inferred.graph.value_info, *graph.input)}
    nodes = []
    for node in graph.node:
        axis = next((attr.i for attr in node.attribute if attr.name == "axis"), 1)
        rank = ranks.get(node.input[0], 2) if node.op_type == "Softmax" else 0
        if node.op_type != "Softmax" or rank <= 2 or axis % rank == rank - 1:
            nodes.append(node)
            continue
        perm = [i for i in range(rank) if i != axis % rank] + [axis % rank]
        back = [perm.index(i) for i in range(rank)]
        moved, done = f"{node.name}_axis_last", f"{node.name}_softmax"
        nodes.append(helper.make_node("Transpose", [node.input[0]], [moved], f"{node.name}_to_last", perm=perm))
        nodes.append(helper.make_node("Softmax", [moved], [done], node.name, axis=rank - 1))
        nodes.append(helper.make_node("Transpose", [done], [node.output[0]], f"{node.name}_back", perm=back))
        notes.append(
            f"Softmax '{node.name}' normalises axis {axis} of a {rank}-D blob as Caffe does "
            "(Transpose around an opset-11 Softmax)."
        )
    del graph.node[:]
    graph.node.extend(nodes)
    names = {name for node in graph.node for name in node.output} | initialized
    for value in graph.input:
        blob = value.name.removesuffix("_input")
        if blob in inputs and blob != value.name and blob not in names:
            for node in graph.node:
                node.input[:] = [blob if name == value.name else name for name in node.input]
            value.name = blob


def to_opset(model: Any, opset: int | None, notes: list[str]) -> Any:
    import onnx
    from onnx import version_converter

    if opset is None or opset == CAFFE2ONNX_OPSET:
        if opset is None:
            notes.append(f"Opset {CAFFE2ONNX_OPSET}: what caffe2onnx's operators are written for.")
        return model
    try:
        converted = version_converter.convert_version(model, opset)
        converted.ir_version = max(converted.ir_version, onnx.helper.find_min_ir_version_for(converted.opset_import))
        onnx.checker.check_model(converted, full_check=True)
    except Exception as exc:
        raise Refused(
            "unsupported_opset",
            f"caffe2onnx writes opset {CAFFE2ONNX_OPSET}; converting this model to opset {opset} failed: "
            f"{reason(exc)}. Ask for opset {CAFFE2ONNX_OPSET} or one the converter reaches.",
        ) from exc
    notes.append(
        f"caffe2onnx wrote opset {CAFFE2ONNX_OPSET}; converted to opset {opset} with onnx's version converter."
    )
    return converted


def tool_versions() -> dict[str, str]:
    names = {
        "caffe2onnx": "caffe2onnx",
        "onnx": "onnx",
        "protobuf": "protobuf",
        "numpy": "numpy",
        "opencv": "opencv-python-headless",
    }
    versions = {}
    for key, distribution in names.items():
        try:
            versions[key] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[key] = "not installed"
    return versions


def prepare(request: dict[str, Any], declared: list[dict[str, Any]]) -> tuple[Any, Any, dict, list[str], list[str]]:
    """Read, normalise and check both files: the deploy net, the caffemodel, inputs, notes, assumptions."""
    notes: list[str] = []
    assumptions: list[str] = []
    model = request["model"]
    if not model.get("prototxt") or not model.get("caffemodel"):
        raise Refused("invalid_model", "A Caffe model needs both files: the .prototxt and the .caffemodel.")
    net = read_prototxt(model["prototxt"])
    weights = read_caffemodel(model["caffemodel"])
    deploy, inputs = deploy_net(net, declared, notes, assumptions)
    layers = [layer for layer in deploy.layer if layer.type != "Input"]
    refuse_unsupported(layers)
    check_wiring(list(deploy.layer))
    check_weights(layers, v2_layers(weights, "caffemodel"), inputs, notes)
    merge_bn_scale_tops(list(deploy.layer))
    return deploy, weights, inputs, notes, assumptions


# --- actions ----------------------------------------------------------------------------------------------------


def convert(request: dict[str, Any]) -> dict[str, Any]:
    import onnx

    deploy, weights, inputs, notes, assumptions = prepare(request, list(request.get("inputs") or []))
    if not weights.layer:  # caffe2onnx reads weights from `layer` or `layers` alike, but only V2 types in full
        upgraded = caffe_pb2().NetParameter(name=weights.name)
        upgraded.layer.extend(v2_layers(weights, "caffemodel"))
        weights = upgraded
        notes.append("The caffemodel is in Caffe's V1 format (`layers`); its layers were upgraded as Caffe does.")
    model = run_caffe2onnx(deploy, weights)
    fix_onnx(model, deploy, weights, inputs, notes)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise Refused(
            "conversion_failed",
            f"caffe2onnx's output is not a valid ONNX model: {reason(exc)}. The layer named in the message "
            "is one caffe2onnx converts incorrectly; export the model to ONNX from its training framework instead.",
        ) from exc
    model = to_opset(model, request.get("opset"), notes)
    out_dir = Path(request["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "model.onnx"
    onnx.save(model, str(path))
    graph_inputs = {value.name: value for value in model.graph.input}
    return {
        "onnx": str(path),
        "inputs": [
            {"name": name, "shape": [dim.dim_value for dim in value.type.tensor_type.shape.dim], "dtype": "float32"}
            for name, value in graph_inputs.items()
        ],
        "outputs": [value.name for value in model.graph.output],
        "framework": "caffe",
        "framework_version": "Caffe NetParameter (prototxt + caffemodel, read with caffe2onnx's caffe.proto; "
        "Caffe itself is not installed)",
        "converter": "caffe2onnx",
        "converter_version": importlib.metadata.version("caffe2onnx"),
        "method": "caffe2onnx.Caffe2Onnx on the checked, deploy-normalised net, then ONNX fix-ups "
        "(opset/IR stamp, initializers off the inputs, Dropout as Identity, input names) and onnx's full check",
        "notes": notes,
        "assumptions": assumptions,
        "tool_versions": tool_versions(),
    }


def caffe_layer_for(name: str, layers: list[Any]) -> str:
    """The layer whose output caffe2onnx called `name`: it names in-place layers' and InnerProduct's outputs after
    the layer, other outputs after their top blob. OpenCV's forward takes layer names."""
    if any(layer.name == name for layer in layers):
        return name
    producers = [layer.name for layer in layers if name in layer.top]
    if not producers:
        raise Refused("bad_request", f"No Caffe layer or blob is called '{name}'.")
    return producers[-1]


def run(request: dict[str, Any]) -> dict[str, Any]:
    """The original model through OpenCV's Caffe reader, on the feeds, outputs keyed by ONNX output names."""
    import cv2

    declared = list(request.get("inputs") or [])
    deploy, _, inputs, _, _ = prepare(request, declared)
    layers = list(deploy.layer)
    names = list(request.get("output_names") or [])
    if not names:
        consumed = {bottom for layer in layers for bottom in layer.bottom}
        names = [layer.top[0] for layer in layers if layer.top and layer.top[0] not in consumed]
    from google.protobuf import text_format

    # The normalised deploy net (Input layers, TEST phase) is what was converted; OpenCV reads it from memory.
    prototxt = np.frombuffer(text_format.MessageToString(deploy).encode(), dtype=np.uint8)
    caffemodel = np.fromfile(request["model"]["caffemodel"], dtype=np.uint8)
    # OpenCV 4's, the environment's (Slipway's own environment, which mypy reads, has OpenCV 5).
    net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)  # type: ignore[attr-defined]
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    with np.load(request["feeds"]) as feeds:
        for item in declared or [{"name": blob} for blob in inputs]:
            blob = item["name"] if item["name"] in inputs else item["name"].removesuffix("_input")
            net.setInput(np.ascontiguousarray(feeds[item["name"]], dtype=np.float32), blob)
    results = net.forward([caffe_layer_for(name, layers) for name in names])
    np.savez(request["outputs"], **{name: np.asarray(value) for name, value in zip(names, results, strict=True)})  # type: ignore[arg-type]
    return {"reference": f"OpenCV dnn {cv2.__version__} (Caffe reader)"}


if __name__ == "__main__":
    sys.exit(serve({"convert": convert, "run": run}))
