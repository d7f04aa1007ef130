"""Shows an answer in a Slack thread as its text arrives: streamed messages, or posted and updated.

Contract: a ``Replier`` takes text deltas (``push``) and sends them through
``chalicelib.slack.web`` (every Slack call raises ``web.SlackError`` on failure):

- The first text goes out at once (``chat.startStream``). After that a message gets at most one
  call every ``STREAM_INTERVAL_SECONDS`` (``chat.appendStream``); the caller keeps the timer:
  it calls ``flush_if_due()`` when ``due_in()`` seconds have passed (``None``: nothing to send).
  Nothing here sleeps; the clock is injectable.
- In a channel (id not starting with ``D``) ``chat.startStream`` gets the recipient's user and
  team ids, which Slack requires there; a DM has a single reader and gets none.
- A streamed message is stopped before it passes ``STREAM_MAX_BYTES`` UTF-8 bytes (Slack caps
  a streamed message's total near 11,000 bytes) and the text continues in a new streamed
  message in the thread. The cut is made at a paragraph, line or sentence boundary when one is
  near; a code fence open at the cut is closed at the end of the message and reopened (with
  its info string) at the start of the next. No call carries more than 12,000 characters.
- If Slack refuses ``chat.startStream`` (any Slack error code), this and every later message
  is posted with ``chat.postMessage`` and then rewritten whole with ``chat.update`` at most
  every ``UPDATE_INTERVAL_SECONDS``, rolling over to a new message before
  ``markdown.MAX_MARKDOWN_CHARS`` (counted in UTF-16 units, the strictest reading).
- A stream is stopped before it is ``rotate_seconds`` old (Slack ends a stream about 5
  minutes after it starts, even while it is appended to) and the text goes on in a new
  streamed message, a code fence closed and reopened as at a size cut.
- ``message_not_in_streaming_state`` (Slack ended the stream) on an append or a stop: the
  message is finished with ``chat.update`` of its whole text and later text goes to a new
  message.
- A connection dropped or timed out during a stream call leaves Slack's state unknown; it is
  never answered by sending the same text again. After ``chat.appendStream`` or
  ``chat.stopStream``: the stream is stopped (safe to repeat) and the message set to its whole
  text with ``chat.update`` (idempotent); later text goes to a new message. After
  ``chat.startStream``: the message is looked for in the thread (the bot's oldest after
  ``asked_ts`` and every message this replier posted whose text is exactly what the start
  sent, so another job's answer in the same thread is never taken for it); found, it is
  stopped and updated the same way; not found, the start is made once more.
- ``msg_too_long`` on an append (Slack's cap lower than we thought): the message is stopped
  where it is and the text goes to a new one. ``ratelimited`` on a send that is not the
  last: the text stays buffered for the next turn.
- ``restart()`` forgets the current attempt: its pending text is dropped and its open stream
  stopped; the messages it showed stay until the next attempt shows its first text, and are
  then deleted (one that cannot be deleted is rewritten as a one-line pointer to the new
  answer). So a new attempt replaces the old one, and a retry that shows nothing leaves the
  user what they had.
- The model's text never reaches Slack as a broadcast mention (``<!here>``, ``<!channel>``,
  ``<!subteam^…>``...): ``markdown.defuse_broadcasts`` is applied to every delta, across deltas.
- ``finish()`` sends what is left (but trailing text that is only whitespace) and stops the
  open stream; it can be called again (no-op). ``finish(final_blocks)`` (a completed answer's
  feedback buttons) puts ``final_blocks`` on the answer's last message only: on the
  ``chat.stopStream`` that ends it; or, when that message was posted (streaming refused) or
  finished by ``chat.update`` (its stream ended or its last call's fate unknown), by one more
  ``chat.update`` that shows its text in a ``markdown`` block followed by them (``text`` stays
  as the fallback). Blocks that Slack refuses (``BLOCK_ERRORS``) are dropped, the message
  stopped without them; a failure of that last update is logged, not raised: the answer is
  whole without its buttons.
  ``post_notice(text)`` finishes first, then posts one mrkdwn line in the thread.
- ``halt()``: the user pressed stop. Pending text is dropped, the open stream is stopped
  quietly (Slack has stopped it already: its ``message_not_in_streaming_state`` is expected),
  and nothing more is sent (``push``, ``flush_if_due`` and ``finish`` do nothing; ``post_notice``
  still posts). ``stopped(seconds)`` (a fresh look at the stop mark, given by the caller, that
  may wait up to ``seconds`` for one) is asked before a ``message_not_in_streaming_state`` is
  taken for an expired stream, and before a new message is opened after the first (a rotation,
  a size cut, an expiry): a stop found then halts the replier, instead of resuming in a new
  stream what the user stopped. A stream younger than ``rotate_seconds`` cannot have expired of
  age: Slack stopped it for the user, whose stop event may be a moment behind, so the look waits
  up to ``STOP_GRACE_SECONDS`` for it.
- Any other ``SlackError`` (or a ``connection``/``timeout`` one, after which a write may or may
  not have landed) is raised once; the replier is then spent: ``push``/``flush_if_due`` do
  nothing, ``finish()`` only tries to stop an open stream (quietly), ``post_notice`` still posts.
- Chunks: ``chunks()`` (given) is asked for the stream's non-text chunks (task updates) at
  every stream call, which carries them: the start (with ``task_display_mode``), an append,
  the stop, and the stop of an attempt ``restart()`` forgets (so its message shows why a new
  one follows). A posted message carries none.
- ``post_table(attachment, fallback)`` finishes first, then posts a table in its own message
  in the thread; a post Slack refuses (not a lost connection) posts ``fallback`` (the table as
  Markdown code) instead.
- ``visible``: some answer text reached Slack; ``notice_attempted``: ``post_notice`` was called
  (whether or not its post succeeded); ``calls``: Slack calls made; ``posted_ts``: the ts of
  every message it posted, oldest first; ``fallback``: streaming was refused.
  ``discard_pending()`` forgets text not yet sent (before a second try at the answer).

Not thread-safe: one job's thread drives it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import MarkdownBlock

from chalicelib.slack import history, markdown, web

logger = logging.getLogger(__name__)

STREAM_INTERVAL_SECONDS = 2.0  # chat.appendStream is Tier 4: several answers at once stay inside it
UPDATE_INTERVAL_SECONDS = 3.0  # chat.update is Tier 3
STREAM_MAX_BYTES = 9_000  # a streamed message's total; Slack refuses near 11,000 (doc §9)
# A posted/updated message's whole text, per call, with room for a code fence closed at a cut.
UPDATE_MAX_UNITS = markdown.MAX_MARKDOWN_CHARS - 100
# In the last quarter of its limit a message ends at the first line break, rather than fill up
# with small deltas and be cut wherever the one that does not fit happens to be.
ROLLOVER_ZONE = 0.25
ROTATE_SECONDS = 240.0  # STREAM_ROTATE_SECONDS' default: Slack ends a stream about 5 minutes in
# What an earlier attempt's message says when it cannot be deleted.
REPLACED = "_(An earlier attempt at this answer broke off; the whole answer follows.)_"
EXPIRED = "message_not_in_streaming_state"
# Slack refuses a message's blocks: the message goes out without them.
BLOCK_ERRORS = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_blocks_too_many", "msg_blocks_too_long"})
# A young stream that Slack ended: how long to wait for the user's stop to reach us (the event
# follows Slack's own stop of the stream; in Lambda the worker reads the mark then).
STOP_GRACE_SECONDS = 1.5
# Errors after which a write may have landed: sending it another way could show it twice.
UNCERTAIN = frozenset({"connection", "timeout", "unreadable"})
# Cut candidates, best first: a paragraph, a line, then a sentence or clause mark or a space
# (Japanese has no spaces). A candidate is used only if it keeps the message at least half full.
_CUT_TIERS = (("\n\n",), ("\n",), ("。", "！", "？", "．", ". ", "、", "，", ", ", " "))
_TRIES_PER_TIER = 8  # enough to step back past a cut that would split a code block badly
_FENCE_LINE = re.compile(r"[ \t]*(`{3,}|~{3,})")
_FENCE_ONLY = re.compile(r"[ \t]*(`{3,}|~{3,})[ \t]*")


@dataclass
class _Message:
    ts: str
    streamed: bool  # a stream (bytes cap, appends) or a posted message (chars cap, whole updates)
    text: str  # everything Slack has for it so far
    last_sent: float
    limit: int  # in UTF-8 bytes when streamed, else in UTF-16 units
    full: bool = False  # its last piece is in; it only needs closing
    opened: float = 0.0  # when it was started: a stream is rotated before Slack ends it


class Replier:
    """One answer's messages in one thread; see the module docstring."""

    def __init__(
        self,
        client: Any,
        channel: str,
        thread_ts: str,
        recipient_user_id: str | None = None,
        recipient_team_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        rotate_seconds: float = ROTATE_SECONDS,
        bot_user_id: str | None = None,
        asked_ts: str | None = None,
        chunks: Callable[[], list[Any]] | None = None,
        task_display_mode: str | None = None,
        stopped: Callable[[float], bool] | None = None,
    ) -> None:
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        in_dm = channel.startswith("D")  # a DM has one reader: Slack needs no recipient there
        self._recipient_user_id = None if in_dm else recipient_user_id
        self._recipient_team_id = None if in_dm else recipient_team_id
        self._clock = clock
        self._rotate_seconds = rotate_seconds
        self._bot_user_id = bot_user_id
        self._asked_ts = asked_ts  # the question's ts: a lost start is looked for after it
        self._chunks = chunks
        self._task_display_mode = task_display_mode
        self._stopped = stopped
        self._halted = False
        self._pushed_tail = ""  # the last character pushed: a broadcast can straddle two deltas
        self._answer_ts: list[str] = []  # this attempt's answer messages (not notices)
        self._superseded: list[str] = []  # an earlier attempt's, deleted once this one shows text
        self._start_retried = False
        self._pending = ""  # pushed, not yet sent
        self._reopen = ""  # a fence's opening line to start the next message with
        self._current: _Message | None = None
        self._hold_until = float("-inf")  # after a ratelimited send
        self._streams_refused = False
        self._failed: web.SlackError | None = None
        self.visible = False
        self.notice_attempted = False
        self.calls = 0
        self.posted_ts: list[str] = []
        self._final_blocks: list[Any] | None = None  # during finish(final_blocks): not yet sent
        self._last: _Message | None = None  # the newest answer message

    @property
    def fallback(self) -> bool:
        return self._streams_refused

    # --- the caller's side --------------------------------------------------------------------------------------------

    def push(self, text: str) -> None:
        if self._failed is not None or self._halted or not text:
            return
        self._pending += markdown.defuse_broadcasts(text, self._pushed_tail)
        self._pushed_tail = text[-1]
        self.flush_if_due()

    def due_in(self) -> float | None:
        """Seconds until a send is allowed (0: now), or None when nothing is waiting to be sent."""
        if self._failed is not None or self._halted or not self._pending.strip():
            return None
        return max(0.0, self._ready_at() - self._clock())

    def flush_if_due(self) -> None:
        due = self.due_in()
        if due is not None and due <= 0:
            self._send(final=False)

    def finish(self, final_blocks: Sequence[Any] | None = None) -> None:
        if self._halted:
            return
        if self._failed is not None:
            self._abandon()
            return
        self._final_blocks = list(final_blocks) if final_blocks else None
        try:
            self._send(final=True)
        finally:
            blocks, self._final_blocks = self._final_blocks, None
        if blocks and self._last is not None:  # no chat.stopStream carried them
            self._add_blocks(self._last, blocks)

    def discard_pending(self) -> None:
        """Forget text not yet sent: an answer that failed before it showed will be asked for again."""
        self._pending, self._reopen, self._pushed_tail = "", "", ""

    def halt(self, stream_ended: bool = False) -> None:
        """The user stopped the answer: nothing more is sent (see the module docstring).

        ``stream_ended``: Slack just said the open stream is not streaming; it is not stopped again.
        """
        self._halted = True
        self.discard_pending()
        if stream_ended:
            self._current = None
        self._abandon()

    def _is_stopped(self, ended: _Message | None = None) -> bool:
        """Whether the user stopped the answer (halting it if so). ``ended``: the stream Slack just
        said is not streaming, which is not stopped again."""
        grace = 0.0
        if ended is not None and self._clock() - ended.opened < self._rotate_seconds:
            grace = STOP_GRACE_SECONDS
        if not self._halted and self._stopped is not None and self._stopped(grace):
            logger.info("the answer was stopped: nothing more is sent")
            self.halt(stream_ended=ended is not None)
        return self._halted

    def restart(self) -> None:
        """Forget the current attempt, shown or not: the next one replaces it (see the module docstring)."""
        self.discard_pending()
        message, self._current = self._current, None
        if message is not None and message.streamed:
            self._stop_quietly(message.ts, self._take_chunks())
        self._superseded += self._answer_ts
        self._answer_ts = []

    def post_notice(self, text: str) -> str:
        """Posts one plain-language mrkdwn line in the thread, after the answer; returns its ts."""
        self.notice_attempted = True  # even if the post fails: it may have landed all the same
        try:
            self.finish()
        except web.SlackError as error:  # the notice matters more than a tidy stop
            logger.warning("could not finish the answer before a notice: %s", error.code)
        self.calls += 1
        ts = web.post(self._client, self._channel, self._thread_ts, text=text)
        self.posted_ts.append(ts)
        return ts

    def post_table(self, attachment: Any, fallback: str) -> str:
        """Posts a table (an attachment with its block) in the thread, after the answer; returns its ts."""
        self.finish()
        self.calls += 1
        try:
            ts = web.post_attachment(self._client, self._channel, self._thread_ts, attachment)
        except web.SlackError as error:
            if error.code in UNCERTAIN or error.code == "ratelimited":
                raise
            logger.warning("Slack refused a table (%s): posting it as code instead", error.code)
            self.calls += 1
            ts = web.post(self._client, self._channel, self._thread_ts, markdown_text=fallback)
        self.posted_ts.append(ts)
        return ts

    # --- sending ------------------------------------------------------------------------------------------------------

    def _send(self, final: bool) -> None:
        try:
            while self._pending.strip() or (self._current is not None and (final or self._current.full)):
                if self._current is None:
                    if self._answer_ts and self._is_stopped():
                        return  # a new message after the first: never resume what the user stopped
                    self._start(final)
                elif (
                    self._current.streamed
                    and self._pending.strip()  # with nothing to go on with, the stream just ends
                    and self._clock() - self._current.opened >= self._rotate_seconds
                ):
                    self._rotate(self._current)
                elif final or self._clock() >= self._ready_at():
                    self._extend(self._current, final)
                else:
                    return
            if final:
                self._pending, self._reopen = "", ""  # only whitespace was left
        except web.SlackError as error:
            if error.code == "ratelimited" and not final:
                # Nothing changed: the text stays buffered and goes with the next turn.
                self._hold_until = self._clock() + self._interval(self._current)
                logger.warning("Slack rate-limited %s; holding the text back", error.method)
                return
            self._failed = error
            raise

    def _ready_at(self) -> float:
        """When the next send may go: a message's cadence, or the wait after a rate limit."""
        at = self._hold_until
        message = self._current
        if message is not None and not message.full:  # closing a full message is not an append
            at = max(at, message.last_sent + self._interval(message))
        return at

    def _start(self, final: bool) -> None:
        """Opens a message with as much pending text as fits (closing it at once if that is not all)."""
        streamed = not self._streams_refused
        limit = STREAM_MAX_BYTES if streamed else UPDATE_MAX_UNITS
        piece, rest, reopen, full = _take(self._reopen, self._pending, limit, streamed, final)
        if len(rest) == len(self._pending):
            # An opening line too long to repeat left no room: drop it rather than loop.
            self._reopen = ""
            piece, rest, reopen, full = _take("", self._pending, limit, streamed, final)
        text = self._reopen + piece
        if streamed:
            try:
                ts = self._call(
                    web.start_stream,
                    self._client,
                    self._channel,
                    self._thread_ts,
                    text,
                    self._recipient_user_id,
                    self._recipient_team_id,
                    chunks=self._take_chunks(),
                    task_display_mode=self._task_display_mode,
                )
            except web.SlackError as error:
                if error.code in UNCERTAIN:
                    self._recover_start(error, text, rest, reopen)
                    return
                logger.warning("Slack refused to stream (%s): posting and updating instead", error.code)
                self._streams_refused = True
                return  # the caller's loop starts the message again, as a posted one
        else:
            ts = self._call(web.post, self._client, self._channel, self._thread_ts, markdown_text=text)
        self.visible = True
        self.posted_ts.append(ts)
        self._answer_ts.append(ts)
        now = self._clock()
        self._current = self._last = _Message(ts, streamed, text, now, limit, full=full, opened=now)
        self._drop_superseded()
        self._pending, self._reopen = rest, reopen
        if full and not streamed:
            self._current = None  # a posted message is complete as soon as it is posted

    def _extend(self, message: _Message, final: bool) -> None:
        """Sends pending text into ``message``; closes it when it is full or this is the end."""
        if message.full:
            self._close(message, "", last=final and not self._pending.strip())
            return
        piece, rest, reopen, full = _take(message.text, self._pending, message.limit, message.streamed, final)
        if full and not piece.strip():
            # A blank piece is not sent: ending the message with it would lose it between the
            # messages. The message ends as it is; the blank text starts the next one.
            piece, rest = "", piece + rest
        closing = full or final
        if not message.streamed:
            if piece.strip():
                self._call(web.update, self._client, self._channel, message.ts, markdown_text=message.text + piece)
                message.text += piece
            message.last_sent = self._clock()
        elif closing:
            self._close(message, piece, last=final and not rest.strip())
        else:
            try:
                self._call(
                    web.append_stream, self._client, self._channel, message.ts, piece, chunks=self._take_chunks()
                )
            except web.SlackError as error:
                if error.code == EXPIRED and self._is_stopped(ended=message):
                    return  # the user's stop ended it, not its age
                if error.code == EXPIRED or error.code in UNCERTAIN:
                    self._finish_ended(message, piece, stop_first=error.code != EXPIRED)
                    self._pending = rest
                    return
                if error.code == "msg_too_long":
                    # Slack's cap is below ours: end the message where it is; the text goes on in a new one.
                    logger.warning("Slack found a streamed message too long at %d bytes", _utf8_len(message.text))
                    message.limit = _utf8_len(message.text)
                    return
                raise
            message.text += piece
            message.last_sent = self._clock()
        self.visible = self.visible or bool(piece.strip())
        self._pending = rest
        if closing:
            self._current = None
            self._reopen = reopen

    def _close(self, message: _Message, piece: str, last: bool = False) -> None:
        """Ends ``message`` with ``piece`` as its last text (a posted message needs nothing more);
        ``last``: the answer's last message, which carries the final blocks, if any."""
        if message.streamed:
            try:
                self._stop(message, piece if piece.strip() else None, last)
                message.text += piece
            except web.SlackError as error:
                if error.code != EXPIRED and error.code not in UNCERTAIN:
                    raise
                if error.code == EXPIRED and self._is_stopped(ended=message):
                    return
                self._finish_ended(message, piece, stop_first=error.code != EXPIRED)
        self._current = None

    def _stop(self, message: _Message, piece: str | None, last: bool) -> None:
        blocks = self._final_blocks if last else None
        chunks = self._take_chunks()
        if not blocks:
            self._call(web.stop_stream, self._client, self._channel, message.ts, piece, chunks=chunks)
            return
        try:
            self._call(web.stop_stream, self._client, self._channel, message.ts, piece, blocks, chunks=chunks)
        except web.SlackError as error:
            if error.code not in BLOCK_ERRORS:
                raise
            # Refused for the blocks alone, nothing changed: the answer ends without them.
            logger.warning("Slack refused the answer's final blocks (%s): stopping without them", error.code)
            self._final_blocks = None
            self._call(web.stop_stream, self._client, self._channel, message.ts, piece, chunks=chunks)
            return
        self._final_blocks = None  # delivered

    def _add_blocks(self, message: _Message, blocks: list[Any]) -> None:
        """Shows ``blocks`` under a message that no chat.stopStream could carry them on (see the module docstring)."""
        if not message.text.strip() or len(message.text) > MarkdownBlock.text_max_length:
            return  # nothing to show in a markdown block, or too much: the text matters more
        try:
            self._call(
                web.update,
                self._client,
                self._channel,
                message.ts,
                text=message.text,
                blocks=[MarkdownBlock(text=message.text), *blocks],
            )
        except web.SlackError as error:
            logger.warning("could not add the final blocks to the answer: %s", error.code)

    def _drop_superseded(self) -> None:
        """The new attempt is showing: delete the earlier attempt's messages."""
        for ts in self._superseded:
            try:
                self._call(web.delete, self._client, self._channel, ts)
                self.posted_ts.remove(ts)
            except web.SlackError as error:  # a partial that stays must not read as part of the answer
                logger.warning("could not delete an earlier attempt's message: %s", error.code)
                try:
                    self._call(web.update, self._client, self._channel, ts, markdown_text=REPLACED)
                except web.SlackError as update_error:
                    logger.warning("could not mark it as replaced either: %s", update_error.code)
        self._superseded = []

    def _rotate(self, message: _Message) -> None:
        """Stop a stream before Slack ends it; its open code block, if any, is closed and reopened."""
        fence = markdown.open_fence(message.text)
        piece = ""
        if fence is not None:
            closing = markdown.closing_fence(fence)
            piece = closing if message.text.endswith("\n") else "\n" + closing
        logger.info("a stream reached STREAM_ROTATE_SECONDS; going on in a new message")
        self._close(message, piece)
        if fence is not None:
            self._reopen = fence + "\n"

    def _recover_start(self, error: web.SlackError, text: str, rest: str, reopen: str) -> None:
        """``chat.startStream``'s answer was lost: find the message it may have made, or start again once."""
        ts = None
        if self._bot_user_id and self._asked_ts:
            after = max([self._asked_ts, *self.posted_ts], key=lambda ts: history.ts_key(ts) or (0, ""))
            try:
                self.calls += 1
                ts = web.find_own_message(self._client, self._channel, self._thread_ts, self._bot_user_id, after, text)
            except web.SlackError as lookup_error:
                logger.warning("could not look for a stream whose start was lost: %s", lookup_error.code)
                raise error from None
        if ts is None:
            if self._start_retried or not (self._bot_user_id and self._asked_ts):
                raise error
            logger.warning("chat.startStream was lost (%s) and made no message; starting again", error.code)
            self._start_retried = True
            return  # the caller's loop starts the message again
        logger.warning("chat.startStream was lost (%s); finishing its message with chat.update", error.code)
        self.visible = True
        self.posted_ts.append(ts)
        self._answer_ts.append(ts)
        now = self._clock()
        message = self._last = _Message(ts, True, "", now, STREAM_MAX_BYTES, opened=now)
        self._pending, self._reopen = rest, ""
        self._finish_ended(message, text, stop_first=True)
        if not self._reopen:
            self._reopen = reopen
        self._drop_superseded()

    def _finish_ended(self, message: _Message, piece: str, stop_first: bool) -> None:
        """Finish a stream Slack ended (about 5 minutes in) or whose last call's fate is unknown:
        stop it if it may still run (safe to repeat), then ``chat.update`` sets the message's
        whole text, which is idempotent, unlike sending the piece again."""
        if stop_first:
            self._stop_quietly(message.ts)
        logger.info("finishing a stream's message with chat.update")
        text = message.text + piece
        fence = markdown.open_fence(text)
        if fence is not None:  # the text goes on in a new message: close the code block here, reopen it there
            closing = markdown.closing_fence(fence)
            text += closing if text.endswith("\n") else "\n" + closing
            self._reopen = fence + "\n"
        self._call(web.update, self._client, self._channel, message.ts, markdown_text=text)
        message.text = text
        self.visible = True
        self._current = None

    def _abandon(self) -> None:
        """After a failure: stop an open stream if Slack lets us, so it does not spin for minutes."""
        message, self._current = self._current, None
        if message is None or not message.streamed:
            return
        self._stop_quietly(message.ts)

    def _stop_quietly(self, ts: str, chunks: list[Any] | None = None) -> None:
        try:
            self._call(web.stop_stream, self._client, self._channel, ts, None, chunks=chunks)
        except web.SlackError as error:  # stopped already, or Slack ended it: either way it has stopped
            logger.info("could not stop a stream: %s", error.code)

    def _take_chunks(self) -> list[Any] | None:
        return (self._chunks() or None) if self._chunks is not None else None

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return function(*args, **kwargs)

    @staticmethod
    def _interval(message: _Message | None) -> float:
        if message is None or message.streamed:
            return STREAM_INTERVAL_SECONDS
        return UPDATE_INTERVAL_SECONDS


