"""Read a Prometheus metrics endpoint: fetch its text exposition (bounded in size and time) and
parse it into samples, without a client library.

The text format (version 0.0.4, which Triton's /metrics serves) is one sample a line,

    metric_name{label="value",other="a \\"quoted\\" word"} 12.5 1700000000000

with `# HELP name text` and `# TYPE name kind` lines, other `#` lines as comments, values that
may be NaN, +Inf or -Inf, and an optional timestamp in milliseconds. A line that breaks the
format is skipped and named in `Exposition.errors`; nothing here raises on a bad answer:
`scrape` returns the error as a sentence instead.
"""

from __future__ import annotations

import math
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

MAX_BYTES = 8 * 1024 * 1024
MAX_SAMPLES = 200_000
_MAX_ERRORS = 20
_CHUNK = 64 * 1024

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Go's ParseFloat as the format uses it, without Python's extras (underscores, "infinity").
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?[Ii]nf|NaN|nan")
_TIMESTAMP = re.compile(r"-?\d+")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True)
class Sample:
    """One line of the exposition: a metric name, its labels (in the order given), a value
    (NaN and infinities included) and the exporter's timestamp in ms, if it gave one."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float
    timestamp_ms: int | None = None

    def label(self, key: str, default: str = "") -> str:
        """The value of label `key` ("" or `default` when absent)."""
        return next((value for name, value in self.labels if name == key), default)


@dataclass(frozen=True)
class Exposition:
    """A parsed exposition: its samples in order, each metric family's TYPE and HELP, and the
    lines that were skipped ("line 12: ..."), at most 20 of them named."""

    samples: tuple[Sample, ...]
    types: dict[str, str] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    skipped: int = 0

    def named(self, name: str) -> tuple[Sample, ...]:
        """The samples of metric `name`."""
        return tuple(sample for sample in self.samples if sample.name == name)


@dataclass(frozen=True)
class Scrape:
    """What fetching an endpoint gave: the parsed exposition, or `error`, a sentence saying
    what went wrong (then `exposition` is None)."""

    url: str
    exposition: Exposition | None
    error: str = ""
    bytes_read: int = 0
    seconds: float = 0.0


class _Bad(ValueError):
    pass


def parse(text: str, *, max_samples: int = MAX_SAMPLES) -> Exposition:
    """Parse Prometheus text exposition `text`; bad lines are skipped and named, never raised."""
    samples: list[Sample] = []
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    errors: list[str] = []
    skipped = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        try:
            if line.lstrip().startswith("#"):
                _comment(line.lstrip(), types, helps)
                continue
            if len(samples) >= max_samples:
                raise _Bad(f"more than {max_samples} samples; the rest were not read")
            samples.append(_sample(line))
        except _Bad as exc:
            skipped += 1
            if len(errors) < _MAX_ERRORS:
                errors.append(f"line {number}: {exc}")
            if len(samples) >= max_samples:
                break
    return Exposition(tuple(samples), types, helps, tuple(errors), skipped)


def _comment(line: str, types: dict[str, str], helps: dict[str, str]) -> None:
    parts = line[1:].lstrip().split(None, 2)
    if len(parts) < 2 or parts[0] not in ("HELP", "TYPE"):
        return  # a plain comment (or OpenMetrics' "# EOF")
    keyword, name = parts[0], parts[1]
    if not _NAME.fullmatch(name):
        raise _Bad(f"'{name}' is not a metric name")
    rest = parts[2].strip() if len(parts) > 2 else ""
    if keyword == "TYPE":
        if rest not in ("counter", "gauge", "histogram", "summary", "untyped", "unknown", "info", "stateset"):
            raise _Bad(f"unknown metric type '{rest}' for {name}")
        types[name] = rest
    else:
        helps[name] = rest.replace("\\n", "\n").replace("\\\\", "\\")


def _sample(line: str) -> Sample:
    text = line.strip()
    match = _NAME.match(text)
    if match is None:
        raise _Bad("it does not start with a metric name")
    name, at = match.group(), match.end()
    labels: tuple[tuple[str, str], ...] = ()
    brace = len(text) - len(text[at:].lstrip(" \t"))
    if brace < len(text) and text[brace] == "{":
        labels, at = _labels(text, brace + 1)
    rest = text[at:]
    if rest and not rest[0].isspace():
        raise _Bad(f"unexpected '{rest[0]}' after {name}")
    fields = rest.split()
    if not fields or len(fields) > 2:
        raise _Bad(f"{name} needs a value and at most a timestamp after it")
    if not _NUMBER.fullmatch(fields[0]):
        raise _Bad(f"'{fields[0]}' is not a number")
    value = float(fields[0])
    timestamp = None
    if len(fields) == 2:
        if not _TIMESTAMP.fullmatch(fields[1]):
            raise _Bad(f"'{fields[1]}' is not a timestamp in milliseconds")
        timestamp = int(fields[1])
    return Sample(name, labels, value, timestamp)


def _labels(text: str, at: int) -> tuple[tuple[tuple[str, str], ...], int]:
    """The labels from just after "{" at `at`; returns them and the index after "}"."""
    labels: list[tuple[str, str]] = []
    while True:
        while at < len(text) and text[at] in " \t":
            at += 1
        if at < len(text) and text[at] == "}":
            return tuple(labels), at + 1
        match = _LABEL_NAME.match(text, at)
        if match is None:
            raise _Bad("a label has no valid name")
        key, at = match.group(), match.end()
        while at < len(text) and text[at] in " \t":
            at += 1
        if text[at : at + 2] != '="':
            raise _Bad(f'label {key} needs ="value"')
        value, at = _quoted(text, at + 2)
        if any(existing == key for existing, _ in labels):
            raise _Bad(f"label {key} is given twice")
        labels.append((key, value))
        while at < len(text) and text[at] in " \t":
            at += 1
        if at < len(text) and text[at] == ",":
            at += 1
        elif at >= len(text) or text[at] != "}":
            raise _Bad("labels must be separated by ',' and closed by '}'")


def _quoted(text: str, at: int) -> tuple[str, int]:
    """A label value from just after its opening quote; returns it and the index after the closing one."""
    out: list[str] = []
    while at < len(text):
        char = text[at]
        if char == '"':
            return "".join(out), at + 1
        if char == "\\":
            following = text[at + 1 : at + 2]
            # An unknown escape is kept as written, as Prometheus itself does.
            out.append(_ESCAPES.get(following, "\\" + following))
            at += 2
            continue
        out.append(char)
        at += 1
    raise _Bad("a label value has no closing quote")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx then surfaces as an HTTPError, said in words below


def scrape(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    max_bytes: int = MAX_BYTES,
) -> Scrape:
    """GET `url` and parse the answer; never raises. Follows no redirects and no proxy from the
    environment; gives up after `timeout` seconds in all and past `max_bytes` of answer."""
    started = time.monotonic()
    deadline = started + timeout
    if not url.lower().startswith(("http://", "https://")):
        return Scrape(url, None, f"The metrics URL '{url}' is not an http:// or https:// address.")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())
    body = bytearray()
    try:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            url, headers={"Accept": "text/plain;version=0.0.4", **(headers or {})}
        )
        with opener.open(request, timeout=timeout) as answer:
            while True:
                chunk = answer.read(_CHUNK)
                if not chunk:
                    break
                body.extend(chunk)
                if len(body) > max_bytes:
                    return Scrape(
                        url,
                        None,
                        f"The metrics endpoint {url} sent more than {max_bytes // (1024 * 1024)} MiB; Slipway stopped "
                        "reading. Point the target's metrics_url at an endpoint with only the server's own metrics.",
                        len(body),
                        time.monotonic() - started,
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError
    except urllib.error.HTTPError as exc:
        where = f" (to {exc.headers.get('Location')})" if 300 <= exc.code < 400 and exc.headers else ""
        return Scrape(
            url,
            None,
            f"The metrics endpoint {url} answered HTTP {exc.code} {exc.reason}{where}. Check the target's "
            "metrics_url, or set it to off if the server exports no metrics.",
            seconds=time.monotonic() - started,
        )
    except (TimeoutError, urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        if isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
            said = f"it did not answer within {timeout:g} s"
        else:
            said = str(getattr(reason, "strerror", None) or reason) or type(exc).__name__
        return Scrape(
            url,
            None,
            f"Slipway can't read the metrics endpoint {url} ({said}). Check that the server exports metrics "
            "there (Triton: --allow-metrics, port 8002) and that workers can reach it; or set the target's "
            "metrics_url to off.",
            len(body),
            time.monotonic() - started,
        )
    exposition = parse(body.decode("utf-8", errors="replace"))
    seconds = time.monotonic() - started
    if not exposition.samples and exposition.errors:
        return Scrape(
            url,
            None,
            f"The answer of {url} is not Prometheus text ({exposition.errors[0]}); check the target's metrics_url.",
            len(body),
            seconds,
        )
    return Scrape(url, exposition, "", len(body), seconds)


def finite(value: float) -> float | None:
    """`value` when it is a finite number, else None (NaN and infinities say "unknown" for a counter)."""
    return value if math.isfinite(value) else None
