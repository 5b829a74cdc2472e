"""Build Caffe models (deploy prototxt + caffemodel, zipped) for the Caffe importer's tests.

Caffe itself can't be installed any more, so the networks are written with Caffe's own
protobuf definitions (the `caffe.proto` that caffe2onnx ships, compiled) exactly as Caffe
would have saved them: a text-format deploy prototxt without weights, and a binary
NetParameter whose layers carry their blobs. Weights are seeded random numbers, so every run
writes byte-identical files and a failure can be reproduced.

Run with the Caffe environment's interpreter (it has caffe2onnx and numpy, Slipway's has not):

    <env>/bin/python tests/framework_models/caffe_models.py KIND OUT_DIR

which writes OUT_DIR/KIND.zip holding deploy.prototxt and weights.caffemodel. KINDS:
resnet (ResNet-18 on 1x3x224x224, ~45 MB), small (a few conv layers on 1x3x32x32, fast),
custom_layer (small with a Python layer and an unknown layer type, which must be refused),
mismatch (small's prototxt with a caffemodel whose conv2 weights have another shape).
"""

from __future__ import annotations

import math
import os
import sys
import zipfile
from pathlib import Path

# caffe2onnx's generated code predates protobuf 4; only the pure-Python protobuf runtime still takes it.
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

import numpy as np
from caffe2onnx.proto import caffe_upsample_pb2 as caffe_pb2
from google.protobuf import text_format

KINDS = ("resnet", "small", "custom_layer", "mismatch")


