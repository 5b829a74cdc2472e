"""Where the URL and token come from (flags, then env, then the config file), and `slipway login`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.cli.conftest import TOKEN, Stdin
from tests.cli.fake_api import FakeApi, Reply

TEAMS = [{"slug": "vision", "name": "Vision", "role": "data_scientist", "created_at": "2025-01-01T00:00:00Z"}]


def _config(path: Path, url: str, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": url, "token": token}))
    path.chmod(0o600)


def test_flag_beats_env_beats_config_file_for_the_url(api: FakeApi, cli, cli_env, tmp_path):
    api.add("GET", "/api/v1/models/", (200, {"next": None, "previous": None, "results": []}))
    with FakeApi() as other:
        other.add("GET", "/api/v1/models/", (200, {"next": None, "previous": None, "results": []}))
        config = Path(cli_env["SLIPWAY_CONFIG"])
        _config(config, "http://127.0.0.1:9/unused", "slw_config_token_x")

        assert cli("models", "list", "--url", other.url).code == 0  # the flag wins over SLIPWAY_URL
        assert cli("--url", other.url, "models", "list").code == 0  # also before the command
        assert len(other.calls()) == 2 and api.calls() == []

        assert cli("models", "list").code == 0  # then SLIPWAY_URL over the file
        assert len(api.calls()) == 1

        no_env_url = {k: v for k, v in cli_env.items() if k != "SLIPWAY_URL"}
        _config(config, other.url, "slw_config_token_x")
        assert cli("models", "list", env=no_env_url).code == 0  # then the config file
        assert len(other.calls()) == 3


def test_token_from_env_then_token_file_then_config_file(api: FakeApi, cli, cli_env, tmp_path):
    api.add("GET", "/api/v1/teams/", (200, TEAMS))
    api.add("GET", "/api/v1/models/", (200, []))
    config = Path(cli_env["SLIPWAY_CONFIG"])
    _config(config, api.url, "slw_from_config_file")
    token_file = tmp_path / "token"
    token_file.write_text("slw_from_token_file\n")

    def sent_token(env: dict[str, str]) -> str:
        assert cli("models", "list", env=env).code == 0
        return api.requests[-1].headers["authorization"]

    assert sent_token({**cli_env, "SLIPWAY_TOKEN_FILE": str(token_file)}) == f"Bearer {TOKEN}"
    without_token = {k: v for k, v in cli_env.items() if k != "SLIPWAY_TOKEN"}
    assert sent_token({**without_token, "SLIPWAY_TOKEN_FILE": str(token_file)}) == "Bearer slw_from_token_file"
    assert sent_token(without_token) == "Bearer slw_from_config_file"


def test_no_url_or_no_token_says_what_to_set(cli, cli_env):
    result = cli("models", "list", env={"SLIPWAY_CONFIG": cli_env["SLIPWAY_CONFIG"]})
    assert result.code == 2
    assert "No Slipway server given" in result.err and "SLIPWAY_URL" in result.err and "slipway login" in result.err

    result = cli("models", "list", env={k: v for k, v in cli_env.items() if k != "SLIPWAY_TOKEN"})
    assert result.code == 2
    assert "No API token" in result.err and "slipway login" in result.err and "SLIPWAY_TOKEN" in result.err


def test_bad_settings_are_sentences(cli, cli_env, tmp_path):
    result = cli("models", "list", env={**cli_env, "SLIPWAY_URL": "slipway.example.com"})
    assert result.code == 2 and "SLIPWAY_URL" in result.err and "https://" in result.err

    missing = tmp_path / "nope"
    env = {k: v for k, v in cli_env.items() if k != "SLIPWAY_TOKEN"}
    result = cli("models", "list", env={**env, "SLIPWAY_TOKEN_FILE": str(missing)})
    assert result.code == 2 and f"SLIPWAY_TOKEN_FILE names {missing}" in result.err

    config = Path(cli_env["SLIPWAY_CONFIG"])
    config.parent.mkdir(parents=True)
    config.write_text("{not json")
    result = cli("models", "list", env=env)
    assert result.code == 2 and "not valid JSON" in result.err and "slipway login" in result.err


def test_login_reads_the_token_from_stdin_checks_it_and_saves_it_private(api: FakeApi, cli, cli_env):
    api.add("GET", "/api/v1/teams/", (200, TEAMS))
    env = {"SLIPWAY_CONFIG": cli_env["SLIPWAY_CONFIG"]}
    result = cli("login", "--url", f"{api.url}/", env=env, stdin=Stdin(f"{TOKEN}\n"))
    assert result.code == 0, result.err
    assert "Your teams: vision (data_scientist)" in result.out
    (check,) = api.calls("GET", "/api/v1/teams/")
    assert check.headers["authorization"] == f"Bearer {TOKEN}"

    config = Path(cli_env["SLIPWAY_CONFIG"])
    assert json.loads(config.read_text()) == {"url": api.url, "token": TOKEN}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700

    # later commands use it without any environment
    api.add("GET", "/api/v1/models/", (200, []))
    assert cli("models", "list", env=env).code == 0
    assert api.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"


def test_login_prompts_without_echo_on_a_terminal(api: FakeApi, cli, cli_env, monkeypatch):
    api.add("GET", "/api/v1/teams/", (200, TEAMS))
    prompts = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or TOKEN)
    result = cli("login", "--url", api.url, env={"SLIPWAY_CONFIG": cli_env["SLIPWAY_CONFIG"]}, stdin=Stdin(tty=True))
    assert result.code == 0, result.err
    assert prompts == [f"API token for {api.url} (input hidden): "]


def test_login_with_a_refused_token_saves_nothing(api: FakeApi, cli, cli_env):
    api.add(
        "GET",
        "/api/v1/teams/",
        Reply(401, {"code": "authentication_failed", "message": "The API token is not valid.", "fields": {}}),
    )
    result = cli("login", "--url", api.url, env={"SLIPWAY_CONFIG": cli_env["SLIPWAY_CONFIG"]}, stdin=Stdin(TOKEN))
    assert result.code == 2
    assert "The API token is not valid" in result.err and "slipway login" in result.err
    assert not Path(cli_env["SLIPWAY_CONFIG"]).exists()


def test_login_refuses_an_empty_token(api: FakeApi, cli, cli_env):
    result = cli("login", "--url", api.url, env={"SLIPWAY_CONFIG": cli_env["SLIPWAY_CONFIG"]}, stdin=Stdin("\n"))
    assert result.code == 2 and "No token given" in result.err
    assert api.requests == []


def test_a_config_file_others_can_read_is_warned_about(api: FakeApi, cli, cli_env):
    api.add("GET", "/api/v1/models/", (200, []))
    config = Path(cli_env["SLIPWAY_CONFIG"])
    _config(config, api.url, TOKEN)
    config.chmod(0o644)
    result = cli("models", "list", env={"SLIPWAY_CONFIG": str(config)})
    assert result.code == 0
    assert f"chmod 600 {config}" in result.err


def test_a_ci_job_with_url_and_token_set_ignores_a_broken_config_file(api: FakeApi, cli, cli_env):
    api.add("GET", "/api/v1/models/", (200, []))
    config = Path(cli_env["SLIPWAY_CONFIG"])
    config.parent.mkdir(parents=True)
    config.write_text("{broken")
    assert cli("models", "list").code == 0
