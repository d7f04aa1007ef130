"""The one seam to the Slack Web API (worker side only: the HTTP function must never import this).

Contract: ``client(token, base_url, deadline)`` makes a ``WebClient`` for one job. Every call
made through it, and every helper here, either succeeds or raises ``SlackError(code)``, where
``code`` is Slack's error code (``ratelimited``, ``channel_not_found``...), ``"timeout"`` or
``"connection"``; no slack_sdk exception leaks out. A call is not started with less than
``MIN_ATTEMPT_SECONDS`` left before the deadline, and each attempt's socket timeout is the time
left (slack_sdk's timeout is per network operation, so a server that trickles its answer could
still hold an attempt past the deadline).

Retries (slack_sdk's own retry loop, with our handlers instead of its defaults), at most
``MAX_RETRIES`` per call in all:

- HTTP 429 (``ratelimited``): wait ``Retry-After`` only when that wait plus
  ``MIN_ATTEMPT_SECONDS`` fits in the time left; otherwise raise ``SlackError("ratelimited")``
  at once, without sleeping.
- A connection error: retried when the request cannot have reached Slack (connection refused,
  name not resolved), or when the method is idempotent (``IDEMPOTENT_METHODS``: reads, the
  assistant-thread setters, which only set a value, ``chat.update``, which sets a message's
  whole text, and ``chat.delete``). Any other write whose request may have been sent
  (``chat.postMessage``, ``chat.startStream``, ``chat.appendStream``, ``chat.stopStream``) is
  never sent again: a re-sent ``chat.postMessage`` is a duplicate the user sees, a re-sent
  append repeats its text.
  Timeouts are never retried: the timeout is the time left, so nothing is left to retry with.

Helpers: ``set_status``, ``set_session_status``, ``set_suggested_prompts``, ``post``,
``post_attachment``, ``update``, ``delete``, ``start_stream``, ``append_stream``, ``stop_stream``
raise ``SlackError`` (the stream helpers take the stream's ``chunks``, task updates among them,
and ``start_stream`` its ``task_display_mode``; ``stop_stream`` and ``update`` take ``blocks``:
slack_sdk's models or dicts); ``delete`` counts a
message that is not there as deleted. ``thread_messages`` never raises: it returns the
messages it read and the error that stopped it, if any. ``find_own_message`` finds the bot's
newest message in a thread after a ts (a streamed message whose ``chat.startStream`` answer was
lost), and raises ``SlackError``.
"""

from __future__ import annotations

import collections
import http.client
import re
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import HttpRequest, HttpResponse, RetryHandler, RetryState
from slack_sdk.models.attachments import Attachment
from slack_sdk.models.blocks import Block
from slack_sdk.models.messages.chunk import Chunk

from chalicelib.deadline import Deadline
from chalicelib.slack import history

MAX_RETRIES = 2
# The least time worth starting an attempt with (a Slack call usually takes 0.1-0.5 s).
MIN_ATTEMPT_SECONDS = 0.5
CALL_TIMEOUT_SECONDS = 10.0  # the longest one call may wait for Slack's answer
# Waits before retrying a connection error: a refused connection is often a restart in progress.
CONNECTION_BACKOFF_SECONDS = (0.25, 0.5)
# Used when a 429 comes without a readable Retry-After (Slack always sends one).
DEFAULT_RETRY_AFTER_SECONDS = 1.0
# Safe to send twice: reading, or setting a value to the same thing again. chat.update sends the
# message's whole text (never a delta), so a second one leaves what the first did; a second
# chat.delete finds nothing (message_not_found, which delete() counts as done).
IDEMPOTENT_METHODS = frozenset(
    {
        "auth.test",
        "conversations.replies",
        "conversations.history",
        "conversations.info",
        "users.info",
        "assistant.threads.setStatus",
        "assistant.threads.setSuggestedPrompts",
        "assistant.threads.setTitle",
        "agents.sessions.setStatus",  # sets a session's status (creating it if needed): twice is once
        "chat.update",
        "chat.delete",
    }
)
REPLIES_PAGE_SIZE = 200  # conversations.replies: Slack suggests at most 200 per page
_ERROR_CODE = re.compile(r"^[a-z0-9_.]{1,80}$")


