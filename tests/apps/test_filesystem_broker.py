"""The embedded broker after a full disk: message and exchange files left empty or cut short
are set aside in the quarantine folder and logged by name, the valid messages beside them are
delivered, and neither the running consumer nor one started later with the files still there
fails. (tests/integration/test_filesystem_broker.py runs a real worker through the same.)"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.exceptions import ChannelError

from config import broker
from config.broker import Transport

REPO = Path(__file__).resolve().parents[2]
# What base settings name for `filesystem://`, by its import path as Celery resolves it.
TRANSPORT = "config.broker:Transport"

# Names sort before any real message's (kombu's names start with a monotonic clock), so a
# reader meets them first, as it would after a full disk.
EMPTY = "0000_empty.default.msg"
CUT_SHORT = "0001_cut-short.default.msg"
NOT_A_MESSAGE = "0002_not-a-message.default.msg"


@pytest.fixture
def folders(tmp_path) -> dict[str, Path]:
    paths = {name: tmp_path / name for name in ("queue", "processed", "control", "quarantine")}
    for name in ("queue", "processed", "control"):
        paths[name].mkdir()
    return paths


@pytest.fixture(autouse=True)
def fresh_broker_state() -> Iterator[None]:
    """kombu keeps declared bindings per process; each test starts as a new process would."""
    Transport.global_state.clear()
    yield
    Transport.global_state.clear()


def _options(folders: dict[str, Path]) -> dict[str, Any]:
    return {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "quarantine_folder": str(folders["quarantine"]),
        "polling_interval": 0.05,
    }


QUEUE = Queue("default", Exchange("default", type="direct"), routing_key="default")


def _connection(folders: dict[str, Path]) -> Connection:
    return Connection("filesystem://", transport=TRANSPORT, transport_options=_options(folders))


def _publish(folders: dict[str, Path], body: dict[str, Any]) -> None:
    with _connection(folders) as connection:
        Producer(connection.default_channel).publish(
            body, exchange=QUEUE.exchange, routing_key="default", declare=[QUEUE], serializer="json"
        )


def _drop_what_a_full_disk_leaves(folders: dict[str, Path]) -> None:
    (folders["queue"] / EMPTY).write_bytes(b"")
    (folders["queue"] / CUT_SHORT).write_bytes(b'{"body": "eyJhcmdzIjogWzQyXX0=", "content-enc')
    (folders["queue"] / NOT_A_MESSAGE).write_bytes(b"[1, 2, 3]")
    (folders["control"] / "default.exchange").write_bytes(b"")


def _consume(folders: dict[str, Path], expected: int) -> list[Any]:
    received: list[Any] = []

    def on_message(body: Any, message: Any) -> None:
        received.append(body)
        message.ack()

    with _connection(folders) as connection, Consumer(connection, [QUEUE], callbacks=[on_message], accept=["json"]):
        for _ in range(40):
            if len(received) >= expected:
                break
            with contextlib.suppress(TimeoutError):
                connection.drain_events(timeout=0.25)
    return received


def test_broken_files_are_quarantined_and_the_valid_message_is_delivered(folders, caplog):
    _publish(folders, {"job": 42})
    Transport.global_state.clear()  # the worker is another process than the publisher
    _drop_what_a_full_disk_leaves(folders)

    with caplog.at_level(logging.WARNING, logger="config.broker"):
        received = _consume(folders, expected=1)

    assert received == [{"job": 42}]
    assert sorted(os.listdir(folders["quarantine"])) == [EMPTY, CUT_SHORT, NOT_A_MESSAGE, "default.exchange"]
    assert os.listdir(folders["queue"]) == []
    # the exchange table was written again from the consumer's own declaration
    assert json.loads((folders["control"] / "default.exchange").read_text()) == [["default", "", "default"]]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for name in (EMPTY, CUT_SHORT, NOT_A_MESSAGE, "default.exchange"):
        assert "Set aside the unreadable broker" in logged and name in logged, logged
    assert "the reconciler sends it again" in logged


def test_a_consumer_started_with_the_broken_files_still_there_serves(folders):
    _drop_what_a_full_disk_leaves(folders)
    # The worker starts (declares its queue, so reads the empty exchange table) with the files present...
    first = _consume(folders, expected=0)
    assert first == []
    # ...and serves what is sent next, also after a restart with new broken files in the way.
    _publish(folders, {"job": 1})
    Transport.global_state.clear()
    (folders["queue"] / EMPTY).write_bytes(b"")
    (folders["control"] / "default.exchange").write_bytes(b'[["default", "", "def')
    assert _consume(folders, expected=1) == [{"job": 1}]
    assert os.listdir(folders["queue"]) == []


def test_a_publish_finds_its_queue_even_when_the_exchange_table_is_cut_short(folders):
    with _connection(folders) as connection:
        producer = Producer(connection.default_channel)
        producer.publish({"job": 1}, exchange=QUEUE.exchange, routing_key="default", declare=[QUEUE])
        (folders["control"] / "default.exchange").write_bytes(b'[["default", ')
        producer.publish({"job": 2}, exchange=QUEUE.exchange, routing_key="default")
    Transport.global_state.clear()
    # (two messages of the same millisecond come in either order, as with kombu's own transport)
    assert sorted(body["job"] for body in _consume(folders, expected=2)) == [1, 2]


def test_a_message_is_never_visible_half_written(folders, monkeypatch):
    """A write that fails (no space left) leaves nothing in the queue folder for a reader to trip on."""

    class FullDisk:
        def __init__(self, path: str, mode: str) -> None:
            self.handle = open(path, mode)  # noqa: SIM115 - closed by __exit__

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(broker, "open", FullDisk, raising=False)
    with pytest.raises(ChannelError, match="No space left"):
        _publish(folders, {"job": 1})
    assert os.listdir(folders["queue"]) == []


def test_the_settings_use_this_transport_for_the_filesystem_broker(tmp_path):
    script = (
        "from config.celery_app import app\n"
        "with app.connection_for_read() as c:\n"
        "    t = type(c.transport)\n"
        "    print(f'{t.__module__}:{t.__name__}', c.transport_options['quarantine_folder'])\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "CELERY_BROKER_URL": "filesystem://",
        "SLIPWAY_DATA_DIR": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "platform")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [TRANSPORT, str(tmp_path / "broker" / "quarantine")]
    assert (tmp_path / "broker" / "quarantine").is_dir()
