"""Fake AWS Lambda, OpenAI and Slack ``response_url`` endpoints for the benchmark, on 127.0.0.1.

Contract: ``python bench/fakes.py`` starts three threaded HTTP servers on free loopback
ports, prints one JSON line ``{"lambda": url, "openai": url, "slack": url}`` on stdout, and
serves until its stdin reaches EOF (or a line ``quit`` arrives), or ``MAX_LIFETIME_SECONDS``
pass, whichever is first. It then shuts every server down and exits 0.

- Lambda: ``POST /2015-03-31/functions/<name>/invocations`` answers 202 with an empty body,
  as an ``InvocationType="Event"`` invoke does.
- OpenAI: ``POST /v1/chat/completions`` answers a minimal chat completion (content ``"x"``).
  With ``"stream": true`` the same answer comes as OpenAI's chat-completion SSE over HTTP/1.1
  chunked encoding, one SSE event per HTTP chunk: a role chunk, the content chunk(s), a chunk
  with ``finish_reason: "stop"``, a usage chunk with empty ``choices`` when
  ``stream_options.include_usage`` is true (the other chunks then carry ``"usage": null``, as
  OpenAI's do), ``data: [DONE]`` and the chunked terminator. The whole stream leaves in one
  write, as a whole answer does: nothing is paced (``bench/sse_llm.py`` streams at a model's
  pace), and the server's time ends before the client reads, so subtracting it takes out only
  the fake's own work and none of the client's parsing.
- Slack: any other ``POST`` answers 200 ``ok``, as a ``response_url`` does.
- Each server answers ``GET /_stats`` (``?reset=1`` to start counting afresh) with what it
  has seen: per Lambda function, the invokes, new TCP connections and payload bytes; per
  server, the time each request spent in the server, from parsing its request line to its
  last byte written (for a stream, the chunked terminator), so a client can subtract the
  fakes' own time from what it measured, how many of the OpenAI requests were streamed
  (``streams``), and how many threads the process runs (one per open connection, plus three).

The servers run in their own process so that their work does not take the benchmarked
process's GIL: on a 2-core machine the client and the fake each get a core. Standard
library only, so that nothing it imports can bend the numbers of the processes it serves.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_LIFETIME_SECONDS = 1800.0
INVOKE_PREFIX = "/2015-03-31/functions/"
CHAT_PATH = "/v1/chat/completions"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class Stats:
    """What one server saw; every method is safe to call from the handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.server_seconds: list[float] = []
            self.functions: dict[str, dict[str, int]] = {}
            self.streams = 0

    def record(
        self, seconds: float, function: str | None, new_connection: bool, payload_bytes: int, stream: bool = False
    ) -> None:
        with self._lock:
            self.server_seconds.append(seconds)
            self.streams += int(stream)
            if function is not None:
                seen = self.functions.setdefault(function, {"invokes": 0, "connections": 0, "payload_bytes": 0})
                seen["invokes"] += 1
                seen["connections"] += int(new_connection)
                seen["payload_bytes"] += payload_bytes

    def snapshot(self, reset: bool) -> dict[str, Any]:
        with self._lock:
            data = {
                "server_seconds": list(self.server_seconds),
                "functions": json.loads(json.dumps(self.functions)),
                "streams": self.streams,
                "threads": threading.active_count(),  # open connections: one handler thread each
            }
        if reset:
            self.reset()
        return data


ANSWER = "x"
USAGE = {"prompt_tokens": 11, "completion_tokens": 1, "total_tokens": 12}


def _chat_completion() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
            "usage": USAGE,
        }
    ).encode()


