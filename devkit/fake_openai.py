"""A fake OpenAI-compatible LLM: the Chat Completions API, whole or streamed, on 127.0.0.1.

Contract:

- ``fake_openai(default=echo_llm)`` is a ``devkit.http_fake.FakeServer`` (recording,
  scripted) whose base URL for the openai SDK is ``url + "/v1"``. Any request is answered:
  the server does not check the path or the key.
- A whole answer is a ``Reply`` with ``chat_completion(text)``; an error is
  ``openai_error(status, code)``, OpenAI's error body.
- ``StreamReply`` is a streamed answer: OpenAI's chat-completion SSE over HTTP/1.1 chunked
  encoding. A role chunk, one chunk per piece (each of ``deltas`` as content, then each
  ``tool_calls`` entry as OpenAI streams a call: its id and name, then its arguments in a
  few pieces), a chunk with ``finish_reason`` (left out when None), a usage chunk with empty
  ``choices`` when the request asked for ``stream_options.include_usage`` (every chunk then
  carries ``"usage": null`` but that one, as OpenAI's do), ``data: [DONE]``, the terminator.
  What reaches the client leaves in as few writes as the reply's pauses allow.
  Options, counted in pieces sent (``len(pieces) + 1``: after the finish_reason chunk, the
  text complete but usage and [DONE] not); use one cut (break, close or stall) at a time:

  - ``break_after``: the connection drops mid-body (no terminator), as a network failure;
  - ``close_cleanly_after``: the body ends properly, without finish_reason or [DONE];
  - ``stall_after``: nothing more is sent until the client hangs up (or the server stops);
  - ``garbage_after``: an event whose data is ``garbage`` (not JSON), then the stream goes on;
  - ``error_after``: an ``{"error": ...}`` event, as OpenAI sends for a failure mid-stream;
  - ``pause_after`` (no cut, combinable with one): nothing for ``pause_seconds``, then on;
  - ``wait_before``: silence between the headers and the role chunk (a model thinking, or
    time to the first token);
  - pace: ``delay`` seconds between pieces, each ± ``jitter`` (a fraction, drawn from
    ``seed``), scheduled on the monotonic clock from the first piece so it does not drift;
  - ``finish_reason``: ``stop`` by default; ``length``, ``content_filter``, ``tool_calls``
    or any other string as given; ``usage``: (prompt, completion) tokens; ``model``.

  Waits end early when the client hangs up or the server stops; ``disconnected`` (an Event)
  is set when the client hung up before the answer's end (``outcome`` ``client_gone``), so a
  test can wait for the client to close a stream mid-way. Once served, ``outcome``
  says how it ended on the server's side (``done``, ``broken``, ``closed``, ``client_gone``,
  ``server_stopped``) and ``ended`` is set; ``sent_text``, ``first_text_at`` and
  ``ended_at`` (monotonic clock) say what went out when; ``summary()`` gives them (and the
  first delta, ``first_text``) to the server's ``/_stats``.
- Handlers (``Received -> Reply | StreamReply``): ``echo_llm`` answers "**Answer** to:
  <the last message>" (streamed when asked), so tests can match replies to jobs;
  ``answering(text)`` always ``text``, at once; ``dripping(text, pieces, delay)`` ``text`` in
  ``pieces`` deltas, one every ``delay`` seconds (a slow answer to stop mid-way); ``paced_llm``
  the benchmark's answers at a model's pace, chosen by a tag in the last message, ``[bench chars=N seed=S first=MS
  every=MS delta=C]``: ``answer_text(N, S)`` (Markdown of about N characters in English and
  Japanese, with lists and fenced code; default 300 characters, seed 0), its first text
  after ``first`` ms (default 300-500, drawn from the seed), then a piece of 1 to
  ``2 * delta - 1`` characters (default delta 4) every ``every`` ms (default 30, ±30%);
  ``rejecting(param, style, otherwise)`` refuses any request that carries ``param`` with a
  400 in one of ``REJECTION_STYLES`` (OpenAI's ``unsupported_parameter`` and
  ``unsupported_value``, naming it in ``error.param``; ``unrecognized``: "Unrecognized
  request argument supplied", some compatible servers' way) and passes the rest on.

Standard library only; never imports ``chalicelib``.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devkit.http_fake import Exchange, FakeServer, Received, Reply


@dataclass(frozen=True)
class ToolCall:
    """A function call the model streams: its arguments (JSON text) arrive in ``pieces`` parts."""

    name: str
    arguments: str = "{}"
    id: str = ""  # default: call_<its index>
    pieces: int = 3


@dataclass
class StreamReply:
    """One scripted streamed answer; see the module docstring."""

    deltas: list[str] = field(default_factory=lambda: ["Hello", ", ", "world", "!"])
    delay: float = 0.0  # seconds between pieces: 0.02 paces like a real model, 0 (tests) sends at once
    finish_reason: str | None = "stop"  # None: no finish_reason chunk, though usage and [DONE] still come
    tool_calls: list[ToolCall] = field(default_factory=list)
    break_after: int | None = None
    close_cleanly_after: int | None = None
    stall_after: int | None = None
    garbage_after: int | None = None
    garbage: bytes = b"<html>502 Bad Gateway</html>"  # the data of garbage_after's event
    error_after: int | None = None
    pause_after: int | None = None
    pause_seconds: float = 0.0
    wait_before: float = 0.0
    jitter: float = 0.0
    seed: int = 0
    model: str = "fake-model"
    usage: tuple[int, int] = (11, 7)  # prompt_tokens, completion_tokens
    outcome: str | None = field(default=None, compare=False)
    ended: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)
    disconnected: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)
    sent_text: str = field(default="", compare=False)
    first_text_at: float | None = field(default=None, compare=False)
    ended_at: float | None = field(default=None, compare=False)

    def pieces(self) -> list[dict[str, Any]]:
        """The deltas after the role chunk, in order: the text, then each tool call."""
        pieces: list[dict[str, Any]] = [{"content": text} for text in self.deltas]
        for index, call in enumerate(self.tool_calls):
            head = {"index": index, "id": call.id or f"call_{index}", "type": "function"}
            pieces.append({"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]})
            for part in split_deltas(call.arguments, call.pieces):
                pieces.append({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
        return pieces

    def send(self, exchange: Exchange) -> None:
        try:
            self.outcome = self._send(exchange)
        except OSError:  # a broken pipe or a reset: the client hung up first
            self.outcome = "client_gone"
            exchange.close_connection = True
        finally:
            self.ended_at = time.monotonic()
            if self.outcome == "client_gone":
                self.disconnected.set()
            self.ended.set()

    def summary(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "text": self.sent_text,
            "first_text": self.deltas[0] if self.first_text_at is not None else None,
            "first_text_at": self.first_text_at,
            "ended_at": self.ended_at,
        }

    def _send(self, exchange: Exchange) -> str:
        include_usage = _asks_for_usage(exchange.received)
        exchange.start_chunked(200, "text/event-stream; charset=utf-8", {"Cache-Control": "no-cache"})
        if self.wait_before and (gone := exchange.quiet(self.wait_before)):
            return gone
        self._event(exchange, self._chunk(include_usage, {"role": "assistant", "content": ""}))
        pieces = self.pieces()
        rng = random.Random(self.seed)
        due = time.monotonic()
        # A pass per piece, one after the last and one after the finish_reason chunk.
        for sent in range(len(pieces) + 2):
            if sent == self.pause_after and (gone := exchange.quiet(self.pause_seconds)):
                return gone
            if sent == self.break_after:
                return exchange.drop()
            if sent == self.close_cleanly_after:
                return exchange.end_chunks("closed")
            if sent == self.stall_after:
                return exchange.stall()
            if sent == len(pieces) + 1:
                break
            if sent == len(pieces):
                if self.finish_reason is not None:
                    self._event(exchange, self._chunk(include_usage, {}, self.finish_reason))
                continue
            if sent == self.garbage_after:
                exchange.chunk(b"data: " + self.garbage + b"\n\n")
            if sent == self.error_after:
                self._event(exchange, {"error": {"message": "The server had an error", "type": "server_error"}})
            if sent and self.delay:
                due += self.delay * (1 + rng.uniform(-self.jitter, self.jitter))
                if gone := exchange.quiet_until(due):
                    return gone
            piece = pieces[sent]
            if "content" in piece:
                self.first_text_at = self.first_text_at or time.monotonic()
                self.sent_text += piece["content"]
            self._event(exchange, self._chunk(include_usage, piece))
        if include_usage:
            prompt, completion = self.usage
            usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
            self._event(exchange, self._chunk(include_usage, None, usage=usage))
        exchange.chunk(b"data: [DONE]\n\n")
        return exchange.end_chunks("done")

    def _chunk(
        self,
        include_usage: bool,
        delta: dict[str, Any] | None,
        finish_reason: str | None = None,
        usage: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        choices = [] if delta is None else [choice]
        chunk: dict[str, Any] = {
            "id": "chatcmpl-fake-stream",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if include_usage:  # OpenAI adds the field to every chunk then: null but on the last
            chunk["usage"] = usage
        return chunk

    @staticmethod
    def _event(exchange: Exchange, data: dict[str, Any]) -> None:
        try:
            body = json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError:  # a lone surrogate (a test's odd model name): JSON-escaped, as OpenAI would
            body = json.dumps(data).encode()
        exchange.chunk(b"data: " + body + b"\n\n")


Handler = Callable[[Received], Reply | StreamReply]


def _asks_for_usage(received: Received) -> bool:
    try:
        request = received.json()
    except ValueError:
        return False
    options = request.get("stream_options") if isinstance(request, dict) else None
    return isinstance(options, dict) and bool(options.get("include_usage"))


def split_deltas(text: str, pieces: int = 4) -> list[str]:
    """``text`` cut into about ``pieces`` deltas that join back to it, as a model streams an answer."""
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def chat_completion(text: str, model: str = "fake-model", usage: tuple[int, int] = (11, 7)) -> dict[str, Any]:
    prompt, completion = usage
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


def openai_error(status: int, code: str, message: str = "error from the fake server") -> Reply:
    return Reply(status, {"error": {"message": message, "type": "error", "code": code, "param": None}})


def echo_llm(received: Received) -> Reply | StreamReply:
    """The answer names the question, so tests can match replies to jobs; streamed when asked, in a few deltas."""
    request = received.json()
    answer = f"**Answer** to: {request['messages'][-1]['content']}"
    if request.get("stream"):
        return StreamReply(deltas=split_deltas(answer))
    return Reply(200, chat_completion(answer))


def answering(text: str, usage: tuple[int, int] = (11, 1)) -> Handler:
    """A handler that answers ``text`` at once, whole or streamed in one delta."""

    def handle(received: Received) -> Reply | StreamReply:
        if received.json().get("stream") is True:
            return StreamReply(deltas=[text], usage=usage)
        return Reply(200, chat_completion(text, usage=usage))

    return handle


def dripping(text: str, pieces: int = 40, delay: float = 0.1) -> Handler:
    """A handler whose streamed answer is ``text`` in ``pieces`` deltas, one every ``delay`` seconds."""

    def handle(received: Received) -> Reply | StreamReply:
        if received.json().get("stream") is True:
            return StreamReply(deltas=split_deltas(text, pieces), delay=delay)
        return Reply(200, chat_completion(text))

    return handle


REJECTION_STYLES = ("unsupported_parameter", "unsupported_value", "unrecognized")


def rejecting(param: str, style: str = "unsupported_parameter", otherwise: Handler = echo_llm) -> Handler:
    """A handler for a model or server that refuses ``param``: any request that carries it gets a
    400 in ``style``, whole or streamed; any other is answered by ``otherwise`` (the echo).

    Chain them with ``otherwise`` for a model that refuses several.
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


def fake_openai(default: Handler = echo_llm) -> FakeServer:
    return FakeServer(default)


# --- the benchmark's answers, at a model's pace --------------------------------------------------------------------

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


def bench_tag(request: dict[str, Any]) -> dict[str, int]:
    """The ``[bench name=value ...]`` tag of a request's last message, as numbers."""
    messages = request.get("messages")
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


def paced_llm(received: Received) -> Reply | StreamReply:
    request = received.json()
    tag = bench_tag(request)
    seed = tag.get("seed", 0)
    text = answer_text(tag.get("chars", 300), seed)
    usage = (50, max(1, len(text) // 3))
    if not request.get("stream"):
        return Reply(200, chat_completion(text, usage=usage))
    rng = random.Random(seed ^ 0x5EED)
    first = tag.get("first", rng.randint(300, 500)) / 1000
    delta = max(1, tag.get("delta", 4))
    pieces: list[str] = []
    position = 0
    while position < len(text):
        size = rng.randint(1, 2 * delta - 1)
        pieces.append(text[position : position + size])
        position += size
    every = tag.get("every", 30) / 1000
    return StreamReply(deltas=pieces, wait_before=first, delay=every, jitter=0.3, seed=seed, usage=usage)
