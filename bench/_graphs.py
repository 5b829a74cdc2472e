"""ONNX graphs the benches build with onnx helpers, so that they need no model download or torch.

`resnet_onnx` writes ResNet-18's layout (a strided stem, four stages of two basic blocks with
residual adds, global average pool, a 1000-way classifier) at any width and image size, with
seeded He-initialized weights: bench/fidelity.py uses a narrow one on small images, and
bench/optimize.py the full-width one on 224x224 images when torch is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

OPSET = 17
CLASSES = 1000


def resnet_onnx(
    path: Path,
    *,
    widths: tuple[int, int, int, int],
    image_size: int,
    stem_kernel: int,
    stem_pool: bool,
    residual_gain: float = 1.0,
    name: str = "resnet18",
    seed: int = 0,
) -> int:
    """Write the model to `path` (input "image" float32 1x3xSxS, output "logits" 1x1000) and
    return its parameter count.

    The stem is a stride-2 `stem_kernel` convolution with Relu, followed by a 3x3 stride-2 max
    pool when `stem_pool` (torchvision's ResNet-18 has a 7x7 stem and the pool). The first block
    of every stage after the first has stride 2; a block whose stride or width changes takes its
    shortcut through a 1x1 convolution. Each convolution has a bias (BatchNorm folded in), and
    the second convolution of a block has its weights scaled by `residual_gain`, which keeps
    activations at a sensible scale through the residual adds of a deep, untrained network.
    Weights are drawn from one generator seeded with `seed`, convolution by convolution in
    graph order (weights, then bias), then the classifier.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes: list[Any] = []
    weights: list[Any] = []

    def conv(x: str, cin: int, cout: int, kernel: int, stride: int, relu: bool, gain: float = 1.0) -> str:
        index = len(weights) // 2
        w = rng.standard_normal((cout, cin, kernel, kernel)) * np.sqrt(2.0 / (cin * kernel * kernel)) * gain
        b = rng.standard_normal(cout) * 0.01
        weights.append(numpy_helper.from_array(w.astype(np.float32), f"conv{index}.weight"))
        weights.append(numpy_helper.from_array(b.astype(np.float32), f"conv{index}.bias"))
        out = f"conv{index}"
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"conv{index}.weight", f"conv{index}.bias"],
                [out],
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[kernel // 2] * 4,
            )
        )
        if not relu:
            return out
        nodes.append(helper.make_node("Relu", [out], [f"{out}.relu"]))
        return f"{out}.relu"

    x, cin = conv("image", 3, widths[0], stem_kernel, 2, relu=True), widths[0]
    if stem_pool:
        nodes.append(helper.make_node("MaxPool", [x], ["stem"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4))
        x = "stem"
    for stage, cout in enumerate(widths):
        for block in range(2):
            stride = 2 if block == 0 and stage > 0 else 1
            y = conv(x, cin, cout, 3, stride, relu=True)
            y = conv(y, cout, cout, 3, 1, relu=False, gain=residual_gain)
            shortcut = x if stride == 1 and cin == cout else conv(x, cin, cout, 1, stride, relu=False)
            block_name = f"stage{stage}.block{block}"
            nodes.append(helper.make_node("Add", [y, shortcut], [f"{block_name}.add"]))
            nodes.append(helper.make_node("Relu", [f"{block_name}.add"], [block_name]))
            x, cin = block_name, cout
    fc = rng.standard_normal((CLASSES, cin)) * np.sqrt(1.0 / cin)
    weights.append(numpy_helper.from_array(fc.astype(np.float32), "fc.weight"))
    weights.append(numpy_helper.from_array(np.zeros(CLASSES, np.float32), "fc.bias"))
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, image_size, image_size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="slipway-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return sum(int(np.prod(tensor.dims)) for tensor in weights)
