"""The stand-in model of `make demo`: an OpenAI-compatible chat server that is plainly not an LLM.

Contract:

- ``answer(messages) -> str`` is pure and deterministic: from a chat request's ``messages``
  (OpenAI's ``[{"role": ..., "content": ...}]``, system first, the question last) it makes a
  short Markdown answer that starts with ``LABEL``, quotes the question, and, when the chat
  holds earlier turns, says how many and quotes the first question: so a follow-up in a
  thread visibly uses the thread. The bot's user turns may start with who wrote them
  (``<@U123>: ``, chalicelib.slack.history); that prefix is left out of the quotes.
- ``respond(received)`` answers one request of the fake OpenAI server: a streamed chat
  completion of ``answer(...)``, paced over about ``STREAM_SECONDS`` so that a thread shows
  the text growing (the bot appends to a Slack stream every 2 s), or the same answer whole
  when the request does not ask for a stream. Anything but ``POST .../chat/completions`` with
  a JSON object holding ``messages`` gets an OpenAI-style error (404 or 400).
- ``failure()`` is a reply for the server's ``script``: the next request fails the way an
  overloaded service does (HTTP 429, ``rate_limit_exceeded``), with ``x-should-retry: false``
  so the SDK does not ask again: the bot then tells the user its plain-language line.
- ``server()`` is the fake OpenAI server answering with ``respond``; ``with server() as s:``
  serves it on 127.0.0.1 and ``s.url + "/v1"`` is an ``OPENAI_BASE_URL``.

Built on the devkit's one fake OpenAI server (``devkit.fake_openai``). Standard library only;
never imports ``chalicelib``.
"""

from __future__ import annotations

import json
from typing import Any

from devkit.fake_openai import StreamReply, chat_completion, openai_error, split_deltas
from devkit.http_fake import FakeServer, Received, Reply

LABEL = "[stand-in model: not an LLM]"
MODEL_NAME = "stand-in-model"  # in the bot's logs and the replies' "model", in place of a real one
STREAM_SECONDS = 2.4  # a little over one of the bot's 2 s append intervals: the text grows once or twice
FIRST_CHUNK_SECONDS = 0.3  # long enough to see "is thinking…", short enough not to wait for it
DELTAS = 24
QUOTE_CHARS = 60  # a longer question is quoted cut short, with "…"
FAILURE_MESSAGE = "The stand-in model fails this request on purpose, as an overloaded service would."


def answer(messages: list[dict[str, Any]]) -> str:
    """The stand-in's answer to a chat: labelled, built only from the chat itself."""
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    if turns and turns[-1].get("role") == "user":
        question, earlier = _text(turns[-1]), turns[:-1]
    else:
        question, earlier = "", turns
    lines = [LABEL, ""]
    if question:
        lines.append(f"You asked: 「{_quote(question)}」 ({len(question)} characters).")
    else:
        lines.append("You asked nothing in words, so there is nothing to quote.")
    if earlier:
        yours = sum(1 for m in earlier if m.get("role") == "user")
        mine = len(earlier) - yours
        first = next((_text(m) for m in earlier if m.get("role") == "user"), "")
        lines += [
            "",
            f"I remember this thread: {_count(len(earlier), 'earlier message')} ({yours} from you, {mine} from me).",
        ]
        if first:
            lines.append(f"It began with 「{_quote(first)}」.")
        lines += [
            "",
            "A real model would now answer with all of that in mind; "
            "the bot sent it the whole thread, trimmed to `MAX_CONTEXT_TOKENS`.",
        ]
    else:
        lines += [
            "",
            "A real model would answer it here, the same way:",
            "- **streamed**: the text grows in the thread as it is written;",
            "- in **Markdown**, which Slack shows formatted, like this list;",
            "- and a follow-up in a thread is answered with the thread in mind.",
        ]
    return "\n".join(lines)


def respond(received: Received) -> Reply | StreamReply:
    """The fake OpenAI server's answer to one request: the stand-in's answer, or an OpenAI-style error."""
    if not received.path.rstrip("/").endswith("/chat/completions"):
        return openai_error(
            404, "unknown_url", f"The stand-in model serves only POST /v1/chat/completions, not {received.path}."
        )
    try:
        request = received.json()
    except ValueError:
        request = None
    if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
        return openai_error(400, "invalid_request_error", "The request needs a JSON object with a messages list.")
    text = answer(request["messages"])
    if not request.get("stream"):
        return Reply(200, chat_completion(text, model=MODEL_NAME))
    deltas = split_deltas(text, DELTAS)
    return StreamReply(
        deltas=deltas,
        delay=STREAM_SECONDS / max(len(deltas), 1),
        wait_before=FIRST_CHUNK_SECONDS,
        model=MODEL_NAME,
        usage=(_tokens(request["messages"]), _tokens([{"content": text}])),
    )


def failure() -> Reply:
    """One failed request, as a busy service answers; the SDK is told not to retry it."""
    reply = openai_error(429, "rate_limit_exceeded", FAILURE_MESSAGE)
    reply.headers["x-should-retry"] = "false"
    return reply


def server() -> FakeServer:
    """The fake OpenAI server with the stand-in behind it (not started: use it in ``with``)."""
    return FakeServer(respond)


def _text(message: dict[str, Any]) -> str:
    """A message's words: its content (a string, or OpenAI's list of text parts), without the author prefix."""
    content = message.get("content")
    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    text = str(content or "").strip()
    if message.get("role") == "user" and text.startswith("<@") and ">: " in text[:40]:
        text = text.split(">: ", 1)[1].strip()
    return text


def _quote(text: str) -> str:
    text = " ".join(text.split())  # one line, whatever the question's shape
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1] + "…"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _tokens(messages: list[Any]) -> int:
    """A rough token count for the usage chunk: the bot logs it, and a stand-in should not claim zero."""
    return max(1, sum(len(json.dumps(m, ensure_ascii=False)) for m in messages) // 3)
