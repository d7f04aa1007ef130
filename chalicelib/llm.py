"""The one seam to the LLM: streamed chat completions through the official openai SDK.

Contract:

- ``stream(messages, settings, api_key, deadline)`` sends a chat (``[{"role": ..., "content":
  ...}, ...]``, system first) as a streamed completion (with ``stream_options.include_usage``)
  and returns a ``ChatStream``. When the request fails before the stream starts (after the
  SDK's own retries) it raises ``LLMError`` (``mid_stream`` False) whose ``kind`` is one of
  ``rate_limited``, ``quota_exhausted``, ``invalid_key``, ``permission_denied`` (403),
  ``model_not_found`` (404: an unknown model, or a base URL that is not an OpenAI API),
  ``too_long``, ``timeout`` or ``service_error`` (which includes a refused or failed connection).
- Iterating the ``ChatStream`` yields non-empty text deltas and fills in ``result`` (a
  ``StreamResult``: model, token counts, finish_reason, seconds). It raises ``LLMError`` too
  (``mid_stream`` True): ``stalled`` when, after the first chunk, nothing arrives for
  ``settings.stream_stall_seconds`` (before the first chunk a reasoning model may think for
  minutes: only the deadline bounds that wait); ``timeout`` when the deadline passes while it
  runs (silence or a trickle); ``cut_off`` when the stream ends, cleanly or not, without a
  finish_reason; ``unreadable`` for data that is not a chat-completion chunk (a 200 that is no
  stream at all included), which ends the stream at once (it is never skipped);
  ``service_error`` for an error event in the stream. A finish_reason (``"length"`` even with no
  text at all, ``"content_filter"``, any other) is not an error: the caller reads it from
  ``result``. ``close()`` (from any thread) drops the response; an iteration in progress then
  ends quietly. Streams are not retried. However the stream ends, ``result`` holds ``seconds``;
  token counts stay None unless the server reported them, so a caller can tell a cut attempt's
  cost is unknown and estimate it.
- Every request asks for at most ``settings.max_output_tokens`` tokens: the cap on what one
  answer can cost, as ``max_completion_tokens``, or ``max_tokens`` where that was refused.
- A parameter the server refuses (a 400 with ``error.code`` ``unsupported_parameter`` or
  ``unsupported_value`` and ``error.param`` naming it, or "Unrecognized request argument
  supplied: <name>") is left out and the request asked once more, within the same deadline,
  and left out of every later request to the same base URL and model in this container (see
  ``reset_rejected_parameters``). Any optional parameter may go this way, never ``model``,
  ``messages`` or ``stream``, and never the output cap: a refused ``max_completion_tokens``
  is sent as ``max_tokens``, and a refusal of both is a ``service_error``. A refused
  ``stream_options`` leaves a stream's token counts unknown. One WARNING names the parameter
  when it is learnt.

Nothing returns or raises later than ``deadline``, give or take one backoff of the SDK's (at
most a second) when an attempt times out or fails to connect right at the deadline, and the
time a stream's watchdog needs to wake its reader (milliseconds).

The SDK's own retries are used, kept inside the deadline by two httpx event hooks on the
SDK's client: each attempt's timeouts are cut to the time left, an attempt is refused once
less than ``MIN_ATTEMPT_SECONDS`` is left, and any answer that is not a success whose wait
(``Retry-After`` or the SDK's backoff) would pass the deadline is marked ``x-should-retry:
false``, the SDK's own header for "do not retry". Every non-2xx answer is checked, not only the
statuses the SDK retries by default: a server may ask for a retry of any status with
``x-should-retry: true``, and the SDK then honours a ``Retry-After`` of up to two minutes.
Once the stream has begun, httpx's per-operation timeouts cannot hold it to the deadline (a
trickle never times out): the stream's watchdog does (see ``ChatStream``).
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx2
import openai

from chalicelib import container
from chalicelib.deadline import Deadline
from chalicelib.kinds import LLMFault
from chalicelib.settings import Settings

logger = logging.getLogger(__name__)

MAX_RETRIES = 2
# The least time worth starting an attempt with; less than this and the SDK is told to stop.
MIN_ATTEMPT_SECONDS = 1.0
# Once a stream's text is complete (finish_reason seen), how long to wait for its usage and [DONE].
USAGE_GRACE_SECONDS = 2.0
# The SDK's backoff when no Retry-After is given: 0.5 s doubled per retry taken, at most 8 s, less
# up to a quarter of jitter (its INITIAL_RETRY_DELAY, MAX_RETRY_DELAY and _calculate_retry_timeout).
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0

# Without these there is no request to make: a refusal naming one is an error like any other.
REQUIRED_PARAMETERS = frozenset({"model", "messages", "stream"})
# The output cap's two spellings; one of them is always sent.
OUTPUT_CAPS = ("max_completion_tokens", "max_tokens")
# OpenAI's codes for a parameter a model does not take, or a value of it that it refuses.
REFUSAL_CODES = frozenset({"unsupported_parameter", "unsupported_value"})
# Some OpenAI-compatible servers (and Azure) name unknown fields only in the message.
_UNRECOGNIZED = re.compile(r"Unrecognized request arguments? supplied:\s*([\w.\[\]]+(?:\s*,\s*[\w.\[\]]+)*)")

_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("llm_deadline", default=None)

# Parameters refused per (base URL, model), per container: a warm container leaves them out at once
# instead of paying a refused request per answer. Replaced whole under the lock, read without it.
_rejected: dict[tuple[str, str], frozenset[str]] = {}
_rejected_lock = threading.Lock()


class LLMError(Exception):
    """``kind`` says what failed; ``mid_stream``: a stream that had begun broke (the SDK retries
    a request that fails before its stream begins, but never a stream)."""

    def __init__(self, kind: LLMFault, mid_stream: bool = False) -> None:
        super().__init__(kind)
        self.kind = kind
        self.mid_stream = mid_stream


@container.register
def reset_rejected_parameters() -> None:
    """Forget every parameter a server refused, as a new container would (and tests do)."""
    with _rejected_lock:
        _rejected.clear()


def _create(messages: list[dict[str, str]], settings: Settings, api_key: str, deadline: Deadline) -> Any:
    """Send the streamed request; the SDK's ``Stream`` of chunks.

    A refused parameter is left out and the request sent once more (see the module's contract);
    the SDK's own retries and the deadline hooks apply to each of the two sends.
    """
    endpoint = ((settings.openai_base_url or "").rstrip("/"), settings.openai_model)
    client = _client(api_key, settings.openai_base_url)
    token = _deadline.set(deadline)
    try:
        for resend in (False, True):
            rejected = _rejected.get(endpoint, frozenset())
            body = _request(messages, settings, rejected)
            try:
                return client.chat.completions.create(**body, **_call_options(deadline))
            except openai.BadRequestError as error:
                refused = _droppable(error, body, rejected)
                if not refused:
                    raise
                _remember_rejected(endpoint, refused)
                if resend:
                    raise  # asked again once already: the next request leaves this one out too
                if deadline.remaining() < MIN_ATTEMPT_SECONDS:
                    raise LLMError("timeout") from None  # the answer was within reach but for the time
        raise AssertionError("unreachable: the second send returns or raises")
    finally:
        _deadline.reset(token)


def _request(messages: list[dict[str, str]], settings: Settings, rejected: frozenset[str]) -> dict[str, Any]:
    """The request's body: the chat, streamed with its usage, the output cap and the temperature
    if set; less what this endpoint refused."""
    # The cap always holds: where max_completion_tokens was refused, its older name carries it.
    cap = OUTPUT_CAPS[1] if OUTPUT_CAPS[0] in rejected else OUTPUT_CAPS[0]
    body: dict[str, Any] = {"model": settings.openai_model, "messages": messages, cap: settings.max_output_tokens}
    if settings.openai_temperature is not None:  # "none": reasoning models reject any value but their own
        body["temperature"] = settings.openai_temperature
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return {name: value for name, value in body.items() if name == cap or name not in rejected}


def _call_options(deadline: Deadline) -> dict[str, Any]:
    """What the SDK is told besides the body: the time left, and a connection of the stream's own.

    The connection is ours alone while the stream runs and is never pooled afterwards, so
    ChatStream may shut its socket down from another thread (a watchdog, close()) without
    touching a request that reuses it. Nothing is lost: the SDK stops reading at [DONE], before
    the chunked terminator, which already keeps it out of the pool.
    """
    return {"timeout": deadline.remaining(), "extra_headers": {"Connection": "close"}}


def _droppable(error: openai.BadRequestError, body: dict[str, Any], rejected: frozenset[str]) -> frozenset[str]:
    """The parameters ``error`` refuses that the request can do without; empty when it cannot.

    Only a parameter that was sent counts (a nested one, ``stream_options.include_usage``, by its
    top-level name), and only when every one named may go: a request that would still be refused
    is not worth sending again.
    """
    named = _refused_names(error)
    if not named:
        return frozenset()
    droppable: set[str] = set()
    for name in named:
        top = re.split(r"[.\[]", name, maxsplit=1)[0]
        if top not in body or top in REQUIRED_PARAMETERS:
            return frozenset()
        if top in OUTPUT_CAPS and OUTPUT_CAPS[1 - OUTPUT_CAPS.index(top)] in rejected:
            return frozenset()  # the other spelling was refused already: never send no cap at all
        droppable.add(top)
    return frozenset(droppable)


def _refused_names(error: openai.BadRequestError) -> list[str]:
    """The parameters a 400 says it refuses: ``error.param`` with a refusal code, or the message's list."""
    names: list[str] = []
    if error.code in REFUSAL_CODES and isinstance(error.param, str) and error.param:
        names.append(error.param)
    body = error.body
    message = body.get("message") if isinstance(body, dict) else body
    if isinstance(message, str):
        for match in _UNRECOGNIZED.finditer(message):
            names.extend(name.strip() for name in match.group(1).split(","))
    return names


def _remember_rejected(endpoint: tuple[str, str], refused: frozenset[str]) -> None:
    """Leave ``refused`` out of the endpoint's requests from now on; one WARNING per parameter learnt."""
    with _rejected_lock:
        known = _rejected.get(endpoint, frozenset())
        new = refused - known
        _rejected[endpoint] = known | refused
    for name in sorted(new):
        instead = " (max_tokens carries the output cap instead)" if name == OUTPUT_CAPS[0] else ""
        logger.warning(
            "the LLM refused the parameter %s for model %s: left out of its requests from now on%s",
            name,
            endpoint[1],
            instead,
        )


@dataclass
class StreamResult:
    """What is known about a streamed answer; filled in as the stream is read."""

    model: str
    tokens_in: int | None = None  # None until the usage chunk arrives: unknown for a cut stream
    tokens_out: int | None = None
    finish_reason: str | None = None
    seconds: float = 0.0  # from the request until the stream ended, however it ended (set then)


def stream(messages: list[dict[str, str]], settings: Settings, api_key: str, deadline: Deadline) -> ChatStream:
    """Open a streamed chat completion; iterate the result for its text.

    Raises ``LLMError`` when the request fails before the stream starts (see the module's contract).
    """
    started = time.monotonic()
    if deadline.remaining() < MIN_ATTEMPT_SECONDS:
        raise LLMError("timeout")
    try:
        chunks = _create(messages, settings, api_key, deadline)
    except openai.APIError as error:
        raise LLMError(_kind(error)) from None
    result = StreamResult(model=settings.openai_model)
    return ChatStream(chunks, result, deadline, started, settings.stream_stall_seconds)


class ChatStream:
    """Text deltas of one streamed answer, read from the SDK's ``Stream`` of chunks.

    Iterating yields non-empty strings and ends when the answer is complete (``finish_reason``
    seen). It raises ``LLMError``: "stalled" when, after the first chunk (even the role-only
    one), a read waits longer than ``stall_seconds``; "timeout" once the deadline passes (a
    silence, before the first chunk or one the deadline cuts shorter than a stall, or a
    trickle); "cut_off" when the stream ends, cleanly or not, without a ``finish_reason``;
    "unreadable" for data that is not a chat-completion chunk (the stream ends there: what
    follows is never read); or a kind from ``_kind`` for an error event. After a
    ``finish_reason`` the text is complete: a failure while waiting for the usage chunk (at most
    ``USAGE_GRACE_SECONDS``) only leaves the token counts unknown.

    Silence is kept in check by a watchdog thread that shuts the connection's socket down when a
    read outlasts its due time: httpcore fixes a response's read timeout when the body starts,
    so neither a stall nor a deadline that passes late could be enforced by it. Each read is due
    by the deadline before the first chunk, and after it by ``min(stall_seconds, time left)``
    from the moment the read begins: the clock runs only while we wait on the server, so a slow
    consumer's own time is not taken for the server's silence. ``close()`` uses the same cut, so
    a reader blocked in another thread wakes at once and ends quietly.
    """

    def __init__(
        self, chunks: openai.Stream[Any], result: StreamResult, deadline: Deadline, started: float, stall_seconds: float
    ) -> None:
        self.result = result
        self._sdk_stream = chunks
        self._chunks = iter(chunks)
        self._deadline = deadline
        self._started = started
        self._stall_seconds = stall_seconds
        self._socket = _socket_of(chunks.response)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the watchdog waits on it
        self._reading = False  # a thread is inside the SDK's iterator (possibly blocked on the socket)
        self._closed = False  # close() was called: end quietly
        self._cut_kind: LLMFault | None = None  # "timeout" or "stalled" once the stream was cut for silence
        self._finished = False  # ended one way or another; nothing left to cut
        self._saw_chunk = False  # a chat-completion chunk arrived: the stall clock runs from now on
        # The current read must end by _due (monotonic), or be cut as _due_kind. One thread per
        # stream, re-armed by assignment: a threading.Timer per chunk would start a thread per chunk.
        self._due = deadline.expires_at
        self._due_kind: LLMFault = "timeout"
        self._watchdog_wakes_at = deadline.expires_at  # when the watchdog wakes on its own
        threading.Thread(target=self._watch, name="llm-stream-watchdog", daemon=True).start()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while True:
            with self._lock:
                done = self._finished or self._closed
                self._reading = not done
                if not done:
                    self._arm()
            if done:
                self._finish()
                raise StopIteration
            try:
                if self._deadline.remaining() <= 0:
                    # A server that trickles chunks never lets a read time out: check between them.
                    self._cut_kind = "timeout"
                    raise LLMError("timeout")
                chunk = next(self._chunks)
            except StopIteration:
                self._end(self._end_of_stream())
            except LLMError as error:
                self._end(error.kind)
            except openai.APITimeoutError:
                self._end("timeout")
            except (openai.APIConnectionError, httpx2.HTTPError, httpx2.StreamError):
                # The SDK wraps httpx2's transport errors (RemoteProtocolError for a body cut short)
                # in APIConnectionError: the peer dropped the connection, or our watchdog or close()
                # shut it down (told apart in _end). httpx2's own are caught in case one slips by.
                self._end("cut_off")
            except openai.APIError as error:  # an {"error": ...} event in the stream
                self._end(_kind(error))
            except (ValueError, AttributeError, TypeError):
                # The SDK raises a bare JSONDecodeError (a ValueError) for data that is not JSON,
                # and UnicodeDecodeError (also one) for bytes that are not UTF-8.
                self._end("unreadable")
            finally:
                with self._lock:
                    self._reading = False
            text = self._take(chunk)
            if text is None:
                # JSON, but not a chunk (null, a number, an object without choices): reading on
                # would build an answer from a stream we no longer understand.
                self._end("unreadable")
            if text:
                return text

    def close(self) -> None:
        """Drop the HTTP response; safe from any thread. A reader blocked in ``next`` ends quietly."""
        with self._lock:
            if self._finished or self._closed:
                return
            self._closed = True
            if self._reading:
                self._cut()  # the reading thread wakes, sees _closed and finishes
                return
        self._finish()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self, chunk: Any) -> str | None:
        """Record what a chunk says about the answer; return its text, or None if it is no chunk."""
        choices = getattr(chunk, "choices", None)
        usage = getattr(chunk, "usage", None)  # the last chunk, with empty choices (include_usage)
        if choices is None and usage is not None:
            choices = []  # some compatible servers send the usage chunk with "choices": null
        if not isinstance(choices, list):
            return None
        for choice in choices:
            content = getattr(getattr(choice, "delta", None), "content", None)
            if not hasattr(choice, "delta") or not (content is None or isinstance(content, str)):
                return None
        self._saw_chunk = True
        model = getattr(chunk, "model", None)
        if isinstance(model, str) and model:
            self.result.model = model
        if usage is not None:
            self.result.tokens_in = _count(getattr(usage, "prompt_tokens", None))
            self.result.tokens_out = _count(getattr(usage, "completion_tokens", None))
        text = ""
        for choice in choices:
            if getattr(choice, "index", 0) != 0:
                continue  # one answer was asked for (n=1)
            content = getattr(choice.delta, "content", None)
            if isinstance(content, str):
                text += content
            finish_reason = getattr(choice, "finish_reason", None)
            if isinstance(finish_reason, str) and finish_reason and self.result.finish_reason is None:
                # The text is complete; only the usage chunk and [DONE] are still to come (see _arm).
                self.result.finish_reason = finish_reason
        return text

    def _end_of_stream(self) -> LLMFault | None:
        """The kind of failure, if any, when the body ended without an error."""
        if self.result.finish_reason is not None:
            return None
        return "cut_off" if self._saw_chunk else "unreadable"

    def _end(self, kind: LLMFault | None) -> NoReturn:
        """Finish, then stop iterating or raise ``LLMError(kind)``."""
        if self._closed or self.result.finish_reason is not None:
            kind = None  # the consumer gave up, or the answer is complete: nothing to report
        elif self._cut_kind is not None and kind is not None:
            kind = self._cut_kind  # the watchdog's cut looks like a dropped connection
        self._finish()
        if kind is None:
            raise StopIteration
        raise LLMError(kind, mid_stream=True) from None

    def _finish(self) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
            self._wake.notify_all()  # the watchdog has nothing left to guard
        self.result.seconds = time.monotonic() - self._started
        self._sdk_stream.close()

    def _arm(self) -> None:
        """Set when the read about to start must end (called with the lock held).

        Before the first chunk only the deadline bounds it; after, the stall limit does too, and
        once the finish_reason is in, the short grace for the usage chunk.
        """
        remaining = self._deadline.remaining()
        kind: LLMFault = "timeout"
        seconds = remaining
        if self._saw_chunk:
            limit = self._stall_seconds
            if self.result.finish_reason is not None:
                limit = min(limit, USAGE_GRACE_SECONDS)
            if limit < remaining:
                seconds, kind = limit, "stalled"
        self._due, self._due_kind = time.monotonic() + seconds, kind
        if self._due < self._watchdog_wakes_at:
            # Only an earlier due needs the watchdog woken; a later one (every read of a steady
            # stream) it finds when it wakes for the old one, so most chunks cost no wake-up.
            self._wake.notify_all()

    def _watch(self) -> None:
        """The watchdog's thread: cut the connection when a read outlasts its due time."""
        with self._lock:
            while not (self._finished or self._closed):
                now = time.monotonic()
                if self._reading and now >= self._due:
                    # Said before the cut: the reader wakes at once and reads it without the lock.
                    self._cut_kind = self._due_kind
                    if not self._cut():
                        self._cut_kind = None  # nothing was cut: whatever ends the read is its own
                    return  # the read fails and the stream finishes: nothing more to guard
                if now < self._due:
                    wake_at = self._due
                elif now < self._deadline.expires_at:
                    wake_at = self._deadline.expires_at  # between reads, past due: the next read re-arms
                else:
                    return  # not reading, and the deadline has passed: the next read sees that itself
                self._watchdog_wakes_at = wake_at
                self._wake.wait(wake_at - now)

    def _cut(self) -> bool:
        """Shut the socket down (called with the lock held): a read blocked on it returns at once.

        False when there is no socket to reach: the read timeout and the check between chunks remain.

        shutdown(), unlike close(), leaves the file descriptor to its owner, so it is safe while
        another thread reads. socket.socket.shutdown is called directly because SSLSocket's own
        override also drops its SSL object, after which recv() returns the raw encrypted bytes.
        """
        if self._socket is None:
            return False
        with contextlib.suppress(OSError):  # already closed: nothing left to wake
            socket.socket.shutdown(self._socket, socket.SHUT_RDWR)
        return True


