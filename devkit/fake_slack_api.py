"""A fake Slack Web API: a real HTTP server on 127.0.0.1 that ``slack_sdk.WebClient`` talks to.

Contract:

- ``FakeSlackAPI(...)`` binds 127.0.0.1 (``port=0``: any free port) when made; ``start()`` /
  ``stop()`` or ``with FakeSlackAPI() as slack:`` serve it in a daemon thread. ``slack.url``
  (ends with ``/api/``) is the ``base_url`` for ``WebClient(token=FAKE_BOT_TOKEN, base_url=...)``.
- Methods served, at ``/api/<method>``, with arguments as slack_sdk sends them (a JSON body,
  a form body, a query string, or both of the last two; every method answers POST and GET):
  ``auth.test``, ``chat.postMessage``, ``chat.update``, ``chat.delete``, ``chat.startStream``,
  ``chat.appendStream``, ``chat.stopStream``, ``conversations.replies``,
  ``assistant.threads.setStatus``, ``assistant.threads.setSuggestedPrompts``. Any other
  method: HTTP 404 ``unknown_method``.
- It keeps a model of what a user sees: messages by channel and thread. The bot's messages
  carry ``user`` = ``bot_user_id`` and ``bot_id``, so ``conversations.replies`` shows them as
  Slack does. ``chat.postMessage`` posts; ``chat.startStream`` posts a streaming message
  (text from ``markdown_text`` and the ``markdown_text`` chunks), ``chat.appendStream`` adds
  to it, ``chat.stopStream`` adds its text and ends it; ``chat.update`` replaces a message's
  text; ``chat.delete`` removes the bot's message (a thread root that has replies stays as
  Slack's tombstone: subtype ``tombstone``, text ``TOMBSTONE_TEXT``, user ``USLACKBOT``);
  ``conversations.replies`` gives the root and its replies, oldest first, at most
  ``min(limit, page_size)`` a page, with ``has_more`` and ``response_metadata.next_cursor``;
  ``oldest`` / ``latest`` (with ``inclusive``) keep only the replies in that range, and the root
  still comes first (the fake's choice: whether Slack returns a root outside the range is
  unverified, so callers should not depend on it either way).
  Every new message's ``ts`` is unique and later than every ``ts`` the fake has seen.
  Posting in a thread clears the thread's assistant status, as Slack does.
- Streams end: ``stream_max_age`` (seconds by ``clock``, default None: never) ends a stream that
  long after its ``chat.startStream``, however recently it was appended to, as Slack ends
  streams about 5 minutes after they start; ``expire_streams()`` ends every open one now. An
  ended stream keeps the text it had (``Message.stream`` is ``"expired"``).
- ``chat.update`` of a message still streaming: whether Slack allows it is unverified, so both
  are modelled. ``update_while_streaming=False`` (default): refused with
  ``streaming_state_conflict`` (``STREAMING_STATE_CONFLICT``, the code Slack's method reference
  lists for chat.update: "The message is currently streaming text and cannot be edited"), the
  message unchanged and still streaming. ``True``: the text is replaced and the stream ends
  (``Message.stream`` is ``"stopped"``). Code under test should stop a stream before it updates
  the message either way.
- ``streamed_as_blocks`` (default False): when True, ``conversations.replies`` (and the
  ``message`` in write answers) shows each of the bot's Markdown messages (posted or updated
  with ``markdown_text``, or streamed) the way Slack may store them: ``text`` is only the first
  ``FALLBACK_TEXT_CHARS`` (100) characters, a fallback, and the whole text is in ``blocks``
  (``[{"type": "markdown", "text": ...}]``, before any blocks the message has). A reader that
  trusts ``text`` loses the rest. What a user sees (``visible_text``...) is the whole text.
- It refuses what Slack refuses (HTTP 200, ``{"ok": false, "error": ...}``): no token
  (``not_authed``), a wrong one (``invalid_auth``); ``markdown_text`` over 12,000 characters
  in any call or chunk, ``text`` over 40,000, a streamed message over ``stream_byte_limit``
  UTF-8 bytes in all (``msg_too_long``); ``markdown_text`` with ``text`` or ``blocks``
  (``markdown_text_conflict``), a message with no content (``no_text``); chat.startStream
  outside a DM (channel not starting with ``D``) without ``recipient_user_id`` /
  ``recipient_team_id`` (``missing_recipient_user_id`` / ``missing_recipient_team_id``);
  append/stop on a stopped or expired stream (``message_not_in_streaming_state``);
  chat.update of a message still streaming (``streaming_state_conflict``, see above);
  chat.update / chat.delete / append / stop of a message that is not there
  (``message_not_found``), chat.update / chat.delete of one that is not the bot's
  (``cant_update_message`` / ``cant_delete_message``); replies of an unknown thread
  (``thread_not_found``); a bad cursor (``invalid_cursor``), ``oldest`` / ``latest`` that is
  not a timestamp (``invalid_ts_oldest`` / ``invalid_ts_latest``); more than 4 suggested
  prompts, more than 10 loading messages, or a missing argument (``invalid_arguments``); a
  body that is neither JSON nor a form (``invalid_post_type``), JSON that is not an object
  (``invalid_json``). Read methods (``conversations.replies``, ``auth.test``) ignore a JSON
  body, as Slack's do.
- Scripted trouble: ``fail_next(method, error, status, retry_after, count, after)`` lets the
  next ``after`` calls to ``method`` through untouched (whatever they answer: ``after=1`` on
  ``conversations.replies`` fails the second page), then makes the ``count`` calls after them
  fail without effect (``ratelimited`` answers HTTP 429 with ``Retry-After``; other errors
  HTTP 200 with ``ok: false``). Two errors leave the client unsure whether the call took
  effect: ``"disconnect"`` (``DISCONNECT``) applies the call and then closes the connection
  without an answer; ``"drop"`` (``DROP``) closes it without applying the call (the request
  never took effect). ``delay_next(method, seconds)`` applies the call and answers late.
  Scripts for one method queue up in the order they were made.
- Observation: ``calls`` / ``calls_to(method)`` (tokens never recorded; a dropped call has
  ``dropped=True``, and ``ok`` says whether it took effect: ``error`` is ``"drop"`` when it did
  not), ``wait_for(method, count, timeout)`` and ``wait_until(predicate, timeout)`` (both wait
  on a Condition, never a fixed sleep; AssertionError on timeout), ``thread()``, ``messages()``,
  ``status()``, ``suggested_prompts()``; ``on_call(call)`` is called after every call. What a
  user sees now, after every update, delete and stream append: ``text_of(channel, ts)`` is one
  message's text (None once deleted, or if there never was one), ``visible_text(channel,
  thread_ts)`` the texts of the thread's messages that are there now, oldest first. Neither
  is ever the 100-character fallback of ``streamed_as_blocks``; a stream that ended keeps its
  text.
- ``python -m devkit.fake_slack_api [--port 8790] [--token T]`` serves it and prints one line
  per call, until Ctrl-C or end of input.

Standard library only; never imports ``chalicelib``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import json
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devkit.slack_requests import API_APP_ID, TEAM_ID, USER_ID, new_ts

FAKE_BOT_TOKEN = "xoxb-fake-bot-token"  # deliberately not shaped like a real token
LOCAL_PORT = 8790  # the fixed port `make run` / `make ask` use
MAX_MARKDOWN_CHARS = 12_000  # per call and per chunk
MAX_TEXT_CHARS = 40_000  # `text` beyond this: msg_too_long here (Slack truncates, with a warning)
STREAM_BYTE_LIMIT = 11_000  # a streamed message's total; reports put Slack's cap near 10.6-11.3k bytes
MAX_PROMPTS = 4
MAX_LOADING_MESSAGES = 10
DISCONNECT = "disconnect"  # fail_next: applied, then the connection closed without an answer
DROP = "drop"  # fail_next: the connection closed without an answer, the call not applied
# chat.update of a message still streaming, when update_while_streaming is False. Slack's method
# reference lists this code for chat.update; whether Slack refuses every such update is unverified.
STREAMING_STATE_CONFLICT = "streaming_state_conflict"
FALLBACK_TEXT_CHARS = 100  # streamed_as_blocks: how much of a Markdown message stays in `text`
TOMBSTONE_TEXT = "This message was deleted."  # what Slack leaves of a deleted root that has replies
SLACKBOT_USER_ID = "USLACKBOT"

METHODS = (
    "auth.test",
    "chat.postMessage",
    "chat.update",
    "chat.delete",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "conversations.replies",
    "assistant.threads.setStatus",
    "assistant.threads.setSuggestedPrompts",
)
# Slack reads only query and form arguments for these: a JSON body's arguments are not seen.
READ_METHODS = frozenset({"auth.test", "conversations.replies"})
_TS = re.compile(r"^\d{1,12}\.\d{6}$")
# oldest / latest of conversations.replies: Slack also takes whole seconds ("0", its default).
_TS_BOUND = re.compile(r"^\d{1,12}(\.\d{1,6})?$")


@dataclass(frozen=True)
class Call:
    """One request, as answered. ``params`` never holds the token."""

    method: str
    params: dict[str, Any]
    ok: bool
    error: str | None
    at: float  # time.monotonic() when it was answered
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)
    # The connection was closed without an answer: fail_next(..., "disconnect") (``ok``: it took
    # effect) or fail_next(..., "drop") (not applied: ``ok`` False, ``error`` "drop").
    dropped: bool = False


@dataclass
class Message:
    """A message as a user would see it now."""

    channel: str
    ts: str
    text: str
    user: str | None
    bot_id: str | None = None
    thread_ts: str | None = None  # the root's ts for a reply, or for a root that has replies
    subtype: str | None = None
    markdown: bool = False  # posted as markdown_text or streamed (rendered as Markdown)
    stream: str | None = None  # None (not streamed), "streaming", "stopped" or "expired"
    edited: bool = False
    blocks: list[Any] | None = None
    started_at: float | None = None  # the fake's clock at chat.startStream (for stream_max_age)

    @property
    def streaming(self) -> bool:
        return self.stream == "streaming"

    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts


class _Refusal(Exception):
    def __init__(self, error: str, detail: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.detail = detail


@dataclass
class _Script:
    error: str | None
    status: int
    retry_after: int | None
    delay: float = 0.0


def _ts_key(ts: str) -> Decimal:
    return Decimal(ts)


def _chunk_texts(chunks: Any) -> list[str]:
    """The markdown_text chunks' texts; other chunk types (tasks, plans) show no text here."""
    if chunks is None:
        return []
    if not isinstance(chunks, list) or not all(isinstance(c, dict) and isinstance(c.get("type"), str) for c in chunks):
        raise _Refusal("invalid_arguments", "chunks must be an array of objects with a type")
    texts = []
    for chunk in chunks:
        if chunk["type"] == "markdown_text":
            if not isinstance(chunk.get("text"), str):
                raise _Refusal("invalid_arguments", "a markdown_text chunk needs a text")
            texts.append(chunk["text"])
    return texts


