"""What the backends that convert models in a child process share.

MNN and ncnn run a converter on an uploaded model as a child process with a time limit, in a
small environment that cannot reach the network, read its console output as text, and turn
errors into one-line reasons for build notes. LiteRT, RKNN and ExecuTorch run theirs in a
framework environment's side module (`convert_in_side`). Their sessions take ONNX input names.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from workers.engine import framework_envs
from workers.engine.backends._onnx_graph import concrete_inputs

MAX_REASON_CHARS = 500

# Nothing listens on port 9 (discard): a client library that honours the proxy variables
# fails at once instead of reaching a remote host.
_DEAD_PROXY = "http://127.0.0.1:9"
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def converter_env(workdir: Path, inherited: Iterable[str], **settings: str) -> dict[str, str]:
    """A small environment for a converter child: no network, no home directory of the worker's user.

    Only the `inherited` variables of this process are passed on; HOME is `workdir`, every
    proxy variable points at a dead proxy, OpenMP uses one thread, and `settings` are added.
    """
    env = {key: os.environ[key] for key in inherited if key in os.environ}
    env["HOME"] = str(workdir)
    env.update(settings)
    env.update(dict.fromkeys(_PROXY_VARIABLES, _DEAD_PROXY))
    env["OMP_NUM_THREADS"] = "1"
    return env


def decode_output(data: bytes | str | None) -> str:
    """A child's captured output as text (None, from a child stopped before it wrote, is "")."""
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", "replace")


def first_line(text: str) -> str:
    """The first non-blank line of an error message, cut to a reason's length."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "unknown error")[:MAX_REASON_CHARS]


def check_inputs(input_names: Sequence[str], inputs: Mapping[str, Any]) -> None:
    """Raise ValueError naming the model's inputs that `inputs` lacks."""
    missing = [name for name in input_names if name not in inputs]
    if missing:
        raise ValueError(f"Inputs {missing} are missing; this model takes {list(input_names)}.")


def convert_in_side(
    env: str,
    runtime: str,
    model_path: Path,
    model: Any,
    out_dir: Path,
    build_folder: str,
    overrides: Mapping[str, Any],
    request: Mapping[str, Any],
) -> dict[str, Any]:
    """One "convert" of a framework environment's side module (ADR 0017): the model at concrete
    input shapes (its own, symbolic dims as 1, or `overrides`), written to `out_dir/build_folder`,
    with the backend's own `request` keys (variants, calibration...). The answer gains
    `input_shapes`, the shapes it was converted at."""
    import onnx

    shapes = concrete_inputs(model, dict(overrides), runtime)
    inputs = [
        {"name": name, "shape": list(dims), "dtype": str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))}
        for name, dims, elem_type in shapes
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{env}-side-", dir=out_dir) as scratch:
        answer = framework_envs.run_side(
            env,
            {
                "action": "convert",
                "model": {"onnx": str(model_path.resolve())},
                "out_dir": str((out_dir / build_folder).resolve()),
                "inputs": inputs,
                **request,
            },
            Path(scratch).resolve(),
        )
    answer["input_shapes"] = {item["name"]: item["shape"] for item in inputs}
    return answer