class SlackError(Exception):
    """A Slack call failed; ``code`` is Slack's error code, or ``"timeout"`` / ``"connection"``."""

    def __init__(self, code: str, method: str = "", detail: str = "") -> None:
        # Never the request or the response body: they can hold message text or the token.
        super().__init__(f"{method or 'Slack call'} failed: {code}" + (f" ({detail})" if detail else ""))
        self.code = code
        self.method = method
        self.detail = detail


def client(token: str, base_url: str, deadline: Deadline) -> WebClient:
    """A client for one job: its timeout and retries follow ``deadline`` (never share it between jobs)."""
    return _DeadlineClient(token, base_url, deadline)


class _DeadlineClient(WebClient):
    def __init__(self, token: str, base_url: str, deadline: Deadline) -> None:
        super().__init__(token=token, base_url=base_url, timeout=max(1, int(deadline.remaining())), retry_handlers=[])
        self.deadline = deadline
        self.retry_handlers = [_RateLimitRetry(self), _ConnectionRetry(self)]

    def refresh_timeout(self) -> None:
        # urllib reads the client's timeout at each attempt, so a retry after a wait gets less;
        # and no one call may take the whole job's time (Slack answers in well under a second).
        self.timeout = min(self.deadline.remaining(), CALL_TIMEOUT_SECONDS)  # type: ignore[assignment]

    def api_call(self, api_method: str, **kwargs: Any) -> Any:  # every WebClient method comes through here
        if self.deadline.remaining() < MIN_ATTEMPT_SECONDS:
            raise SlackError("timeout", api_method, "no time left to start")
        self.refresh_timeout()
        with _translated(api_method):
            return super().api_call(api_method, **kwargs)


class _DeadlineRetry(RetryHandler):
    """A slack_sdk retry handler that waits only when the wait and one more attempt fit the deadline.

    ``_wait(state, request, response, error)`` returns how long to wait before retrying, or
    None for no retry; slack_sdk's loop counts the attempts across handlers.
    """

    def __init__(self, owner: _DeadlineClient) -> None:
        super().__init__(max_retry_count=MAX_RETRIES)
        self._owner = owner

    def _wait(
        self, state: RetryState, request: HttpRequest, response: HttpResponse | None, error: Exception | None
    ) -> float | None:
        raise NotImplementedError

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        wait = self._wait(state, request, response, error)
        if wait is None or wait + MIN_ATTEMPT_SECONDS > self._owner.deadline.remaining():
            return False  # give up now rather than sleep into (or past) the deadline
        state.custom_values = {"wait": wait}
        return True

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        time.sleep((state.custom_values or {}).get("wait", DEFAULT_RETRY_AFTER_SECONDS))
        state.increment_current_attempt()
        self._owner.refresh_timeout()


class _RateLimitRetry(_DeadlineRetry):
    """slack_sdk's RateLimitErrorRetryHandler (which sleeps ``Retry-After`` with no cap), bounded."""

    def _wait(
        self, state: RetryState, request: HttpRequest, response: HttpResponse | None, error: Exception | None
    ) -> float | None:
        return _retry_after(response) if response is not None and response.status_code == 429 else None


