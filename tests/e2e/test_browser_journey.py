"""A data scientist and an approver use Slipway in a real browser, against the real server and
worker: sign in, upload a model through the file input, watch the pipeline finish live, read
the op-support matrix, the benchmark plots and the graph; then the approver (invited by the
team admin on the team page, joined through the link) signs in, reads the evidence in the
review queue and approves; then deploys it to a real Triton server and reads the traffic the
server reports. Screenshots of the main pages are saved to docs/screenshots/ on the way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from apps.accounts.models import Invitation, Membership
from apps.approvals.models import Decision
from apps.deployments.models import Deployment, ServingTarget, TargetMetricSample
from apps.deployments.services import send_health_check
from apps.registry.models import ModelVersion, VersionStatus
from tests import modelzoo
from tests.conftest import client_for
from tests.e2e.conftest import SCREENSHOTS
from tests.factories import RegisteredModelFactory
from tests.finished import finished_version
from tests.integration.conftest import uploaded_and_ready, wait_for
from tests.triton_server import TritonServer, running_triton_server, triton_skip_reason

PHONE = Path(__file__).with_name("phone.mjs")
pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests"  # tests/factories.py gives every user this one
REVIEWER_PASSWORD = "a reviewer's own password"  # the invited reviewer chooses it


@pytest.fixture
def triton(tmp_path: Path) -> Iterator[TritonServer | str]:
    """A real tritonserver to deploy to, or the reason none can start here."""
    reason = triton_skip_reason()
    if reason:
        yield reason
        return
    repository = tmp_path / "repository"
    repository.mkdir()
    with running_triton_server(repository, tmp_path / "triton", metrics=True) as server:
        yield server


def test_upload_watch_read_approve_and_deploy_in_a_real_browser(personas, journey, triton, tmp_path):
    httpclient = pytest.importorskip("tritonclient.http")
    model = modelzoo.make_mlp_onnx(tmp_path / "digits.onnx")

    # The team admin invites a second reviewer on the team page and registers the serving target
    # through its form; the reviewer opens the link in a browser of their own and joins.
    where = (
        {}
        if isinstance(triton, str)
        else {"triton_url": triton.url, "repository": str(triton.repository), "metrics_url": triton.metrics_url}
    )
    found = journey("teamadmin", username=personas.admin.username, password=PASSWORD, **where)
    assert not found["console_errors"], found["console_errors"]
    assert "/app/join#code=slwinv_" in found["link"], found["link"]
    assert "Rita, the second reviewer" in found["invitations"] and "pending" in found["invitations"]
    found = journey("invitee", username="rita", password=REVIEWER_PASSWORD, link=found["link"])
    assert not found["console_errors"], found["console_errors"]
    assert "ada invites you to team" in found["invitation_text"], found["invitation_text"]
    rita = Membership.objects.select_related("user").get(user__username="rita", team=personas.team)
    assert rita.role == "approver" and "rita" in found["members"]
    assert Invitation.objects.get(team=personas.team).accepted_by == rita.user

    # The data scientist: upload by the file input, the pipeline live, the matrix and the plots.
    found = journey("scientist", username=personas.owner.username, password=PASSWORD, model=model, model_name="digits")
    assert not found["console_errors"], found["console_errors"]
    assert found["same_document"], "the page reloaded while the pipeline ran"
    assert len(found["pipeline_states_seen"]) >= 2, f"the pipeline view never changed: {found['pipeline_states_seen']}"
    version = ModelVersion.objects.get(pk=found["version_id"])
    assert version.status == VersionStatus.READY and version.model.slug == "digits"
    assert version.created_by == personas.owner
    assert found["matrix_cells"] >= 4 and found["matrix_labels"] == ["✓Supported"]
    assert found["tooltip_on_hover"] and "runs it on" in (found["tooltip_on_focus"] or "")
    assert found["problems_filter"] == "No problems: every backend runs every op type."
    titles = " | ".join(found["charts"])
    for chart in (
        "Latency percentiles per variant",
        "latency vs batch size",
        "Throughput vs concurrency",
        "Latency distribution",
    ):
        assert chart in titles, titles
    assert found["chart_svgs"] >= 4 and found["parity_rows"] >= 4
    assert found["recommendation"].startswith("Use '"), found["recommendation"]
    assert "Ready for review" in found["models_row"]
    # the graph: every node drawn, the search found the Gemm, the clicked node's details shown
    assert found["graph_nodes"] >= 3, found["graph_nodes"]
    assert found["graph_found"] and "gemm" in found["graph_found"].lower(), found["graph_found"]
    assert "Inputs" in found["graph_details"] and "float32" in found["graph_details"], found["graph_details"]
    assert found["graph_colour_by"].startswith("x86-cpu / "), found["graph_colour_by"]
    assert "Supported on" in found["graph_details"], found["graph_details"]

    # Two models finished earlier (tests/finished.py), so the list has more than one state to show.
    for name, status in (("fraud-scorer", VersionStatus.APPROVED), ("ocr-detector", VersionStatus.FAILED)):
        model = RegisteredModelFactory(team=personas.team, name=name, slug=name, created_by=personas.owner)
        finished_version(team=personas.team, uploader=personas.owner, model=model, status=status)

    # The approver: the review queue's evidence, then approve with a comment.
    found = journey("approver", username="rita", password=REVIEWER_PASSWORD, version_id=version.pk, model_name="digits")
    assert not found["console_errors"], found["console_errors"]
    version.refresh_from_db()
    assert version.status == VersionStatus.APPROVED
    decision = Decision.objects.get(version=version)
    assert decision.actor == rita.user and decision.kind == "approve" and not decision.single_reviewer
    assert decision.comment == "Parity and latency look right; approved for the x86 fleet."
    assert "Nothing waits for your review." in found["queue_after"]
    assert found["version_badge"].endswith("Approved")
    assert "rita" in found["history"]
    assert "evidence" in found["approve_dialog"], found["approve_dialog"]

    for name in (
        "team",
        "join",
        "models",
        "upload-pipeline",
        "version-page",
        "version-matrix",
        "version-benchmarks",
        "version-graph",
        "review-queue",
    ):
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000, name

    # The same pages at a phone's size (390 x 844): a menu instead of the sidebar, no page that
    # scrolls sideways, chart text that stays readable.
    phone = journey("phone", script=PHONE, username="rita", password=REVIEWER_PASSWORD, version_id=version.pk)
    assert phone["ok"], phone["problems"]
    assert (SCREENSHOTS / "phone-version.png").stat().st_size > 10_000

    # Deploy: needs a real inference server.
    if isinstance(triton, str):
        pytest.skip(f"upload, pipeline, matrix, plots and approval passed; the deploy step needs Triton: {triton}")
    target = ServingTarget.objects.get(team=personas.team, name="Local Triton")
    assert target.allow_private and target.backend_mode == "python" and target.url == triton.url
    found = journey("deployer", username="rita", password=REVIEWER_PASSWORD, model_name="digits", target=target.slug)
    assert not found["console_errors"], found["console_errors"]
    assert found["target_health"].endswith("Healthy"), found["target_health"]
    assert "smoke test" in found["deploy_dialog"], found["deploy_dialog"]
    deployment = wait_for(
        lambda: Deployment.objects.filter(version=version).first(), timeout=10, what="the deployment row"
    )
    assert found["deployment_state"].endswith("Live"), found["deployment_row"]
    deployment.refresh_from_db()
    assert deployment.status == "live" and deployment.requested_by == rita.user
    assert "digits" in found["live_card"] and "Nothing live here." not in found["live_card"]
    assert (SCREENSHOTS / "deployments.png").stat().st_size > 10_000
    assert target.options["metrics_url"] == triton.metrics_url

    # Traffic on the live deployment, between two readings of the server's counters: the first
    # by a health check asked for here, the second from the targets page; the deployments page
    # draws the rates between them.
    send_health_check(target.pk)
    wait_for(
        lambda: TargetMetricSample.objects.filter(target=target, model_name=deployment.triton_model).exists(),
        timeout=60,
        what="the health check to read the server's counters",
    )
    client = httpclient.InferenceServerClient(triton.url.removeprefix("http://"), network_timeout=30)
    try:
        for _ in range(12):
            tensor = httpclient.InferInput("input", [2, 16], "FP32")
            tensor.set_data_from_numpy(np.ones((2, 16), np.float32))
            client.infer(deployment.triton_model, [tensor])
    finally:
        client.close()
    found = journey("watcher", username="rita", password=REVIEWER_PASSWORD, target=target.slug)
    assert not found["console_errors"], found["console_errors"]
    panel = found["metrics_panel"]
    assert "target healthy" in panel and f"Triton metrics endpoint {triton.metrics_url}" in panel, panel
    assert "12 requests" in panel, panel
    assert found["metrics_charts"] == ["Requests per second", "Mean latency (ms)"], found["metrics_charts"]
    assert (SCREENSHOTS / "deployment-metrics.png").stat().st_size > 10_000

    # v2: uploaded and approved over the API; in the browser, read against the approved v1 on its
    # page, deployed in v1's place through the form, then rolled back: the dialog says v1 returns.
    second = uploaded_and_ready(personas.owner, "digits", modelzoo.make_mlp_onnx(tmp_path / "digits-v2.onnx", seed=1))
    approved = client_for(rita.user).post(
        f"/api/v1/versions/{second.pk}/approve/", {"comment": "v2 for the rollback drill"}, format="json"
    )
    assert approved.status_code == 201, approved.json()
    found = journey(
        "upgrader",
        username="rita",
        password=REVIEWER_PASSWORD,
        model_name="digits",
        target=target.slug,
        version_id=second.pk,
    )
    assert not found["console_errors"], found["console_errors"]
    assert found["previous_card"].startswith("Against approved v1"), found["previous_card"]
    assert found["upgrade_state"].endswith("Live"), found
    assert "v1" in found["rollback_dialog"] and "Roll back to v1" in found["rollback_dialog"], found["rollback_dialog"]
    assert found["rollback_state"].endswith("Live"), found["rollback_row"]
    live = Deployment.objects.get(target=target, status="live")
    assert live.version == version and live.kind == "rollback" and live.requested_by == rita.user
    assert "digits v1" in found["live_after_rollback"], found["live_after_rollback"]
    assert (SCREENSHOTS / "rollback-dialog.png").stat().st_size > 5_000
