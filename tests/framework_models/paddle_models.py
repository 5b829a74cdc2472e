"""Build PaddlePaddle inference models for the Paddle importer's tests, with Paddle itself.

Run with the Paddle environment's interpreter (Slipway's own environment has no Paddle):

    <framework-envs>/paddle/bin/python tests/framework_models/paddle_models.py KIND OUT_DIR

writes OUT_DIR/KIND.zip holding what `paddle.jit.save` writes for an inference model: the
program (`inference.json`, Paddle 3's PIR format, or `inference.pdmodel` for `small_legacy`)
and its weights (`inference.pdiparams`). Weights are seeded (paddle.seed) so a kind is the
same model on every run, and nothing is downloaded (no pretrained weights).

Kinds:
- resnet: paddle.vision.models.resnet18 on [batch, 3, 224, 224] (batch dynamic).
- small: a tiny CNN on [batch, 3, 32, 32] (convs, pools, linear, softmax); fast, for integration tests.
- small_legacy: the same network saved in the old ProgramDesc format (`.pdmodel`), as Paddle 2 did.
- control_flow: a data-dependent `while` loop that collects one tensor per step in a tensor
  array (the pattern of a decoder). paddle2onnx 2.1 converts plain `while`/`if` ops, but this
  one it turns into an ONNX graph the checker rejects, so the importer must refuse it.
- unsupported_op: a model using `paddle.linalg.svd`, an operator paddle2onnx has no mapper for.
- mismatch: small's program zipped with the weights of another model (different shapes).
"""

from __future__ import annotations

import os
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

# Paddle reads the program format at import: with PIR off, jit.save writes the old ProgramDesc (.pdmodel).
os.environ.setdefault("FLAGS_enable_pir_api", "0" if len(sys.argv) > 1 and sys.argv[1] == "small_legacy" else "1")

import paddle
from paddle.static import InputSpec

SEED = 20240601


class SmallNet(paddle.nn.Layer):
    """Three convs, two pools, a linear layer and softmax: small enough to convert and run in a second."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = paddle.nn.Conv2D(3, 8, 3, padding=1)
        self.conv2 = paddle.nn.Conv2D(8, 16, 3, padding=1)
        self.conv3 = paddle.nn.Conv2D(16, 16, 3, padding=1)
        self.pool = paddle.nn.MaxPool2D(2)
        self.avg = paddle.nn.AvgPool2D(2)
        self.fc = paddle.nn.Linear(16 * 8 * 8, classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.pool(paddle.nn.functional.relu(self.conv1(x)))
        x = paddle.nn.functional.relu(self.conv2(x))
        x = self.avg(paddle.nn.functional.relu(self.conv3(x)))
        return paddle.nn.functional.softmax(self.fc(paddle.flatten(x, 1)), axis=-1)


class OtherNet(paddle.nn.Layer):
    """A different network whose weights don't fit SmallNet's program (for `mismatch`)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = paddle.nn.Conv2D(3, 4, 5, padding=2)
        self.fc = paddle.nn.Linear(4 * 16 * 16, 3)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = paddle.nn.functional.max_pool2d(paddle.nn.functional.relu(self.conv1(x)), 2)
        return self.fc(paddle.flatten(x, 1))


class DecodeLoop(paddle.nn.Layer):
    """Steps a linear layer as many times as the input's magnitude says (a data-dependent trip
    count), writing each step into a tensor array, and returns the last step: the shape of a
    greedy decoder, and a `while` with a tensor array that paddle2onnx can't export correctly."""

    def __init__(self) -> None:
        super().__init__()
        self.step = paddle.nn.Linear(8, 8)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        steps = paddle.tensor.create_array("float32")
        i = paddle.zeros([1], "int64")
        n = paddle.clip(paddle.cast(paddle.sum(paddle.abs(x)), "int64"), 1, 16)
        while i < n:
            x = paddle.tanh(self.step(x))
            paddle.tensor.array_write(x, i, steps)
            i = i + 1
        return paddle.tensor.array_read(steps, i - 1)


class SvdNet(paddle.nn.Layer):
    """A linear layer followed by singular values: pd_op.svd has no paddle2onnx mapper."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = paddle.nn.Linear(4, 4)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        _, singular, _ = paddle.linalg.svd(self.fc(x))
        return singular


def _save(layer: paddle.nn.Layer, spec: list[InputSpec], folder: Path) -> None:
    layer.eval()
    paddle.jit.save(layer, str(folder / "inference"), input_spec=spec)


def _small(folder: Path) -> None:
    paddle.seed(SEED)
    _save(SmallNet(), [InputSpec([-1, 3, 32, 32], "float32", "x")], folder)


def _resnet(folder: Path) -> None:
    paddle.seed(SEED)
    model = paddle.vision.models.resnet18(pretrained=False, num_classes=1000)
    _save(model, [InputSpec([-1, 3, 224, 224], "float32", "image")], folder)


def _control_flow(folder: Path) -> None:
    paddle.seed(SEED)
    _save(DecodeLoop(), [InputSpec([1, 8], "float32", "x")], folder)


def _unsupported_op(folder: Path) -> None:
    paddle.seed(SEED)
    _save(SvdNet(), [InputSpec([3, 4], "float32", "x")], folder)


def _mismatch(folder: Path) -> None:
    """SmallNet's program with OtherNet's weights, under the names Paddle would look for."""
    _small(folder)
    with tempfile.TemporaryDirectory() as other:
        paddle.seed(SEED + 1)
        _save(OtherNet(), [InputSpec([-1, 3, 32, 32], "float32", "x")], Path(other))
        (folder / "inference.pdiparams").write_bytes((Path(other) / "inference.pdiparams").read_bytes())


KINDS: dict[str, Callable[[Path], None]] = {
    "resnet": _resnet,
    "small": _small,
    "small_legacy": _small,
    "control_flow": _control_flow,
    "unsupported_op": _unsupported_op,
    "mismatch": _mismatch,
}


def build(kind: str, out_dir: Path) -> Path:
    """Save the kind's model with Paddle and zip the inference files (no folders in the zip)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{kind}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        KINDS[kind](folder)
        members = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".pdmodel", ".pdiparams"))
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in members:
                archive.write(path, path.name)
    return target


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in KINDS:
        print(f"usage: {argv[0]} {{{','.join(KINDS)}}} OUT_DIR", file=sys.stderr)
        return 2
    print(build(argv[1], Path(argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
