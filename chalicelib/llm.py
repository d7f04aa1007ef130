"""The one seam to the LLM: ask a question through the official openai SDK.

Contract: ``ask(question, settings, api_key, deadline)`` returns an ``Answer`` or raises
``LLMError`` whose ``kind`` is one of ``rate_limited``, ``quota_exhausted``, ``invalid_key``,
``too_long``, ``timeout``, ``unreadable`` or ``service_error``. It does not return or raise
later than ``deadline``, give or take one backoff of the SDK's (at most a second) when an
attempt times out or fails to connect right at the deadline.

The SDK's own retries are used, kept inside the deadline by two httpx event hooks on the
SDK's client: each attempt's timeouts are cut to the time left, an attempt is refused once
less than ``MIN_ATTEMPT_SECONDS`` is left, and a retryable answer whose wait (``Retry-After``
or the SDK's backoff) would pass the deadline is marked ``x-should-retry: false``, the SDK's
own header for "do not retry". httpx's timeouts are per network operation, so a server that
trickles its answer a byte at a time could still hold an attempt past the deadline.
"""

from __future__ import annotations

import contextvars
import functools
import json
import math
import time
from dataclasses import dataclass

import httpx2
import openai

from chalicelib.deadline import Deadline
from chalicelib.settings import Settings

MAX_RETRIES = 2
# The least time worth starting an attempt with; less than this and the SDK is told to stop.
MIN_ATTEMPT_SECONDS = 1.0
RETRYABLE_STATUSES = frozenset({408, 409, 429}) | frozenset(range(500, 600))

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


def ask(question: str, settings: Settings, api_key: str, deadline: Deadline) -> Answer:
    started = time.monotonic()
    if deadline.remaining() < MIN_ATTEMPT_SECONDS:
        raise LLMError("timeout")
    extra = {} if settings.openai_temperature is None else {"temperature": settings.openai_temperature}
    token = _deadline.set(deadline)
    try:
        completion = _client(api_key, settings.openai_base_url).chat.completions.create(
            model=settings.openai_model,
            messages=[
                {"role": "system", "content": settings.system_prompt},
                {"role": "user", "content": question},
            ],
            timeout=deadline.remaining(),
            **extra,
        )
        text = completion.choices[0].message.content
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
    )


def _kind(error: openai.APIError) -> str:
    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.RateLimitError):
        return "quota_exhausted" if error.code == "insufficient_quota" else "rate_limited"
    if isinstance(error, openai.AuthenticationError):
        return "invalid_key"
    if isinstance(error, openai.BadRequestError) and error.code == "context_length_exceeded":
        return "too_long"
    return "service_error"


@functools.lru_cache(maxsize=4)
def _client(api_key: str, base_url: str | None) -> openai.OpenAI:
    """One client per key and endpoint, per container: warm invocations reuse its connections."""
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
    """After each answer: tell the SDK not to retry when its wait would not fit before the deadline."""
    deadline = _deadline.get()
    if deadline is None or response.status_code not in RETRYABLE_STATUSES:
        return
    if deadline.remaining() < _retry_wait(response.headers, response.request.headers) + MIN_ATTEMPT_SECONDS:
        response.headers["x-should-retry"] = "false"


def _retry_wait(response_headers: httpx2.Headers, request_headers: httpx2.Headers) -> float:
    """The longest the SDK would sleep before its next attempt (see its _calculate_retry_timeout)."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        if name not in response_headers:
            continue
        try:
            wait = float(response_headers[name]) / divisor
        except ValueError:
            return math.inf  # an HTTP date the SDK may wait up to 2 minutes for: do not let it
        if wait > 0:  # the SDK ignores a zero or negative wait and backs off instead
            return wait
    try:
        retries_taken = int(request_headers.get("x-stainless-retry-count", "0"))
    except ValueError:
        retries_taken = 0
    return min(0.5 * 2.0**retries_taken, 8.0)
