"""Self-confinement (workers/engine/confine.py), as Triton's python stub applies it before it
opens a variant: each line of what the process can still do, proven in a child process (the
confinement is for good, so never in pytest's own)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workers.engine import confine
from workers.engine.isolation import IsolationUnavailable

REPO = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent(
    """
    import ctypes, json, os, socket, sys
    sys.path.insert(0, sys.argv[1])
    from workers.engine.confine import confine_self
    model, secret, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
    outcome = {"confinement": confine_self([model])}

    def attempt(name, action):
        try:
            action()
            outcome[name] = "ok"
        except OSError as exc:
            outcome[name] = f"refused: {exc.strerror}"

    attempt("read_model", lambda: open(os.path.join(model, "model.onnx")).read())
    attempt("read_secret", lambda: open(secret).read())
    attempt("read_passwd", lambda: open("/etc/passwd").read())
    attempt("read_checkout", lambda: open(os.path.join(sys.argv[1], "pyproject.toml")).read())
    attempt("other_process", lambda: open("/proc/1/environ", "rb").read())
    attempt("own_process", lambda: open("/proc/self/status").read())
    attempt("write_model", lambda: open(os.path.join(model, "planted"), "w").write("x"))
    attempt("shm", lambda: open("/dev/shm/slipway-confine-test", "w").write("x"))
    attempt("connect", lambda: socket.create_connection(("127.0.0.1", port), timeout=2))
    libc = ctypes.CDLL(None, use_errno=True)
    outcome["ptrace"] = libc.ptrace(0, 0, None, None) == 0 or f"refused: errno {ctypes.get_errno()}"
    import numpy  # code on the Python path still imports
    outcome["numpy"] = numpy.__version__
    print(json.dumps(outcome))
    """
)


@pytest.mark.skipif(confine.landlock_abi() < 1, reason="this kernel has no Landlock")
def test_a_confined_process_reads_its_model_and_code_and_nothing_else(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.onnx").write_text("the variant")
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        completed = subprocess.run(
            [sys.executable, "-c", PROBE, str(REPO), str(model), str(secret), str(server.getsockname()[1])],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert completed.returncode == 0, completed.stderr
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome["confinement"].startswith("confined: Landlock ABI")
    assert outcome["read_model"] == "ok" and outcome["own_process"] == "ok" and outcome["shm"] == "ok"
    for refused in ("read_secret", "read_passwd", "read_checkout", "other_process", "write_model"):
        assert outcome[refused].startswith("refused"), (refused, outcome)
    if confine.landlock_abi() >= 4:
        assert outcome["connect"].startswith("refused"), outcome
    assert outcome["ptrace"] == "refused: errno 1"
    assert outcome["numpy"]
    assert not (model / "planted").exists()


def test_without_landlock_it_fails_closed_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(confine, "landlock_abi", lambda: 0)
    with pytest.raises(IsolationUnavailable) as info:
        confine.confine_self(["/nonexistent"])
    assert "Landlock" in str(info.value) and "SLIPWAY_SANDBOX_ISOLATION=limits" in str(info.value)
    monkeypatch.setenv("SLIPWAY_SANDBOX_ISOLATION", "limits")
    assert confine.confine_self(["/nonexistent"]).startswith("not confined")
