"""What a Slack workspace holds, and Slack's rules about what it refuses: the model behind devkit's fake Web API.

Contract:

- ``Workspace(bot_user_id, bot_id, ...)`` holds messages by channel and thread, streams,
  assistant statuses and suggested prompts, as a user would see them now. It is pure: no
  I/O, no threads, no locks (``devkit.fake_slack_api.FakeSlackAPI`` serialises every use
  behind one lock), and its only clock is ``clock``.
- ``call(method, params)`` applies one Web API method (one of ``METHODS``) to arguments
  already parsed (the token taken out) and returns the answer's fields, or raises
  ``Refusal(error, detail)`` with the error Slack answers, having changed nothing.
  ``chat.postMessage`` posts; ``chat.startStream`` posts a streaming message (text from
  ``markdown_text`` and the ``markdown_text`` chunks), ``chat.appendStream`` adds to it,
  ``chat.stopStream`` adds its text and ends it; ``chat.update`` replaces a message's text;
  ``chat.delete`` removes the bot's message (a thread root that has replies stays as Slack's
  tombstone: subtype ``tombstone``, text ``TOMBSTONE_TEXT``, user ``USLACKBOT``);
  ``conversations.replies`` gives the root and its replies, oldest first, at most
  ``min(limit, page_size)`` a page, with ``has_more`` and ``response_metadata.next_cursor``;
  ``oldest`` / ``latest`` (with ``inclusive``) keep only the replies in that range, and the root
  still comes first (the fake's choice: whether Slack returns a root outside the range is
  unverified, so callers should not depend on it either way); ``parent_on_every_page``
  repeats the root on later pages (reports differ on whether Slack does).
  The bot's messages carry ``user`` = ``bot_user_id`` and ``bot_id``. Every new message's
  ``ts`` is unique and later than every ``ts`` the workspace has seen. Posting in a thread
  clears the thread's assistant status, as Slack does.
- Streams end: ``stream_max_age`` (seconds by ``clock``, default None: never) ends a stream that
  long after its ``chat.startStream``, however recently it was appended to, as Slack ends
  streams about 5 minutes after they start (checked by ``end_old_streams()``, before each
  call and observation); ``expire_streams()`` ends every open one now. An ended stream keeps
  the text it had (``Message.stream`` is ``"expired"``). ``stop_session(channel, thread_ts)``
  is the user's stop button: every stream still open in that thread is stopped (``"stopped"``:
  append/stop refused from now on, as Slack does when it sends ``agent_session_stopped``), and
  their ts are returned, oldest first, for the event's ``streaming_message_ts``.
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
- What it refuses, as Slack does: ``markdown_text`` over 12,000 characters in any call or
  chunk, ``text`` over 40,000, a streamed message over ``stream_byte_limit`` UTF-8 bytes in
  all (``msg_too_long``); ``markdown_text`` with ``text`` or ``blocks``
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
  prompts, more than 10 loading messages, or a missing argument (``invalid_arguments``);
  ``blocks`` on chat.postMessage / chat.update / chat.stopStream that ``check_blocks`` refuses
  (more than 50: ``msg_blocks_too_many``; an unknown block type, a bad markdown block, a
  context_actions block with more than 5 elements or a bad feedback button:
  ``invalid_blocks``), the message unchanged.
- Tables (``table_refusal``): chat.postMessage and chat.update take a ``table`` block only in
  ``attachments`` (``[{"blocks": [table]}]``, where Slack documents it), one per message, with
  1 to ``MAX_TABLE_ROWS`` rows of 1 to ``MAX_TABLE_CELLS`` cells (``raw_text`` with text,
  ``raw_number``, or ``rich_text``), ``column_settings`` at most ``MAX_TABLE_CELLS`` with
  ``align`` left/center/right; anything else, or a table in top-level ``blocks`` or in any
  stream call (``blocks`` of chat.stopStream, a ``blocks`` chunk), is ``invalid_blocks``.
  A posted or updated message keeps its ``attachments``.
- Chunks (``chunk_refusal``) on chat.startStream / appendStream / stopStream: each a
  ``markdown_text`` (``text``), ``task_update`` (``id``, ``title``, ``status`` in
  ``TASK_STATUSES``), ``plan_update`` (``title``) or ``blocks`` (``blocks``) chunk; anything
  else is ``invalid_chunks``. An append may carry chunks and no text. Every chunk a stream
  took is kept on its message, in order (``Message.chunks``); chat.startStream's
  ``task_display_mode`` must be ``timeline`` or ``plan`` (``invalid_arguments``) and is kept
  too (``Message.task_display_mode``).
- Agent sessions: ``agents.sessions.setStatus`` takes exactly Slack's arguments
  (``SESSION_ARGUMENTS``: ``status`` one of ``SESSION_STATUSES``, ``channel_id``,
  ``thread_ts``, ``title`` of at most 200 characters, ``initiator_user_id``,
  ``icon_emoji``/``icon_url``/``username``) and refuses any other, or a bad value, with
  ``invalid_arguments``; no ``thread_ts`` is ``thread_ts_required`` (session channels are not
  modelled). The first call for a thread creates its session with the title; later calls
  change its status only (a title then is ignored: the fake's reading of "creation only").
  ``agent_sessions_error`` (default None: sessions work) makes every call answer that error
  instead, such as ``feature_disabled`` (the workspace) or ``not_agent_app`` (an app without
  the agent view). ``session(channel, thread_ts)`` is the session now (a copy, None if
  none), with every status it was set to in ``statuses``.
- ``assistant.threads.setSuggestedPrompts`` without ``thread_ts`` pins the prompts atop the
  DM (``suggested_prompts(channel)``).
- Seeding: ``add_message``, ``add_event`` (the message an Events API body is about).
  Observation, as copies: ``thread()``, ``messages()``, ``bot_messages()``, ``status()``,
  ``suggested_prompts()``; what a user sees now, after every update, delete and stream
  append: ``text_of(channel, ts)`` is one message's text (None once deleted, or if there
  never was one), ``visible_text(channel, thread_ts)`` the texts of the thread's messages
  that are there now, oldest first. Neither is ever the 100-character fallback of
  ``streamed_as_blocks``; a stream that ended keeps its text.

Standard library only; never imports ``chalicelib``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from devkit.slack_requests import API_APP_ID, TEAM_ID, USER_ID, new_ts

MAX_MARKDOWN_CHARS = 12_000  # per call and per chunk
MAX_TEXT_CHARS = 40_000  # `text` beyond this: msg_too_long here (Slack truncates, with a warning)
STREAM_BYTE_LIMIT = 11_000  # a streamed message's total; reports put Slack's cap near 10.6-11.3k bytes
MAX_PROMPTS = 4
MAX_TABLE_ROWS = 100  # Slack's table block: rows (the header is one), and cells a row
MAX_TABLE_CELLS = 20
TABLE_CELL_TYPES = ("raw_text", "raw_number", "rich_text")
TABLE_ALIGNS = ("left", "center", "right")
CHUNK_TYPES = ("markdown_text", "task_update", "plan_update", "blocks")
TASK_STATUSES = ("pending", "in_progress", "complete", "error")
TASK_DISPLAY_MODES = ("timeline", "plan")
MAX_LOADING_MESSAGES = 10
# chat.update of a message still streaming, when update_while_streaming is False. Slack's method
# reference lists this code for chat.update; whether Slack refuses every such update is unverified.
STREAMING_STATE_CONFLICT = "streaming_state_conflict"
FALLBACK_TEXT_CHARS = 100  # streamed_as_blocks: how much of a Markdown message stays in `text`
TOMBSTONE_TEXT = "This message was deleted."  # what Slack leaves of a deleted root that has replies
SLACKBOT_USER_ID = "USLACKBOT"
# Blocks (https://docs.slack.dev/reference/block-kit/blocks): Slack refuses a message with more.
MAX_BLOCKS = 50
MAX_CONTEXT_ACTIONS = 5
MAX_BUTTON_TEXT_CHARS = 75  # a feedback button's text and accessibility_label
MAX_BUTTON_VALUE_CHARS = 2000
MAX_ACTION_ID_CHARS = 255
BLOCK_TYPES = frozenset(
    {
        "actions",
        "alert",
        "card",
        "carousel",
        "context",
        "context_actions",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "plan",
        "rich_text",
        "section",
        "table",
        "task_card",
        "video",
    }
)
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
    "agents.sessions.setStatus",
)
SESSION_STATUSES = frozenset({"active", "processing", "suspended", "closed"})
SESSION_ARGUMENTS = frozenset(
    {"status", "channel_id", "thread_ts", "title", "initiator_user_id", "icon_emoji", "icon_url", "username"}
)
MAX_SESSION_TITLE_CHARS = 200
_TS = re.compile(r"^\d{1,12}\.\d{6}$")
# oldest / latest of conversations.replies: Slack also takes whole seconds ("0", its default).
_TS_BOUND = re.compile(r"^\d{1,12}(\.\d{1,6})?$")


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
    attachments: list[Any] | None = None
    chunks: list[dict[str, Any]] = field(default_factory=list)  # every chunk its stream took, in order
    task_display_mode: str | None = None

    @property
    def streaming(self) -> bool:
        return self.stream == "streaming"

    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass
class AgentSession:
    """A thread's agent session: its status now, and every status it was set to, in order."""

    channel: str
    thread_ts: str
    status: str
    title: str | None = None
    initiator_user_id: str | None = None
    statuses: list[str] = field(default_factory=list)


