"""Fuzz target (b): ONNX inspection (header scan, protobuf parse, external data checks, the
checker, shape inference, op and parameter counts, FLOPs) on mutants of small valid models
from `seeds.model_seeds`. Anything but a ModelError is a bug; so is a hang or a blow-up.

Run: python -m tests.fuzz.fuzz_inspection CORPUS_DIR -max_total_time=20 -max_len=8192
"""

from __future__ import annotations

import json

import atheris

from tests.fuzz.harness import run, scratch_file

with atheris.instrument_imports(include=["workers"]):
    from workers.engine.errors import ModelError
    from workers.engine.inspection import inspect_model


def test_one_input(data: bytes) -> None:
    path = scratch_file(data, "model.onnx")
    try:
        report = inspect_model(path)
    except ModelError:
        return
    # What the worker stores: it must serialize.
    json.dumps(report.to_dict())


if __name__ == "__main__":
    run(test_one_input)