def _chat_stream(include_usage: bool) -> bytes:
    """The same answer as OpenAI's chat-completion SSE, each event framed as one HTTP/1.1 chunk."""

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "fake-model",
            "system_fingerprint": None,
            "choices": choices,
        }
        if include_usage:  # OpenAI adds the field to every chunk then: null but on the last
            data["usage"] = usage
        return data

    def choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    events = [chunk([choice({"role": "assistant", "content": ""})])]
    events.append(chunk([choice({"content": ANSWER})]))  # one content chunk: the answer is one character
    events.append(chunk([choice({}, "stop")]))
    if include_usage:
        events.append(chunk([], USAGE))
    payloads = [b"data: " + json.dumps(event).encode() + b"\n\n" for event in events] + [b"data: [DONE]\n\n"]
    return b"".join(f"{len(data):x}\r\n".encode() + data + b"\r\n" for data in payloads) + b"0\r\n\r\n"


def make_server(kind: str) -> tuple[_Server, Stats]:
    stats = Stats()
    completion = _chat_completion()
    streams = {include_usage: _chat_stream(include_usage) for include_usage in (False, True)}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in one write and without Nagle's delay: a 40 ms delayed-ACK
        # stall on loopback would otherwise swamp the sub-millisecond handlers being measured.
        disable_nagle_algorithm = True
        timeout = 60  # an idle keep-alive connection frees its thread after this long

        def setup(self) -> None:
            super().setup()
            self.requests_on_connection = 0
            self.started = 0.0

        def parse_request(self) -> bool:
            self.started = time.perf_counter()
            self.requests_on_connection += 1
            return super().parse_request()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/_stats":
                self._send(404, b"", "text/plain")
                return
            reset = parse_qs(url.query).get("reset") == ["1"]
            self._send(200, json.dumps(stats.snapshot(reset)).encode(), "application/json")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlsplit(self.path).path
            function = None
            streamed = False
            if kind == "lambda" and path.startswith(INVOKE_PREFIX) and path.endswith("/invocations"):
                function = path[len(INVOKE_PREFIX) : -len("/invocations")]
                self._send(202, b"", "application/json", {"x-amzn-RequestId": str(uuid.uuid4())})
            elif kind == "openai" and path == CHAT_PATH:
                request = json.loads(body)  # a real server parses the request; so does this one
                streamed = request.get("stream") is True
                if streamed:
                    include_usage = (request.get("stream_options") or {}).get("include_usage") is True
                    self._send_chunked(200, streams[include_usage], "text/event-stream; charset=utf-8")
                else:
                    self._send(200, completion, "application/json", {"x-request-id": "req_bench"})
            elif kind == "slack":
                self._send(200, b"ok", "text/html")
            else:
                self._send(404, b"{}", "application/json")
            seconds = time.perf_counter() - self.started
            stats.record(seconds, function, self.requests_on_connection == 1, len(body), streamed)

        def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
            lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}", f"Content-Type: {content_type}"]
            lines += [f"Content-Length: {len(body)}", "Connection: keep-alive"]
            lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client hung up first
                self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

        def _send_chunked(self, status: int, chunked_body: bytes, content_type: str) -> None:
            """Headers and an already chunk-framed body (terminator included), in one write."""
            lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}", f"Content-Type: {content_type}"]
            lines += ["Transfer-Encoding: chunked", "Cache-Control: no-cache", "Connection: keep-alive"]
            lines += ["x-request-id: req_bench"]
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client hung up first
                self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + chunked_body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a line per request would cost more than the request

    return _Server(("127.0.0.1", 0), Handler), stats


def main() -> int:
    servers = {kind: make_server(kind)[0] for kind in ("lambda", "openai", "slack")}
    threads = [threading.Thread(target=server.serve_forever, daemon=True) for server in servers.values()]
    for thread in threads:
        thread.start()
    urls = {kind: f"http://127.0.0.1:{server.server_address[1]}" for kind, server in servers.items()}
    sys.stdout.write(json.dumps(urls) + "\n")
    sys.stdout.flush()

    stop = threading.Event()

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "quit":
                break
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait(MAX_LIFETIME_SECONDS)
    for server in servers.values():
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
