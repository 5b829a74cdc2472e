"""Fuzz target (c): the input-signature parser on JSON, as the upload form passes it.

The first byte picks the mode: raw JSON text (the seeds), or a JSON value built from the
bytes (lists, dicts, strings, numbers, nulls nested a few deep). A ModelError is the only
acceptable refusal; an accepted signature must round-trip through specs_to_json and JSON.

Run: python -m tests.fuzz.fuzz_signature CORPUS_DIR -max_total_time=20 -max_len=4096
"""

from __future__ import annotations

import json
from typing import Any

import atheris

from tests.fuzz.harness import run

with atheris.instrument_imports(include=["workers"]):
    from workers.engine.errors import ModelError
    from workers.engine.signature import parse_input_specs, specs_to_json

_KEYS = ("name", "shape", "dtype", "batch", "")


def _value(fdp: atheris.FuzzedDataProvider, depth: int) -> Any:
    kind = fdp.ConsumeIntInRange(0, 7 if depth < 4 else 4)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeInt(8)
    if kind == 3:
        return fdp.ConsumeRegularFloat()
    if kind == 4:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 80))
    if kind in (5, 6):
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 20))]
    keys = [
        fdp.PickValueInList(list(_KEYS)) or fdp.ConsumeUnicodeNoSurrogates(8)
        for _ in range(fdp.ConsumeIntInRange(0, 4))
    ]
    return {key: _value(fdp, depth + 1) for key in keys}


def test_one_input(data: bytes) -> None:
    if not data:
        return
    if data[0] % 2 == 0:
        try:
            value = json.loads(data[1:].decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return
    else:
        value = _value(atheris.FuzzedDataProvider(data[1:]), 0)
    try:
        specs = parse_input_specs(value)
    except ModelError as exc:
        assert exc.code == "invalid_inputs" and exc.message.startswith("The input signature is not valid"), exc
        return
    again = parse_input_specs(json.loads(json.dumps(specs_to_json(specs))))
    assert again == specs, (specs, again)


if __name__ == "__main__":
    run(test_one_input)