def _socket_of(response: httpx2.Response) -> socket.socket | None:
    """The response's socket, from httpcore's documented ``network_stream`` extension (HTTP/1.1)."""
    network_stream = response.extensions.get("network_stream")
    get_extra_info = getattr(network_stream, "get_extra_info", None)
    sock = get_extra_info("socket") if callable(get_extra_info) else None
    return sock if isinstance(sock, socket.socket) else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _kind(error: openai.APIError) -> LLMFault:
    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.RateLimitError):
        return "quota_exhausted" if error.code == "insufficient_quota" else "rate_limited"
    if isinstance(error, openai.AuthenticationError):
        return "invalid_key"
    if isinstance(error, openai.PermissionDeniedError):
        return "permission_denied"  # the key's project may not use this model, or not from here
    if isinstance(error, openai.NotFoundError):
        return "model_not_found"
    if isinstance(error, openai.BadRequestError) and error.code == "context_length_exceeded":
        return "too_long"
    return "service_error"


@container.cached(maxsize=1)
def _client(api_key: str, base_url: str | None) -> openai.OpenAI:
    """The client for this key and endpoint, per container: warm invocations reuse its
    connections. Only the latest is kept: one for a key that was rotated away is dropped."""
    return openai.OpenAI(
        api_key=api_key,
        base_url=base_url,
        max_retries=MAX_RETRIES,
        http_client=openai.DefaultHttpx2Client(
            event_hooks={"request": [_fit_attempt_to_deadline], "response": [_no_retry_past_deadline]}
        ),
    )