class _ConnectionRetry(_DeadlineRetry):
    """Retries a connection error only when sending the request again cannot duplicate anything."""

    def _wait(
        self, state: RetryState, request: HttpRequest, response: HttpResponse | None, error: Exception | None
    ) -> float | None:
        if error is None or response is not None or isinstance(error, HTTPError) or _is_timeout(error):
            return None
        if not (_never_sent(error) or _method_of(request.url) in IDEMPOTENT_METHODS):
            return None
        if not isinstance(error, (URLError, ConnectionError, http.client.HTTPException)):
            return None  # not a network failure (a bug, a bad URL): retrying changes nothing
        return CONNECTION_BACKOFF_SECONDS[min(state.current_attempt, len(CONNECTION_BACKOFF_SECONDS) - 1)]


def _retry_after(response: HttpResponse) -> float:
    for name, values in response.headers.items():
        if name.lower() == "retry-after":
            value = values[0] if isinstance(values, list) and values else values
            try:
                return max(0.0, float(str(value)))
            except ValueError:
                break
    return DEFAULT_RETRY_AFTER_SECONDS


def _never_sent(error: Exception) -> bool:
    # urllib wraps errors raised while connecting and sending in URLError; a refused connection
    # or an unresolved name means not one byte of the request left this machine.
    return isinstance(error, URLError) and isinstance(error.reason, (ConnectionRefusedError, socket.gaierror))


def _is_timeout(error: BaseException) -> bool:
    return isinstance(error, TimeoutError) or (isinstance(error, URLError) and isinstance(error.reason, TimeoutError))


def _ts(response: Any, method: str) -> str:
    ts = response.get("ts")
    if not isinstance(ts, str) or not ts:
        raise SlackError("unreadable", method, "no ts in the answer")
    return ts


def _method_of(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1]


@contextmanager
def _translated(method: str) -> Iterator[None]:
    """Turns whatever slack_sdk or the network raises into a ``SlackError``."""
    try:
        yield
    except SlackError:
        raise
    except SlackApiError as error:
        raise SlackError(_api_error_code(error), method) from None
    except (OSError, http.client.HTTPException, SlackClientError) as error:
        # URLError and socket errors are OSErrors; SlackRequestError is a bad base URL.
        code = "timeout" if _is_timeout(error) else "connection"
        raise SlackError(code, method, type(error).__name__) from None
    except (UnicodeDecodeError, LookupError):  # a proxy's page: not UTF-8, or a charset Python lacks
        raise SlackError("unreadable", method, "the answer could not be decoded") from None


