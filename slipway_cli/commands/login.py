"""`slipway login`: check an API token against the server and save it for later commands."""

from __future__ import annotations

import argparse
import getpass

from slipway_cli.client import ApiClient
from slipway_cli.config import config_path, normalize_url, read_config
from slipway_cli.config import write_config as save
from slipway_cli.context import Context
from slipway_cli.errors import ApiError, CliError, ExitCode

HELP = "check an API token and save it with the server URL"
DESCRIPTION = """\
Save the server URL and an API token in the config file ($SLIPWAY_CONFIG, or
~/.config/slipway/config.json, readable only by you), after checking the token with the
server. The token is read from stdin when stdin is not a terminal, and asked for (without
echo) otherwise; it is never an argument, so it stays out of your shell history.

Create a token in Slipway (your account's API tokens, or POST /api/v1/tokens/) with the
scopes the commands need: read, upload (push), approve (approve, reject), deploy (deploy,
rollback).

In CI, skip login: set SLIPWAY_URL and SLIPWAY_TOKEN (or SLIPWAY_TOKEN_FILE) instead."""
EPILOG = """\
examples:
  slipway login --url https://slipway.example.com
  printf '%s' "$TOKEN" | slipway login --url https://slipway.example.com"""


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "login",
        parents=[common],
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)


def _read_token(ctx: Context, url: str) -> str:
    # Piped (`printf '%s' "$TOKEN" | slipway login`), or typed at a prompt that does not echo.
    typed = ctx.stdin.read() if not ctx.stdin.isatty() else getpass.getpass(f"API token for {url} (input hidden): ")
    token = typed.strip()
    if not token:
        raise CliError("No token given: paste the API token at the prompt, or pipe it in on stdin.")
    if any(c.isspace() for c in token):
        raise CliError("The token has spaces or line breaks in it; give the token alone (slw_...).")
    return token


def run(args: argparse.Namespace, ctx: Context) -> int:
    path = config_path(ctx.env)
    if getattr(args, "url", None):
        url, source = args.url, "--url"
    elif ctx.env.get("SLIPWAY_URL"):
        url, source = ctx.env["SLIPWAY_URL"], "SLIPWAY_URL"
    elif read_config(path).get("url"):
        url, source = read_config(path)["url"], f"the config file {path}"
    else:
        raise CliError("Give the server to log in to: slipway login --url https://slipway.example.com")
    url = normalize_url(url, source)
    token = _read_token(ctx, url)
    client = ApiClient(url, token, token_source="the token you gave")  # noqa: S106 - a label, not a secret
    warning = ""
    try:
        teams = client.get("teams/")
    except ApiError as exc:
        if exc.status != 403 or exc.code != "token_scope":
            raise
        # Authenticated, but the token may not read: still a good token for, say, deploys.
        teams = None
        warning = f"Warning: {exc.message}\n"
    save(path, url, token)
    ctx.out.write(f"Logged in to {url}; the token is saved in {path} (readable only by you).\n")
    if teams is not None:
        names = ", ".join(f"{t.get('slug')} ({t.get('role') or 'no role'})" for t in teams) or "none yet"
        ctx.out.write(f"Your teams: {names}.\n")
    ctx.err.write(warning)
    if ctx.env.get("SLIPWAY_TOKEN") or ctx.env.get("SLIPWAY_TOKEN_FILE"):
        ctx.err.write(
            "Note: SLIPWAY_TOKEN or SLIPWAY_TOKEN_FILE is set in this shell and takes precedence over "
            "the saved token.\n"
        )
    return ExitCode.OK
