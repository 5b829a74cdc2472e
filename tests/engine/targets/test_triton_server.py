"""Deploying to a real Triton server (python backend, CPU): switch-over, failures and rollback as a user sees them."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.engine.targets.conftest import make_mlp, mlp_feeds, mlp_spec, reference_run
from tests.triton_server import TritonServer, free_port
from workers.engine.targets.base import DeploymentSpec, InstanceGroup, TargetError, TargetSettings
from workers.engine.targets.triton import TritonTarget
from workers.engine.targets.triton_repository import CANDIDATE_SUFFIX


def _infer(url: str, name: str, x: np.ndarray, version: str = "") -> np.ndarray:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=30)
    try:
        tensor = httpclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        return client.infer(name, [tensor], model_version=version).as_numpy("y")
    finally:
        client.close()


def _entries(server: TritonServer, name: str) -> list[str]:
    return sorted(path.name for path in server.repository.iterdir() if path.name.startswith(name))


@pytest.mark.slow
def test_a_deployed_model_answers_like_onnxruntime(
    triton_server: TritonServer, python_target: TargetSettings, tmp_path: Path
) -> None:
    model = make_mlp(tmp_path / "mlp.onnx")
    outcome = TritonTarget(python_target).deploy(mlp_spec(model, 1, name="answers"))

    assert outcome.live_version == 1 and outcome.previous_version is None
    assert outcome.candidate_smoke is not None and outcome.candidate_smoke.passed
    assert outcome.live_smoke is not None and outcome.live_smoke.compared and outcome.live_smoke.passed
    assert outcome.live_smoke.parity is not None
    assert outcome.live_smoke.parity.outputs[0].max_abs_error == pytest.approx(0.0, abs=1e-6)
    assert TritonTarget(python_target).live_versions("answers") == (1,)
    assert _entries(triton_server, "answers") == ["answers"]  # the candidate entry is gone
    # The python stub confined itself before it opened the variant (docs/adr/0008-sandbox.md).
    assert "Slipway model answers: confined: Landlock ABI" in triton_server.logs()

    # New inputs, sent concurrently so that the dynamic batcher hands several requests at once.
    feeds = mlp_feeds(count=6, batch=3)
    expected = reference_run(model, feeds)
    answers: list[Any] = [None] * len(feeds)

    def ask(index: int) -> None:
        answers[index] = _infer(triton_server.url, "answers", feeds[index]["x"])

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(len(feeds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for answer, reference in zip(answers, expected, strict=True):
        np.testing.assert_allclose(answer, reference["y"], rtol=1e-5, atol=1e-6)


class _WatchedTarget(TritonTarget):
    """Records what clients of the model got while the candidate was being smoke-tested."""

    watched: list[tuple[tuple[int, ...], np.ndarray]] | None = None

    def smoke(self, spec: DeploymentSpec, entry: str | None = None) -> Any:
        if self.watched is not None and entry and entry.endswith(CANDIDATE_SUFFIX):
            probe = mlp_feeds(count=1)[0]["x"]
            self.watched.append(
                (self.live_versions(spec.model_name), _infer(self.settings.url, spec.model_name, probe))
            )
        return super().smoke(spec, entry)


@pytest.mark.slow
def test_the_old_version_serves_until_the_new_one_passed(
    triton_server: TritonServer, python_target: TargetSettings, tmp_path: Path
) -> None:
    old_model, new_model = make_mlp(tmp_path / "v1/mlp.onnx", seed=0), make_mlp(tmp_path / "v2/mlp.onnx", seed=1)
    target = _WatchedTarget(python_target)
    target.deploy(mlp_spec(old_model, 1, name="switch"))
    target.watched = []

    probe = mlp_feeds(count=1)[0]
    old_answer, new_answer = reference_run(old_model, [probe])[0]["y"], reference_run(new_model, [probe])[0]["y"]
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def keep_asking() -> None:
        # A client that never names a version, as most don't.
        while not stop.is_set():
            try:
                answer = _infer(triton_server.url, "switch", probe["x"])
            except Exception as exc:
                failures.append(str(exc))
                continue
            seen.append(
                "v1"
                if np.allclose(answer, old_answer, atol=1e-5)
                else "v2"
                if np.allclose(answer, new_answer, atol=1e-5)
                else "?"
            )

    client = threading.Thread(target=keep_asking)
    client.start()
    try:
        outcome = target.deploy(mlp_spec(new_model, 2, name="switch"), previous_version=1)
    finally:
        stop.set()
        client.join()

    # While version 2 was on trial, version 1 alone served the model's name.
    ((live_during_trial, answer_during_trial),) = target.watched
    assert live_during_trial == (1,)
    np.testing.assert_allclose(answer_during_trial, old_answer, atol=1e-5)
    # No request failed, and answers went from version 1 to version 2 once.
    assert failures == []
    assert "?" not in seen
    assert seen and seen[0] == "v1" and seen[-1] == "v2"
    assert "".join("1" if label == "v1" else "2" for label in seen).count("21") == 0
    assert outcome.live_version == 2 and outcome.previous_version == 1
    assert target.live_versions("switch") == (2,)
    assert sorted(path.name for path in (triton_server.repository / "switch").iterdir() if path.is_dir()) == ["1", "2"]

    # Rolling back serves version 1 again, checked against its own reference; then version 2 can go.
    rolled = target.rollback("switch", 1, current_version=2, spec=mlp_spec(old_model, 1, name="switch"))
    assert rolled.live_version == 1 and rolled.live_smoke is not None and rolled.live_smoke.passed
    np.testing.assert_allclose(_infer(triton_server.url, "switch", probe["x"]), old_answer, atol=1e-5)
    with pytest.raises(TargetError) as caught:
        target.retire("switch", 1)
    assert caught.value.code == "version_live"
    target.retire("switch", 2)
    assert not (triton_server.repository / "switch" / "2").exists()


@pytest.mark.slow
def test_a_version_that_disagrees_with_its_reference_never_serves(
    triton_server: TritonServer, python_target: TargetSettings, tmp_path: Path
) -> None:
    old_model, new_model = make_mlp(tmp_path / "v1/mlp.onnx", seed=0), make_mlp(tmp_path / "v2/mlp.onnx", seed=1)
    target = TritonTarget(python_target)
    target.deploy(mlp_spec(old_model, 1, name="mismatch"))
    # Version 2's reference is version 1's: the server's answers can't match it.
    wrong = replace(mlp_spec(new_model, 2, name="mismatch"), reference_outputs=mlp_spec(old_model, 1).reference_outputs)

    with pytest.raises(TargetError) as caught:
        target.deploy(wrong, previous_version=1)

    error = caught.value
    assert error.code == "smoke_mismatch" and not error.transient
    assert "version 2 of 'mismatch' don't match the reference outputs" in error.message
    assert "Top-1 agreement on 'y'" in error.message  # the metrics that failed, by name
    assert "version 1 keeps serving" in error.message
    assert error.smoke is not None and error.smoke.parity is not None
    assert (error.smoke.parity.outputs[0].max_abs_error or 0.0) > 0.1
    assert target.live_versions("mismatch") == (1,)
    assert _entries(triton_server, "mismatch") == ["mismatch"]  # no candidate left
    assert sorted(path.name for path in (triton_server.repository / "mismatch").iterdir() if path.is_dir()) == ["1"]
    probe = mlp_feeds(count=1)[0]
    np.testing.assert_allclose(
        _infer(triton_server.url, "mismatch", probe["x"]), reference_run(old_model, [probe])[0]["y"], atol=1e-5
    )


@pytest.mark.slow
def test_a_config_triton_rejects_fails_with_tritons_words(
    triton_server: TritonServer, python_target: TargetSettings, tmp_path: Path
) -> None:
    model = make_mlp(tmp_path / "mlp.onnx")
    # This server has no GPU: Triton refuses GPU instances, which only it can know.
    spec = mlp_spec(model, 1, name="rejected", instance_group=InstanceGroup(count=1, kind="GPU"))

    with pytest.raises(TargetError) as caught:
        TritonTarget(python_target).deploy(spec)

    error = caught.value
    assert error.code == "load_rejected"
    assert "The Triton server 'test-triton' refused to load 'rejected.candidate'" in error.message
    assert "has kind KIND_GPU but no GPUs are available" in error.detail  # Triton's own text
    assert _entries(triton_server, "rejected") == []
    # Triton's strict readiness now reports the server not ready (until that name loads
    # again): health says why, and deploys, which need a live server only, still work.
    health = TritonTarget(python_target).health()
    assert health.live and not health.ready
    assert "--strict-readiness" in health.error


@pytest.mark.slow
def test_a_model_the_runtime_refuses_fails_with_its_words(
    triton_server: TritonServer, python_target: TargetSettings, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(make_mlp(tmp_path / "mlp.onnx").read_bytes()[:200])  # truncated
    spec = replace(mlp_spec(tmp_path / "mlp.onnx", 1, name="broken"), model_file=broken)

    with pytest.raises(TargetError) as caught:
        TritonTarget(python_target).deploy(spec)

    assert caught.value.code == "load_rejected"
    assert "onnxruntime" in caught.value.detail.lower() or "protobuf" in caught.value.detail.lower(), (
        caught.value.detail
    )
    assert _entries(triton_server, "broken") == []


def test_an_unreachable_server_fails_readably(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()
    settings = TargetSettings(
        name="gone", url=f"http://127.0.0.1:{free_port()}", repository=str(repository), backend_mode="python"
    )
    target = TritonTarget(settings)
    health = target.health()
    assert not health.reachable and not health.ready
    assert "Connection refused" in health.error

    with pytest.raises(TargetError) as caught:
        target.deploy(mlp_spec(make_mlp(tmp_path / "mlp.onnx"), 1))
    error = caught.value
    assert error.code == "target_unreachable" and error.transient
    assert error.message.startswith(f"Slipway can't reach the Triton server 'gone' at {settings.url}")
    assert "Check that the server is running" in error.message
    assert list(repository.iterdir()) == []  # nothing was written


@pytest.mark.slow
def test_files_slipway_did_not_write_survive_deploy_rollback_retire_and_undeploy(
    triton_server: TritonServer, python_target: TargetSettings, tmp_path: Path
) -> None:
    repository = triton_server.repository
    # There before Slipway came: a file, another model, and a model under the name Slipway will want.
    (repository / "README.txt").write_text("ops notes: do not delete")
    for name in ("someone-elses", "taken"):
        (repository / name / "1").mkdir(parents=True)
        (repository / name / "config.pbtxt").write_text(f'name: "{name}"\nbackend: "python"\n')
        (repository / name / "1" / "model.py").write_text("# hand-made\n")
    v1, v2, v3 = (make_mlp(tmp_path / f"v{n}/mlp.onnx", seed=n) for n in (1, 2, 3))
    target = TritonTarget(python_target)

    target.deploy(mlp_spec(v1, 1, name="keeper"))
    # Dropped into Slipway's entry later: a labels file and a note in version 1.
    (repository / "keeper" / "labels.txt").write_text("cat\ndog\n")
    (repository / "keeper" / "1" / "notes.txt").write_text("hand-made")
    before = {
        str(path.relative_to(repository)): path.read_bytes()
        for path in repository.rglob("*")
        if path.is_file() and (not path.is_relative_to(repository / "keeper") or path.suffix == ".txt")
    }
    target.deploy(mlp_spec(v2, 2, name="keeper"), previous_version=1)
    target.rollback("keeper", 1, current_version=2, spec=mlp_spec(v1, 1, name="keeper"))
    assert target.retire("keeper", 2) == ()
    target.deploy(mlp_spec(v3, 3, name="keeper"), previous_version=1)
    (left_in_version,) = target.retire("keeper", 1)
    assert "left what it did not write there: notes.txt" in left_in_version
    (left_in_entry,) = target.remove_model("keeper")
    assert "left what it did not write there: 1/notes.txt, labels.txt." in left_in_entry

    # The deploy of a model whose name someone else's model has is refused, and nothing changes.
    with pytest.raises(TargetError) as caught:
        target.deploy(mlp_spec(v1, 2, name="taken"))
    assert caught.value.code == "foreign_entry" and "which Slipway did not write" in caught.value.message
    assert target.remove_model("taken") == (
        f"Left 'taken' ({repository / 'taken'}) in place: Slipway did not write it.",
    )
    after = {name: (repository / name).read_bytes() for name in before if (repository / name).is_file()}
    assert after == before
    assert not (repository / "keeper" / "config.pbtxt").exists() and not (repository / "keeper" / "3").exists()
