"""The server core of devkit's fakes: real HTTP/1.1 servers on 127.0.0.1 that record and answer from a script.

Contract:

- ``LoopbackServer(handler, port=0)`` binds 127.0.0.1 when made (``port=0``: any free port;
  ``OSError`` if it is taken) and serves with ``handler`` in daemon threads between
  ``start()`` and ``stop()`` (or ``with``); ``origin`` is ``http://127.0.0.1:<port>``. Its
  ``stopping`` event is set by ``stop()``, so that a handler that waits (a paced or stalled
  stream, a delayed answer) ends then instead of outliving its test. A client that hangs up
  mid-answer is expected: no traceback. Listen backlog 128; Nagle's algorithm is off.
- ``FakeServer(default, port=0, keep_received=True)`` is a ``LoopbackServer`` that records
  every request (``received``: a ``Received`` each, recorded before it is answered; not with
  ``keep_received=False``, for a server that answers too many to keep) and answers each with
  the next reply of ``script`` (used in order), or ``default(received)`` once it is empty. A
  reply is anything with ``send(exchange)`` (the ``Answer`` protocol): ``Reply`` here (a
  status, a body, headers, an optional delay), ``devkit.fake_openai.StreamReply``.
  Observation: ``requests_to(path)``, ``wait_for(path, count, timeout)`` (an AssertionError
  after ``timeout``), ``connections`` (TCP connections accepted), ``in_flight`` and
  ``max_in_flight``; ``log`` holds a ``Record`` per answered request (``path``, ``bytes``,
  ``new_connection``, ``received_at`` on the monotonic clock, ``seconds`` from its request
  line to its last byte written, and what its reply's ``summary()`` tells, if it has one).
- ``GET /_stats`` (``?reset=1`` to forget everything recorded afterwards), for a client in
  another process (``devkit.serve``, the benchmark), answers ``{"requests": [each Record as
  a dict, its summary's keys merged in], "threads": <threads in the process>}`` and is never
  recorded itself. Every other request, whatever its method, is answered from the script.
- ``Exchange`` (the handler; one request and its answer) is what a reply writes to: whole
  answers as one write (``respond``), chunked bodies (``start_chunked``, ``chunk``,
  ``end_chunks``) buffered until the reply waits or ends, and the ways a server misbehaves:
  ``quiet(seconds)`` (send nothing, ending early when the client hangs up or the server
  stops), ``stall()`` (send nothing more until then) and ``drop()`` (cut the connection
  mid-body).

Standard library only; never imports ``chalicelib``.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, NamedTuple, Protocol
from urllib.parse import parse_qs, urlsplit

STATS_PATH = "/_stats"
POLL_SECONDS = 0.05  # how soon a waiting handler, and serve_forever, notice a stop or a hang-up


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Record(NamedTuple):
    """One answered request, for ``/_stats``. A tuple of plain values: a long benchmark run keeps
    thousands, and the garbage collector stops tracking such tuples, so they cost it nothing."""

    path: str
    bytes: int
    new_connection: bool
    received_at: float  # time.monotonic() when its request line was read
    seconds: float  # from its request line to its last byte written
    summary: dict[str, Any] | None  # what the reply told about itself (a stream: its text, when it went)

    def as_dict(self) -> dict[str, Any]:
        record = self._asdict()
        summary = record.pop("summary") or {}
        return {**record, **summary}


class Answer(Protocol):
    def send(self, exchange: Exchange) -> None: ...


@dataclass
class Reply:
    """One scripted answer: status, body, headers, and a delay before sending it.

    A dict body goes as JSON, a str as UTF-8 text, bytes as they are (``content_type`` says
    otherwise). A delay that the server's stop cuts short drops the connection unanswered.
    """

    status: int = 200
    body: bytes | str | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str | None = None

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, dict):
            body, content_type = json.dumps(self.body).encode(), "application/json"
        elif isinstance(self.body, str):
            body, content_type = self.body.encode(), "text/plain; charset=utf-8"
        else:
            body, content_type = self.body, "application/octet-stream"
        return body, self.content_type or content_type

    def send(self, exchange: Exchange) -> None:
        if self.delay and exchange.stopping.wait(self.delay):
            exchange.drop()
            return
        body, content_type = self.encoded()
        exchange.respond(self.status, body, content_type, self.headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # read when the socket starts listening: many clients connect at once

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self.stopping = threading.Event()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a timeout or a dropped stream under test) is expected: no traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LoopbackServer:
    """An HTTP server on 127.0.0.1 served in a daemon thread; see the module docstring."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self._server = _Server(port, handler)
        self.port: int = self._server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.stopping = self._server.stopping
        self._thread: threading.Thread | None = None

    def start(self) -> LoopbackServer:
        if self._thread is None:
            # A short poll interval: stop() returns within it, and tests start and stop many fakes.
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(POLL_SECONDS,), name=type(self).__name__, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Any:  # Any: each subclass's `with` gives that subclass
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Exchange(BaseHTTPRequestHandler):
    """One connection of a ``FakeServer``: records each request, answers it from the script."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # every write leaves at once: no 40 ms delayed-ACK stall on loopback
    fake: ClassVar[FakeServer]  # set on the per-server subclass
    received: Received  # the request being answered

    def setup(self) -> None:
        super().setup()
        self.requests_on_connection = 0
        self.started = 0.0
        self._pending: list[bytes] = []
        with self.fake.lock:
            self.fake.connections += 1

    @property
    def stopping(self) -> threading.Event:
        return self.fake.stopping

    def parse_request(self) -> bool:
        self.started = time.perf_counter()
        self.requests_on_connection += 1
        return super().parse_request()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != STATS_PATH:
            self._exchange()
            return
        stats = self.fake.stats(reset=parse_qs(url.query).get("reset") == ["1"])
        self.respond(200, json.dumps(stats, ensure_ascii=False).encode(), "application/json")

    def do_POST(self) -> None:
        self._exchange()

    def _exchange(self) -> None:
        received_at = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
        self.received = received
        reply = self.fake.arrived(received)
        try:
            reply = reply or self.fake.default(received)
            reply.send(self)
            self.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up first (a timeout under test)
        finally:
            summary = getattr(reply, "summary", None)
            self.fake.answered(
                Record(
                    urlsplit(received.path).path,
                    len(received.body),
                    self.requests_on_connection == 1,
                    received_at,
                    time.perf_counter() - self.started,
                    summary() if callable(summary) else None,
                )
            )

    # --- writing: what a reply calls ------------------------------------------------------------------------------

    def respond(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        """A whole answer, status line to body, in one write."""
        lines = self._head(status, {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})})
        self._pending.append(lines + body)
        self.flush()

    def start_chunked(self, status: int, content_type: str, headers: dict[str, str] | None = None) -> None:
        """The head of a chunked answer; it leaves with the first chunks, or before the first wait."""
        self._pending.append(
            self._head(status, {"Content-Type": content_type, "Transfer-Encoding": "chunked", **(headers or {})})
        )

    def chunk(self, data: bytes) -> None:
        self._pending.append(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def end_chunks(self, outcome: str = "done") -> str:
        """The chunked terminator: the body ended properly (whatever it held)."""
        self._pending.append(b"0\r\n\r\n")
        self.flush()
        return outcome

    def flush(self) -> None:
        if self._pending:
            data, self._pending = b"".join(self._pending), []
            self.wfile.write(data)

    def drop(self, outcome: str = "broken") -> str:
        """Cut the connection mid-body: the client sees EOF before the body's end."""
        self.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)
        return outcome

    def quiet(self, seconds: float) -> str | None:
        """Send nothing for ``seconds``; None, or how the answer ended if it ended meanwhile
        (``client_gone``, or ``server_stopped`` with the connection dropped)."""
        return self.quiet_until(time.monotonic() + seconds)

    def quiet_until(self, deadline: float) -> str | None:
        """``quiet`` until ``deadline`` on the monotonic clock (a schedule that does not drift)."""
        self.flush()
        while (left := deadline - time.monotonic()) > 0:
            if self.stopping.is_set():
                return self.drop("server_stopped")
            if self._hung_up(min(left, POLL_SECONDS)):
                return "client_gone"
        return None

    def stall(self) -> str:
        """Send nothing more until the client hangs up or the server stops."""
        self.flush()
        while not self.stopping.is_set():
            if self._hung_up(POLL_SECONDS):
                return "client_gone"
        return self.drop("server_stopped")

    def _hung_up(self, seconds: float) -> bool:
        # A client's hang-up makes the socket readable with nothing to read (EOF).
        readable, _, _ = select.select([self.connection], [], [], seconds)
        if readable and not self.connection.recv(65536):
            self.close_connection = True
            return True
        return False

    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        reason = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in headers.items())]
        if headers.get("Connection", "").lower() == "close":
            self.close_connection = True
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per request would cost more than the request


