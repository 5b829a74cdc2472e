"""`python -m slipway_agent register|run|probe`: the agent's command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import sys
import threading
from pathlib import Path

from slipway_agent import __version__, agent


def _default_state() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(os.environ.get("SLIPWAY_AGENT_HOME", str(Path(base) / "slipway-agent")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slipway-agent", description=__doc__)
    parser.add_argument("--state", type=Path, default=_default_state(), help="where the credential is kept")
    parser.add_argument("--version", action="version", version=f"slipway-agent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    reg = commands.add_parser("register", help="register this machine with a one-time enrollment token")
    reg.add_argument("--server", required=True, help="the Slipway server, e.g. https://slipway.example.com")
    reg.add_argument(
        "--token", default=os.environ.get("SLIPWAY_ENROLLMENT_TOKEN", ""), help="sle_... (or $SLIPWAY_ENROLLMENT_TOKEN)"
    )
    reg.add_argument("--name", default=platform.node(), help="the device's name in its team (default: host name)")
    run = commands.add_parser("run", help="lease and run work until stopped")
    run.add_argument("--once", action="store_true", help="stop after one step")
    run.add_argument("--kinds", default="", help="only these steps, comma-separated (validate,parity,benchmark)")
    commands.add_parser("probe", help="print this machine's hardware probe and runtimes")
    commands.add_parser(
        "rotate", help=f"replace the device credential (run does it every {agent.ROTATE_AFTER_DAYS:.0f} days)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s slipway-agent %(levelname)s %(message)s")

    if args.command == "probe":
        print(json.dumps({"hardware": agent.probe(), "runtimes": agent.runtimes()}, indent=2))
        return 0
    state = agent.State(args.state)
    try:
        if args.command == "register":
            if not args.token:
                parser.error("give the enrollment token with --token or $SLIPWAY_ENROLLMENT_TOKEN")
            device = agent.register(args.server, args.token, args.name, state)
            print(f"Registered as {device.get('name')}; the credential is in {state.credential_file} (mode 600).")
            return 0
        if args.command == "rotate":
            agent.rotate(state)
            print(f"Rotated; the new credential is in {state.credential_file}.")
            return 0
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        agent.serve(state, once=args.once, kinds=kinds, stop=stop)
        return 0
    except (agent.Refused, FileNotFoundError, PermissionError, ConnectionError) as exc:
        print(f"slipway-agent: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        return 2
