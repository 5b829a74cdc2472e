"""Exit codes and the one exception a command raises to stop with a sentence for the user."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """What `slipway` exits with; CI pipelines branch on these."""

    OK = 0  # done: the version is ready, every gate passed, the deployment is live
    FAILED = 1  # a definite "no": a gate failed, the pipeline failed, the deployment failed
    ERROR = 2  # no answer: bad usage, an API or connection error, a timeout, not finished yet
    INTERRUPTED = 130  # stopped with Ctrl-C


class CliError(Exception):
    """Stops the command: `message` (and each of `details`) goes to stderr, then exit `exit_code`.

    `transient` marks failures worth retrying (a lost connection, a 502/503/504 from a proxy).
    """

    def __init__(
        self,
        message: str,
        details: Sequence[str] = (),
        exit_code: ExitCode = ExitCode.ERROR,
        transient: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.details = list(details)
        self.exit_code = exit_code
        self.transient = transient


class ApiError(CliError):
    """The API answered with an error body {"code", "message", "fields"}."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str = "error",
        fields: dict[str, Any] | None = None,
        details: Sequence[str] = (),
        transient: bool = False,
    ):
        super().__init__(message, details, transient=transient)
        self.status = status
        self.code = code
        self.fields = fields or {}