def _api_error_code(error: SlackApiError) -> str:
    response = error.response
    data = getattr(response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    if isinstance(code, str) and _ERROR_CODE.match(code):
        return code
    # A body that is not Slack's JSON (a proxy's HTML page...): the status says what happened.
    status = getattr(response, "status_code", 200)
    return f"http_{status}" if status != 200 else "unreadable"


def set_status(client: WebClient, channel: str, thread_ts: str, status: str) -> None:
    """The thread's "is thinking…" line; ``""`` clears it."""
    with _translated("assistant.threads.setStatus"):
        client.assistant_threads_setStatus(channel_id=channel, thread_ts=thread_ts, status=status)


SessionStatus = Literal["active", "processing", "suspended", "closed"]


def set_session_status(
    client: WebClient,
    channel: str,
    thread_ts: str,
    status: SessionStatus,
    title: str | None = None,
    initiator_user_id: str | None = None,
) -> None:
    """The agent session of the thread: ``processing`` (Slack's loading state and stop button),
    ``active`` when the work is done. Slack creates the session if needed; ``title`` is used then."""
    with _translated("agents.sessions.setStatus"):
        client.agents_sessions_setStatus(
            channel_id=channel, thread_ts=thread_ts, status=status, title=title, initiator_user_id=initiator_user_id
        )


def set_suggested_prompts(
    client: WebClient,
    channel: str,
    thread_ts: str | None,
    prompts: Sequence[tuple[str, str]],
    title: str | None = None,
) -> None:
    """Up to 4 ``(title, message)`` prompts: in the thread ``thread_ts`` (an assistant pane's), or
    with None pinned atop the bot's Messages tab (the agent view)."""
    with _translated("assistant.threads.setSuggestedPrompts"):
        client.assistant_threads_setSuggestedPrompts(
            channel_id=channel,
            thread_ts=thread_ts,
            prompts=[{"title": prompt_title, "message": message} for prompt_title, message in prompts],
            title=title,
        )


def thread_messages(
    client: WebClient, channel: str, thread_ts: str, max_messages: int
) -> tuple[list[dict[str, Any]], SlackError | None]:
    """The thread's root and its newest ``max_messages - 1`` replies, oldest first, and the error
    that stopped the reading (None when every page was read). Never raises ``SlackError``.

    ``conversations.replies`` answers oldest first, so every page is read (with the cursor) and
    only the newest replies are kept: ``limit`` alone would keep the oldest. When a page fails,
    what the pages before it gave is kept (the root and the newest of the replies read so far:
    older than the ones never read) and returned with the error; a first page that fails gives
    ``([], error)``. A rate-limited page is retried after ``Retry-After`` when that fits the
    client's deadline, and a dropped connection is retried, by the client's retry handlers.
    """
    if max_messages <= 0:
        return [], None
    root: dict[str, Any] | None = None
    replies: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_messages - 1)
    error: SlackError | None = None
    try:
        for page in _reply_pages(client, channel, thread_ts, limit=1 if max_messages == 1 else REPLIES_PAGE_SIZE):
            for message in page:
                if message.get("ts") == thread_ts:
                    root = root or dict(message)  # some pages repeat the root: keep it once
                elif max_messages > 1:
                    replies.append(dict(message))
            if max_messages == 1:
                break  # only the root was wanted
    except SlackError as failure:
        # The pages already read are still worth answering with: the caller decides.
        error = failure
    return ([root] if root is not None else []) + list(replies), error


def find_own_message(
    client: WebClient, channel: str, thread_ts: str, bot_user_id: str, after_ts: str, text: str
) -> str | None:
    """The ts of the bot's oldest message in the thread later than ``after_ts`` whose text is
    ``text`` (blanks around it ignored), or None: another job may be answering in the same
    thread, and its message must not be taken for ours. A stream whose start was lost has had
    nothing appended, so its text is exactly what the start sent.

    For a ``chat.startStream`` whose answer was lost (the connection dropped): the message may
    exist with a ts we never got. Only the replies after ``after_ts`` are asked for
    (``conversations.replies`` with ``oldest``), so this reads the thread's last page(s), not
    all of it; the ts and author are checked here all the same. Raises ``SlackError`` (code
    ``invalid_arguments``, before any call, when ``after_ts`` is not a Slack ts).
    """
    after = history.ts_key(after_ts)
    if after is None:
        # A SlackError like every failure here (the module's contract): a job's ts is input, and
        # a caller handling lookup errors must not meet a ValueError instead. Nothing is sent.
        raise SlackError("invalid_arguments", "conversations.replies", "after_ts is not a Slack ts")
    wanted = text.strip()
    oldest: tuple[tuple[int, str], str] | None = None
    for page in _reply_pages(client, channel, thread_ts, limit=REPLIES_PAGE_SIZE, oldest=after_ts):
        for message in page:
            ts = message.get("ts")
            value = history.ts_key(ts)
            if value is None or value <= after or message.get("user") != bot_user_id:
                continue
            if history.message_text(message).strip() != wanted:
                continue
            if oldest is None or value < oldest[0]:
                oldest = (value, str(ts))
    return None if oldest is None else oldest[1]


