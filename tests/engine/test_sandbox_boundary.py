"""The sandbox is a boundary (docs/adr/0008-sandbox.md): one test per line of what a model can
and cannot see or do. The attacks run as code inside the real sandboxed child (the selftest
entry point's `attempt`), and as real model files that try the same through a framework."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from workers.engine import isolation
from workers.engine.errors import ModelError
from workers.engine.sandbox import SandboxError, SandboxLimits, output_file, run_in_sandbox

LIMITS = SandboxLimits(memory_bytes=2**30, timeout_seconds=60)
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    isolation.isolation_mode() != isolation.NAMESPACES, reason="the namespaced sandbox is what these tests prove"
)


def attempt(attack: str, scratch: Path, **fields: Any) -> Any:
    result, _ = run_in_sandbox(
        "selftest", {"action": "attempt", "attack": attack, **fields}, LIMITS, writable=[scratch]
    )
    return result["outcome"]


def refused(outcome: Any) -> bool:
    return isinstance(outcome, str) and outcome.startswith("refused:")


@pytest.fixture()
def host_secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file of the host's that no sandboxed call is given."""
    secret = tmp_path_factory.mktemp("host") / "secret.txt"
    secret.write_text("host-secret-7f3a")
    return secret


# --- what it can see ------------------------------------------------------------------------


def test_host_files_are_not_there(tmp_path: Path, host_secret: Path) -> None:
    passwd = attempt("read", tmp_path, path="/etc/passwd")
    assert "root:" not in passwd  # a one-line passwd of the sandbox user, not the host's
    for path in ("/etc/shadow", "/etc/hostname", str(host_secret), "/root/.bashrc", str(REPO / "pyproject.toml")):
        assert refused(attempt("read", tmp_path, path=path)), path


def test_only_the_engine_code_of_the_checkout_is_visible(tmp_path: Path) -> None:
    listing = attempt("listdir", tmp_path, path=str(REPO)).removeprefix("ok: ").split()
    assert "workers" in listing
    assert not {"var", "apps", "platform", "tests", ".git", "pyproject.toml"} & set(listing), listing
    assert refused(attempt("listdir", tmp_path, path="/home")) or attempt("listdir", tmp_path, path="/home") == "ok: "


def test_other_jobs_folders_are_not_there(tmp_path: Path) -> None:
    mine, other = tmp_path / "job-1", tmp_path / "job-2"
    mine.mkdir()
    other.mkdir()
    (other / "model.onnx").write_text("another job's model")
    assert refused(attempt("read", mine, path=str(other / "model.onnx")))
    assert attempt("write", mine, path=str(mine / "out.txt")) == "ok: written"
    assert (mine / "out.txt").read_text() == "written from the sandbox"