# --- cutting ----------------------------------------------------------------------------------------------------------


def _take(sent: str, pending: str, limit: int, streamed: bool, final: bool) -> tuple[str, str, str, bool]:
    """What of ``pending`` goes after ``sent`` in a message of at most ``limit`` units.

    Returns (piece, rest, reopen, full): ``piece`` to send (ending with a fence's closing line
    when it cuts inside one), the ``rest`` left over, the line that reopens the fence in the
    next message (or ""), and whether the message ends with this piece.
    """
    used = _size(sent, streamed)
    total = used + _size(pending, streamed)
    if total <= limit and (final or total <= limit * (1 - ROLLOVER_ZONE)):
        return pending, "", "", False
    # It fits, but the message is nearly full: end it at a line break if there is one. Only if the
    # line closing the code block it would end in fits too: a later cut in that block adds it.
    early = total <= limit and total + _closing_size(sent + pending, streamed) <= limit
    room = limit - used
    while True:
        cut = _cut(sent, pending, room, limit, streamed, early)
        if cut < 0:
            return pending, "", "", False  # no line break yet: keep filling
        piece = pending[:cut]
        fence = markdown.open_fence(sent + piece)
        closing = ""
        if fence is not None:
            line = markdown.closing_fence(fence)
            closing = line if (sent + piece).endswith("\n") or not (sent + piece) else "\n" + line
        overflow = used + _size(piece + closing, streamed) - limit
        if overflow <= 0 or cut == 0:
            return piece + closing, pending[cut:], (fence + "\n") if fence else "", True
        room -= overflow  # make room for the closing line


