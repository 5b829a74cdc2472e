"""Start a Celery worker on exactly the queues this machine can serve."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from config.env import envlist


def hardware_queues() -> list[str]:
    """The queues of the enabled hardware profiles this machine can serve: those whose
    requirements its own probe meets (an x86_64 machine never takes the aarch64 profile's
    queue; GPU profiles' only where nvidia-smi shows a GPU). `default` carries housekeeping."""
    from apps.hardware.models import HardwareProfile
    from workers.engine.hardware import describe_hardware, unmet_requirements

    facts = describe_hardware().to_dict()
    profiles = HardwareProfile.objects.filter(enabled=True).order_by("slug")
    fit = [profile.queue for profile in profiles if not unmet_requirements(profile.requirements, facts)]
    return ["default", *dict.fromkeys(fit)]


def worker_queues(base: list[str], with_imports: bool = True) -> list[str]:
    """The hardware-profile queues given, plus one import queue per framework installed here
    (so a worker without TensorFlow never takes a Keras import)."""
    queues = list(dict.fromkeys(base))
    if with_imports:
        from workers.engine.importers.registry import available_import_queues

        queues += [q for q in available_import_queues() if q not in queues]
    return queues


class Command(BaseCommand):
    help = (
        "Start a Celery worker on the queues of the hardware profiles this machine can serve (or --queues / "
        "SLIPWAY_WORKER_QUEUES) plus an import queue for each framework installed here. Arguments after -- "
        "go to `celery worker`."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--queues",
            help="comma list of hardware queues (default: SLIPWAY_WORKER_QUEUES, else the queues of the "
            "hardware profiles this machine can serve); a profile whose requirements this machine does not meet "
            "is never run here, whatever queues it takes",
        )
        parser.add_argument("--no-import-queues", action="store_true", help="take no framework import jobs")
        parser.add_argument("celery_args", nargs=argparse.REMAINDER, help="passed to celery worker")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["queues"]:
            base = options["queues"].split(",")
        else:
            base = envlist("SLIPWAY_WORKER_QUEUES", []) or hardware_queues()
        queues = worker_queues([q.strip() for q in base if q.strip()], not options["no_import_queues"])
        extra = [a for a in options["celery_args"] if a != "--"]
        self.stdout.write(f"worker queues: {', '.join(queues)}")
        self.stdout.flush()
        argv = [sys.executable, "-m", "celery", "-A", "config.celery_app", "worker", "-Q", ",".join(queues), *extra]
        repo = Path(__file__).resolve().parents[4]
        paths = [str(repo), str(repo / "platform"), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        os.execve(sys.executable, argv, env)  # noqa: S606 - replaces this process with the worker
