"""Real HTTP servers on 127.0.0.1 that stand in for OpenAI, Slack and the Lambda API.

Each runs in a thread of the test process, records what it receives, and answers as a test
scripts it. Tests talk to them over real sockets, with the real clients (openai, requests,
boto3); nothing of the project's own code is mocked.
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
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """One scripted answer: status, body, headers, and a delay before sending it."""

    status: int = 200
    body: bytes | str | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, dict):
            return json.dumps(self.body).encode(), "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return self.body, "application/octet-stream"


@dataclass
class StreamReply:
    """One scripted streamed answer: OpenAI's chat-completion SSE over HTTP/1.1 chunked encoding.

    The body is a first chunk with the role, one chunk per delta (``delay`` seconds apart), a
    chunk with ``finish_reason`` (left out when it is None), a usage chunk with empty
    ``choices`` when the request asked for ``stream_options.include_usage``, then
    ``data: [DONE]`` and the chunked terminator. These change the stream once that many deltas
    have been sent (``len(deltas) + 1`` meaning after the finish_reason chunk); use one cut
    (break, close or stall) at a time:

    - ``break_after``: the connection drops mid-body (no chunked terminator), as a network
      failure or a crashed proxy looks to the client;
    - ``close_cleanly_after``: the body ends properly, without finish_reason or [DONE];
    - ``stall_after``: nothing more is sent until the client hangs up (or the server stops);
    - ``garbage_after``: an event whose data is ``garbage`` (by default not JSON), then the
      stream carries on;
    - ``error_after``: an ``{"error": ...}`` event, as OpenAI sends for a failure mid-stream.

    ``pause_after`` is no cut: nothing is sent for ``pause_seconds``, then the stream carries on
    (it can be combined with one cut). ``wait_before`` is a silence between the headers and the
    first (role-only) chunk, as a reasoning model thinks. Both end early when the client hangs
    up (``outcome`` "client_gone") or the server stops.

    ``outcome`` says how the answer ended on the server's side ("done", "broken", "closed",
    "client_gone", "server_stopped"); ``ended`` is set then, so tests can wait on it.
    """

    deltas: list[str] = field(default_factory=lambda: ["Hello", ", ", "world", "!"])
    delay: float = 0.0  # seconds between deltas: 0.02 paces like a real model, 0 (tests) sends at once
    finish_reason: str | None = "stop"  # None: no finish_reason chunk, though usage and [DONE] still come
    break_after: int | None = None
    close_cleanly_after: int | None = None
    stall_after: int | None = None
    garbage_after: int | None = None
    garbage: bytes = b"<html>502 Bad Gateway</html>"  # the data of garbage_after's event
    error_after: int | None = None
    pause_after: int | None = None
    pause_seconds: float = 0.0
    wait_before: float = 0.0
    model: str = "fake-model"
    usage: tuple[int, int] = (11, 7)  # prompt_tokens, completion_tokens
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    outcome: str | None = field(default=None, compare=False)
    ended: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)

    def chunk(self, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-stream-test",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
            "usage": usage,
        }

    def delta_chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return self.chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}])

    def usage_chunk(self) -> dict[str, Any]:
        prompt, completion = self.usage
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        return self.chunk([], usage)


def split_deltas(text: str, pieces: int = 4) -> list[str]:
    """``text`` cut into about ``pieces`` deltas that join back to it, as a model streams an answer."""
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # read when the socket starts listening: many clients connect at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a timeout or a dropped stream under test) is expected: no traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeServer:
    """A threaded HTTP server that records requests and answers from a script.

    ``script`` is a list of ``Reply`` or ``StreamReply`` used in order, one per request; when
    it is empty, ``default(received)`` answers.
    """

    def __init__(self, default: Callable[[Received], Reply | StreamReply]) -> None:
        self.default = default
        self.script: list[Reply | StreamReply] = []
        self.received: list[Received] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self._lock = threading.Condition()
        # Set when the server stops: wakes streams that pace or stall, so none outlives its test.
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server.connections += 1

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.received.append(received)  # recorded before answering: see wait_for
                    server._lock.notify_all()
                    reply = server.script.pop(0) if server.script else None
                try:
                    reply = reply or server.default(received)
                    if isinstance(reply, StreamReply):
                        self.stream(reply, received)
                        return
                    if reply.delay:
                        time.sleep(reply.delay)
                    body, content_type = reply.encoded()
                    self.send_response(reply.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (a timeout under test)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def stream(self, reply: StreamReply, received: Received) -> None:
                try:
                    reply.outcome = self.send_stream(reply, received)
                except OSError:  # a broken pipe or a reset: the client hung up first
                    reply.outcome = "client_gone"
                    self.close_connection = True
                finally:
                    reply.ended.set()

            def send_stream(self, reply: StreamReply, received: Received) -> str:
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Cache-Control", "no-cache")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.flush()
                if reply.wait_before and (gone := self.quiet(reply.wait_before)):
                    return gone
                self.event(reply.delta_chunk({"role": "assistant", "content": ""}))
                # A pass per delta, one after the last and one after the finish_reason chunk: a cut
                # counted as len(deltas) + 1 comes when the text is complete but usage and [DONE] are not.
                for sent in range(len(reply.deltas) + 2):
                    if sent == reply.pause_after and (gone := self.quiet(reply.pause_seconds)):
                        return gone
                    if sent == reply.break_after:
                        return self.drop()
                    if sent == reply.close_cleanly_after:
                        return self.end("closed")
                    if sent == reply.stall_after:
                        return self.stall()
                    if sent == len(reply.deltas) + 1:
                        break
                    if sent == len(reply.deltas):
                        if reply.finish_reason is not None:
                            self.event(reply.delta_chunk({}, reply.finish_reason))
                        continue
                    if sent == reply.garbage_after:
                        self.chunked(b"data: " + reply.garbage + b"\n\n")
                    if sent == reply.error_after:
                        self.event({"error": {"message": "The server had an error", "type": "server_error"}})
                    if sent and reply.delay and server._stopping.wait(reply.delay):
                        return self.drop("server_stopped")
                    self.event(reply.delta_chunk({"content": reply.deltas[sent]}))
                if ((received.json() or {}).get("stream_options") or {}).get("include_usage"):
                    self.event(reply.usage_chunk())
                self.chunked(b"data: [DONE]\n\n")
                return self.end("done")

            def event(self, data: dict[str, Any]) -> None:
                try:
                    body = json.dumps(data, ensure_ascii=False).encode()
                except UnicodeEncodeError:  # a lone surrogate (a test's odd model name): JSON-escaped, as OpenAI would
                    body = json.dumps(data).encode()
                self.chunked(b"data: " + body + b"\n\n")

            def chunked(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def end(self, outcome: str) -> str:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                return outcome

            def drop(self, outcome: str = "broken") -> str:
                """Cut the connection mid-body: the client sees EOF before the chunked terminator."""
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return outcome

            def quiet(self, seconds: float) -> str | None:
                """Send nothing for ``seconds``; None, or how the answer ended if it ended meanwhile.

                Waits on the client's hang-up and the server's stop, never through either.
                """
                until = time.monotonic() + seconds
                while (left := until - time.monotonic()) > 0:
                    if server._stopping.is_set():
                        return self.drop("server_stopped")
                    readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
                    if readable and not self.connection.recv(65536):
                        self.close_connection = True
                        return "client_gone"
                return None

            def stall(self) -> str:
                """Send nothing more until the client hangs up or the server stops.

                The client's hang-up makes the socket readable (EOF); a short select lets the
                stop event be seen without sleeping through the server's shutdown.
                """
                self.close_connection = True
                while not server._stopping.is_set():
                    readable, _, _ = select.select([self.connection], [], [], 0.05)
                    if readable and not self.connection.recv(65536):
                        return "client_gone"
                return self.drop("server_stopped")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # serve_forever looks for shutdown() every poll interval: its default 0.5 s would be paid by
        # every test that stops a server.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def requests_to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if urlsplit(r.path).path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 60.0) -> list[Received]:
        """Wait until ``count`` requests to ``path`` have arrived; fail after ``timeout``.

        A request is recorded as it arrives, before it is answered, so once a client's call
        has returned, its request is already here.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while len([r for r in self.received if urlsplit(r.path).path == path]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} request(s) to {path} within {timeout}s")
                self._lock.wait(left)
        return self.requests_to(path)