def _reply_pages(
    client: WebClient, channel: str, thread_ts: str, limit: int, oldest: str | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Each page of ``conversations.replies`` (its messages that are objects), following the
    cursor; raises ``SlackError`` for a page that fails."""
    cursor: str | None = None
    seen_cursors: set[str] = set()
    while True:
        with _translated("conversations.replies"):
            response = client.conversations_replies(
                channel=channel, ts=thread_ts, cursor=cursor, limit=limit, oldest=oldest
            )
        yield [message for message in response.get("messages") or [] if isinstance(message, dict)]
        metadata = response.get("response_metadata") or {}
        cursor = metadata.get("next_cursor") if isinstance(metadata, dict) else None
        if not response.get("has_more") or not cursor or cursor in seen_cursors:
            return  # a repeated cursor would loop for ever
        seen_cursors.add(cursor)


def post(
    client: WebClient,
    channel: str,
    thread_ts: str | None,
    markdown_text: str | None = None,
    text: str | None = None,
) -> str:
    """Posts a message (standard Markdown in ``markdown_text``, or mrkdwn ``text``); returns its ts."""
    with _translated("chat.postMessage"):
        response = client.chat_postMessage(channel=channel, thread_ts=thread_ts, markdown_text=markdown_text, text=text)
    return _ts(response, "chat.postMessage")


def update(
    client: WebClient,
    channel: str,
    ts: str,
    markdown_text: str | None = None,
    text: str | None = None,
    blocks: Sequence[Block | dict[str, Any]] | None = None,
) -> None:
    """Replaces a message's whole text (with ``blocks``, what it shows; ``text`` is then the fallback)."""
    with _translated("chat.update"):
        client.chat_update(channel=channel, ts=ts, markdown_text=markdown_text, text=text, blocks=blocks)


def delete(client: WebClient, channel: str, ts: str) -> None:
    """Deletes the bot's message; one that is not there counts as deleted.

    A retried ``chat.delete`` whose first request landed finds nothing: ``message_not_found`` is
    the outcome wanted, not an error.
    """
    try:
        with _translated("chat.delete"):
            client.chat_delete(channel=channel, ts=ts)
    except SlackError as error:
        if error.code != "message_not_found":
            raise


def start_stream(
    client: WebClient,
    channel: str,
    thread_ts: str,
    markdown_text: str,
    recipient_user_id: str | None = None,
    recipient_team_id: str | None = None,
    chunks: Sequence[Chunk] | None = None,
    task_display_mode: str | None = None,
) -> str:
    """Starts a streamed message with its first text; returns its ts."""
    with _translated("chat.startStream"):
        response = client.chat_startStream(
            channel=channel,
            thread_ts=thread_ts,
            markdown_text=markdown_text,
            recipient_user_id=recipient_user_id,
            recipient_team_id=recipient_team_id,
            chunks=chunks or None,
            task_display_mode=task_display_mode,
        )
    return _ts(response, "chat.startStream")


def append_stream(
    client: WebClient, channel: str, ts: str, markdown_text: str, chunks: Sequence[Chunk] | None = None
) -> None:
    with _translated("chat.appendStream"):
        client.chat_appendStream(channel=channel, ts=ts, markdown_text=markdown_text, chunks=chunks or None)


def stop_stream(
    client: WebClient,
    channel: str,
    ts: str,
    markdown_text: str | None = None,
    blocks: Sequence[Block | dict[str, Any]] | None = None,
    chunks: Sequence[Chunk] | None = None,
) -> None:
    """Ends a streamed message, with its last text if any; ``blocks`` are shown below its text."""
    with _translated("chat.stopStream"):
        client.chat_stopStream(
            channel=channel, ts=ts, markdown_text=markdown_text, blocks=blocks, chunks=chunks or None
        )


def post_attachment(client: WebClient, channel: str, thread_ts: str | None, attachment: Attachment) -> str:
    """Posts a message whose only content is ``attachment`` (a table block goes there: Slack
    documents it in attachments, not in a message's blocks, and never in a stream); its
    ``fallback`` is the notification text. Returns the message's ts."""
    with _translated("chat.postMessage"):
        response = client.chat_postMessage(channel=channel, thread_ts=thread_ts, attachments=[attachment])
    return _ts(response, "chat.postMessage")
