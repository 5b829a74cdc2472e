"""The embedded broker: kombu's filesystem transport, made to survive a full disk.

kombu's filesystem transport keeps each message as a JSON file in the queue folder and each
exchange's bindings as a JSON file in the control folder. A write on a full disk can leave
such a file empty or cut short. kombu then raises JSONDecodeError while reading it, which
Celery treats as unrecoverable: the worker stops, and stops again at every start until
someone deletes the file by hand.

This transport is the settings' `CELERY_BROKER_TRANSPORT` whenever the broker is
`filesystem://`. It differs from kombu's in three ways:

- A message file that can't be read or isn't a message is moved to the quarantine folder
  (`quarantine_folder`, under the data folder) and logged with its name; the worker goes on
  with the next message. A job whose message was lost is still `queued` in PostgreSQL, so
  the reconciler sends it again (apps.pipeline.services.reconcile).
- An exchange file that can't be parsed is quarantined the same way and rebuilt from the
  bindings declared after it (every worker declares its queues when it starts).
- A message is written under a hidden name and renamed into place, so a reader never sees
  a half-written file and a write that fails leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

_MESSAGE_LOST = (
    "What it carried (a job, a deployment, a webhook delivery) is still waiting in the database, and the "
    "reconciler sends it again."
)
_TABLE_REBUILT = "Its bindings are written again as queues are declared (every worker declares its own at start)."


class Channel(filesystem.Channel):
    """A filesystem channel that sets unreadable files aside instead of failing on them."""

    @property
    def quarantine_folder(self) -> Path:
        configured = self.transport_options.get("quarantine_folder")
        return Path(configured) if configured else Path(self.data_folder_in).parent / "quarantine"

    # --- messages ---------------------------------------------------------------------------

    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        """Write the message under a hidden name, then rename it into the queue folder."""
        # kombu's name: readers take messages in the order of these names.
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.writing")
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.rename(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(partial)
            raise ChannelError(f"Cannot add file {final!r} to directory: {exc}") from exc

    def _get(self, queue: str) -> dict[str, Any]:  # type: ignore[override]
        """The next message of `queue`; unreadable files on the way are quarantined."""
        wanted = f"{queue}.msg"
        processed = self._claim_folder()
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            try:
                # Taking the file out of the queue folder is what claims it.
                claimed = shutil.move(os.path.join(self.data_folder_in, name), processed)
            except OSError:
                continue  # another consumer took it first
            try:
                message = _read_message(claimed)
            except (OSError, ValueError) as exc:
                self._quarantine(claimed, "message", exc, _MESSAGE_LOST)
                continue
            if not self.store_processed:
                with contextlib.suppress(OSError):
                    os.remove(claimed)
            return message
        raise Empty()

    def _claim_folder(self) -> str:
        # Beside the queue folder, so claiming is a rename that needs no free space.
        folder = self.transport_options.get("processed_folder") or os.path.join(
            os.path.dirname(os.path.abspath(self.data_folder_in)), "processed"
        )
        os.makedirs(folder, exist_ok=True)
        return str(folder)

    # --- exchanges --------------------------------------------------------------------------

    def get_table(self, exchange: str) -> list[Any]:
        try:
            return list(super().get_table(exchange))
        except (ValueError, TypeError) as exc:
            self._quarantine(self._table_file(exchange), "exchange table", exc, _TABLE_REBUILT)
        # The bindings this process declared are what the file held for it: write them back.
        known = [filesystem.exchange_queue_t(*binding) for binding in self._declared_bindings(exchange)]
        try:
            for binding in known:
                super()._queue_bind(exchange, *binding)
        except ChannelError:
            logger.warning("Could not write the exchange table of %r again; routing from memory.", exchange)
        return known

    def _declared_bindings(self, exchange: str) -> list[tuple[str, str, str]]:
        table = (self.state.exchanges or {}).get(exchange, {}).get("table") or []
        return [(str(key or ""), str(pattern or ""), str(queue or "")) for key, pattern, queue in table]

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str | None, queue: str) -> None:
        try:
            super()._queue_bind(exchange, routing_key, pattern, queue)
        except (ValueError, TypeError) as exc:
            self._quarantine(self._table_file(exchange), "exchange table", exc, _TABLE_REBUILT)
            wanted = (routing_key or "", pattern or "", queue or "")
            for binding in dict.fromkeys([*self._declared_bindings(exchange), wanted]):
                super()._queue_bind(exchange, *binding)

    def _delete(self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any) -> None:
        try:
            super()._delete(queue, exchange, routing_key, pattern, *args, **kwargs)
        except (ValueError, TypeError) as exc:
            self._quarantine(self._table_file(exchange), "exchange table", exc, _TABLE_REBUILT)

    def _table_file(self, exchange: str) -> str:
        # kombu's own name for it; the name was checked by kombu before the file was read.
        return str(self.control_folder / f"{exchange}.exchange")

    # --- quarantine -------------------------------------------------------------------------

    def _quarantine(self, path: str, what: str, error: BaseException, consequence: str) -> None:
        """Move an unreadable file to the quarantine folder and say so in the log."""
        name = os.path.basename(path)
        try:
            size: int | str = os.path.getsize(path)
        except OSError:
            size = "?"
        folder = self.quarantine_folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            destination = folder / name
            if destination.exists():
                destination = folder / f"{name}.{uuid.uuid4().hex[:8]}"
            shutil.move(path, destination)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(path)
            logger.error(
                "Deleted the unreadable broker %s %s (%s bytes: %s): it could not be moved to %s (%s).",
                what,
                name,
                size,
                _reason(error),
                folder,
                exc,
            )
            return
        logger.warning(
            "Set aside the unreadable broker %s %s (%s bytes: %s) in %s; the worker goes on. %s "
            "If the data folder's disk is full, free some space.",
            what,
            name,
            size,
            _reason(error),
            destination,
            consequence,
        )


def _read_message(path: str) -> dict[str, Any]:
    """The message in the file; ValueError when it holds none (empty, cut short, not JSON)."""
    with open(path, "rb") as handle:
        # A writer of kombu's own kind holds an exclusive lock while it writes: wait for it.
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        try:
            payload = handle.read()
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    if not payload:
        raise ValueError("the file is empty")
    message = loads(bytes_to_str(payload))
    properties = message.get("properties") if isinstance(message, dict) else None
    if not isinstance(properties, dict) or "delivery_tag" not in properties:
        raise ValueError("the file holds JSON but not a message")
    return message


def _reason(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class Transport(filesystem.Transport):
    """kombu's filesystem transport with `Channel` above."""

    Channel = Channel
