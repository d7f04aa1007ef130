"""One answer, whatever carries it: the core that slash commands and threads share.

Contract: ``run(chat, surface, settings, deadline, fields, asker)`` answers ``chat`` (system
prompt first, the question last) and delivers the answer through ``surface``; it returns the
outcome and adds what it learned to ``fields`` (the job's log line). In order:

- the per-user limit (``USER_RATE_LIMIT_PER_MINUTE``): over it, one line and no LLM call;
- the OpenAI key: unreadable, one "not set up" line (or "busy" for a transient SSM error);
- the LLM, streamed on both surfaces, within ``deadline`` less the surface's reserve and at
  most ``OPENAI_TIMEOUT_SECONDS``. A request refused before its stream begins was retried by
  the SDK already. A stream that fails once begun (cut off, stalled past
  ``STREAM_STALL_SECONDS``, unreadable, an error event, no text at all) is asked again, up to
  ``MAX_RETRIES`` times, after an exponential backoff with jitter, while the deadline leaves
  room: the surface is told to ``restart``, so that the new answer replaces what the user saw
  of the failed one once it shows (a retry that shows nothing leaves that, then one line why).
  A 401 is tried once more with the key read afresh; ``context_length_exceeded`` once more
  with the thread's root and the newer half of the rest;
- the ending, exactly one: ``complete()``; ``cut_short(kind)`` (the text, then one line why:
  ``length``, ``content_filter``, or a failure after text was shown with no time to ask again);
  or ``say(line)`` (one plain-language line and no answer). An answer stopped at
  ``MAX_OUTPUT_TOKENS`` before any text (a reasoning model can spend it all on thinking) is one
  line naming the limit, after one LLM call. An unknown ``finish_reason`` is logged and taken
  as complete.

Progress: each retry after a broken stream is reported to ``tasks`` (``chalicelib.progress``;
``run``'s ``tasks`` argument, else a board no one reads) as a task: in_progress when it is
decided, complete when the new attempt's first text arrives, error when that attempt fails.

A stop (``stop``, a ``stops.StopSignal``: the user pressed Slack's stop button) ends the answer
whenever it comes: before the LLM is asked (no call, not counted against the per-user limit),
or during an attempt, whose LLM stream is closed from the signalling thread at once (no more
tokens are paid for), during a backoff, or on the way to any other ending. Nothing more is
pushed to the surface; it is told ``stopped()`` (a short plain confirmation, no error note) and
the outcome is ``stopped``.

Accounting: ``attempts``, ``llm_ms`` and ``tokens_in``/``tokens_out`` over every attempt,
failed ones too; an attempt cut before its usage arrived is estimated (``tokens_estimated``).

Failures of the surface itself (``web.SlackError`` from a thread) are raised for the caller,
which knows what can still be said; nothing else is.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib import kinds, limits, logs, progress, secrets
from chalicelib.deadline import Deadline
from chalicelib.kinds import AnswerOutcome, CutShortFault, Fault
from chalicelib.settings import Settings
from chalicelib.slack import history, messages
from chalicelib.stops import StopSignal

if TYPE_CHECKING:
    from chalicelib import llm

logger = logging.getLogger(__name__)

# Failures worth asking again for; a bad key or an empty quota is not.
RETRIED_KINDS = frozenset({"cut_off", "stalled", "unreadable", "service_error"})
MAX_RETRIES = 2
# The first retry waits about this long, each later one twice as long, each ±25%.
BACKOFF_SECONDS = 0.5
KNOWN_FINISH_REASONS = frozenset({"stop", "length", "content_filter", "tool_calls", "function_call"})
# finish_reasons that stop an answer before its end: what the user is told it was cut short by.
STOPPED_EARLY: dict[str, CutShortFault] = {"length": "length", "content_filter": "content_filter"}
_END = object()


class Surface(Protocol):
    """Where an answer is shown: a slash command's one reply, or a thread's streamed messages."""

    reserve_seconds: float  # kept back from the LLM for the ending, at worst
    paced: bool  # it sends text as it comes, on a cadence (False: all at the end)

    @property
    def visible(self) -> bool:
        """Some answer text is in front of the user: this attempt's, or an earlier one's that
        stays until this one shows text."""
        ...

    def push(self, text: str) -> None: ...

    def due_in(self) -> float | None:
        """Seconds until buffered text should go out (0: now), or None when nothing waits."""
        ...

    def flush_if_due(self) -> None: ...

    def restart(self) -> None:
        """Forget the current attempt: its buffered text and whatever of it the user saw."""
        ...

    def complete(self) -> None: ...

    def cut_short(self, kind: CutShortFault) -> None: ...

    def say(self, text: str) -> None: ...

    def stopped(self) -> None:
        """The user stopped the answer: send nothing more of it, and confirm the stop."""
        ...


class _Stopped(Exception):
    """The stop signal was seen during an attempt."""


@dataclass(frozen=True)
class Asker:
    team_id: str
    user_id: str


@dataclass
class _Attempts:
    """What every attempt cost, failed ones included."""

    count: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0
    estimated: bool = False
    model: str | None = None
    finish_reason: str | None = None

    def add(self, chat: list[dict[str, str]], result: llm.StreamResult, text: str) -> None:
        self.seconds += result.seconds
        self.model = result.model or self.model
        if result.tokens_in is not None and result.tokens_out is not None:
            self.tokens_in += result.tokens_in
            self.tokens_out += result.tokens_out
            return
        # Cut before the usage chunk: the provider bills it all the same.
        self.estimated = True
        self.tokens_in += result.tokens_in or sum(history.estimate_tokens(m["content"]) for m in chat)
        self.tokens_out += result.tokens_out or (history.estimate_tokens(text) if text else 0)

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"attempts": self.count, "llm_ms": round(self.seconds * 1000)}
        if self.model:
            fields["model"] = self.model
        fields.update(tokens_in=self.tokens_in, tokens_out=self.tokens_out, finish_reason=self.finish_reason)
        if self.estimated:
            fields["tokens_estimated"] = True
        return fields


def run(
    chat: list[dict[str, str]],
    surface: Surface,
    settings: Settings,
    deadline: Deadline,
    fields: dict[str, Any],
    asker: Asker,
    started: float | None = None,
    tasks: progress.Tasks | None = None,
    stop: StopSignal | None = None,
) -> AnswerOutcome:
    answer = _Answer(chat, surface, settings, fields, time.perf_counter() if started is None else started, stop)
    if tasks is not None:
        answer.tasks = tasks
    try:
        if answer.stop.is_set():  # pressed before the worker got here: no LLM call, nothing counted
            return answer.stopped()
        wait = limits.check(settings, asker.team_id, asker.user_id)
        if wait is not None:
            fields["retry_after_s"] = wait
            surface.say(messages.too_many_questions(settings.user_rate_limit_per_minute or 0, wait)["text"])
            return "user_rate_limited"
        try:
            api_key = secrets.openai_api_key(settings)
        except secrets.SecretUnavailable as error:
            if error.transient:
                surface.say(messages.notice("secrets_busy"))
                return "secrets_unavailable"
            surface.say(messages.notice("not_configured"))
            return "not_configured"
        reserve = min(surface.reserve_seconds, deadline.remaining() / 4)
        return answer.run(api_key, deadline.shortened(reserve).capped(settings.openai_timeout_seconds))
    finally:
        fields.update(answer.attempts.fields())


def no_llm_call(fields: dict[str, Any]) -> None:
    """An outcome decided before the core ran (a usage hint, a refused setting): the same
    accounting fields, all zero, so that every answer line can be summed alike."""
    for name in ("attempts", "llm_ms", "tokens_in", "tokens_out"):
        fields.setdefault(name, 0)


class _Answer:
    """One answer's LLM attempts into one surface, and how it ends."""

    def __init__(
        self,
        chat: list[dict[str, str]],
        surface: Surface,
        settings: Settings,
        fields: dict[str, Any],
        started: float,
        stop: StopSignal | None = None,
    ) -> None:
        self.chat = chat
        self.surface = surface
        self.settings = settings
        self.fields = fields
        self.started = started
        self.stop = stop or StopSignal()  # never set: a slash command has no stop button
        self.attempts = _Attempts()
        self.tasks = progress.Tasks()
        self._retry_task: tuple[str, str] | None = None  # (id, title) of the retry awaiting its first text

    def _settle_retry(self, status: progress.TaskStatus) -> None:
        """The retry under way is done: its attempt showed text, or failed."""
        if self._retry_task is not None:
            self.tasks.report(*self._retry_task, status)
            self._retry_task = None

    def stopped(self) -> AnswerOutcome:
        self.surface.stopped()
        return "stopped"

    def run(self, api_key: str, step: Deadline) -> AnswerOutcome:
        """Ask until an answer, or a failure worth no more tries; end the surface; the outcome."""
        # Imported here, after the caller's first sign of life: openai takes a quarter of a second
        # to import, and a cold worker's "is thinking…" should not wait for it.
        from chalicelib import llm

        surface = self.surface
        retries = 0
        rekeyed = halved = False
        while True:
            if self.stop.is_set():
                return self.stopped()
            try:
                result, text = self._attempt(api_key, step)
            except _Stopped:
                return self.stopped()
            except llm.LLMError as error:
                if self.stop.is_set():  # the failure may be the stop's own cut
                    return self.stopped()
                kind = error.kind
                self._settle_retry("error")
                if kind == "invalid_key" and not rekeyed:
                    # `make secrets` may have replaced the key since this container read it.
                    rekeyed = True
                    fresh_key = secrets.reread_openai_api_key(self.settings)
                    if fresh_key is not None:
                        api_key = fresh_key
                        surface.restart()
                        continue
                if kind == "too_long" and not halved and len(self.chat) > 2:
                    self.chat, halved = history.halve_history(self.chat), True
                    surface.restart()
                    continue
                # A request refused before its stream began was already retried by the SDK.
                if kind in RETRIED_KINDS and error.mid_stream and retries < MAX_RETRIES:
                    pause = BACKOFF_SECONDS * 2**retries * random.uniform(0.75, 1.25)
                    if step.remaining() >= pause + llm.MIN_ATTEMPT_SECONDS * 2:
                        retries += 1
                        logger.warning("the LLM's answer failed (%s); asking again (retry %d)", kind, retries)
                        self._retry_task = (f"retry-{retries}", progress.retry_title(kind))
                        self.tasks.report(*self._retry_task, "in_progress")
                        surface.restart()
                        if self.stop.wait(pause):
                            return self.stopped()
                        continue
                if surface.visible:
                    surface.cut_short(kind)
                    return kinds.cut_short(kind)
                surface.say(messages.notice(kind))
                return kind
            return self._end(result.finish_reason, text)

    def _end(self, finish_reason: str | None, text: str) -> AnswerOutcome:
        """The ending of an answer the LLM finished, by its finish_reason; the outcome."""
        self.attempts.finish_reason = finish_reason
        stopped = STOPPED_EARLY.get(finish_reason or "")
        if stopped is not None:
            if not text.strip() and not self.surface.visible:
                # "length" with no text: a reasoning model spent MAX_OUTPUT_TOKENS thinking, and asking
                # again would do the same.
                kind: Fault = "output_limit" if stopped == "length" else "content_filter"
                self.surface.say(messages.notice(kind))
                return kind
            self.surface.cut_short(stopped)
            return kinds.cut_short(stopped)
        if finish_reason not in KNOWN_FINISH_REASONS:
            logger.warning("unknown finish_reason %r: the answer is taken as complete", finish_reason)
        self.surface.complete()
        return "answered"

    def _attempt(self, api_key: str, step: Deadline) -> tuple[llm.StreamResult, str]:
        """One streamed attempt, pumped into the surface; returns its result and text."""
        from chalicelib import llm

        self.attempts.count += 1
        opened = time.monotonic()
        try:
            stream = llm.stream(self.chat, self.settings, api_key, step)
        except llm.LLMError:
            self.attempts.seconds += time.monotonic() - opened  # refused: no tokens, but time all the same
            raise
        surface, fields = self.surface, self.fields
        text = ""
        # The stop closes the stream from the thread that sees it: a read blocked on the socket
        # returns at once, and the model is paid for no more tokens.
        forget_stream = self.stop.on_stop(stream.close)
        try:
            for delta in _paced(stream, surface, step, self.stop) if surface.paced else _guarded(stream):
                if self.stop.is_set():
                    break
                if "first_token_ms" not in fields:
                    fields["first_token_ms"] = logs.ms_since(self.started)
                if not text:
                    self._settle_retry("complete")
                text += delta
                surface.push(delta)
                if surface.visible and "first_text_ms" not in fields:
                    fields["first_text_ms"] = logs.ms_since(self.started)
            if self.stop.is_set():
                raise _Stopped
            if not text.strip() and stream.result.finish_reason not in ("length", "content_filter"):
                raise llm.LLMError("unreadable", mid_stream=True)  # an answer with no text: nothing to show
            return stream.result, text
        finally:
            forget_stream()
            stream.close()
            self.attempts.add(self.chat, stream.result, text)


