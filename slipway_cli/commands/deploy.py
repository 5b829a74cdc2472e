"""`slipway deploy` and `slipway rollback`: put an approved version on a serving target, or
go back to the one that served before."""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

from slipway_cli.client import ApiClient
from slipway_cli.context import Context
from slipway_cli.errors import CliError, ExitCode
from slipway_cli.output import write_json
from slipway_cli.progress import human_seconds
from slipway_cli.versions import VERSION_HELP, check_slug, poll_seconds, resolve_version

LIVE = "live"
# A deployment that ends in one of these did not go (or stay) live.
FAILED = frozenset({"failed", "rolled_back", "retired"})

EPILOG = """\
exit codes:
  0  requested (with --wait: the deployment is live)
  1  with --wait: the deployment failed (its reason is printed)
  2  error: refused by the server (not approved, unknown target, role), API or connection
     error, or --timeout passed first"""


def add_parser(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    deploy = subparsers.add_parser(
        "deploy",
        parents=[common],
        help="deploy an approved version to a serving target",
        description="Deploy an approved version to a registered serving target: Slipway pushes the variant, "
        "loads it, smoke-tests it and records the deployment. By default the recommended variant of the "
        "target's hardware profile is deployed. Needs a token with the deploy scope.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    deploy.add_argument("version", metavar="VERSION", help=VERSION_HELP)
    deploy.add_argument("--target", required=True, metavar="T", help="serving target slug")
    deploy.add_argument("--team", help="team slug, when MODEL exists in several of your teams")
    deploy.add_argument("--variant", metavar="NAME", help="deploy this variant instead of the recommended one")
    deploy.add_argument("--profile", metavar="P", help="hardware profile whose variant to deploy")
    _wait_options(deploy)
    deploy.set_defaults(run=run_deploy)

    rollback = subparsers.add_parser(
        "rollback",
        parents=[common],
        help="roll a model on a target back to its previous deployment",
        description="Replace the live deployment of a model on a serving target with the deployment that was "
        "live before it. Needs a token with the deploy scope.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rollback.add_argument("--model", required=True, metavar="NAME", help="model slug")
    rollback.add_argument("--target", required=True, metavar="T", help="serving target slug")
    rollback.add_argument("--team", help="team slug, when the model exists in several of your teams")
    rollback.add_argument(
        "--deployment", type=int, metavar="ID", help="the live deployment to roll back, when there are several"
    )
    _wait_options(rollback)
    rollback.set_defaults(run=run_rollback)


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="wait until the deployment is live or has failed")
    parser.add_argument(
        "--timeout", type=float, default=900, metavar="SECONDS", help="how long --wait waits (default 900)"
    )
    parser.add_argument("--json", action="store_true", help="print the deployment object as JSON")


def describe(deployment: dict[str, Any]) -> str:
    version = deployment.get("version")
    if isinstance(version, dict):
        what = f"{version.get('model')} v{version.get('number')}"
    else:
        model = deployment.get("model")
        model = model.get("slug") if isinstance(model, dict) else model
        what = f"{model} version {version}" if model else f"version {version}"
    target = deployment.get("target")
    target = target.get("slug") if isinstance(target, dict) else target
    variant = f" ({deployment['variant']})" if deployment.get("variant") else ""
    return f"deployment {deployment.get('id')}: {what}{variant} on {target}"


def wait_for_deployment(
    client: ApiClient, deployment_id: int, timeout: float, err: TextIO, *, interval: float = 2.0
) -> dict[str, Any]:
    """Poll until the deployment is live or has failed; lost contact is retried until the deadline."""
    started = time.monotonic()
    deadline = started + timeout
    last: tuple[Any, Any] | None = None
    deployment: dict[str, Any] | None = None
    while True:
        try:
            deployment = client.get(f"deployments/{deployment_id}/")
        except CliError as exc:
            if not exc.transient:
                raise
            err.write(f"Lost contact with the server, still trying: {exc.message}\n")
        if deployment is not None:
            state = (deployment.get("status"), deployment.get("status_reason"))
            if state != last:
                reason = f" -- {state[1]}" if state[1] else ""
                err.write(f"[{human_seconds(time.monotonic() - started)}] {describe(deployment)}: {state[0]}{reason}\n")
                last = state
            if deployment.get("status") == LIVE or deployment.get("status") in FAILED:
                return deployment
        if time.monotonic() >= deadline:
            status = f"; it is {deployment.get('status')}" if deployment else ""
            raise CliError(
                f"Timed out after {timeout:g} s waiting for deployment {deployment_id}{status}. It goes on on the "
                f"server: wait longer with --timeout, or look later at GET /api/v1/deployments/{deployment_id}/."
            )
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def _finish(args: argparse.Namespace, ctx: Context, client: ApiClient, deployment: dict[str, Any]) -> int:
    if not args.wait:
        if args.json:
            write_json(deployment, ctx.out)
        else:
            ctx.out.write(f"Requested {describe(deployment)}; it is {deployment.get('status')}.\n")
        return ExitCode.OK
    final = wait_for_deployment(client, int(deployment["id"]), args.timeout, ctx.err, interval=poll_seconds(ctx.env))
    if args.json:
        write_json(final, ctx.out)
    if final.get("status") == LIVE:
        if not args.json:
            ctx.out.write(f"{describe(final)} is live.\n")
        return ExitCode.OK
    reason = final.get("status_reason") or "no reason given"
    ctx.err.write(f"{describe(final)} is {final.get('status')}: {reason}\n")
    return ExitCode.FAILED


def run_deploy(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client(args)
    ref = resolve_version(client, args.version, args.team)
    body: dict[str, Any] = {"version": ref.id, "target": args.target}
    if args.variant:
        body["variant"] = args.variant
    if args.profile:
        body["profile"] = args.profile
    deployment = client.post("deployments/", body)
    return _finish(args, ctx, client, deployment)


def run_rollback(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client(args)
    model = check_slug(args.model)
    if args.deployment is None:
        live = list(
            client.get_all("deployments/", {"model": model, "target": args.target, "status": LIVE, "team": args.team})
        )
        if not live:
            raise CliError(f"No live deployment of {model} on {args.target}: there is nothing to roll back.")
        if len(live) > 1:
            ids = ", ".join(str(d.get("id")) for d in live)
            raise CliError(
                f"{model} has several live deployments on {args.target} ({ids}); say which with --deployment ID."
            )
        current = int(live[0]["id"])
    else:
        current = args.deployment
    deployment = client.post(f"deployments/{current}/rollback/")
    ctx.err.write(f"Rolling back deployment {current}.\n")
    return _finish(args, ctx, client, deployment)
