"""Build MXNet test models with MXNet itself: `<mxnet env>/bin/python mxnet_models.py KIND OUT_DIR`.

Runs with the MXNet framework environment's interpreter (MXNet 1.9 needs numpy < 1.24, which
Slipway's own environment can't have), so it imports only the standard library, numpy and
mxnet. It writes OUT_DIR/KIND.zip holding `model-symbol.json` and `model-0000.params`, the two
files `HybridBlock.export` saves and Slipway's MXNet importer takes. Weights are drawn from a
seeded generator, BatchNorm statistics included (left at 0/1 they would hide a wrong BatchNorm
translation), and nothing is downloaded (model zoo networks are built with pretrained=False).

Kinds:
- resnet: gluon's resnet18_v1 on 1x3x224x224, a real-size network for timing and parity.
- small: a tiny CNN (conv, BatchNorm, ReLU, pool, Dense, softmax) on 1x3x32x32, quick enough
  for integration tests.
- wrong_params: small's symbol with the params of a wider network whose parameters have the
  same names but other shapes, as when a user uploads the params of another training run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import zipfile
from pathlib import Path

# MXNet reads MXNET_HOME for its model zoo and data caches; keep it off the user's home so a
# build never writes there (pretrained=False means nothing is fetched anyway).
os.environ.setdefault("MXNET_HOME", tempfile.gettempdir())

import mxnet as mx
import numpy as np
from mxnet import gluon

SEED = 20240613
KINDS = ("resnet", "small", "wrong_params")


class _Softmax(gluon.HybridBlock):
    """A softmax over the class axis as a block, so the exported graph ends in a softmax node."""

    def hybrid_forward(self, F, x):
        return F.softmax(x, axis=-1)


def _small(width: int) -> gluon.HybridBlock:
    """The tiny CNN; `width` changes every layer's size but none of the parameter names."""
    net = gluon.nn.HybridSequential(prefix="small_")
    with net.name_scope():
        net.add(
            gluon.nn.Conv2D(width, kernel_size=3, padding=1),
            gluon.nn.BatchNorm(),
            gluon.nn.Activation("relu"),
            gluon.nn.MaxPool2D(pool_size=2),
            gluon.nn.Conv2D(width * 2, kernel_size=3, padding=1),
            gluon.nn.BatchNorm(),
            gluon.nn.Activation("relu"),
            gluon.nn.GlobalAvgPool2D(),
            gluon.nn.Dense(10),
            _Softmax(),
        )
    return net


def _randomize(net: gluon.HybridBlock, seed: int) -> None:
    """Give every parameter seeded values, with BatchNorm's variance and scale kept positive."""
    rng = np.random.RandomState(seed)
    for name, param in sorted(net.collect_params().items()):
        shape = param.shape
        if name.endswith(("_running_var", "_gamma")):
            values = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(("_running_mean", "_beta", "_bias")):
            values = rng.uniform(-0.2, 0.2, shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            values = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        param.set_data(mx.nd.array(values.astype(np.float32)))


def _temper(net: gluon.HybridBlock, shape: tuple[int, ...], seed: int) -> None:
    """Scale the last Dense layer so the outputs are of order 1. Random BatchNorm statistics let
    a deep network's activations grow (resnet18's logits reach hundreds), and float32 rounding
    of such logits alone would exceed an absolute parity tolerance of 1e-4."""
    sample = mx.nd.array(np.random.RandomState(seed).standard_normal(shape).astype(np.float32))
    peak = float(net(sample).abs().max().asscalar())
    if peak <= 4.0:
        return
    dense = [param for name, param in sorted(net.collect_params().items()) if "dense" in name]
    for param in dense:
        param.set_data(param.data() * (2.0 / peak))


def _built(net: gluon.HybridBlock, shape: tuple[int, ...], seed: int) -> gluon.HybridBlock:
    """Initialize (a forward pass fixes the deferred shapes), randomize and hybridize `net`."""
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros(shape))
    _randomize(net, seed)
    _temper(net, shape, seed)
    net.hybridize()
    net(mx.nd.zeros(shape))  # traces the symbol that export writes
    return net


def _export(net: gluon.HybridBlock, work: Path) -> tuple[Path, Path]:
    net.export(str(work / "model"), epoch=0)
    return work / "model-symbol.json", work / "model-0000.params"


def build(kind: str, out_dir: Path) -> Path:
    """Write OUT_DIR/KIND.zip and return its path."""
    mx.random.seed(SEED)
    np.random.seed(SEED)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if kind == "resnet":
            net = gluon.model_zoo.vision.resnet18_v1(pretrained=False, classes=1000)
            symbol, params = _export(_built(net, (1, 3, 224, 224), SEED), work)
        elif kind == "small":
            symbol, params = _export(_built(_small(8), (1, 3, 32, 32), SEED), work)
        elif kind == "wrong_params":
            symbol, _ = _export(_built(_small(8), (1, 3, 32, 32), SEED), work)
            other = work / "other"
            other.mkdir()
            _, params = _export(_built(_small(16), (1, 3, 32, 32), SEED + 1), other)
        else:
            raise SystemExit(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
        archive = out_dir / f"{kind}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(symbol, "model-symbol.json")
            zf.write(params, "model-0000.params")
    return archive


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in KINDS:
        print(f"usage: {argv[0]} {{{','.join(KINDS)}}} OUT_DIR", file=sys.stderr)
        return 2
    print(build(argv[1], Path(argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
