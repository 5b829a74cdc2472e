"""Where the server URL and the API token come from.

Precedence, for every command: the `--url` flag, then the environment (`SLIPWAY_URL`,
`SLIPWAY_TOKEN`, `SLIPWAY_TOKEN_FILE`), then the config file that `slipway login` writes
(`$SLIPWAY_CONFIG`, or ~/.config/slipway/config.json, mode 0600). There is no token flag:
a token given as an argument would end up in shell history and process listings.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from slipway_cli.errors import CliError

DEFAULT_CONFIG = "~/.config/slipway/config.json"

LOGIN_HINT = "run `slipway login` or set SLIPWAY_TOKEN"


@dataclass(frozen=True)
class Settings:
    """The server to talk to and the token to use, each with where it came from (for messages)."""

    url: str
    url_source: str
    token: str | None
    token_source: str | None


def config_path(env: Mapping[str, str]) -> Path:
    return Path(env.get("SLIPWAY_CONFIG") or DEFAULT_CONFIG).expanduser()


def read_config(path: Path) -> dict[str, str]:
    """The config file's settings; empty when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CliError(f"Can't read the config file {path}: {exc.strerror}. Fix its permissions or delete it.") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CliError(
            f"The config file {path} is not valid JSON ({exc}). Delete it and run `slipway login` again."
        ) from exc
    if not isinstance(data, dict):
        raise CliError(f"The config file {path} should hold a JSON object. Delete it and run `slipway login` again.")
    return {key: value for key, value in data.items() if isinstance(value, str)}


def normalize_url(url: str, source: str) -> str:
    """The server's base URL without a trailing slash or /api/v1; refused unless http(s)."""
    url = url.strip().rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(
            f"The server URL from {source} is '{url}'; it should look like https://slipway.example.com "
            "(http:// or https:// and a host name)."
        )
    return url


def _token_from_file(path_text: str) -> str:
    path = Path(path_text).expanduser()
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CliError(f"SLIPWAY_TOKEN_FILE names {path}, which can't be read: {exc.strerror}.") from exc
    if not token:
        raise CliError(f"SLIPWAY_TOKEN_FILE names {path}, which is empty; put the API token in it.")
    return token


def resolve(url_flag: str | None, env: Mapping[str, str]) -> Settings:
    """The settings for this run; a CliError saying what to set when there is no server URL."""
    path = config_path(env)
    # Read only when the flags and environment leave something open: a CI job that sets
    # both never depends on a stray config file.
    has_token = bool(env.get("SLIPWAY_TOKEN") or env.get("SLIPWAY_TOKEN_FILE"))
    saved = read_config(path) if not ((url_flag or env.get("SLIPWAY_URL")) and has_token) else {}
    if url_flag:
        url, url_source = url_flag, "--url"
    elif env.get("SLIPWAY_URL"):
        url, url_source = env["SLIPWAY_URL"], "SLIPWAY_URL"
    elif saved.get("url"):
        url, url_source = saved["url"], f"the config file {path}"
    else:
        raise CliError(
            "No Slipway server given: pass --url https://slipway.example.com, set SLIPWAY_URL, "
            "or run `slipway login --url ...` once."
        )
    token: str | None
    if env.get("SLIPWAY_TOKEN"):
        token, token_source = env["SLIPWAY_TOKEN"].strip(), "SLIPWAY_TOKEN"
    elif env.get("SLIPWAY_TOKEN_FILE"):
        token, token_source = _token_from_file(env["SLIPWAY_TOKEN_FILE"]), "SLIPWAY_TOKEN_FILE"
    elif saved.get("token"):
        token, token_source = saved["token"], f"the config file {path}"
    else:
        token, token_source = None, None
    return Settings(normalize_url(url, url_source), url_source, token, token_source)


def is_private(path: Path) -> bool:
    """Whether only the owner may read the file (no group or other permission bits)."""
    try:
        return not (path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return True


def write_config(path: Path, url: str, token: str) -> None:
    """Save the URL and token, readable by the owner only (0600), replacing the file atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".config-", suffix=".json", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            json.dump({"url": url, "token": token}, out, indent=2)
            out.write("\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
