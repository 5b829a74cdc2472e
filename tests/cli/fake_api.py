"""A real HTTP server on 127.0.0.1 (free port, its own thread) that plays the Slipway API:
it answers canned bodies per (method, path) and records every request it got."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Bodies up to this size are kept whole; bigger ones only counted, hashed and sampled.
KEEP_BODY_BYTES = 8 * 1024 * 1024
DROP = "drop the connection without answering"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: bytes  # empty when the body was larger than KEEP_BODY_BYTES
    size: int
    sha256: str
    tail: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)


Answer = Reply | tuple[int, Any] | str | Callable[[Recorded], "Reply | tuple[int, Any] | str"]


def not_found() -> Reply:
    return Reply(
        404, {"code": "not_found", "message": "Not found. It does not exist or you have no access to it.", "fields": {}}
    )


class FakeApi:
    """`add(method, path, *answers)`: answers are given in turn, the last one repeats. An answer
    is a Reply, a (status, body) pair, DROP, or a callable of the recorded request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.served: dict[tuple[str, str], int] = {}
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                digest, kept, size, tail = hashlib.sha256(), bytearray(), 0, b""
                while size < length:
                    chunk = self.rfile.read(min(1024 * 1024, length - size))
                    if not chunk:
                        break
                    digest.update(chunk)
                    size += len(chunk)
                    tail = (tail + chunk)[-256:]
                    if size <= KEEP_BODY_BYTES:
                        kept.extend(chunk)
                recorded = Recorded(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=bytes(kept) if size <= KEEP_BODY_BYTES else b"",
                    size=size,
                    sha256=digest.hexdigest(),
                    tail=tail,
                )
                answer = api._answer(recorded)
                if answer == DROP:
                    self.close_connection = True
                    return
                reply = answer if isinstance(answer, Reply) else Reply(*answer)  # type: ignore[misc]
                payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                if reply.body is None:
                    payload = b""
                self.send_response(reply.status)
                content_type = "application/json" if not isinstance(reply.body, bytes) else "text/html"
                for name, value in {"Content-Type": content_type, **reply.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, method: str, path: str, *answers: Answer) -> FakeApi:
        self.routes[(method, path)] = list(answers)
        return self

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if (method in (None, r.method)) and (path in (None, r.path))]

    def _answer(self, recorded: Recorded) -> Any:
        key = (recorded.method, recorded.path)
        with self._lock:
            self.requests.append(recorded)
            answers = self.routes.get(key)
            if not answers:
                return not_found()
            index = self.served.get(key, 0)
            self.served[key] = index + 1
            answer = answers[min(index, len(answers) - 1)]
        return answer(recorded) if callable(answer) else answer

    def __enter__(self) -> FakeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
