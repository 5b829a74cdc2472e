"""models list, approve/reject, deploy/rollback and the help text.

deploy and rollback are checked only against the deployment API's agreed contract (POST
/api/v1/deployments/, GET /api/v1/deployments/{id}/, ?model=&target=&status=live, POST
.../rollback/): the server side is being built separately."""

from __future__ import annotations

import pytest

from slipway_cli.main import build_parser, main
from tests.cli.fake_api import FakeApi, Reply

MODELS = [
    {
        "id": 2,
        "team": "vision",
        "name": "Fraud scorer",
        "slug": "scorer",
        "created_at": "2025-03-01T10:00:00Z",
        "latest_version": {"id": 17, "number": 3, "status": "ready", "created_at": "2025-03-04T09:30:00Z"},
    },
    {
        "id": 1,
        "team": "fraud",
        "name": "Empty",
        "slug": "empty",
        "created_at": "2025-02-01T10:00:00Z",
        "latest_version": None,
    },
]


def test_models_list_follows_pages_and_prints_a_table(api: FakeApi, cli):
    def models(request):
        if request.query.get("cursor") == "p2":
            return (200, {"next": None, "previous": None, "results": MODELS[1:]})
        return (200, {"next": f"{api.url}/api/v1/models/?cursor=p2", "previous": None, "results": MODELS[:1]})

    api.add("GET", "/api/v1/models/", models)
    result = cli("models", "list")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "TEAM    MODEL   NAME          LATEST      STATUS  UPDATED",
        "fraud   empty   Empty         -           -       2025-02-01 10:00",
        "vision  scorer  Fraud scorer  v3 (id 17)  ready   2025-03-04 09:30",
    ]
    result = cli("models", "list", "--team", "vision", "--json")
    assert api.requests[-2].query == {"team": "vision"}
    assert '"slug": "scorer"' in result.out


def test_approve_sends_comment_and_override_reason(api: FakeApi, cli):
    decision = {
        "id": 5,
        "version_id": 17,
        "kind": "approve",
        "actor": "april",
        "evidence_sha256": "5612ab1fa600ec49",
        "gates_passed": False,
        "override_reason": "latency gate is for the old SLA",
    }
    api.add("POST", "/api/v1/versions/17/approve/", Reply(201, decision))
    result = cli("approve", "17", "--comment", "checked", "--override-reason", "latency gate is for the old SLA")
    assert result.code == 0, result.err
    assert api.requests[-1].json() == {"comment": "checked", "override_reason": "latency gate is for the old SLA"}
    assert (
        "Approved version 17: decision 5 by april (a gate failed; override: latency gate is for the old SLA)"
        in result.out
    )


def test_a_refused_approval_exits_2_with_the_reason(api: FakeApi, cli):
    message = "Version 3 fails its gates: p99 tiny (x86-cpu): over. To approve it anyway, give an override_reason."
    api.add(
        "POST", "/api/v1/versions/17/approve/", Reply(409, {"code": "gates_failed", "message": message, "fields": {}})
    )
    result = cli("approve", "17")
    assert result.code == 2 and message in result.err


def test_reject_needs_a_comment(api: FakeApi, cli):
    with pytest.raises(SystemExit) as usage:
        cli("reject", "17")
    assert usage.value.code == 2
    api.add("POST", "/api/v1/versions/17/reject/", Reply(201, {"id": 6, "actor": "april", "gates_passed": True}))
    result = cli("reject", "17", "--comment", "accuracy too low on the new data")
    assert result.code == 0 and "Rejected version 17" in result.out
    assert api.requests[-1].json() == {"comment": "accuracy too low on the new data"}


def _deployment(status: str, **extra) -> dict:
    return {
        "id": 7,
        "status": status,
        "status_reason": extra.pop("status_reason", ""),
        "target": "prod-triton",
        "version": 17,
        "model": "scorer",
        "variant": "ort-opt-basic",
        **extra,
    }