def chat_completion(text: str, model: str = "fake-model") -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def openai_error(status: int, code: str, message: str = "error from the fake server") -> Reply:
    return Reply(status, {"error": {"message": message, "type": "error", "code": code, "param": None}})


def echo_llm(received: Received) -> Reply | StreamReply:
    """By default the fake LLM answers with the user's question, so tests can match replies to jobs.

    A request with ``"stream": true`` gets the same answer streamed, cut into a few deltas.
    """
    request = received.json()
    answer = f"**Answer** to: {request['messages'][-1]['content']}"
    if request.get("stream"):
        return StreamReply(deltas=split_deltas(answer))
    return Reply(200, chat_completion(answer))


REJECTION_STYLES = ("unsupported_parameter", "unsupported_value", "unrecognized")


def rejecting(
    param: str,
    style: str = "unsupported_parameter",
    otherwise: Callable[[Received], Reply | StreamReply] = echo_llm,
) -> Callable[[Received], Reply | StreamReply]:
    """A default handler for a model or server that refuses ``param``: any request that carries it
    gets a 400 in ``style``, whole or streamed; any other is answered by ``otherwise`` (the echo).

    The styles are how the refusal arrives: OpenAI's ``unsupported_parameter`` (a parameter the
    model does not take) and ``unsupported_value`` (above all a temperature a reasoning model
    refuses), both naming it in ``error.param``; and ``unrecognized``, which some compatible
    servers send with the name only in the message. Chain them with ``otherwise``.
    """
    if style not in REJECTION_STYLES:
        raise ValueError(f"unknown rejection style {style!r}")

    def handle(received: Received) -> Reply | StreamReply:
        request = received.json()
        if param not in request:
            return otherwise(received)
        if style == "unrecognized":
            error = {
                "message": f"Unrecognized request argument supplied: {param}",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        elif style == "unsupported_value":
            error = {
                "message": f"Unsupported value: '{param}' does not support {json.dumps(request[param])} with "
                "this model. Only the default (1) value is supported.",
                "type": "invalid_request_error",
                "param": param,
                "code": "unsupported_value",
            }
        else:
            error = {
                "message": f"Unsupported parameter: '{param}' is not supported with this model.",
                "type": "invalid_request_error",
                "param": param,
                "code": "unsupported_parameter",
            }
        return Reply(400, {"error": error})

    return handle


def fake_openai() -> FakeServer:
    return FakeServer(echo_llm)


def fake_slack() -> FakeServer:
    return FakeServer(lambda received: Reply(200, "ok"))


def fake_lambda() -> FakeServer:
    """The Lambda Invoke API: an Event invocation is accepted with 202 and an empty body."""
    return FakeServer(lambda received: Reply(202, b""))
