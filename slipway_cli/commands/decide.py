"""`slipway approve` and `slipway reject`: record a review decision on a version."""

from __future__ import annotations

import argparse

from slipway_cli.context import Context
from slipway_cli.errors import ExitCode
from slipway_cli.output import write_json
from slipway_cli.versions import VERSION_HELP, resolve_version

EPILOG = """\
exit codes:
  0  the decision was recorded
  2  error: refused by the server (role, four-eyes rule, a failing gate without
     --override-reason, the version is not ready for review), API or connection error"""


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    approve = subparsers.add_parser(
        "approve",
        parents=[common],
        help="approve a version that is ready for review",
        description="Approve a version that is ready for review. The approval is bound to the version's current "
        "evidence; a failing gate needs --override-reason, which is recorded with it. Needs a token with the "
        "approve scope, and someone other than the uploader where the team follows the four-eyes rule.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    approve.add_argument("version", metavar="VERSION", help=VERSION_HELP)
    approve.add_argument("--team", help="team slug, when MODEL exists in several of your teams")
    approve.add_argument("--comment", default="", help="what you checked")
    approve.add_argument(
        "--override-reason", default="", metavar="REASON", help="why it may ship although a gate fails"
    )
    approve.add_argument("--json", action="store_true", help="print the decision as JSON")
    approve.set_defaults(run=run, decision="approve")

    reject = subparsers.add_parser(
        "reject",
        parents=[common],
        help="reject a version that is ready for review",
        description="Reject a version that is ready for review; the comment tells its uploader why.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reject.add_argument("version", metavar="VERSION", help=VERSION_HELP)
    reject.add_argument("--team", help="team slug, when MODEL exists in several of your teams")
    reject.add_argument("--comment", required=True, help="why it is rejected (required)")
    reject.add_argument("--json", action="store_true", help="print the decision as JSON")
    reject.set_defaults(run=run, decision="reject", override_reason="")


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client(args)
    ref = resolve_version(client, args.version, args.team)
    body = {"comment": args.comment}
    if args.decision == "approve" and args.override_reason:
        body["override_reason"] = args.override_reason
    decision = client.post(f"versions/{ref.id}/{args.decision}/", body)
    if args.json:
        write_json(decision, ctx.out)
        return ExitCode.OK
    done = "Approved" if args.decision == "approve" else "Rejected"
    gates = "every gate passed" if decision.get("gates_passed") else "a gate failed"
    if decision.get("override_reason"):
        gates += f"; override: {decision['override_reason']}"
    ctx.out.write(
        f"{done} {ref.label}: decision {decision.get('id')} by {decision.get('actor')} ({gates}); "
        f"evidence sha256 {str(decision.get('evidence_sha256') or '-')[:12]}.\n"
    )
    return ExitCode.OK
