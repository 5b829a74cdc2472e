"""A worker announces its hardware, runtimes, importers and queues when it is ready, beats while
it runs, and signs off when it stops. The registry is what the UI's worker list shows."""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)
_stop = threading.Event()


def _beat(name: str, registration: dict[str, Any]) -> None:
    from apps.hardware import services

    while not _stop.wait(settings.WORKER_HEARTBEAT_SECONDS):
        try:
            # No row to beat on (deleted, or a restored database): announce again.
            if not services.heartbeat(name):
                services.register_worker(name, **registration)
        except Exception:  # a database blip must not kill the heartbeat thread
            logger.warning("worker heartbeat failed; retrying", exc_info=True)
        finally:
            close_old_connections()


@functools.cache
def own_facts() -> dict[str, Any]:
    """This worker's hardware probe (`describe_hardware().to_dict()`), taken once per process."""
    from workers.engine.hardware import describe_hardware

    return describe_hardware().to_dict()


def node_name(request: Any = None) -> str:
    """The Celery node name of the worker running a task ("cpu@host-1"), as its registration
    is keyed: two workers on one host are told apart by it. Outside a worker (eager tests),
    worker@<host>."""
    return getattr(request, "hostname", None) or f"worker@{os.uname().nodename}"


@worker_ready.connect
def announce(sender: Any = None, **_: Any) -> None:
    from apps.hardware import services
    from workers.engine import framework_envs
    from workers.engine.backends.registry import installed_backends
    from workers.engine.importers.registry import IMPORTERS

    name = node_name(sender)
    app = getattr(sender, "app", None)
    queues = sorted(app.amqp.queues.consume_from) if app is not None else []
    registration: dict[str, Any] = {
        "hardware": own_facts(),
        "runtimes": installed_backends(),
        "importers": [importer.format for importer in IMPORTERS if importer().available()],
        "framework_envs": framework_envs.available(),
        "queues": queues,
        "pid": os.getpid(),
    }
    try:
        services.register_worker(name, **registration)
    except Exception:
        logger.exception("could not register this worker; jobs still run, the worker list will miss it")
        return
    finally:
        close_old_connections()
    _stop.clear()
    threading.Thread(target=_beat, args=(name, registration), daemon=True, name="worker-heartbeat").start()
    logger.info("registered worker %s consuming %s", name, ", ".join(queues))
    try:
        for service in services.profile_services().values():
            for unfit_name, why in service.unfit:
                if unfit_name == name:
                    logger.warning(
                        "worker %s consumes queue %s but will not run %s's steps: %s", name, service.queue,
                        service.profile, why,
                    )  # fmt: skip
    except Exception:
        logger.warning("could not check this worker against the hardware profiles", exc_info=True)
    finally:
        close_old_connections()


@worker_shutdown.connect
def sign_off(sender: Any = None, **_: Any) -> None:
    from apps.hardware import services

    _stop.set()
    name = getattr(sender, "hostname", None)
    if name:
        try:
            services.mark_stopped(name)
        except Exception:
            logger.warning("could not mark worker %s stopped", name, exc_info=True)