def _guarded(stream: llm.ChatStream) -> Iterator[str]:
    """The stream's deltas; anything from deep in the SDK but an ``LLMError`` is a failed stream too."""
    from chalicelib import llm

    try:
        yield from stream
    except llm.LLMError:
        raise
    except Exception:
        logger.exception("unexpected error while reading the LLM's stream")
        raise llm.LLMError("service_error", mid_stream=True) from None


def _paced(stream: llm.ChatStream, surface: Surface, step: Deadline, stop: StopSignal) -> Iterator[str]:
    """The stream's deltas, read in a thread of their own so that this one wakes when the surface
    is due (buffered text must not wait for the next token); every surface call stays here, and
    none is made once ``stop`` is set."""
    from chalicelib import llm

    deltas: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def read() -> None:
        try:
            for delta in _guarded(stream):
                deltas.put(delta)
            deltas.put(_END)
        except llm.LLMError as error:
            deltas.put(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    forget = stop.on_stop(lambda: deltas.put(_END))  # wakes this thread even if no socket could be cut
    try:
        while True:
            due = surface.due_in()
            wait = step.remaining() if due is None else min(due, step.remaining())
            try:
                item = deltas.get(timeout=max(wait, 0.001))
            except queue.Empty:
                if stop.is_set():
                    return
                if step.remaining() <= 0:
                    raise llm.LLMError("timeout") from None
                surface.flush_if_due()
                continue
            if item is _END or stop.is_set():
                return
            if isinstance(item, llm.LLMError):
                raise item
            yield item
    finally:
        forget()
        stream.close()  # a reader blocked on the socket wakes and ends
        reader.join(timeout=1)  # a daemon: one that cannot be woken must not hold the job
