"""`slipway gate`: fail a build when a version does not pass its team's gates."""

from __future__ import annotations

import argparse

from slipway_cli.commands.report import gate_line
from slipway_cli.context import Context
from slipway_cli.errors import ApiError, CliError, ExitCode
from slipway_cli.output import write_json
from slipway_cli.versions import (
    FINISHED_WELL,
    VERSION_HELP,
    describe,
    poll_seconds,
    report_failure,
    report_unmeasured,
    resolve_version,
    unmeasured_profiles,
    wait_for_version,
)

HELP = "exit 0 when a version passes every gate, 1 when one fails"
DESCRIPTION = """\
Check a version against its team's gates (policies such as a p99 latency limit, an
accuracy-drift limit, required backends), evaluated by the server on the version's
evidence. Prints every gate with its measured value and threshold; a failing gate is
marked FAIL. A profile with nothing measured fails the built-in measured-evidence gate,
whatever the policies say. --profile checks one hardware profile only. Without --wait, a
version whose pipeline has not finished is an error (2)."""
EPILOG = """\
exit codes:
  0  every gate passes (also when no gate applies)
  1  a gate fails, a profile has no measured evidence, or the version's pipeline failed
  2  error: the version is not finished (use --wait), unknown version, API or connection
     error, or --timeout passed first"""


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "gate",
        parents=[common],
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("version", metavar="VERSION", help=VERSION_HELP)
    parser.add_argument("--team", help="team slug, when MODEL exists in several of your teams")
    parser.add_argument("--profile", metavar="SLUG", help="check only this hardware profile's gates and evidence")
    parser.add_argument("--wait", action="store_true", help="first wait for the version's pipeline to finish")
    parser.add_argument(
        "--timeout", type=float, default=3600, metavar="SECONDS", help="how long --wait waits (default 3600)"
    )
    parser.add_argument("--json", action="store_true", help='print {"gates_passed", "gates"} as JSON on stdout')
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client(args)
    ref = resolve_version(client, args.version, args.team)
    if args.wait:
        version = wait_for_version(client, ref.id, args.timeout, ctx.err, interval=poll_seconds(ctx.env))
    else:
        version = client.get(f"versions/{ref.id}/")
    status = version.get("status")
    if status == "failed":
        report_failure(version, ctx.err)
        return ExitCode.FAILED
    if status not in FINISHED_WELL:
        raise CliError(
            f"{describe(version)} is {status}: its pipeline has not finished, so its gates can't be "
            f"evaluated yet. Run `slipway gate {ref.id} --wait` to wait for it."
        )
    if args.profile and "profile_readiness" in version:  # servers before it can't say
        built = [str(entry.get("profile")) for entry in version["profile_readiness"] or []]
        if args.profile not in built:
            raise CliError(
                f"{describe(version)} was not built for the {args.profile} profile; "
                f"its profiles are {', '.join(built) or 'none'}. Pick one of them with --profile."
            )
    unmeasured = unmeasured_profiles(version, args.profile)
    if unmeasured:
        # Nothing measured is never a pass, whatever the policies say (docs/adr/0009).
        report_unmeasured(version, unmeasured, ctx.err)
        if args.json:
            write_json({"gates_passed": False, "unmeasured": unmeasured, "gates": []}, ctx.out)
        return ExitCode.FAILED
    try:
        review = client.get(f"versions/{ref.id}/review/")
    except ApiError as exc:
        if exc.status == 409:  # a re-run started since: no finished evidence
            raise CliError(f"{exc.message} Run `slipway gate {ref.id} --wait` to wait for it.") from exc
        raise
    gates = [g for g in review.get("gates") or [] if not args.profile or g.get("profile") == args.profile]
    failing = [g for g in gates if not g.get("passed")]
    if args.json:
        write_json({"gates_passed": not failing, "gates": gates}, ctx.out)
    elif not gates:
        ctx.out.write(f"{describe(version)}: no gates apply (its team has no enabled policies for it).\n")
    else:
        for gate in gates:
            ctx.out.write(gate_line(gate) + "\n")
        verdict = "passes every gate" if not failing else f"fails {len(failing)} of {len(gates)} gates"
        ctx.out.write(f"{describe(version)} {verdict}.\n")
    if failing:
        if args.json:
            for gate in failing:
                ctx.err.write(gate_line(gate) + "\n")
        return ExitCode.FAILED
    return ExitCode.OK
