"""What the backends that convert models in a child process (MNN, ncnn) share.

Both run a converter on an uploaded model as a child process with a time limit, in a small
environment that cannot reach the network, read its console output as text, and turn
errors into one-line reasons for build notes. Their sessions take ONNX input names.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

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
