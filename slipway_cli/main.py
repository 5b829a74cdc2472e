"""The `slipway` command: argument parsing, and turning failures into a sentence and an exit code."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from slipway_cli import __version__
from slipway_cli.commands import compare, decide, deploy, gate, login, models, pull, push, report
from slipway_cli.context import Context
from slipway_cli.errors import CliError, ExitCode

DESCRIPTION = """\
Slipway from the command line and CI pipelines: upload a model, follow its pipeline,
read its report, compare it with another version, fail a build on its gates, approve,
deploy and roll back."""

EPILOG = """\
configuration (first found wins):
  server URL   --url, then SLIPWAY_URL, then the config file
  API token    SLIPWAY_TOKEN, then SLIPWAY_TOKEN_FILE (a file holding it), then the
               config file; `slipway login` writes the config file ($SLIPWAY_CONFIG, or
               ~/.config/slipway/config.json). The token is never printed.
  SLIPWAY_POLL_SECONDS  how often --wait asks the server (default 2)

exit codes:
  0    success: done, ready, every gate passes, live
  1    a definite no: a gate fails, the pipeline failed, the deployment failed
  2    error: bad usage, API or connection error, timeout, version not finished
  130  interrupted (Ctrl-C)

Results go to stdout; progress, warnings and errors go to stderr.
Run `slipway COMMAND --help` for a command's options."""


def build_parser() -> argparse.ArgumentParser:
    # Options every command takes, accepted after the command name: `slipway push --url ...`.
    # SUPPRESS: a subcommand's unset --url must not overwrite one given before the command.
    url_help = "Slipway server, e.g. https://slipway.example.com (or SLIPWAY_URL)"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", metavar="URL", default=argparse.SUPPRESS, help=url_help)
    parser = argparse.ArgumentParser(
        prog="slipway",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", metavar="URL", default=argparse.SUPPRESS, help=url_help)
    parser.add_argument("--version", action="version", version=f"slipway {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (login, models, push, pull, report, compare, gate, decide, deploy):
        module.add_parser(commands, common)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one command; returns its exit code (the console script exits with it)."""
    ctx = Context(
        env=os.environ if env is None else env,
        stdin=stdin or sys.stdin,
        out=stdout or sys.stdout,
        err=stderr or sys.stderr,
    )
    args = build_parser().parse_args(argv)  # exits 2 with a usage message on bad arguments
    try:
        return int(args.run(args, ctx))
    except CliError as exc:
        _flush(ctx.out)
        ctx.err.write(f"slipway: {exc.message}\n")
        for line in exc.details:
            ctx.err.write(f"  {line}\n")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        ctx.err.write("\nslipway: interrupted.\n")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # `slipway models list | head`: the reader went away; nothing left to say.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the interpreter's flush at exit
        return int(ExitCode.OK)


def _flush(stream: TextIO) -> None:
    with contextlib.suppress(OSError, ValueError):  # a closed or broken stdout: stderr still gets the error
        stream.flush()


if __name__ == "__main__":
    sys.exit(main())
