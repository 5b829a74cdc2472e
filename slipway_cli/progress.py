"""Progress on stderr: an upload bar that redraws itself on a terminal, and plain lines
(every 10 %, or every 30 s) where stderr is a CI log; live pipeline steps while waiting."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TextIO

BAR_WIDTH = 24
REDRAW_SECONDS = 0.1
LOG_EVERY_PERCENT = 10
LOG_EVERY_SECONDS = 30.0
QUIET_BELOW_BYTES = 1024 * 1024


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def human_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class UploadProgress:
    """Shows how much of an upload has been sent: bytes, percent, rate."""

    def __init__(self, label: str, out: TextIO, *, clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.out = out
        self.clock = clock
        self.tty = _isatty(out)
        self.started = clock()
        self._last_draw = -1.0
        self._last_logged_percent = -1
        self._last_logged_at = self.started
        self._width = 0

    def restart(self) -> None:
        """A retry sends the body again from its first byte."""
        if self.tty and self._width:
            self.out.write("\n")
            self._width = 0
        self.started = self.clock()
        self._last_draw, self._last_logged_percent, self._last_logged_at = -1.0, -1, self.started

    def update(self, sent: int, total: int) -> None:
        if total < QUIET_BELOW_BYTES:
            return  # done before a bar would mean anything; finish() still says it was sent
        now = self.clock()
        percent = int(100 * sent / total) if total else 100
        if self.tty:
            if sent < total and now - self._last_draw < REDRAW_SECONDS:
                return
            self._last_draw = now
            filled = BAR_WIDTH * sent // total if total else BAR_WIDTH
            line = f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self._figures(sent, total, now)}"
            self.out.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            step = percent // LOG_EVERY_PERCENT * LOG_EVERY_PERCENT
            due = now - self._last_logged_at >= LOG_EVERY_SECONDS
            if step <= self._last_logged_percent and not due and sent < total:
                return
            if sent >= total and self._last_logged_percent >= 100:
                return
            self._last_logged_percent = 100 if sent >= total else max(step, self._last_logged_percent)
            self._last_logged_at = now
            self.out.write(f"{self.label}: {self._figures(sent, total, now)}\n")
        self.out.flush()

    def finish(self, total: int) -> None:
        elapsed = max(self.clock() - self.started, 1e-9)
        if self.tty and self._width:
            self.out.write("\n")
        self.out.write(f"{self.label}: sent {human_bytes(total)} in {elapsed:.1f} s; waiting for the server...\n")
        self.out.flush()

    def _figures(self, sent: int, total: int, now: float) -> str:
        elapsed = now - self.started
        rate = sent / elapsed if elapsed > 0 else 0.0
        # Rounded down: 100.0% only once the last byte is sent.
        percent = math.floor(1000 * sent / total) / 10 if total else 100.0
        text = f"{percent:5.1f}%  {human_bytes(sent)} of {human_bytes(total)}  {human_bytes(rate)}/s"
        if rate > 0 and sent < total and elapsed >= 1.0:  # a rate from the first few ms says nothing
            text += f"  {human_seconds((total - sent) / rate)} left"
        return text


class StepProgress:
    """Prints a line for each pipeline step whenever its state changes, so a CI log reads as a
    history of the run: status, progress (in steps of 10 %) and the step's own message."""

    def __init__(self, out: TextIO, *, clock: Callable[[], float] = time.monotonic):
        self.out = out
        self.clock = clock
        self.started = clock()
        self._seen: dict[Any, tuple[str, int, str]] = {}

    def show(self, jobs: list[dict[str, Any]]) -> None:
        for job in jobs:
            status = str(job.get("status") or "")
            progress = job.get("progress")
            decile = int(float(progress) * 10) if isinstance(progress, int | float) else -1
            message = str(job.get("progress_message") or "")
            state = (status, decile if status == "running" else -1, message if status == "running" else "")
            key = job.get("id") or (job.get("kind"), job.get("profile"))
            if self._seen.get(key) == state:
                continue
            if key not in self._seen and status == "pending":
                self._seen[key] = state  # steps not started yet: nothing to say
                continue
            self._seen[key] = state
            self.out.write(f"[{human_seconds(self.clock() - self.started)}] {job_line(job)}\n")
        self.out.flush()


def job_line(job: dict[str, Any]) -> str:
    """One step as "optimize  x86-cpu   running     40%  building openvino variants"."""
    status = str(job.get("status") or "")
    progress = job.get("progress")
    percent = f"{float(progress) * 100:3.0f}%" if status == "running" and isinstance(progress, int | float) else ""
    detail = str(job.get("progress_message") or "") if status == "running" else ""
    if status == "failed":
        detail = str(job.get("error") or "")
    return f"{job.get('kind', ''):<10} {job.get('profile') or '':<12} {status:<10} {percent:>4}  {detail}".rstrip()


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False