def _fit_attempt_to_deadline(request: httpx2.Request) -> None:
    """Before each attempt: refuse it when too little time is left, else cut its timeouts to fit."""
    deadline = _deadline.get()
    if deadline is None:
        return
    remaining = deadline.remaining()
    if remaining < MIN_ATTEMPT_SECONDS:
        # An OpenAIError is passed through by the SDK without a retry.
        raise openai.APITimeoutError(request=request)
    timeouts = request.extensions.get("timeout") or {}
    request.extensions["timeout"] = {
        phase: min(timeouts.get(phase) or remaining, remaining) for phase in ("connect", "read", "write", "pool")
    }


def _no_retry_past_deadline(response: httpx2.Response) -> None:
    """After each answer: tell the SDK not to retry when its wait would not fit before the deadline.

    Every answer but a success is checked, whatever its status: the SDK retries any status that
    carries ``x-should-retry: true`` (see its ``_should_retry``), so a list of retryable statuses
    here would miss some. Marking one the SDK would not retry anyway changes nothing.
    """
    deadline = _deadline.get()
    if deadline is None or response.is_success:
        return
    if deadline.remaining() < _retry_wait(response.headers, response.request.headers) + MIN_ATTEMPT_SECONDS:
        response.headers["x-should-retry"] = "false"


