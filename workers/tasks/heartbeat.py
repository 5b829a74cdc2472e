"""The heartbeat every long-running claimed row gets while its worker works on it.

Jobs and deployments are claimed by a worker and fenced by attempt; the reconciler takes back
a row whose heartbeat went stale, taking its worker for dead. So the beat must outlive what
the worker itself outlives: a database restart or failover during a two-hour step or a
five-minute model load must not end it, or the row would be run a second time beside the
first. One implementation for both, so that the rule is written, and tested, once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Calls `beat` every `seconds` until stopped; a failed beat is logged and retried on the next.

    A DatabaseError closes this thread's connection, so the next beat reconnects. Any other
    error is logged as well: the beat is what keeps the work from being duplicated, so nothing
    short of `stop` ends it."""

    def __init__(self, what: str, beat: Callable[[], object], seconds: float | None = None) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{what}")
        self.what = what
        self.beat = beat
        self.seconds = float(seconds if seconds is not None else settings.JOB_HEARTBEAT_SECONDS)
        self.stopped = threading.Event()
        self.beats = 0  # beats that reached the database
        self.failures = 0

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.seconds):
                try:
                    self.beat()
                    self.beats += 1
                except DatabaseError:
                    self.failures += 1
                    logger.warning("heartbeat for %s failed; retrying", self.what, exc_info=True)
                    connection.close()  # reconnect on the next beat
                except Exception:
                    self.failures += 1
                    logger.exception("heartbeat for %s failed unexpectedly; retrying", self.what)
        finally:
            close_old_connections()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped.set()
        self.join(timeout=timeout)


@contextmanager
def beating(what: str, beat: Callable[[], object], seconds: float | None = None) -> Iterator[Heartbeat]:
    """Beat while the block runs; the beat stops (and its thread ends) when the block is left."""
    heartbeat = Heartbeat(what, beat, seconds)
    heartbeat.start()
    try:
        yield heartbeat
    finally:
        heartbeat.stop()
