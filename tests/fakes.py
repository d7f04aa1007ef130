"""Real HTTP servers on 127.0.0.1 that stand in for OpenAI, Slack and the Lambda API.

Each runs in a thread of the test process, records what it receives, and answers as a test
scripts it. Tests talk to them over real sockets, with the real clients (openai, requests,
boto3); nothing of the project's own code is mocked.
"""

from __future__ import annotations

import json
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # read when the socket starts listening: many clients connect at once


class FakeServer:
    """A threaded HTTP server that records requests and answers from a script.

    ``script`` is a list of ``Reply`` used in order, one per request; when it is empty,
    ``default(received)`` answers.
    """

    def __init__(self, default: Callable[[Received], Reply]) -> None:
        self.default = default
        self.script: list[Reply] = []
        self.received: list[Received] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self._lock = threading.Condition()
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

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
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


def echo_llm(received: Received) -> Reply:
    """By default the fake LLM answers with the user's question, so tests can match replies to jobs."""
    question = received.json()["messages"][-1]["content"]
    return Reply(200, chat_completion(f"**Answer** to: {question}"))


def fake_openai() -> FakeServer:
    return FakeServer(echo_llm)


def fake_slack() -> FakeServer:
    return FakeServer(lambda received: Reply(200, "ok"))


def fake_lambda() -> FakeServer:
    """The Lambda Invoke API: an Event invocation is accepted with 202 and an empty body."""
    return FakeServer(lambda received: Reply(202, b""))