class NetBuilder:
    """Adds layers to a NetParameter while tracking blob shapes, so weight shapes follow from the graph.

    `deploy` is the prototxt (no blobs); `weights` is the caffemodel (same layers, with blobs),
    which is how Caffe's `Net::ToProto` saves a trained net.
    """

    def __init__(self, name: str, input_shape: list[int], seed: int, input_layer: bool):
        self.deploy = caffe_pb2.NetParameter(name=name)
        self.weights = caffe_pb2.NetParameter(name=name)
        self.rng = np.random.default_rng(seed)
        self.shapes: dict[str, list[int]] = {"data": list(input_shape)}
        if input_layer:
            # The modern deploy form: an Input layer whose input_param carries the shape.
            layer = self._add("data", "Input", [], ["data"])
            layer.input_param.shape.add().dim.extend(input_shape)
            self.weights.layer[-1].CopyFrom(layer)
        else:
            # The older form: net-level `input` + `input_shape`, still common in model zoos.
            for net in (self.deploy, self.weights):
                net.input.append("data")
                net.input_shape.add().dim.extend(input_shape)

    def _add(self, name: str, kind: str, bottom: list[str], top: list[str]) -> caffe_pb2.LayerParameter:
        layer = self.deploy.layer.add(name=name, type=kind)
        layer.bottom.extend(bottom)
        layer.top.extend(top)
        self.weights.layer.add()
        return layer

    def _finish(self, layer: caffe_pb2.LayerParameter, blobs: list[np.ndarray]) -> None:
        """Copy the deploy layer into the caffemodel and attach its blobs there."""
        saved = self.weights.layer[-1]
        saved.CopyFrom(layer)
        for array in blobs:
            blob = saved.blobs.add()
            blob.shape.dim.extend(array.shape)
            blob.data.extend(array.astype(np.float32).ravel().tolist())

    def conv(
        self, name: str, bottom: str, top: str, out: int, kernel: int, stride: int = 1, pad: int = 0, bias: bool = True
    ) -> str:
        n, c, h, w = self.shapes[bottom]
        layer = self._add(name, "Convolution", [bottom], [top])
        param = layer.convolution_param
        param.num_output = out
        param.kernel_size.append(kernel)
        param.stride.append(stride)
        param.pad.append(pad)
        param.bias_term = bias
        std = math.sqrt(2.0 / (c * kernel * kernel))  # He initialisation keeps activations O(1) through depth
        blobs = [self.rng.normal(0.0, std, (out, c, kernel, kernel))]
        if bias:
            blobs.append(self.rng.normal(0.0, 0.05, (out,)))
        self._finish(layer, blobs)
        self.shapes[top] = [n, out, (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1]
        return top

    def batchnorm_scale(self, name: str, blob: str) -> str:
        """BatchNorm (mean, variance, moving-average factor) then Scale (gamma, beta), in place, as ResNet has them."""
        channels = self.shapes[blob][1]
        layer = self._add(f"bn_{name}", "BatchNorm", [blob], [blob])
        layer.batch_norm_param.use_global_stats = True
        mean = self.rng.normal(0.0, 0.1, (channels,))
        variance = self.rng.uniform(0.5, 1.5, (channels,))  # plausible running variance: positive, near 1
        self._finish(layer, [mean, variance, np.ones((1,))])  # factor 1.0: the stats are stored unscaled
        layer = self._add(f"scale_{name}", "Scale", [blob], [blob])
        layer.scale_param.bias_term = True
        self._finish(layer, [self.rng.uniform(0.5, 1.5, (channels,)), self.rng.normal(0.0, 0.1, (channels,))])
        return blob

    def relu(self, name: str, blob: str) -> str:
        self._finish(self._add(name, "ReLU", [blob], [blob]), [])
        return blob

    def pool(self, name: str, bottom: str, top: str, kernel: int = 0, stride: int = 1, average: bool = False) -> str:
        """Pooling; kernel 0 means global pooling. Caffe rounds the output size up (ceil)."""
        n, c, h, w = self.shapes[bottom]
        layer = self._add(name, "Pooling", [bottom], [top])
        param = layer.pooling_param
        param.pool = caffe_pb2.PoolingParameter.AVE if average else caffe_pb2.PoolingParameter.MAX
        if kernel:
            param.kernel_size, param.stride = kernel, stride
            self.shapes[top] = [n, c, math.ceil((h - kernel) / stride) + 1, math.ceil((w - kernel) / stride) + 1]
        else:
            param.global_pooling = True
            self.shapes[top] = [n, c, 1, 1]
        self._finish(layer, [])
        return top

    def add(self, name: str, left: str, right: str, top: str) -> str:
        layer = self._add(name, "Eltwise", [left, right], [top])
        layer.eltwise_param.operation = caffe_pb2.EltwiseParameter.SUM
        self._finish(layer, [])
        self.shapes[top] = list(self.shapes[left])
        return top

    def inner_product(self, name: str, bottom: str, top: str, out: int) -> str:
        n, *rest = self.shapes[bottom]
        fan_in = int(np.prod(rest))
        layer = self._add(name, "InnerProduct", [bottom], [top])
        layer.inner_product_param.num_output = out
        weight = self.rng.normal(0.0, math.sqrt(1.0 / fan_in), (out, fan_in))
        self._finish(layer, [weight, self.rng.normal(0.0, 0.05, (out,))])
        self.shapes[top] = [n, out]
        return top

    def softmax(self, name: str, bottom: str, top: str) -> str:
        self._finish(self._add(name, "Softmax", [bottom], [top]), [])
        self.shapes[top] = list(self.shapes[bottom])
        return top

    def opaque(self, name: str, kind: str, bottom: str, top: str) -> str:
        """A layer only its own Caffe build knows (Python, or a custom C++ type); shape-preserving, no blobs."""
        layer = self._add(name, kind, [bottom], [top])
        if kind == "Python":
            layer.python_param.module = "my_layers"
            layer.python_param.layer = "ChannelNormalize"
        self._finish(layer, [])
        self.shapes[top] = list(self.shapes[bottom])
        return top


def resnet18() -> NetBuilder:
    """ResNet-18 laid out as Caffe ResNets are: bias-free convs, BatchNorm+Scale, in-place ReLU, Eltwise sums."""
    net = NetBuilder("ResNet-18", [1, 3, 224, 224], seed=18, input_layer=True)
    x = net.conv("conv1", "data", "conv1", 64, 7, stride=2, pad=3, bias=False)
    net.relu("conv1_relu", net.batchnorm_scale("conv1", x))
    x = net.pool("pool1", x, "pool1", kernel=3, stride=2)  # 112 -> 56 with Caffe's ceil rounding
    for stage, width in enumerate((64, 128, 256, 512), start=2):
        for block in "ab":
            stride = 2 if stage > 2 and block == "a" else 1
            prefix = f"res{stage}{block}"
            shortcut = x
            if stride != 1:
                shortcut = net.conv(f"{prefix}_branch1", x, f"{prefix}_branch1", width, 1, stride=stride, bias=False)
                net.batchnorm_scale(f"{prefix}_branch1", shortcut)
            y = net.conv(f"{prefix}_branch2a", x, f"{prefix}_branch2a", width, 3, stride=stride, pad=1, bias=False)
            net.relu(f"{prefix}_branch2a_relu", net.batchnorm_scale(f"{prefix}_branch2a", y))
            y = net.conv(f"{prefix}_branch2b", y, f"{prefix}_branch2b", width, 3, pad=1, bias=False)
            net.batchnorm_scale(f"{prefix}_branch2b", y)
            x = net.add(prefix, shortcut, y, prefix)
            net.relu(f"{prefix}_relu", x)
    x = net.pool("pool5", x, "pool5", average=True)
    x = net.inner_product("fc1000", x, "fc1000", 1000)
    net.softmax("prob", x, "prob")
    return net


def small(custom: bool = False) -> NetBuilder:
    """Conv/BatchNorm/Scale/ReLU/Pooling/InnerProduct/Softmax on 1x3x32x32; `custom` puts opaque layers in between."""
    net = NetBuilder("SmallNet", [1, 3, 32, 32], seed=32, input_layer=False)
    x = net.conv("conv1", "data", "conv1", 8, 3, pad=1)
    net.relu("relu1", x)
    if custom:
        x = net.opaque("py_norm", "Python", x, "py_norm")
    x = net.pool("pool1", x, "pool1", kernel=2, stride=2)
    x = net.conv("conv2", x, "conv2", 16, 3, pad=1, bias=False)
    net.relu("relu2", net.batchnorm_scale("conv2", x))
    x = net.pool("pool2", x, "pool2", kernel=2, stride=2)
    if custom:
        x = net.opaque("fancy_gate", "FancyGate", x, "fancy_gate")
    x = net.inner_product("fc", x, "fc", 10)
    net.softmax("prob", x, "prob")
    return net


def mismatch() -> NetBuilder:
    """small's net, but the caffemodel's conv2 weights are 5x5 where the prototxt says 3x3."""
    net = small()
    for layer in net.weights.layer:
        if layer.name == "conv2":
            out, channels = layer.blobs[0].shape.dim[0], layer.blobs[0].shape.dim[1]
            del layer.blobs[0].shape.dim[:]
            layer.blobs[0].shape.dim.extend([out, channels, 5, 5])
            del layer.blobs[0].data[:]
            layer.blobs[0].data.extend(net.rng.normal(0.0, 0.1, out * channels * 25).astype(np.float32).tolist())
    return net


def build(kind: str, out_dir: Path) -> Path:
    net = {"resnet": resnet18, "small": small, "custom_layer": lambda: small(custom=True), "mismatch": mismatch}[kind]()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{kind}.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        # Fixed timestamps keep the archive byte-identical between runs.
        archive.writestr(
            zipfile.ZipInfo("deploy.prototxt", (2020, 1, 1, 0, 0, 0)), text_format.MessageToString(net.deploy)
        )
        archive.writestr(zipfile.ZipInfo("weights.caffemodel", (2020, 1, 1, 0, 0, 0)), net.weights.SerializeToString())
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in KINDS:
        print(f"usage: {argv[0]} {{{','.join(KINDS)}}} OUT_DIR", file=sys.stderr)
        return 2
    print(build(argv[1], Path(argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