def text_length(params: dict[str, Any]) -> int:
    """Characters of message text in a call's arguments (for logs)."""
    total = 0
    for name in ("text", "markdown_text"):
        if isinstance(params.get(name), str):
            total += len(params[name])
    with contextlib.suppress(_Refusal):  # a malformed chunk list counts as no text
        total += sum(len(text) for text in _chunk_texts(params.get("chunks")))
    return total


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class FakeSlackAPI:
    """The fake Slack Web API; see the module docstring."""

    def __init__(
        self,
        token: str = FAKE_BOT_TOKEN,
        bot_user_id: str = "UBOT0001",
        bot_id: str = "BBOT0001",
        port: int = 0,
        stream_byte_limit: int = STREAM_BYTE_LIMIT,
        page_size: int = 100,
        on_call: Callable[[Call], None] | None = None,
        parent_on_every_page: bool = False,
        stream_max_age: float | None = None,
        update_while_streaming: bool = False,
        streamed_as_blocks: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.stream_byte_limit = stream_byte_limit
        self.page_size = page_size
        self.on_call = on_call
        # Whether continuation pages of conversations.replies repeat the root (reports differ).
        self.parent_on_every_page = parent_on_every_page
        # Seconds after chat.startStream that a stream ends (None: never); by `clock`, so a test
        # can age a stream without waiting five minutes.
        self.stream_max_age = stream_max_age
        self.update_while_streaming = update_while_streaming
        self.streamed_as_blocks = streamed_as_blocks
        self.clock = clock
        self.calls: list[Call] = []
        self._lock = threading.Condition(threading.RLock())
        self._messages: dict[str, dict[str, Message]] = {}
        self._status: dict[tuple[str, str], str] = {}
        self._prompts: dict[tuple[str, str | None], list[dict[str, str]]] = {}
        self._scripts: dict[str, deque[_Script]] = {}
        self._latest = Decimal(0)
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._server = _Server(("127.0.0.1", port), self._handler_class())
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/api/"

    # --- lifecycle ----------------------------------------------------------------------------------------------------

    def start(self) -> FakeSlackAPI:
        if self._thread is None:
            # A short poll interval: stop() returns within it, and tests start and stop many fakes.
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="fake-slack-api", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # releases answers held by delay_next
        if self._thread is not None:
            self._server.shutdown()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeSlackAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- scripting ----------------------------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        status: int | None = None,
        retry_after: int | None = None,
        count: int = 1,
        after: int = 0,
    ) -> None:
        """After ``after`` more calls to ``method`` (let through untouched, whatever they answer),
        the ``count`` calls that follow fail with ``error`` and change nothing.

        ``ratelimited`` answers HTTP 429 with ``Retry-After: retry_after`` (default 1);
        other errors HTTP 200 (or ``status``). ``error="disconnect"`` instead applies the
        call, then closes the connection without answering; ``error="drop"`` closes it
        without applying the call.
        """
        if after < 0 or count < 0:
            raise ValueError("after and count cannot be negative")
        if status is None:
            status = 429 if error == "ratelimited" else 200
        if error == "ratelimited" and retry_after is None:
            retry_after = 1
        with self._lock:
            queue = self._scripts.setdefault(method, deque())
            queue.extend(_Script(None, 200, None) for _ in range(after))  # a script that changes nothing
            queue.extend(_Script(error, status, retry_after) for _ in range(count))

    def delay_next(self, method: str, seconds: float, count: int = 1) -> None:
        """The next ``count`` calls to ``method`` take effect at once but are answered ``seconds`` later."""
        with self._lock:
            queue = self._scripts.setdefault(method, deque())
            queue.extend(_Script(None, 200, None, delay=seconds) for _ in range(count))

    def expire_streams(self) -> None:
        """Every open stream ends as Slack's do after a few minutes: append/stop are refused from now on."""
        with self._lock:
            for message in self._all_messages():
                if message.stream == "streaming":
                    message.stream = "expired"
            self._lock.notify_all()

    def add_message(
        self,
        channel: str,
        text: str,
        user: str | None = None,
        ts: str | None = None,
        thread_ts: str | None = None,
        bot: bool = False,
        subtype: str | None = None,
    ) -> str:
        """Seed a message (a user's, or with ``bot=True`` the bot's); returns its ts."""
        if ts is not None and not _TS.match(ts):
            raise ValueError(f"not a Slack ts: {ts!r}")
        with self._lock:
            message = Message(
                channel=channel,
                ts=ts or self._new_ts(),
                text=text,
                user=self.bot_user_id if bot else (user or USER_ID),
                bot_id=self.bot_id if bot else None,
                subtype=subtype,
            )
            self._store(message, thread_ts)
            return message.ts

    def add_event(self, body: bytes | str | dict[str, Any]) -> str | None:
        """Seed the message an Events API body (see devkit.slack_requests) is about; returns its ts.

        For ``assistant_thread_started`` it seeds the thread's root (subtype
        ``assistant_app_thread``, as Slack makes it). Other events seed nothing (None).
        """
        envelope = body if isinstance(body, dict) else json.loads(body)
        event = envelope.get("event", envelope)
        if event.get("type") == "assistant_thread_started":
            thread = event["assistant_thread"]
            return self.add_message(
                thread["channel_id"],
                "New chat",
                user=thread["user_id"],
                ts=thread["thread_ts"],
                subtype="assistant_app_thread",
            )
        if event.get("type") in ("app_mention", "message") and "ts" in event:
            with self._lock:
                existing = self._messages.get(event["channel"], {}).get(event["ts"])
                if existing is not None:
                    return existing.ts
            return self.add_message(
                event["channel"],
                event.get("text", ""),
                user=event.get("user"),
                ts=event["ts"],
                thread_ts=event.get("thread_ts"),
                bot=bool(event.get("bot_id")),
                subtype=event.get("subtype"),
            )
        return None

    # --- observation --------------------------------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 60.0) -> list[Call]:
        """Wait until ``count`` calls to ``method`` have been handled; returns them all.

        A call is recorded once it has taken effect, just before its answer is sent.
        """
        self.wait_until(lambda: len(self.calls_to(method)) >= count, timeout, f"{count} call(s) to {method}")
        return self.calls_to(method)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 60.0, what: str = "the condition") -> None:
        """Wait until ``predicate()`` (checked after every call and change) is true."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {what} within {timeout}s; calls: {[c.method for c in self.calls]}")
                self._lock.wait(left)

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The root and its replies, oldest first, as copies; [] if there is no such thread."""
        with self._lock:
            self._end_old_streams()
            return [replace(message) for message in self._thread_messages(channel, thread_ts)]

    def messages(self, channel: str) -> list[Message]:
        with self._lock:
            self._end_old_streams()
            return [replace(m) for m in sorted(self._messages.get(channel, {}).values(), key=lambda m: _ts_key(m.ts))]

    def text_of(self, channel: str, ts: str) -> str | None:
        """One message's text as a user reads it now: its last update, or all its stream's text
        (which an ended stream keeps); None once deleted (or if there never was one)."""
        with self._lock:
            message = self._messages.get(channel, {}).get(ts)
            return None if message is None else message.text

    def visible_text(self, channel: str, thread_ts: str) -> list[str]:
        """The texts of the thread's messages that are there now, oldest first, as a user reads
        them: ``text_of`` each (deleted messages are absent; a deleted root with replies is
        Slack's tombstone)."""
        return [message.text for message in self.thread(channel, thread_ts)]

    def bot_messages(self, channel: str, thread_ts: str) -> list[Message]:
        return [message for message in self.thread(channel, thread_ts) if message.bot_id == self.bot_id]

    def status(self, channel: str, thread_ts: str) -> str:
        """The assistant status shown in the thread now ("" when none)."""
        with self._lock:
            return self._status.get((channel, thread_ts), "")

    def suggested_prompts(self, channel: str, thread_ts: str | None = None) -> list[dict[str, str]]:
        with self._lock:
            return copy.deepcopy(self._prompts.get((channel, thread_ts), []))

    # --- the model ----------------------------------------------------------------------------------------------------

    def _all_messages(self) -> Iterator[Message]:
        for channel in self._messages.values():
            yield from channel.values()

    def _end_old_streams(self) -> None:
        """Ends every stream older than ``stream_max_age``: checked before each call is answered
        and each observation, so a stream's age is the clock's, never a timer thread's."""
        if self.stream_max_age is None:
            return
        now = self.clock()
        for message in self._all_messages():
            if message.streaming and message.started_at is not None and now - message.started_at > self.stream_max_age:
                message.stream = "expired"  # its text stays, as Slack's does

    def _new_ts(self) -> str:
        ts = new_ts()  # shared with devkit.slack_requests: events made in this process interleave correctly
        if _ts_key(ts) <= self._latest:  # a seeded ts may be ahead of the clock
            micros = int(self._latest * 1_000_000) + 1
            ts = f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
        return ts

    def _store(self, message: Message, thread_ts: str | None) -> None:
        channel = self._messages.setdefault(message.channel, {})
        if message.ts in channel:
            raise ValueError(f"{message.channel} already has a message at {message.ts}")
        if thread_ts is not None:
            parent = channel.get(thread_ts)
            if parent is not None:
                thread_ts = parent.thread_ts or parent.ts  # a reply to a reply joins the root's thread
            root = channel.get(thread_ts)
            if root is not None:
                root.thread_ts = root.ts  # as in Slack, a root with replies carries its own ts as thread_ts
            message.thread_ts = thread_ts
        channel[message.ts] = message
        self._latest = max(self._latest, _ts_key(message.ts))
        self._lock.notify_all()

    def _thread_messages(self, channel: str, thread_ts: str) -> list[Message]:
        messages = self._messages.get(channel, {})
        root = messages.get(thread_ts)
        if root is None:
            return []
        if root.is_reply():
            root = messages.get(root.thread_ts or "", root)
        replies = [m for m in messages.values() if m.thread_ts == root.ts and m.ts != root.ts]
        return [root, *sorted(replies, key=lambda m: _ts_key(m.ts))]

    def _as_slack(self, message: Message) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text}
        blocks = message.blocks
        if self.streamed_as_blocks and message.bot_id == self.bot_id and message.markdown:
            # Slack may keep a Markdown message's whole text in a markdown block, with only a
            # fallback in `text`: a reader of `text` alone would lose the rest.
            data["text"] = message.text[:FALLBACK_TEXT_CHARS]
            blocks = [{"type": "markdown", "text": message.text}, *(message.blocks or [])]
        if message.subtype:
            data["subtype"] = message.subtype
        if message.user:
            data["user"] = message.user
        if message.bot_id:
            data["bot_id"] = message.bot_id
            data["app_id"] = API_APP_ID
            data["bot_profile"] = {"id": message.bot_id, "app_id": API_APP_ID, "name": "mameka", "team_id": TEAM_ID}
        data["team"] = TEAM_ID
        if blocks is not None:
            data["blocks"] = copy.deepcopy(blocks)
        if message.edited:
            data["edited"] = {"user": message.user, "ts": message.ts}
        if message.thread_ts:
            data["thread_ts"] = message.thread_ts
            channel = self._messages.get(message.channel, {})
            if message.is_reply():
                root = channel.get(message.thread_ts)
                if root is not None and root.user:
                    data["parent_user_id"] = root.user
            else:
                replies = sorted(
                    (m for m in channel.values() if m.thread_ts == message.ts and m.ts != message.ts),
                    key=lambda m: _ts_key(m.ts),
                )
                data["reply_count"] = len(replies)
                data["reply_users"] = sorted({m.user for m in replies if m.user})
                data["reply_users_count"] = len(data["reply_users"])
                if replies:
                    data["latest_reply"] = replies[-1].ts
        return data

    def _bot_message(self, channel: str, text: str, thread_ts: str | None, **fields: Any) -> Message:
        message = Message(channel, self._new_ts(), text, self.bot_user_id, self.bot_id, **fields)
        self._store(message, thread_ts)
        if message.thread_ts:
            self._status.pop((channel, message.thread_ts), None)  # a reply clears the thread's status
        return message

    def _find(self, params: dict[str, Any]) -> Message:
        channel, ts = _required(params, "channel"), _required(params, "ts")
        message = self._messages.get(channel, {}).get(ts)
        if message is None:
            raise _Refusal("message_not_found")
        return message

    # --- methods: each returns the answer's fields or raises _Refusal -----------------------------------------------

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake-workspace.slack.com/",
            "team": "Fake Workspace",
            "user": "mameka",
            "team_id": TEAM_ID,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _message_content(self, params: dict[str, Any]) -> tuple[str, bool]:
        """The text a postMessage/update shows, and whether it is Markdown."""
        markdown = params.get("markdown_text")
        text = params.get("text")
        blocks = params.get("blocks")
        if markdown is not None and (text is not None or blocks is not None):
            raise _Refusal("markdown_text_conflict")
        if markdown is not None:
            if not markdown:
                raise _Refusal("no_text")
            if len(markdown) > MAX_MARKDOWN_CHARS:
                raise _Refusal("msg_too_long")
            return markdown, True
        if not text and not blocks and not params.get("attachments"):
            raise _Refusal("no_text")
        if text and len(text) > MAX_TEXT_CHARS:
            raise _Refusal("msg_too_long")
        return text or "", False

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _required(params, "channel", missing="channel_not_found")
        text, markdown = self._message_content(params)
        blocks = params.get("blocks")
        message = self._bot_message(
            channel,
            text,
            params.get("thread_ts") or None,
            markdown=markdown,
            blocks=blocks if isinstance(blocks, list) else None,
        )
        return {"channel": channel, "ts": message.ts, "message": self._as_slack(message)}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._find(params)
        if message.bot_id != self.bot_id:
            raise _Refusal("cant_update_message")
        text, markdown = self._message_content(params)
        if message.streaming:
            if not self.update_while_streaming:
                raise _Refusal(STREAMING_STATE_CONFLICT)
            message.stream = "stopped"  # the update ends the stream: appends are refused from now on
        blocks = params.get("blocks")
        message.text, message.markdown, message.edited = text, markdown, True
        message.blocks = blocks if isinstance(blocks, list) else None
        self._lock.notify_all()
        return {"channel": message.channel, "ts": message.ts, "text": text, "message": self._as_slack(message)}

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._find(params)
        if message.bot_id != self.bot_id:
            raise _Refusal("cant_delete_message")
        channel = self._messages[message.channel]
        has_replies = any(m.thread_ts == message.ts and m.ts != message.ts for m in channel.values())
        if has_replies:
            # Slack keeps a deleted root with replies as a tombstone, so the thread stays readable.
            tombstone = Message(
                message.channel, message.ts, TOMBSTONE_TEXT, SLACKBOT_USER_ID, thread_ts=message.ts, subtype="tombstone"
            )
            channel[message.ts] = tombstone
        else:
            del channel[message.ts]  # appends to a deleted stream now answer message_not_found
        self._lock.notify_all()
        return {"channel": message.channel, "ts": message.ts}

    def _stream_text(self, params: dict[str, Any], required: bool) -> str:
        pieces = []
        markdown = params.get("markdown_text")
        if markdown is not None:
            if not isinstance(markdown, str):
                raise _Refusal("invalid_arguments", "markdown_text must be a string")
            pieces.append(markdown)
        pieces.extend(_chunk_texts(params.get("chunks")))
        if any(len(piece) > MAX_MARKDOWN_CHARS for piece in pieces):
            raise _Refusal("msg_too_long")
        if required and not "".join(pieces):
            raise _Refusal("no_text")
        return "".join(pieces)

    def _check_stream_size(self, text: str) -> None:
        if len(text.encode()) > self.stream_byte_limit:
            raise _Refusal("msg_too_long")

    def _chat_start_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _required(params, "channel", missing="channel_not_found")
        thread_ts = _required(params, "thread_ts")
        if not channel.startswith("D"):
            if not params.get("recipient_user_id"):
                raise _Refusal("missing_recipient_user_id")
            if not params.get("recipient_team_id"):
                raise _Refusal("missing_recipient_team_id")
        text = self._stream_text(params, required=False)
        self._check_stream_size(text)
        message = self._bot_message(
            channel, text, thread_ts, markdown=True, stream="streaming", started_at=self.clock()
        )
        return {"channel": channel, "ts": message.ts}

    def _streaming(self, params: dict[str, Any]) -> Message:
        message = self._find(params)
        if message.stream != "streaming":
            raise _Refusal("message_not_in_streaming_state")
        return message

    def _chat_append_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._streaming(params)
        text = self._stream_text(params, required=True)
        self._check_stream_size(message.text + text)
        message.text += text
        self._lock.notify_all()
        return {"channel": message.channel, "ts": message.ts}

    def _chat_stop_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._streaming(params)
        text = self._stream_text(params, required=False)
        self._check_stream_size(message.text + text)
        message.text += text
        message.stream = "stopped"
        blocks = params.get("blocks")
        if isinstance(blocks, list):
            message.blocks = blocks
        self._lock.notify_all()
        return {"channel": message.channel, "ts": message.ts, "message": self._as_slack(message)}

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _required(params, "channel", missing="channel_not_found")
        ts = _required(params, "ts")
        thread = self._thread_messages(channel, ts)
        if not thread:
            raise _Refusal("thread_not_found")
        thread = [thread[0], *self._in_range(thread[1:], params)]  # the root comes first whatever the range
        try:
            limit = int(params.get("limit") or 0)
        except ValueError:
            raise _Refusal("invalid_limit") from None
        size = min(limit, self.page_size) if limit > 0 else self.page_size
        start = 0
        if params.get("cursor"):
            cursor_ts = _decode_cursor(str(params["cursor"]))
            start = next((i for i, m in enumerate(thread) if _ts_key(m.ts) >= _ts_key(cursor_ts)), len(thread))
        repeat_root = self.parent_on_every_page and start > 0
        page = thread[start : start + (max(size - 1, 1) if repeat_root else size)]
        if repeat_root:
            page = [thread[0], *page]
        end = start + len(page) - (1 if repeat_root else 0)
        has_more = end < len(thread)
        answer: dict[str, Any] = {"messages": [self._as_slack(m) for m in page], "has_more": has_more}
        answer["response_metadata"] = {"next_cursor": _encode_cursor(thread[end].ts) if has_more else ""}
        return answer

    @staticmethod
    def _in_range(replies: list[Message], params: dict[str, Any]) -> list[Message]:
        """The replies between ``oldest`` and ``latest`` (bounds included only with ``inclusive``)."""
        bounds: dict[str, Decimal] = {}
        for name in ("oldest", "latest"):
            value = params.get(name)
            if value is None or value == "":
                continue
            if not isinstance(value, str) or not _TS_BOUND.match(value):
                raise _Refusal(f"invalid_ts_{name}")
            bounds[name] = Decimal(value)
        inclusive = str(params.get("inclusive", "")).lower() in ("1", "true")
        kept = []
        for message in replies:
            key = _ts_key(message.ts)
            oldest, latest = bounds.get("oldest"), bounds.get("latest")
            if oldest is not None and (key < oldest or (key == oldest and not inclusive)):
                continue
            if latest is not None and (key > latest or (key == latest and not inclusive)):
                continue
            kept.append(message)
        return kept

    def _set_status(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _required(params, "channel_id")
        thread_ts = _required(params, "thread_ts")
        status = params.get("status")
        if not isinstance(status, str):
            raise _Refusal("invalid_arguments", "missing required field: status")
        loading = params.get("loading_messages")
        if loading is not None and (not isinstance(loading, list) or len(loading) > MAX_LOADING_MESSAGES):
            raise _Refusal("invalid_arguments", f"loading_messages: at most {MAX_LOADING_MESSAGES}")
        if status:
            self._status[(channel, thread_ts)] = status
        else:
            self._status.pop((channel, thread_ts), None)
        self._lock.notify_all()
        return {}

    def _set_suggested_prompts(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _required(params, "channel_id")
        prompts = params.get("prompts")
        if not isinstance(prompts, list) or not prompts:
            raise _Refusal("invalid_arguments", "missing required field: prompts")
        if len(prompts) > MAX_PROMPTS:
            raise _Refusal("invalid_arguments", f"prompts: at most {MAX_PROMPTS} items")
        for prompt in prompts:
            if not (isinstance(prompt, dict) and prompt.get("title") and prompt.get("message")):
                raise _Refusal("invalid_arguments", "each prompt needs a title and a message")
        self._prompts[(channel, params.get("thread_ts") or None)] = copy.deepcopy(prompts)
        self._lock.notify_all()
        return {}

    def _dispatch(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
            "conversations.replies": self._conversations_replies,
            "assistant.threads.setStatus": self._set_status,
            "assistant.threads.setSuggestedPrompts": self._set_suggested_prompts,
        }
        return handlers[method](params)

    # --- HTTP ---------------------------------------------------------------------------------------------------------

    def _answer(self, method: str, token: str | None, params: dict[str, Any]) -> tuple[Call, _Script | None]:
        """Process one call under the lock; returns its record and the script that shaped it, if any."""
        script: _Script | None = None
        status = 200
        with self._lock:
            self._end_old_streams()
            try:
                if method not in METHODS:
                    status = 404
                    raise _Refusal("unknown_method")
                if not token:
                    raise _Refusal("not_authed")
                if token != self.token:
                    raise _Refusal("invalid_auth")
                queue = self._scripts.get(method)
                script = queue.popleft() if queue else None
                if script is not None and script.error == DROP:
                    response: dict[str, Any] = {}  # never sent: the client sees the connection close
                    error = DROP  # not applied: the call's record says so
                else:
                    if script is not None and script.error not in (None, DISCONNECT):
                        status = script.status
                        raise _Refusal(script.error)
                    response = {"ok": True, **self._dispatch(method, params)}
                    error = None
            except _Refusal as refusal:
                error = refusal.error
                response = {"ok": False, "error": error}
                if refusal.detail:
                    response["response_metadata"] = {"messages": [f"[ERROR] {refusal.detail}"]}
            dropped = script is not None and script.error in (DISCONNECT, DROP)
            call = Call(method, params, error is None, error, time.monotonic(), status, response, dropped)
            self.calls.append(call)
            self._lock.notify_all()
        return call, script

    def _record(self, call: Call) -> Call:
        with self._lock:
            if not call.response:
                call = replace(call, response={"ok": call.ok, "error": call.error})
            self.calls.append(call)
            self._lock.notify_all()
        return call

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def _handle(self) -> None:
                url = urlsplit(self.path)
                method = url.path.removeprefix("/api/") if url.path.startswith("/api/") else url.path
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                params: dict[str, Any] = dict(parse_qsl(url.query, keep_blank_values=True))
                content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                header_token = None
                authorization = self.headers.get("Authorization") or ""
                if authorization.startswith("Bearer "):
                    header_token = authorization.removeprefix("Bearer ").strip()
                problem = None
                if body and content_type == "application/json":
                    try:
                        data = json.loads(body)
                    except ValueError:
                        data = None
                    if not isinstance(data, dict):
                        problem = "invalid_json"
                    elif method not in READ_METHODS:
                        data.pop("token", None)  # Slack takes a JSON call's token only from the header
                        params.update(data)
                elif body and content_type == "application/x-www-form-urlencoded":
                    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
                    params.update({name: _form_value(name, value) for name, value in form.items()})
                elif body:
                    problem = "invalid_post_type"
                token = header_token or params.pop("token", None)
                params.pop("token", None)
                if problem is not None:
                    call, script = fake._record(Call(method, params, False, problem, time.monotonic())), None
                else:
                    call, script = fake._answer(method, token, params)
                if fake.on_call is not None:
                    try:
                        fake.on_call(call)
                    except Exception as error:  # a display hook must not take the fake down
                        print(f"fake Slack API: on_call failed: {error!r}", file=sys.stderr)
                if call.dropped:
                    self.close_connection = True
                    return  # nothing is sent: the client sees the connection close
                if script is not None and script.delay:
                    fake._closing.wait(script.delay)
                self._send(call, script)

            def _send(self, call: Call, script: _Script | None) -> None:
                payload = json.dumps(call.response).encode()
                try:
                    self.send_response(call.status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(payload)))
                    if script is not None and script.retry_after is not None:
                        self.send_header("Retry-After", str(script.retry_after))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (its timeout, under test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _required(params: dict[str, Any], name: str, missing: str = "invalid_arguments") -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise _Refusal(missing, f"missing required field: {name}")
    return value


def _form_value(name: str, value: str) -> Any:
    """A form field as Slack reads it: arrays and objects arrive as JSON text."""
    if name in ("blocks", "attachments", "chunks", "prompts", "loading_messages", "metadata") and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        kind, _, ts = base64.b64decode(cursor, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise _Refusal("invalid_cursor") from None
    if kind != "next_ts" or not _TS.match(ts):
        raise _Refusal("invalid_cursor")
    return ts


# --- command line -----------------------------------------------------------------------------------------------------


def describe(call: Call) -> str:
    """One short line for a call: time, method, outcome, where, how much text."""
    where = call.params.get("channel") or call.params.get("channel_id") or ""
    ts = call.response.get("ts") or call.params.get("ts") or call.params.get("thread_ts")
    if ts:
        where = f"{where}/{ts}"
    outcome = "ok" if call.ok else (call.error or "error")
    if call.dropped:
        outcome += " (dropped)"
    length = text_length(call.params)
    size = f" {length} chars" if length else ""
    return f"{time.strftime('%H:%M:%S')} {call.method:<38} {outcome:<32} {where}{size}"


def _stdin_is_devnull() -> bool:
    try:
        return os.path.samestat(os.fstat(sys.stdin.fileno()), os.stat(os.devnull))
    except (OSError, ValueError, AttributeError):
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.fake_slack_api",
        description="Serve a fake Slack Web API on 127.0.0.1 and print each call; Ctrl-C or end of input stops it.",
    )
    parser.add_argument("--port", type=int, default=LOCAL_PORT, help=f"port (default {LOCAL_PORT}; 0: any free one)")
    parser.add_argument("--token", default=FAKE_BOT_TOKEN, help="the bot token it accepts (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        fake = FakeSlackAPI(token=args.token, port=args.port, on_call=lambda call: print(describe(call), flush=True))
    except OSError as error:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {error.strerror}", file=sys.stderr)
        return 2
    done = threading.Event()
    if not _stdin_is_devnull():  # under `&` or nohup stdin is /dev/null: only a signal ends it then
        threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    with fake:
        print(f"fake Slack Web API on {fake.url} (SLACK_API_URL), bot token {args.token}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