def test_deploy_posts_the_contract_body_and_waits_until_live(api: FakeApi, cli):
    api.add("GET", "/api/v1/models/scorer/versions/", (200, {"next": None, "results": [{"id": 17, "number": 3}]}))
    api.add("POST", "/api/v1/deployments/", Reply(202, _deployment("pending")))
    api.add("GET", "/api/v1/deployments/7/", (200, _deployment("pushing")), (200, _deployment("live")))
    result = cli(
        "deploy", "scorer:3", "--target", "prod-triton", "--variant", "ort-opt-basic", "--profile", "x86-cpu", "--wait"
    )
    assert result.code == 0, result.err
    (post,) = api.calls("POST", "/api/v1/deployments/")
    assert post.json() == {"version": 17, "target": "prod-triton", "variant": "ort-opt-basic", "profile": "x86-cpu"}
    assert post.headers["content-type"] == "application/json"
    assert "deployment 7: scorer version 17 (ort-opt-basic) on prod-triton: pushing" in result.err
    assert "deployment 7: scorer version 17 (ort-opt-basic) on prod-triton is live." in result.out


def test_deploy_without_options_sends_only_version_and_target(api: FakeApi, cli):
    api.add("POST", "/api/v1/deployments/", Reply(202, _deployment("pending")))
    result = cli("deploy", "17", "--target", "prod-triton")
    assert result.code == 0
    assert api.requests[-1].json() == {"version": 17, "target": "prod-triton"}
    assert "Requested deployment 7" in result.out and "it is pending" in result.out


def test_a_failed_deployment_exits_1_with_its_reason(api: FakeApi, cli):
    api.add("POST", "/api/v1/deployments/", Reply(202, _deployment("pending")))
    api.add("GET", "/api/v1/deployments/7/", (200, _deployment("failed", status_reason="smoke inference returned NaN")))
    result = cli("deploy", "17", "--target", "prod-triton", "--wait")
    assert result.code == 1
    assert "is failed: smoke inference returned NaN" in result.err


def test_deploy_wait_times_out_with_2(api: FakeApi, cli):
    api.add("POST", "/api/v1/deployments/", Reply(202, _deployment("pending")))
    api.add("GET", "/api/v1/deployments/7/", (200, _deployment("pushing")))
    result = cli("deploy", "17", "--target", "prod-triton", "--wait", "--timeout", "0.1")
    assert result.code == 2 and "Timed out after 0.1 s waiting for deployment 7; it is pushing" in result.err


def test_rollback_finds_the_live_deployment_and_rolls_it_back(api: FakeApi, cli):
    api.add("GET", "/api/v1/deployments/", (200, {"next": None, "results": [_deployment("live")]}))
    api.add("POST", "/api/v1/deployments/7/rollback/", Reply(202, {**_deployment("pending"), "id": 8, "version": 12}))
    api.add("GET", "/api/v1/deployments/8/", (200, {**_deployment("live"), "id": 8, "version": 12}))
    result = cli("rollback", "--model", "scorer", "--target", "prod-triton", "--team", "vision", "--wait")
    assert result.code == 0, result.err
    (query,) = api.calls("GET", "/api/v1/deployments/")
    assert query.query == {"model": "scorer", "target": "prod-triton", "status": "live", "team": "vision"}
    (post,) = api.calls("POST", "/api/v1/deployments/7/rollback/")
    assert post.body in (b"", b"null")
    assert "deployment 8: scorer version 12 (ort-opt-basic) on prod-triton is live." in result.out


def test_rollback_with_nothing_live_or_several_live(api: FakeApi, cli):
    api.add("GET", "/api/v1/deployments/", (200, []))
    result = cli("rollback", "--model", "scorer", "--target", "prod-triton")
    assert result.code == 2 and "No live deployment of scorer on prod-triton" in result.err

    api.add("GET", "/api/v1/deployments/", (200, [_deployment("live"), {**_deployment("live"), "id": 9}]))
    result = cli("rollback", "--model", "scorer", "--target", "prod-triton")
    assert (
        result.code == 2
        and "several live deployments on prod-triton (7, 9)" in result.err
        and "--deployment" in result.err
    )
    assert api.calls("POST") == []


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["login"],
        ["models", "list"],
        ["push"],
        ["pull"],
        ["report"],
        ["compare"],
        ["gate"],
        ["approve"],
        ["reject"],
        ["deploy"],
        ["rollback"],
    ],
)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"], env={})
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: slipway")
    if command in (["push"], ["pull"], ["gate"], ["deploy"], ["report"], ["compare"], []):
        assert "exit codes:" in text


def test_the_parser_knows_every_command():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    assert set(commands.choices) == {
        "login",
        "models",
        "push",
        "pull",
        "report",
        "compare",
        "gate",
        "approve",
        "reject",
        "deploy",
        "rollback",
    }