def _retry_wait(response_headers: httpx2.Headers, request_headers: httpx2.Headers) -> float:
    """At least as long as the SDK would sleep before its next attempt (its _calculate_retry_timeout).

    A positive ``Retry-After`` is waited for as given (the SDK honours up to two minutes, and
    retries no more beyond that); otherwise the SDK backs off by the number of retries taken,
    which it sends as ``x-stainless-retry-count``. Jitter only shortens the SDK's backoff.
    """
    retry_after = _retry_after(response_headers)
    if retry_after is not None and retry_after > 0:  # an infinite one too: never waited for here
        return retry_after
    try:
        retries_taken = int(request_headers.get("x-stainless-retry-count", "0"))
    except ValueError:
        retries_taken = 0
    return min(INITIAL_RETRY_DELAY * 2.0 ** min(max(retries_taken, 0), 1000), MAX_RETRY_DELAY)


def _retry_after(headers: httpx2.Headers) -> float | None:
    """Seconds to wait as the server asks, read as the SDK reads it (its _parse_retry_after_header).

    The first of ``retry-after-ms`` and ``retry-after`` that is a number wins, even a zero or a
    negative one (the SDK then backs off instead); else ``retry-after`` as an HTTP date.
    """
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) / divisor
        except ValueError:
            continue
    try:
        date = email.utils.parsedate_tz(headers.get("retry-after"))
        if date is None:
            return None
        return float(email.utils.mktime_tz(date) - time.time())
    except (TypeError, ValueError, OverflowError, OSError):
        return None
