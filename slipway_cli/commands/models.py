"""`slipway models list`: the models of your teams and their latest versions."""

from __future__ import annotations

import argparse

from slipway_cli.context import Context
from slipway_cli.errors import ExitCode
from slipway_cli.output import table, write_json

HELP = "list the models of your teams"


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("models", help="models of your teams (see: slipway models list --help)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        parents=[common],
        help=HELP,
        description="List the models of your teams, each with its latest version and that version's status.",
    )
    listing.add_argument("--team", help="only this team's models (team slug)")
    listing.add_argument("--json", action="store_true", help="print the API's model objects as JSON")
    listing.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client(args)
    models = list(client.get_all("models/", {"team": args.team}))
    if args.json:
        write_json(models, ctx.out)
        return ExitCode.OK
    if not models:
        where = f"team {args.team}" if args.team else "your teams"
        ctx.out.write(f"No models in {where} yet. Upload one with: slipway push FILE --model NAME\n")
        return ExitCode.OK
    rows = []
    for model in sorted(models, key=lambda m: (str(m.get("team")), str(m.get("slug")))):
        latest = model.get("latest_version") or {}
        rows.append(
            [
                str(model.get("team") or ""),
                str(model.get("slug") or ""),
                str(model.get("name") or ""),
                f"v{latest['number']} (id {latest['id']})" if latest else "-",
                str(latest.get("status") or "-"),
                str(latest.get("created_at") or model.get("created_at") or "")[:16].replace("T", " "),
            ]
        )
    ctx.out.write("\n".join(table(["TEAM", "MODEL", "NAME", "LATEST", "STATUS", "UPDATED"], rows)) + "\n")
    return ExitCode.OK
