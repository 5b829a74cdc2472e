"""What a user reads when something goes wrong: the API's own sentence, a connection problem
naming the URL, what to do about a refused token; never the token itself."""

from __future__ import annotations

import socket

from tests.cli.conftest import TOKEN
from tests.cli.fake_api import FakeApi, Reply


def test_an_api_error_body_is_printed_with_its_field_errors(api: FakeApi, cli):
    body = {
        "code": "invalid",
        "message": "comment: Ensure this field has no more than 10000 characters.",
        "fields": {"comment": ["Ensure this field has no more than 10000 characters."], "gates": {"p99": ["Bad."]}},
    }
    api.add("POST", "/api/v1/versions/17/reject/", Reply(400, body))
    result = cli("reject", "17", "--comment", "x" * 10)
    assert result.code == 2
    assert result.err.splitlines() == [
        "slipway: comment: Ensure this field has no more than 10000 characters.",
        "  comment: Ensure this field has no more than 10000 characters.",
        "  gates.p99: Bad.",
    ]
    assert result.out == ""


def test_a_refused_token_says_to_log_in_or_check_slipway_token(api: FakeApi, cli):
    api.add(
        "GET",
        "/api/v1/models/",
        Reply(
            401,
            {"code": "authentication_failed", "message": "The API token was revoked. Create a new one.", "fields": {}},
        ),
    )
    result = cli("models", "list")
    assert result.code == 2
    assert "The API token was revoked" in result.err
    assert "The server refused the API token (it came from SLIPWAY_TOKEN)" in result.err
    assert "run `slipway login` or set SLIPWAY_TOKEN" in result.err


def test_a_missing_scope_is_the_servers_sentence(api: FakeApi, cli):
    message = "This API token has the scopes read; this request needs 'approve'. Create a token with that scope."
    api.add(
        "POST", "/api/v1/versions/17/approve/", Reply(403, {"code": "token_scope", "message": message, "fields": {}})
    )
    result = cli("approve", "17")
    assert result.code == 2 and f"slipway: {message}" in result.err


def test_connection_refused_names_the_url_and_what_to_check(cli, cli_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = cli("models", "list", env={**cli_env, "SLIPWAY_URL": f"http://127.0.0.1:{port}"})
    assert result.code == 2
    assert f"Could not connect to http://127.0.0.1:{port}: connection refused" in result.err
    assert "Check the URL (--url, SLIPWAY_URL or `slipway login`)" in result.err


def test_something_that_is_not_the_api_is_named(api: FakeApi, cli):
    api.add("GET", "/api/v1/models/", Reply(200, b"<html>Sign in to the corporate proxy</html>"))
    result = cli("models", "list")
    assert result.code == 2
    assert f"{api.url} answered 200 with something that is not JSON" in result.err

    api.add("GET", "/api/v1/models/", Reply(404, b"<html>nginx</html>"))
    result = cli("models", "list")
    assert result.code == 2
    assert f"{api.url} answered 404 Not Found without a Slipway error body. Check that the URL" in result.err


def test_a_gateway_error_is_retried_for_reads(api: FakeApi, cli):
    api.add("GET", "/api/v1/models/", Reply(503, b"restarting"), (200, []))
    result = cli("models", "list")
    assert result.code == 0, result.err
    assert len(api.calls("GET", "/api/v1/models/")) == 2


def test_writes_are_not_retried_on_their_own(api: FakeApi, cli):
    api.add("POST", "/api/v1/versions/17/approve/", Reply(503, b"restarting"))
    result = cli("approve", "17")
    assert result.code == 2 and "The server may be restarting" in result.err
    assert len(api.calls("POST", "/api/v1/versions/17/approve/")) == 1


def test_the_token_goes_only_into_the_authorization_header(api: FakeApi, cli):
    api.add("GET", "/api/v1/models/", (200, []))
    assert cli("models", "list").code == 0
    (request,) = api.requests
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in request.path + str(request.query)
    assert request.headers["user-agent"].startswith("slipway-cli/")
    # (every `cli` run also asserts the token appears in neither stdout nor stderr)


def test_ambiguous_model_hints_at_team(api: FakeApi, cli):
    message = "Several of your teams have a model called 'scorer'; add ?team=<team slug> to say which."
    api.add(
        "GET",
        "/api/v1/models/scorer/versions/",
        Reply(400, {"code": "ambiguous_model", "message": message, "fields": {}}),
    )
    result = cli("report", "scorer:1")
    assert result.code == 2 and "With the CLI, pass --team TEAM." in result.err


def test_a_redirect_is_not_followed_but_explained(api: FakeApi, cli):
    api.add("GET", "/api/v1/models/", Reply(301, b"", {"Location": "https://slipway.example.com/api/v1/models/"}))
    result = cli("models", "list")
    assert result.code == 2
    assert f"{api.url} answered 301 and points to https://slipway.example.com/api/v1/models/" in result.err
    assert len(api.requests) == 1