def _cut(sent: str, pending: str, room: int, limit: int, streamed: bool, early: bool) -> int:
    """Where to cut ``pending`` so that at most ``room`` units of it go out (0: none fits).

    ``early``: all of it fits, and only a line break is worth ending the message at (-1: none).
    """
    end = _fitting(pending, room, streamed)
    if end <= 0:
        return -1 if early else 0
    # A cut before this would leave the message less than half full.
    lowest = min(end, max(1, _fitting(pending, limit // 2 - _size(sent, streamed), streamed)))
    for tier in _CUT_TIERS[:2] if early else _CUT_TIERS:
        for cut in _candidates(pending, tier, lowest, end):
            if _good_cut(sent, pending, cut, forced=not early):
                return cut
    if early:
        return -1
    cut = end
    text = sent + pending
    if _inside_fence_line(text, len(sent) + cut):
        # Half a fence line renders as text (or as a fence): cut before the line when we can.
        line_start = text.rfind("\n", 0, len(sent) + cut) + 1 - len(sent)
        if line_start > 0:
            cut = line_start
    return cut


def _candidates(text: str, marks: tuple[str, ...], lowest: int, end: int) -> list[int]:
    """Cut positions just after one of ``marks``, within [lowest, end], the furthest first."""
    found: set[int] = set()
    for mark in marks:
        hi = end
        for _ in range(_TRIES_PER_TIER):
            at = text.rfind(mark, 0, hi)
            if at < 0 or at + len(mark) < lowest:
                break
            if at + len(mark) <= end:
                found.add(at + len(mark))
            hi = at + len(mark) - 1
    return sorted(found, reverse=True)[:_TRIES_PER_TIER]


def _good_cut(sent: str, pending: str, cut: int, forced: bool) -> bool:
    """Not inside a fence line, not just after a heading (it belongs with what follows), and in
    a code block only when forced, and then not just before its closing line (the next message
    would start with an empty code block)."""
    text = sent + pending
    at = len(sent) + cut
    if _inside_fence_line(text, at):
        return False
    fence = markdown.open_fence(text[:at])
    if fence is None:
        last_line = text[:at].rstrip("\n").rpartition("\n")[2]
        return not last_line.lstrip().startswith("#")
    if not forced:
        return False  # closing and reopening a code block is worth it only when the message is full
    newline = pending.find("\n", cut)
    if newline < 0:
        return True  # the next line is not written yet: it may be the closing one, but the message is full
    match = _FENCE_ONLY.fullmatch(pending[cut:newline])
    closing = markdown.closing_fence(fence)
    return not (match is not None and match.group(1)[0] == closing[0] and len(match.group(1)) >= len(closing))


def _closing_size(text: str, streamed: bool) -> int:
    """The size of the line (and newline) that would close the code block open at the end of ``text``."""
    fence = markdown.open_fence(text)
    return 0 if fence is None else _size("\n" + markdown.closing_fence(fence), streamed)


def _inside_fence_line(text: str, index: int) -> bool:
    """Whether a cut at ``index`` falls inside a line that looks like a code fence."""
    line_start = text.rfind("\n", 0, index) + 1
    if line_start == index:
        return False
    return _FENCE_LINE.match(text, line_start) is not None


def _fitting(text: str, room: int, streamed: bool) -> int:
    """The length of the longest prefix of ``text`` that takes at most ``room`` units."""
    used = 0
    for index, char in enumerate(text):
        used += _char_size(char, streamed)
        if used > room:
            return index
    return len(text)


def _char_size(char: str, streamed: bool) -> int:
    code = ord(char)
    if streamed:  # UTF-8 bytes (a lone surrogate, as "surrogatepass" writes it, takes 3)
        return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
    return 2 if code > 0xFFFF else 1  # UTF-16 units: what a JavaScript length counts


def _size(text: str, streamed: bool) -> int:
    if streamed:
        return _utf8_len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))
