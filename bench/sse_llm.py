"""A fake OpenAI-compatible LLM that streams its answers at a realistic pace, for ``bench/stream.py``.

Contract: ``python bench/sse_llm.py`` serves ``POST /v1/chat/completions`` on a free
127.0.0.1 port, prints one JSON line ``{"url": "http://127.0.0.1:<port>"}`` on stdout, and
serves until its stdin reaches EOF (or a line ``quit`` arrives), or ``MAX_LIFETIME_SECONDS``
pass. It then stops and exits 0.

- The answer is chosen by a tag in the last message: ``[bench chars=N seed=S first=MS
  every=MS delta=C]``. It is ``answer_text(N, S)``: Markdown of about ``N`` characters
  (headings, English and Japanese paragraphs, lists, fenced code with blank lines), the same for the same
  ``N`` and ``S``. Without a tag: a 300-character answer, seed 0.
- ``"stream": true`` gets OpenAI's chat-completion SSE over HTTP/1.1 chunked encoding: a role
  chunk at once, the first text ``first`` ms later (default: 300-500 ms, drawn from the seed),
  then a delta every ``every`` ms (default 30, jittered ±30%) of 1 to ``2 * delta - 1``
  characters (default ``delta`` 4: a few characters, as a model's tokens), then a
  ``finish_reason: "stop"`` chunk, a usage chunk when ``stream_options.include_usage`` is
  set, ``data: [DONE]`` and the chunked terminator. Deltas are scheduled on the monotonic
  clock from the first one, so the pace does not drift with the time spent writing.
  Without ``"stream": true`` the same text comes back as one chat completion, at once.
- ``GET /_sent`` (``?reset=1`` to forget them afterwards) answers the streams served so far,
  oldest first: ``{"received_at", "first_token_at", "done_at"}`` (``time.monotonic()`` of
  this process, which on Linux is the system-wide CLOCK_MONOTONIC that other processes read
  too), ``first_delta``, ``text`` (everything sent), ``deltas``, ``chars`` and ``outcome``
  (``"done"`` or ``"client_gone"``).

Standard library only; it runs in its own process so that its pacing never waits for the
benchmarked process's GIL, as a real LLM's would not.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_LIFETIME_SECONDS = 1800.0
CHAT_PATH = "/v1/chat/completions"
_TAG = re.compile(r"\[bench ([^\]]*)\]")

_EN_TEXT = (
    "the function reads each message once and keeps the thread small so that a cold start stays cheap "
    "while the stream carries every delta to the user as soon as it is written and nothing is lost at a cut "
    "Lambda freezes the sandbox after the handler returns so every call must be finished before then"
)
_EN_WORDS = tuple(_EN_TEXT.split())
_JA_SENTENCES = (
    "東京の朝は静かで、川沿いの散歩道には桜の木が並んでいます。",
    "この関数は一度だけメッセージを読み、スレッドを小さく保ちます。",
    "冷蔵庫には卵と玉ねぎとトマトがあるので、オムレツを作りましょう。",
    "長い回答は段落の区切りで分けて、続きを同じスレッドに送ります。",
    "コードブロックが途中で切れたら、閉じてから次のメッセージで開き直します。",
    "応答は書かれるそばから表示されるので、待ち時間を短く感じます。",
)
_CODE_LINES = (
    "def answer(question: str) -> str:",
    '    """Return a short answer."""',
    "    words = question.split()",
    "    if not words:",
    '        return "?"',
    "    total = sum(len(word) for word in words)",
    '    return f"{len(words)} words, {total} letters"',
    "for index, item in enumerate(items):",
    "    print(index, item)",
    "result = {key: value * 2 for key, value in pairs}",
)


def answer_text(chars: int, seed: int) -> str:
    """Markdown of ``chars`` characters or a few more (it never ends in whitespace), fixed by ``seed``."""
    rng = random.Random(seed)
    blocks: list[str] = []
    size = 0
    while size < chars + 200:
        kind = rng.choice(("en", "ja", "ja", "ja", "list", "code", "heading"))
        if kind == "en":
            block = " ".join(rng.choice(_EN_WORDS) for _ in range(rng.randint(25, 70))).capitalize() + "."
        elif kind == "ja":
            block = "".join(rng.choice(_JA_SENTENCES) for _ in range(rng.randint(2, 6)))
        elif kind == "list":
            block = "\n".join(
                f"- **{rng.choice(_EN_WORDS)}**: {rng.choice(_JA_SENTENCES)}" for _ in range(rng.randint(3, 6))
            )
        elif kind == "code":
            # Blank lines inside, as real code has: a cut at a "paragraph" may then fall in the block.
            lines = [rng.choice(_CODE_LINES) if rng.random() > 0.15 else "" for _ in range(rng.randint(6, 60))]
            block = "```python\n" + "\n".join(lines) + "\n```"
        else:
            block = f"## {rng.choice(_EN_WORDS).capitalize()} {rng.choice(_EN_WORDS)}"
        blocks.append(block)
        size += len(block) + 2
    text = "\n\n".join(blocks)
    cut = chars
    while text[cut - 1].isspace():  # a Slack message cannot end in whitespace that matters
        cut += 1
    return text[:cut]


def _tag(messages: Any) -> dict[str, int]:
    content = ""
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        content = str(messages[-1].get("content") or "")
    match = _TAG.search(content)
    values: dict[str, int] = {}
    for pair in match.group(1).split() if match else []:
        name, _, value = pair.partition("=")
        with contextlib.suppress(ValueError):
            values[name] = int(value)
    return values


class Sent:
    """The streams served; safe to use from the handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self, reset: bool) -> list[dict[str, Any]]:
        with self._lock:
            records = [dict(record) for record in self._records]
            if reset:
                self._records = []
        return records


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def make_server(stopping: threading.Event) -> tuple[_Server, Sent]:
    sent = Sent()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Every delta leaves at once: Nagle's algorithm would hold a small write for an ACK.
        disable_nagle_algorithm = True
        timeout = 60

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/_sent":
                self._send(404, b"{}")
                return
            reset = parse_qs(url.query).get("reset") == ["1"]
            self._send(200, json.dumps(sent.snapshot(reset), ensure_ascii=False).encode())

        def do_POST(self) -> None:
            received_at = time.monotonic()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if urlsplit(self.path).path != CHAT_PATH:
                self._send(404, b"{}")
                return
            request = json.loads(body)
            tag = _tag(request.get("messages"))
            seed = tag.get("seed", 0)
            text = answer_text(tag.get("chars", 300), seed)
            if not request.get("stream"):
                self._send(200, json.dumps(_completion(text)).encode())
                return
            rng = random.Random(seed ^ 0x5EED)
            first = tag.get("first", rng.randint(300, 500)) / 1000
            every = tag.get("every", 30) / 1000
            delta = max(1, tag.get("delta", 4))
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            record: dict[str, Any] = {"received_at": received_at, "chars": len(text), "deltas": 0, "text": ""}
            try:
                self._stream(text, rng, received_at + first, every, delta, include_usage, record)
                record["outcome"] = "done"
            except OSError:  # a broken pipe or a reset: the client hung up
                record["outcome"] = "client_gone"
                self.close_connection = True
            record["done_at"] = time.monotonic()
            sent.add(record)

        def _stream(
            self,
            text: str,
            rng: random.Random,
            first_at: float,
            every: float,
            delta: int,
            include_usage: bool,
            record: dict[str, Any],
        ) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self._event(_chunk({"role": "assistant", "content": ""}))
            due = first_at
            position = 0
            while position < len(text):
                if stopping.wait(max(0.0, due - time.monotonic())):
                    raise ConnectionAbortedError("server stopping")
                piece = text[position : position + rng.randint(1, 2 * delta - 1)]
                if position == 0:
                    record["first_token_at"] = time.monotonic()
                    record["first_delta"] = piece
                self._event(_chunk({"content": piece}))
                position += len(piece)
                record["text"] += piece
                record["deltas"] += 1
                due += every * rng.uniform(0.7, 1.3)
            self._event(_chunk({}, "stop"))
            if include_usage:
                self._event(_usage_chunk(len(text)))
            self._chunked(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _event(self, data: dict[str, Any]) -> None:
            self._chunked(b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n")

        def _chunked(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return _Server(("127.0.0.1", 0), Handler), sent


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench-stream",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake-model",
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        "usage": None,
    }


def _usage_chunk(chars: int) -> dict[str, Any]:
    completion = max(1, chars // 3)
    return {
        "id": "chatcmpl-bench-stream",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake-model",
        "system_fingerprint": None,
        "choices": [],
        "usage": {"prompt_tokens": 50, "completion_tokens": completion, "total_tokens": 50 + completion},
    }


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": len(text) // 3, "total_tokens": 50 + len(text) // 3},
    }


def main() -> int:
    stopping = threading.Event()
    server, _ = make_server(stopping)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sys.stdout.write(json.dumps({"url": f"http://127.0.0.1:{server.server_address[1]}"}) + "\n")
    sys.stdout.flush()

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "quit":
                break
        stopping.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stopping.wait(MAX_LIFETIME_SECONDS)
    stopping.set()  # wakes streams that are pacing
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