class Refusal(Exception):
    """What Slack answers ``{"ok": false, "error": error}`` for; ``detail`` goes in ``response_metadata``."""

    def __init__(self, error: str, detail: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.detail = detail


def _ts_key(ts: str) -> Decimal:
    return Decimal(ts)


def chunk_texts(chunks: Any) -> list[str]:
    """The markdown_text chunks' texts; other chunk types (tasks, plans) show no text here."""
    if chunks is None:
        return []
    if not isinstance(chunks, list) or not all(isinstance(c, dict) and isinstance(c.get("type"), str) for c in chunks):
        raise Refusal("invalid_arguments", "chunks must be an array of objects with a type")
    texts = []
    for chunk in chunks:
        if chunk["type"] == "markdown_text":
            if not isinstance(chunk.get("text"), str):
                raise Refusal("invalid_arguments", "a markdown_text chunk needs a text")
            texts.append(chunk["text"])
    return texts


def chunk_refusal(chunks: Any) -> None:
    """Raise ``invalid_chunks`` for a chunk Slack would not take (see the module docstring)."""
    if chunks is None:
        return
    if not isinstance(chunks, list) or not all(isinstance(c, dict) for c in chunks):
        raise Refusal("invalid_chunks", "chunks must be an array of objects")
    for chunk in chunks:
        kind = chunk.get("type")
        if kind not in CHUNK_TYPES:
            raise Refusal("invalid_chunks", f"unknown chunk type: {kind!r}")
        if kind == "markdown_text" and not isinstance(chunk.get("text"), str):
            raise Refusal("invalid_chunks", "a markdown_text chunk needs a text")
        if kind == "task_update":
            if not all(isinstance(chunk.get(name), str) and chunk[name] for name in ("id", "title")):
                raise Refusal("invalid_chunks", "a task_update chunk needs an id and a title")
            if chunk.get("status") not in TASK_STATUSES:
                raise Refusal("invalid_chunks", f"task status must be one of {', '.join(TASK_STATUSES)}")
        if kind == "plan_update" and not (isinstance(chunk.get("title"), str) and chunk["title"]):
            raise Refusal("invalid_chunks", "a plan_update chunk needs a title")
        if kind == "blocks":
            if not isinstance(chunk.get("blocks"), list):
                raise Refusal("invalid_chunks", "a blocks chunk needs blocks")
            if _tables_in(chunk["blocks"]):
                raise Refusal("invalid_blocks", "a table block cannot be streamed")


def _tables_in(blocks: Any) -> list[Any]:
    if not isinstance(blocks, list):
        return []
    return [block for block in blocks if isinstance(block, dict) and block.get("type") == "table"]


def table_refusal(params: dict[str, Any]) -> None:
    """Raise ``invalid_blocks`` for a message's tables that Slack would refuse (see the module docstring)."""
    if _tables_in(params.get("blocks")):
        raise Refusal("invalid_blocks", "a table block goes in attachments")
    attachments = params.get("attachments")
    if attachments is None:
        return
    if not isinstance(attachments, list) or not all(isinstance(a, dict) for a in attachments):
        raise Refusal("invalid_attachments", "attachments must be an array of objects")
    found = [table for attachment in attachments for table in _tables_in(attachment.get("blocks"))]
    if len(found) > 1:
        raise Refusal("invalid_blocks", "only one table block is allowed per message")
    for table in found:
        _check_table(table)


def _check_table(table: dict[str, Any]) -> None:
    rows = table.get("rows")
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_TABLE_ROWS:
        raise Refusal("invalid_blocks", f"a table has 1 to {MAX_TABLE_ROWS} rows")
    for row in rows:
        if not isinstance(row, list) or not 1 <= len(row) <= MAX_TABLE_CELLS:
            raise Refusal("invalid_blocks", f"a table row has 1 to {MAX_TABLE_CELLS} cells")
        for cell in row:
            kind = cell.get("type") if isinstance(cell, dict) else None
            if kind not in TABLE_CELL_TYPES:
                raise Refusal("invalid_blocks", f"a table cell is one of {', '.join(TABLE_CELL_TYPES)}")
            if kind == "raw_text" and not (isinstance(cell.get("text"), str) and cell["text"]):
                raise Refusal("invalid_blocks", "a raw_text cell needs a text")
            if kind == "rich_text" and not isinstance(cell.get("elements"), list):
                raise Refusal("invalid_blocks", "a rich_text cell needs elements")
    settings = table.get("column_settings")
    if settings is not None:
        if not isinstance(settings, list) or len(settings) > MAX_TABLE_CELLS:
            raise Refusal("invalid_blocks", f"column_settings: at most {MAX_TABLE_CELLS}")
        for setting in settings:
            if setting is not None and (
                not isinstance(setting, dict) or setting.get("align", "left") not in TABLE_ALIGNS
            ):
                raise Refusal("invalid_blocks", f"column_settings' align is one of {', '.join(TABLE_ALIGNS)}")


def text_length(params: dict[str, Any]) -> int:
    """Characters of message text in a call's arguments (for logs)."""
    total = 0
    for name in ("text", "markdown_text"):
        if isinstance(params.get(name), str):
            total += len(params[name])
    with contextlib.suppress(Refusal):  # a malformed chunk list counts as no text
        total += sum(len(text) for text in chunk_texts(params.get("chunks")))
    return total


def check_blocks(blocks: Any) -> list[dict[str, Any]] | None:
    """A message's ``blocks`` argument as Slack reads it (a list, or that list as a JSON string),
    or None when there is none; ``Refusal`` for what Slack refuses: more than ``MAX_BLOCKS``
    (``msg_blocks_too_many``), or (``invalid_blocks``) a block that is not an object of a known
    ``type`` (``BLOCK_TYPES``), a ``markdown`` block whose ``text`` is empty or over 12,000
    characters, a ``context_actions`` block without 1-5 ``feedback_buttons`` / ``icon_button``
    elements, a feedback button without a ``plain_text`` text of at most 75 characters or a
    string ``value`` of at most 2,000, an ``action_id`` over 255 or an ``accessibility_label``
    over 75."""
    if blocks is None:
        return None
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError:
            raise Refusal("invalid_blocks", "blocks is not JSON") from None
    if not isinstance(blocks, list):
        raise Refusal("invalid_blocks", "blocks must be an array")
    if len(blocks) > MAX_BLOCKS:
        raise Refusal("msg_blocks_too_many")
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            raise Refusal("invalid_blocks", "unknown block type")
        if block["type"] == "markdown":
            text = block.get("text")
            if not isinstance(text, str) or not text or len(text) > MAX_MARKDOWN_CHARS:
                raise Refusal("invalid_blocks", "markdown block text: 1 to 12,000 characters")
        elif block["type"] == "context_actions":
            _check_context_actions(block)
    return blocks


def _check_context_actions(block: dict[str, Any]) -> None:
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_CONTEXT_ACTIONS:
        raise Refusal("invalid_blocks", f"context_actions: 1 to {MAX_CONTEXT_ACTIONS} elements")
    for element in elements:
        if not isinstance(element, dict) or element.get("type") not in ("feedback_buttons", "icon_button"):
            raise Refusal("invalid_blocks", "context_actions: feedback_buttons or icon_button elements only")
        action_id = element.get("action_id")
        if action_id is not None and (not isinstance(action_id, str) or len(action_id) > MAX_ACTION_ID_CHARS):
            raise Refusal("invalid_blocks", f"action_id: at most {MAX_ACTION_ID_CHARS} characters")
        if element["type"] == "feedback_buttons":
            for name in ("positive_button", "negative_button"):
                _check_feedback_button(element.get(name), name)


def _check_feedback_button(button: Any, name: str) -> None:
    if not isinstance(button, dict):
        raise Refusal("invalid_blocks", f"feedback_buttons: {name} is required")
    text = button.get("text")
    if not (isinstance(text, dict) and text.get("type") == "plain_text" and isinstance(text.get("text"), str)):
        raise Refusal("invalid_blocks", f"{name}.text must be a plain_text object")
    if not text["text"] or len(text["text"]) > MAX_BUTTON_TEXT_CHARS:
        raise Refusal("invalid_blocks", f"{name}.text: 1 to {MAX_BUTTON_TEXT_CHARS} characters")
    value = button.get("value")
    if not isinstance(value, str) or not value or len(value) > MAX_BUTTON_VALUE_CHARS:
        raise Refusal("invalid_blocks", f"{name}.value: 1 to {MAX_BUTTON_VALUE_CHARS} characters")
    label = button.get("accessibility_label")
    if label is not None and (not isinstance(label, str) or len(label) > MAX_BUTTON_TEXT_CHARS):
        raise Refusal("invalid_blocks", f"{name}.accessibility_label: at most {MAX_BUTTON_TEXT_CHARS} characters")


def required(params: dict[str, Any], name: str, missing: str = "invalid_arguments") -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise Refusal(missing, f"missing required field: {name}")
    return value


def encode_cursor(ts: str) -> str:
    return base64.b64encode(f"next_ts:{ts}".encode()).decode()


def decode_cursor(cursor: str) -> str:
    try:
        kind, _, ts = base64.b64decode(cursor, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Refusal("invalid_cursor") from None
    if kind != "next_ts" or not _TS.match(ts):
        raise Refusal("invalid_cursor")
    return ts


class Workspace:
    """One workspace as its users see it; see the module docstring."""

    def __init__(
        self,
        bot_user_id: str = "UBOT0001",
        bot_id: str = "BBOT0001",
        stream_byte_limit: int = STREAM_BYTE_LIMIT,
        page_size: int = 100,
        parent_on_every_page: bool = False,
        stream_max_age: float | None = None,
        update_while_streaming: bool = False,
        streamed_as_blocks: bool = False,
        clock: Callable[[], float] = time.monotonic,
        agent_sessions_error: str | None = None,
    ) -> None:
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.stream_byte_limit = stream_byte_limit
        self.page_size = page_size
        self.parent_on_every_page = parent_on_every_page
        # By `clock`, so a test can age a stream without waiting five minutes.
        self.stream_max_age = stream_max_age
        self.update_while_streaming = update_while_streaming
        self.streamed_as_blocks = streamed_as_blocks
        self.clock = clock
        self.agent_sessions_error = agent_sessions_error
        self._sessions: dict[tuple[str, str], AgentSession] = {}
        self._messages: dict[str, dict[str, Message]] = {}
        self._status: dict[tuple[str, str], str] = {}
        self._prompts: dict[tuple[str, str | None], list[dict[str, str]]] = {}
        self._latest = Decimal(0)

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Apply ``method`` (one of ``METHODS``) to ``params``; its answer's fields, or ``Refusal``."""
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
            "agents.sessions.setStatus": self._set_session_status,
        }
        return handlers[method](params)

    # --- seeding and ending -------------------------------------------------------------------------------------------

    def expire_streams(self) -> None:
        """Every open stream ends as Slack's do after a few minutes: append/stop are refused from now on."""
        for message in self._all_messages():
            if message.stream == "streaming":
                message.stream = "expired"

    def stop_session(self, channel: str, thread_ts: str) -> list[str]:
        """The user pressed stop in the thread: its open streams stop; their ts, oldest first."""
        self.end_old_streams()
        stopped = []
        for message in self._thread_messages(channel, thread_ts):
            if message.streaming:
                message.stream = "stopped"
                stopped.append(message.ts)
        return stopped

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

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The root and its replies, oldest first, as copies; [] if there is no such thread."""
        self.end_old_streams()
        return [replace(message) for message in self._thread_messages(channel, thread_ts)]

    def messages(self, channel: str) -> list[Message]:
        self.end_old_streams()
        return [replace(m) for m in sorted(self._messages.get(channel, {}).values(), key=lambda m: _ts_key(m.ts))]

    def text_of(self, channel: str, ts: str) -> str | None:
        """One message's text as a user reads it now: its last update, or all its stream's text
        (which an ended stream keeps); None once deleted (or if there never was one)."""
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
        return self._status.get((channel, thread_ts), "")

    def suggested_prompts(self, channel: str, thread_ts: str | None = None) -> list[dict[str, str]]:
        """The prompts of the thread ``thread_ts``, or with None those pinned atop the DM."""
        return copy.deepcopy(self._prompts.get((channel, thread_ts), []))

    def session(self, channel: str, thread_ts: str) -> AgentSession | None:
        """The thread's agent session now (a copy), or None if it has none."""
        session = self._sessions.get((channel, thread_ts))
        return None if session is None else replace(session, statuses=list(session.statuses))

    # --- the model ----------------------------------------------------------------------------------------------------

    def _all_messages(self) -> Iterator[Message]:
        for channel in self._messages.values():
            yield from channel.values()

    def end_old_streams(self) -> None:
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
        if message.attachments is not None:
            data["attachments"] = copy.deepcopy(message.attachments)
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
        channel, ts = required(params, "channel"), required(params, "ts")
        message = self._messages.get(channel, {}).get(ts)
        if message is None:
            raise Refusal("message_not_found")
        return message

    # --- methods: each returns the answer's fields or raises Refusal -----------------------------------------------

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
            raise Refusal("markdown_text_conflict")
        if markdown is not None:
            if not markdown:
                raise Refusal("no_text")
            if len(markdown) > MAX_MARKDOWN_CHARS:
                raise Refusal("msg_too_long")
            return markdown, True
        if not text and not blocks and not params.get("attachments"):
            raise Refusal("no_text")
        if text and len(text) > MAX_TEXT_CHARS:
            raise Refusal("msg_too_long")
        return text or "", False

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = required(params, "channel", missing="channel_not_found")
        text, markdown = self._message_content(params)
        table_refusal(params)
        blocks = check_blocks(params.get("blocks"))
        attachments = params.get("attachments")
        message = self._bot_message(
            channel,
            text,
            params.get("thread_ts") or None,
            markdown=markdown,
            blocks=blocks,
            attachments=copy.deepcopy(attachments) if isinstance(attachments, list) else None,
        )
        return {"channel": channel, "ts": message.ts, "message": self._as_slack(message)}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._find(params)
        if message.bot_id != self.bot_id:
            raise Refusal("cant_update_message")
        text, markdown = self._message_content(params)
        table_refusal(params)
        blocks = check_blocks(params.get("blocks"))
        if message.streaming:
            if not self.update_while_streaming:
                raise Refusal(STREAMING_STATE_CONFLICT)
            message.stream = "stopped"  # the update ends the stream: appends are refused from now on
        message.text, message.markdown, message.edited = text, markdown, True
        message.blocks = blocks
        attachments = params.get("attachments")
        message.attachments = copy.deepcopy(attachments) if isinstance(attachments, list) else None
        return {"channel": message.channel, "ts": message.ts, "text": text, "message": self._as_slack(message)}

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._find(params)
        if message.bot_id != self.bot_id:
            raise Refusal("cant_delete_message")
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
        return {"channel": message.channel, "ts": message.ts}

    def _stream_text(self, params: dict[str, Any], required: bool) -> str:
        chunk_refusal(params.get("chunks"))
        pieces = []
        markdown = params.get("markdown_text")
        if markdown is not None:
            if not isinstance(markdown, str):
                raise Refusal("invalid_arguments", "markdown_text must be a string")
            pieces.append(markdown)
        pieces.extend(chunk_texts(params.get("chunks")))
        if any(len(piece) > MAX_MARKDOWN_CHARS for piece in pieces):
            raise Refusal("msg_too_long")
        if required and not "".join(pieces) and not params.get("chunks"):
            raise Refusal("no_text")
        return "".join(pieces)

    def _check_stream_size(self, text: str) -> None:
        if len(text.encode()) > self.stream_byte_limit:
            raise Refusal("msg_too_long")

    def _chat_start_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = required(params, "channel", missing="channel_not_found")
        thread_ts = required(params, "thread_ts")
        if not channel.startswith("D"):
            if not params.get("recipient_user_id"):
                raise Refusal("missing_recipient_user_id")
            if not params.get("recipient_team_id"):
                raise Refusal("missing_recipient_team_id")
        mode = params.get("task_display_mode")
        if mode is not None and mode not in TASK_DISPLAY_MODES:
            raise Refusal("invalid_arguments", f"task_display_mode must be one of {', '.join(TASK_DISPLAY_MODES)}")
        text = self._stream_text(params, required=False)
        self._check_stream_size(text)
        message = self._bot_message(
            channel,
            text,
            thread_ts,
            markdown=True,
            stream="streaming",
            started_at=self.clock(),
            chunks=copy.deepcopy(params.get("chunks") or []),
            task_display_mode=mode,
        )
        return {"channel": channel, "ts": message.ts}

    def _streaming(self, params: dict[str, Any]) -> Message:
        message = self._find(params)
        if message.stream != "streaming":
            raise Refusal("message_not_in_streaming_state")
        return message

    def _chat_append_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._streaming(params)
        text = self._stream_text(params, required=True)
        self._check_stream_size(message.text + text)
        message.text += text
        message.chunks += copy.deepcopy(params.get("chunks") or [])
        return {"channel": message.channel, "ts": message.ts}

    def _chat_stop_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._streaming(params)
        text = self._stream_text(params, required=False)
        if _tables_in(params.get("blocks")):
            raise Refusal("invalid_blocks", "a table block cannot be streamed")
        self._check_stream_size(message.text + text)
        blocks = check_blocks(params.get("blocks"))
        message.text += text
        message.chunks += copy.deepcopy(params.get("chunks") or [])
        message.stream = "stopped"
        if blocks is not None:
            message.blocks = blocks
        return {"channel": message.channel, "ts": message.ts, "message": self._as_slack(message)}

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = required(params, "channel", missing="channel_not_found")
        ts = required(params, "ts")
        thread = self._thread_messages(channel, ts)
        if not thread:
            raise Refusal("thread_not_found")
        thread = [thread[0], *self._in_range(thread[1:], params)]  # the root comes first whatever the range
        try:
            limit = int(params.get("limit") or 0)
        except ValueError:
            raise Refusal("invalid_limit") from None
        size = min(limit, self.page_size) if limit > 0 else self.page_size
        start = 0
        if params.get("cursor"):
            cursor_ts = decode_cursor(str(params["cursor"]))
            start = next((i for i, m in enumerate(thread) if _ts_key(m.ts) >= _ts_key(cursor_ts)), len(thread))
        repeat_root = self.parent_on_every_page and start > 0
        page = thread[start : start + (max(size - 1, 1) if repeat_root else size)]
        if repeat_root:
            page = [thread[0], *page]
        end = start + len(page) - (1 if repeat_root else 0)
        has_more = end < len(thread)
        answer: dict[str, Any] = {"messages": [self._as_slack(m) for m in page], "has_more": has_more}
        answer["response_metadata"] = {"next_cursor": encode_cursor(thread[end].ts) if has_more else ""}
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
                raise Refusal(f"invalid_ts_{name}")
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
        channel = required(params, "channel_id")
        thread_ts = required(params, "thread_ts")
        status = params.get("status")
        if not isinstance(status, str):
            raise Refusal("invalid_arguments", "missing required field: status")
        loading = params.get("loading_messages")
        if loading is not None and (not isinstance(loading, list) or len(loading) > MAX_LOADING_MESSAGES):
            raise Refusal("invalid_arguments", f"loading_messages: at most {MAX_LOADING_MESSAGES}")
        if status:
            self._status[(channel, thread_ts)] = status
        else:
            self._status.pop((channel, thread_ts), None)
        return {}

    def _set_suggested_prompts(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = required(params, "channel_id")
        prompts = params.get("prompts")
        if not isinstance(prompts, list) or not prompts:
            raise Refusal("invalid_arguments", "missing required field: prompts")
        if len(prompts) > MAX_PROMPTS:
            raise Refusal("invalid_arguments", f"prompts: at most {MAX_PROMPTS} items")
        for prompt in prompts:
            if not (isinstance(prompt, dict) and prompt.get("title") and prompt.get("message")):
                raise Refusal("invalid_arguments", "each prompt needs a title and a message")
        self._prompts[(channel, params.get("thread_ts") or None)] = copy.deepcopy(prompts)
        return {}

    def _set_session_status(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - SESSION_ARGUMENTS)
        if unknown:
            raise Refusal("invalid_arguments", f"unknown arguments: {', '.join(unknown)}")
        if self.agent_sessions_error:
            raise Refusal(self.agent_sessions_error)
        channel = required(params, "channel_id")
        status = required(params, "status")
        if status not in SESSION_STATUSES:
            raise Refusal("invalid_arguments", f"status must be one of {', '.join(sorted(SESSION_STATUSES))}")
        thread_ts = params.get("thread_ts")
        if thread_ts is None or thread_ts == "":
            raise Refusal("thread_ts_required")
        if not isinstance(thread_ts, str) or not _TS.match(thread_ts):
            raise Refusal("invalid_arguments", "thread_ts must be a message ts")
        for name in ("title", "initiator_user_id", "icon_emoji", "icon_url", "username"):
            if name in params and not isinstance(params[name], str):
                raise Refusal("invalid_arguments", f"{name} must be a string")
        title = params.get("title")
        if title is not None and len(title) > MAX_SESSION_TITLE_CHARS:
            raise Refusal("invalid_arguments", f"title: at most {MAX_SESSION_TITLE_CHARS} characters")
        session = self._sessions.get((channel, thread_ts))
        if session is None:
            session = AgentSession(channel, thread_ts, status, title, params.get("initiator_user_id"))
            self._sessions[(channel, thread_ts)] = session
        session.status = status
        session.statuses.append(status)
        return {"status": status}
