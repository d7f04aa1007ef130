"""The one seam to the LLM: chat completions through the official openai SDK, whole or streamed.

Contract:

- ``ask(question, settings, api_key, deadline)`` asks one question (the system prompt, then
  ``question``: see ``messages_for``) and returns an ``Answer``; ``complete(messages, ...)``
  does the same for a whole chat (``[{"role": ..., "content": ...}, ...]``, system first).
  ``Answer.finish_reason`` is the model's (``"length"``: it stopped at ``MAX_OUTPUT_TOKENS``).
  Either raises ``LLMError`` whose ``kind`` is one of ``rate_limited``, ``quota_exhausted``,
  ``invalid_key``, ``permission_denied`` (403), ``model_not_found`` (404: an unknown model, or
  a base URL that is not an OpenAI API), ``too_long``, ``timeout``, ``unreadable`` or
  ``service_error`` (which includes a refused or failed connection).
- ``stream(messages, settings, api_key, deadline)`` opens a streamed completion (with
  ``stream_options.include_usage``) and returns a ``ChatStream``, or raises ``LLMError`` with
  the same kinds when the request fails before the stream starts. Iterating the ``ChatStream``
  yields non-empty text deltas and fills in ``result`` (a ``StreamResult``: model, token counts,
  finish_reason, seconds, first_token_seconds). It raises ``LLMError`` too: ``timeout`` when the
  deadline passes while it runs (a stall or a trickle), ``cut_off`` when the stream ends,
  cleanly or not, without a finish_reason, ``unreadable`` for data that is not a chunk, and
  ``service_error`` for an error event in the stream. ``finish_reason == "length"`` (or any
  other) is not an error: the caller reads it from ``result``. ``close()`` (from any thread)
  drops the response; an iteration in progress then ends quietly. Streams are not retried.
- Every request asks for at most ``settings.max_output_tokens`` tokens (``max_completion_tokens``):
  the cap on what one answer can cost.

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
httpx's timeouts are per network operation, so a server that trickles a whole (non-streamed)
answer a byte at a time could still hold an attempt past the deadline; a stream has a watchdog
for that (see ``ChatStream``).
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import functools
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx2
import openai

from chalicelib.deadline import Deadline
from chalicelib.settings import Settings

MAX_RETRIES = 2
# The least time worth starting an attempt with; less than this and the SDK is told to stop.
MIN_ATTEMPT_SECONDS = 1.0
# Once a stream's text is complete (finish_reason seen), how long to wait for its usage and [DONE].
USAGE_GRACE_SECONDS = 2.0
# The SDK's backoff when no Retry-After is given: 0.5 s doubled per retry taken, at most 8 s, less
# up to a quarter of jitter (its INITIAL_RETRY_DELAY, MAX_RETRY_DELAY and _calculate_retry_timeout).
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0

_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("llm_deadline", default=None)


class LLMError(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True)
class Answer:
    text: str
    model: str
    tokens_in: int | None
    tokens_out: int | None
    seconds: float
    finish_reason: str | None = None  # "stop", or "length" when cut at max_output_tokens


def messages_for(question: str, settings: Settings) -> list[dict[str, str]]:
    """The chat for a single question: the system prompt, then the question (the slash command's)."""
    return [{"role": "system", "content": settings.system_prompt}, {"role": "user", "content": question}]


def ask(question: str, settings: Settings, api_key: str, deadline: Deadline) -> Answer:
    return complete(messages_for(question, settings), settings, api_key, deadline)


def complete(messages: list[dict[str, str]], settings: Settings, api_key: str, deadline: Deadline) -> Answer:
    started = time.monotonic()
    if deadline.remaining() < MIN_ATTEMPT_SECONDS:
        raise LLMError("timeout")
    token = _deadline.set(deadline)
    try:
        completion = _client(api_key, settings.openai_base_url).chat.completions.create(
            **_request(messages, settings, deadline)
        )
        choice = completion.choices[0]
        text = choice.message.content
        finish_reason = getattr(choice, "finish_reason", None)
        usage = completion.usage
    except openai.APIError as error:
        raise LLMError(_kind(error)) from None
    except (json.JSONDecodeError, AttributeError, IndexError, KeyError, TypeError, ValueError):
        # openai 3.x raises a bare JSONDecodeError for a 200 whose body is not JSON; the
        # others come from a JSON body that is not a chat completion.
        raise LLMError("unreadable") from None
    finally:
        _deadline.reset(token)
    if not isinstance(text, str) or not text.strip():
        raise LLMError("unreadable")
    return Answer(
        text=text,
        model=getattr(completion, "model", None) or settings.openai_model,
        tokens_in=getattr(usage, "prompt_tokens", None),
        tokens_out=getattr(usage, "completion_tokens", None),
        seconds=time.monotonic() - started,
        finish_reason=finish_reason if isinstance(finish_reason, str) and finish_reason else None,
    )


def _request(messages: list[dict[str, str]], settings: Settings, deadline: Deadline) -> dict[str, Any]:
    """What every request asks for, whole or streamed: the chat, the output cap, the time left,
    and the temperature if set."""
    options: dict[str, Any] = {
        "model": settings.openai_model,
        "messages": messages,
        "timeout": deadline.remaining(),
        "max_completion_tokens": settings.max_output_tokens,
    }
    if settings.openai_temperature is not None:  # "none": reasoning models reject any value but their own
        options["temperature"] = settings.openai_temperature
    return options


@dataclass
class StreamResult:
    """What is known about a streamed answer; filled in as the stream is read."""

    model: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    finish_reason: str | None = None
    seconds: float = 0.0  # from the request until the stream ended (set when it ends)
    first_token_seconds: float | None = None  # from the request until the first text arrived


def log_fields(result: Answer | StreamResult) -> dict[str, Any]:
    """What the worker's answer line says about the LLM step, whole or streamed."""
    return {
        "model": result.model,
        "llm_ms": round(result.seconds * 1000),
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "finish_reason": result.finish_reason,
    }


def stream(messages: list[dict[str, str]], settings: Settings, api_key: str, deadline: Deadline) -> ChatStream:
    """Open a streamed chat completion; iterate the result for its text.

    Raises ``LLMError`` as ``complete`` does when the request fails before the stream starts.
    """
    started = time.monotonic()
    if deadline.remaining() < MIN_ATTEMPT_SECONDS:
        raise LLMError("timeout")
    token = _deadline.set(deadline)
    try:
        chunks = _client(api_key, settings.openai_base_url).chat.completions.create(
            **_request(messages, settings, deadline),
            stream=True,
            stream_options={"include_usage": True},
            # The connection is ours alone while the stream runs and is never pooled afterwards,
            # so ChatStream may shut its socket down from another thread (a watchdog, close())
            # without touching a request that reuses it. Nothing is lost: the SDK stops reading
            # at [DONE], before the chunked terminator, which already keeps it out of the pool.
            extra_headers={"Connection": "close"},
        )
    except openai.APIError as error:
        raise LLMError(_kind(error)) from None
    finally:
        _deadline.reset(token)
    return ChatStream(chunks, StreamResult(model=settings.openai_model), deadline, started)


class ChatStream:
    """Text deltas of one streamed answer, read from the SDK's ``Stream`` of chunks.

    Iterating yields non-empty strings and ends when the answer is complete (``finish_reason``
    seen). It raises ``LLMError``: "timeout" once the deadline passes (a stall or a trickle),
    "cut_off" when the stream ends, cleanly or not, without a ``finish_reason``, "unreadable"
    for data that is not a chat-completion chunk, or a kind from ``_kind`` for an error event.
    After a ``finish_reason`` the text is complete: a failure while waiting for the usage chunk
    (at most ``USAGE_GRACE_SECONDS``) only leaves the token counts unknown.

    The deadline is kept by a watchdog timer that shuts the connection's socket down: httpcore
    fixes a response's read timeout when the body starts, so a stall that begins late would
    otherwise run past the deadline by as long as the stream had already run. ``close()`` uses
    the same cut, so a reader blocked in another thread wakes at once and ends quietly.
    """

    def __init__(self, chunks: openai.Stream[Any], result: StreamResult, deadline: Deadline, started: float) -> None:
        self.result = result
        self._sdk_stream = chunks
        self._chunks = iter(chunks)
        self._deadline = deadline
        self._started = started
        self._socket = _socket_of(chunks.response)
        self._lock = threading.Lock()
        self._reading = False  # a thread is inside the SDK's iterator (possibly blocked on the socket)
        self._closed = False  # close() was called: end quietly
        self._expired = False  # the watchdog cut the connection
        self._finished = False  # ended one way or another; nothing left to cut
        self._saw_chunk = False  # something that looked like a chat-completion chunk arrived
        self._timer: threading.Timer | None = None
        self._arm(deadline.remaining())

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while True:
            with self._lock:
                done = self._finished or self._closed
                self._reading = not done
            if done:
                self._finish()
                raise StopIteration
            try:
                if self._deadline.remaining() <= 0:
                    # A server that trickles chunks never lets a read time out: check between them.
                    self._expired = True
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

    def _take(self, chunk: Any) -> str:
        """Record what a chunk says about the answer; return its text."""
        choices = getattr(chunk, "choices", None)
        if not isinstance(choices, list):
            return ""
        self._saw_chunk = True
        model = getattr(chunk, "model", None)
        if isinstance(model, str) and model:
            self.result.model = model
        usage = getattr(chunk, "usage", None)  # the last chunk, with empty choices (include_usage)
        if usage is not None:
            self.result.tokens_in = _count(getattr(usage, "prompt_tokens", None))
            self.result.tokens_out = _count(getattr(usage, "completion_tokens", None))
        text = ""
        for choice in choices:
            if getattr(choice, "index", 0) != 0:
                continue  # one answer was asked for (n=1)
            content = getattr(getattr(choice, "delta", None), "content", None)
            if isinstance(content, str):
                text += content
            finish_reason = getattr(choice, "finish_reason", None)
            if isinstance(finish_reason, str) and finish_reason and self.result.finish_reason is None:
                self.result.finish_reason = finish_reason
                # The text is complete; only the usage chunk and [DONE] are still to come.
                self._arm(min(self._deadline.remaining(), USAGE_GRACE_SECONDS))
        if text and self.result.first_token_seconds is None:
            self.result.first_token_seconds = time.monotonic() - self._started
        return text

    def _end_of_stream(self) -> str | None:
        """The kind of failure, if any, when the body ended without an error."""
        if self.result.finish_reason is not None:
            return None
        return "cut_off" if self._saw_chunk else "unreadable"

    def _end(self, kind: str | None) -> NoReturn:
        """Finish, then stop iterating or raise ``LLMError(kind)``."""
        if self._closed or self.result.finish_reason is not None:
            kind = None  # the consumer gave up, or the answer is complete: nothing to report
        elif self._expired and kind is not None:
            kind = "timeout"  # the watchdog's cut looks like a dropped connection
        self._finish()
        if kind is None:
            raise StopIteration
        raise LLMError(kind) from None

    def _finish(self) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if self._timer is not None:
                self._timer.cancel()
        self.result.seconds = time.monotonic() - self._started
        self._sdk_stream.close()

    def _arm(self, seconds: float) -> None:
        """(Re)start the watchdog that cuts the connection in ``seconds``."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if self._finished:
                return
            self._timer = threading.Timer(seconds, self._expire)
            self._timer.daemon = True  # never keeps a process alive
            self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            if self._finished or self._closed:
                return
            self._expired = True
            self._cut()

    def _cut(self) -> None:
        """Shut the socket down (called with the lock held): a read blocked on it returns at once.

        shutdown(), unlike close(), leaves the file descriptor to its owner, so it is safe while
        another thread reads. socket.socket.shutdown is called directly because SSLSocket's own
        override also drops its SSL object, after which recv() returns the raw encrypted bytes.
        """
        if self._socket is None:
            return  # no socket to reach: the read timeout and the check between chunks remain
        with contextlib.suppress(OSError):  # already closed: nothing left to wake
            socket.socket.shutdown(self._socket, socket.SHUT_RDWR)


def _socket_of(response: httpx2.Response) -> socket.socket | None:
    """The response's socket, from httpcore's documented ``network_stream`` extension (HTTP/1.1)."""
    network_stream = response.extensions.get("network_stream")
    get_extra_info = getattr(network_stream, "get_extra_info", None)
    sock = get_extra_info("socket") if callable(get_extra_info) else None
    return sock if isinstance(sock, socket.socket) else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _kind(error: openai.APIError) -> str:
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


@functools.lru_cache(maxsize=1)
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