def test_writes_land_only_in_the_scratch_folder(tmp_path: Path, host_secret: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    for path in (
        str(host_secret.parent / "planted.txt"),
        str(REPO / "workers" / "planted.py"),
        "/usr/lib/planted",
        "/etc/planted",
        "/planted",
    ):
        assert refused(attempt("write", job, path=path)), path
    assert not (host_secret.parent / "planted.txt").exists()
    assert not (REPO / "workers" / "planted.py").exists()
    # /tmp inside is private: what lands there stays in the call's scratch, not the host's /tmp.
    assert attempt("write", job, path="/tmp/slipway-sandbox-planted") == "ok: written"
    assert not Path("/tmp/slipway-sandbox-planted").exists()


def test_other_processes_are_not_listed(tmp_path: Path) -> None:
    pids = attempt("processes", tmp_path, path="").removeprefix("ok: ").split()
    assert 1 <= len(pids) <= 3, pids  # bwrap's init, the child (and its own listing)
    assert str(os.getpid()) not in pids or len(pids) <= 3


# --- what it can do -------------------------------------------------------------------------


def test_no_network_even_for_native_code(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        outcome = attempt("native_connect", tmp_path, port=server.getsockname()[1])
    assert refused(outcome) and ("unreachable" in outcome.lower() or "refused" in outcome.lower()), outcome
    assert refused(attempt("raw_socket", tmp_path))
    assert refused(attempt("packet_socket", tmp_path))


def test_no_programs_to_exec(tmp_path: Path) -> None:
    for program in ("/bin/sh", "/usr/bin/id", "/usr/bin/curl", "/sbin/ip"):
        outcome = attempt("exec", tmp_path, path=program)
        assert refused(outcome) and "FileNotFoundError" in outcome, (program, outcome)


@pytest.mark.parametrize("attack", ["ptrace", "unshare", "mount"])
def test_seccomp_refuses_what_a_model_has_no_business_doing(attack: str, tmp_path: Path) -> None:
    assert attempt(attack, tmp_path) == "refused: errno 1"  # EPERM


def test_an_unprivileged_user_with_no_capabilities_and_no_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIPWAY_SECRET_KEY", "worker-secret")
    monkeypatch.setenv("DATABASE_URL", "postgres://slipway:password@db/slipway")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    identity = attempt("identity", tmp_path)
    assert identity["uid"] != 0 and identity["euid"] != 0
    assert int(identity["cap_eff"], 16) == 0
    assert identity["seccomp"] == "2" and identity["no_new_privs"] == "1"
    assert identity["hostname"] == "sandbox"
    assert not {"SLIPWAY_SECRET_KEY", "DATABASE_URL", "AWS_SECRET_ACCESS_KEY"} & set(identity["environment"])
    assert os.environ["SLIPWAY_SECRET_KEY"] == "worker-secret"  # the worker's own is untouched


def test_a_fork_bomb_stops_at_the_process_limit_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(isolation.MAX_PROCESSES_ENV, "40")
    started = time.monotonic()
    outcome = attempt("fork_bomb", tmp_path)
    assert refused(outcome) and "Resource temporarily unavailable" in outcome, outcome
    assert time.monotonic() - started < 30
    time.sleep(0.5)
    uid = isolation._sandbox_uid() if os.geteuid() == 0 else os.geteuid()
    leftovers = [p for p in psutil.process_iter(["uids", "name"]) if p.info["uids"].real == uid and os.geteuid() == 0]
    assert not leftovers, leftovers


# --- the parent trusts nothing the child names ----------------------------------------------


def test_output_paths_named_by_the_child_are_checked(tmp_path: Path, host_secret: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    assert output_file(tmp_path / "model.onnx", tmp_path) == tmp_path / "model.onnx"
    (tmp_path / "link.onnx").symlink_to(host_secret)
    (tmp_path / "dir").symlink_to(host_secret.parent)
    for bad in (host_secret, tmp_path / "link.onnx", tmp_path / "dir" / "secret.txt", tmp_path / ".." / "x"):
        with pytest.raises(SandboxError) as info:
            output_file(bad, tmp_path)
        assert info.value.code == "engine_error"


# --- through a framework: a TorchScript model that reads host files --------------------------


def _reading_model(path: Path, target: str, size: int) -> Path:
    import torch

    class Reader(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.target, self.size = target, size  # saved in the TorchScript file

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            data = torch.from_file(self.target, shared=False, size=self.size, dtype=torch.uint8)
            return x + 1, data  # the bytes read, as an output

    scripted = torch.jit.script(Reader())
    scripted.save(str(path))
    return path


@pytest.mark.parametrize("target", ["/etc/passwd", "secret"])
def test_a_torchscript_model_reading_host_files_leaks_nothing(target: str, tmp_path: Path, host_secret: Path) -> None:
    pytest.importorskip("torch")
    name = str(host_secret) if target == "secret" else target
    size = len(host_secret.read_bytes()) if target == "secret" else 16
    job = tmp_path / "job"
    job.mkdir()
    model = _reading_model(job / "upload.pt", name, size)
    payload = {
        "source": str(model),
        "format": "pytorch-torchscript",
        "out_dir": str(job / "onnx"),
        "inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}],
    }
    try:
        report, _ = run_in_sandbox("import", payload, SandboxLimits(4 * 2**30, 180), what="the import", writable=[job])
    except (ModelError, SandboxError) as exc:
        assert exc.message and "\n" not in exc.message.strip()
    else:
        assert report["onnx_path"]
    written = b"".join(p.read_bytes() for p in job.rglob("*") if p.is_file() and not p.is_symlink())
    assert b"host-secret" not in written
    assert b"root:x:0:0" not in written


# --- failing closed -------------------------------------------------------------------------


def test_without_bubblewrap_it_fails_closed_with_a_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "_bwrap", lambda: None)
    isolation._unavailable.cache_clear()
    try:
        with pytest.raises(SandboxError) as info:
            run_in_sandbox("selftest", {"action": "echo", "value": 1}, LIMITS, writable=[tmp_path])
    finally:
        monkeypatch.undo()
        isolation._unavailable.cache_clear()
    assert info.value.code == "sandbox_unavailable"
    assert "bubblewrap" in info.value.message and "SLIPWAY_SANDBOX_ISOLATION=limits" in info.value.message


def test_the_weaker_mode_is_explicit_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(isolation.ISOLATION_ENV, "limits")
    result, _ = run_in_sandbox("selftest", {"action": "echo", "value": 2}, LIMITS, writable=[tmp_path])
    assert result == {"echo": 2}
    described = isolation.describe().to_dict()
    assert described["mode"] == "limits" and "could read the worker's files" in described["notes"][0]
    monkeypatch.setenv(isolation.ISOLATION_ENV, "none")
    with pytest.raises(SandboxError) as info:
        run_in_sandbox("selftest", {"action": "echo", "value": 3}, LIMITS, writable=[tmp_path])
    assert info.value.code == "sandbox_unavailable" and "'none' is not a sandbox mode" in info.value.message


def test_the_private_tmp_is_mounted_before_what_may_live_under_the_hosts_tmp(tmp_path: Path) -> None:
    """A checkout (with its venv) under /tmp, as a CI clone may be, stays visible inside."""
    arguments = isolation._bwrap_arguments(isolation.SandboxView.of(writable=[tmp_path]), str(tmp_path))
    destinations = [arguments[i + 2] for i, a in enumerate(arguments) if a in ("--bind", "--ro-bind")]
    assert destinations[0] == "/tmp"
    assert str(REPO / "workers") in destinations and str(tmp_path) in destinations


# --- handing files to the sandbox user --------------------------------------------------------

root_worker = pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker hands files to the sandbox user")


@root_worker
def test_a_shared_folder_is_refused_and_keeps_its_owners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model saved straight into the temp folder would hand the whole folder to `nobody`:
    another tool's private state there (a 0700 folder) would stop being that tool's."""
    import tempfile

    shared = tmp_path / "tmp"
    shared.mkdir()
    another_tool = shared / "another-tool"
    another_tool.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    model = shared / "model.onnx"
    model.write_bytes(b"not read")
    for view in (isolation.SandboxView.of(readable=[model.parent]), isolation.SandboxView.of(writable=[shared])):
        with pytest.raises(isolation.IsolationUnavailable, match=r"shared with other programs.*folder of its own"):
            isolation.prepare_view(view)
    with pytest.raises(isolation.IsolationUnavailable, match="holds Slipway's own code"):
        isolation.prepare_view(isolation.SandboxView.of(readable=[REPO.parent]))
    assert another_tool.stat().st_uid == 0 and model.stat().st_uid == 0


@root_worker
def test_a_jobs_folder_is_handed_over_but_another_users_file_in_it_stays_theirs(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir(mode=0o700)
    mine, theirs = job / "model.onnx", job / "theirs.bin"
    for path in (mine, theirs):
        path.write_bytes(b"x")
        path.chmod(0o600)
    os.chown(theirs, 4321, 4321)
    isolation.prepare_view(isolation.SandboxView.of(readable=[job]))
    sandbox_uid = isolation._sandbox_uid()
    assert job.stat().st_uid == sandbox_uid and mine.stat().st_uid == sandbox_uid
    assert theirs.stat().st_uid == 4321
