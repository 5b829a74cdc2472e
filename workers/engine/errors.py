"""Errors the engine raises about a user's model file, and how a runtime's own error is told."""

import re


class ModelError(Exception):
    """A problem with the user's model file, told as a sentence the user can act on.

    `code` is a stable identifier for the platform and the API (for example
    "truncated" or "unsafe_archive"); `message` is shown to the user as is.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ModelError({self.code!r}, {self.message!r})"


# Long enough for a runtime's nested causes, short enough for a job's error column.
MAX_CAUSE_CHARS = 2000

_NOISE = (
    re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : "),  # onnxruntime's status prefix
    re.compile(r"^Load model from .*? failed:\s*"),
    re.compile(r"^\S+:\d+ .*?\)\s+(?=[A-Z])"),  # onnxruntime's "file.cc:123 Function(...) Message"
    re.compile(r"^Exception from \S+:\d+:?\s*"),  # OpenVINO's "Exception from src/...cpp:224:"
    re.compile(r"\s*Check '.*?' failed at \S+:\d+:?"),  # OpenVINO's assertion and where it is
)
# onnxruntime puts a kernel's source location after "Status Message: " instead:
# "path/reshape_helper.h:39 onnxruntime::ReshapeHelper::ReshapeHelper(const ..., bool) ...".
_STATUS_LOCATION = re.compile(r"(Status Message: )\S+:\d+ \S+?\(.*?\)\s+")


def runtime_cause(exc: BaseException, limit: int = MAX_CAUSE_CHARS) -> str:
    """A runtime's error as one line a user reads: every line of it, not only the first, with
    source locations and status prefixes dropped. A runtime's first line is often only where
    it failed ("Exception from src/inference/src/cpp/infer_request.cpp:224:") and the cause
    follows on later lines; cutting to the first line hid it. Empty when nothing is left."""
    parts: list[str] = []
    for raw in str(exc).splitlines():
        line = raw.strip()
        for pattern in _NOISE:
            line = pattern.sub("", line)
        line = _STATUS_LOCATION.sub(r"\1", line).strip().rstrip(":").strip()
        if line and line not in parts:
            parts.append(line)
    text = " ".join(part if part[-1] in ".;:!?" else f"{part}:" for part in parts[:-1])
    text = f"{text} {parts[-1]}".strip() if parts else ""
    if len(text) > limit:
        text = text[: limit - 6].rstrip() + " [...]"
    return text