Handler = Callable[[Received], Answer]


class FakeServer(LoopbackServer):
    """A scripted, recording HTTP server on 127.0.0.1; see the module docstring."""

    def __init__(self, default: Handler, port: int = 0, keep_received: bool = True) -> None:
        self.default = default
        self.script: list[Answer] = []
        self.received: list[Received] = []
        # False: only the small Records are kept (a benchmark's fake serves tens of thousands of requests).
        self.keep_received = keep_received
        self.log: list[Record] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self.lock = threading.Condition()
        super().__init__(type("Exchange", (Exchange,), {"fake": self}), port)
        self.url = self.origin

    def __enter__(self) -> FakeServer:
        self.start()
        return self

    def arrived(self, received: Received) -> Answer | None:
        """Record a request (before it is answered: see wait_for); the script's next reply, if any."""
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.keep_received:
                self.received.append(received)
                self.lock.notify_all()
            return self.script.pop(0) if self.script else None

    def answered(self, record: Record) -> None:
        with self.lock:
            self.in_flight -= 1
            self.log.append(record)

    def stats(self, reset: bool = False) -> dict[str, Any]:
        with self.lock:
            log = list(self.log)
            if reset:
                self.received, self.log = [], []
        return {"requests": [record.as_dict() for record in log], "threads": threading.active_count()}

    def requests_to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if urlsplit(r.path).path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 60.0) -> list[Received]:
        """Wait until ``count`` requests to ``path`` have arrived; fail after ``timeout``.

        A request is recorded as it arrives, before it is answered, so once a client's call
        has returned, its request is already here.
        """
        deadline = time.monotonic() + timeout
        with self.lock:
            while len([r for r in self.received if urlsplit(r.path).path == path]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} request(s) to {path} within {timeout}s")
                self.lock.wait(left)
        return self.requests_to(path)
