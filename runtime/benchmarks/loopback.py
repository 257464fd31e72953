"""A scripted JSON-over-HTTP server on 127.0.0.1, in a thread, stdlib only: the replay model
of ``execloop bench tokens`` (``replay``) and the provider fakes in tests/ build on it.

Each request is recorded (method, path, lower-cased headers, parsed JSON body) and answered
by the next planned response in the queue, in order. Provider fakes subclass it and add
``push_reply``/``push_error`` that build the provider's real JSON shapes.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

__all__ = ["EventStream", "LoopbackServer", "PlannedResponse", "RecordedRequest"]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # the parsed JSON, or None for an empty body


@dataclass(frozen=True)
class EventStream:
    """A body sent as server-sent events (``text/event-stream``): ``(event, data)`` pairs,
    each ``data`` JSON-encoded on one line, then the connection is closed."""

    events: list[tuple[str, Any]]

    def encode(self) -> bytes:
        return b"".join(
            f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in self.events
        )


@dataclass(frozen=True)
class PlannedResponse:
    """One answer. ``body`` may be a function of the request (e.g. to echo its model)."""

    status: int
    body: Any | Callable[[RecordedRequest], Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (client timeouts, concurrency)


class LoopbackServer:
    """Base for the provider fakes; use as a context manager (starts and stops the thread)."""

    #: Paths the provider serves; anything else gets a 404.
    paths: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._planned: deque[PlannedResponse] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        httpd.fake = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a delay
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what tests use --------------------------------------------------------------------

    @property
    def origin(self) -> str:
        assert self._httpd is not None, "the server is not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """Planned responses not yet used."""
        with self._lock:
            return len(self._planned)

    def push(self, response: PlannedResponse) -> None:
        with self._lock:
            self._planned.append(response)

    def push_json(
        self,
        status: int,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Queue any JSON answer (for shapes the helpers do not build)."""
        self.push(PlannedResponse(status, body, dict(headers or {}), delay_s))

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}"

    # -- subclass hooks --------------------------------------------------------------------

    def error_body(self, status: int, error_type: str, message: str) -> Any:
        """The provider's error JSON, used for unknown paths and an empty queue."""
        return {"error": {"type": error_type, "message": message}}

    # -- the handler's side ----------------------------------------------------------------

    def _answer(self, request: RecordedRequest) -> tuple[int, Any, Mapping[str, str], float]:
        known = request.path in self.paths
        with self._lock:
            self._requests.append(request)
            planned = self._planned.popleft() if known and self._planned else None
        if not known:
            body = self.error_body(404, "not_found_error", f"fake: no route {request.path}")
            return 404, body, {}, 0.0
        if planned is None:
            # x-should-retry: false so the SDK fails the test at once instead of retrying.
            body = self.error_body(500, "api_error", "fake: no response queued for this request")
            return 500, body, {"x-should-retry": "false"}, 0.0
        body = planned.body(request) if callable(planned.body) else planned.body
        return planned.status, body, planned.headers, planned.delay_s


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _handle(self) -> None:
        fake: LoopbackServer = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = RecordedRequest(
            method=self.command,
            path=self.path.split("?", 1)[0],
            headers={name.lower(): value for name, value in self.headers.items()},
            body=json.loads(raw) if raw else None,
        )
        status, body, headers, delay_s = fake._answer(request)
        if delay_s and fake._stopping.wait(delay_s):
            return  # shutting down
        stream = isinstance(body, EventStream)
        data = body.encode() if stream else json.dumps(body).encode()
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-type", "text/event-stream" if stream else "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client gave up (timeout) and hung up
