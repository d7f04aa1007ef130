"""Answer a message in its Slack thread, streamed as the LLM writes it; greet an opened assistant pane.

Contract: ``answer(job, deadline, environ)`` and ``offer_prompts(job, deadline, environ)``
never raise, finish every Slack call before they return, and write one JSON log line.

``answer`` shows a sign of life at once (``assistant.threads.setStatus``; a refusal is
logged and ignored), reads the thread's earlier messages when the message is in one, builds
the chat within ``MAX_CONTEXT_TOKENS`` and streams the LLM's answer into the thread
(``chalicelib.slack.stream`` decides the cadence and message sizes). Whatever fails, the user
sees one plain-language line, and keeps whatever had already been streamed:

- before any text reached Slack, a failed stream (or one with no text) is tried once more
  when the deadline allows it, and ``context_length_exceeded`` once more with half the history;
- after that, the stream is stopped and one line says the answer was cut short, and why;
- if Slack refuses the answer, or anything unexpected fails, the stream is stopped and one
  line says so, unless a line was already attempted or a call may have landed unanswered
  (``connection``/``timeout``): never two endings;
- if the settings or the bot token are unusable there is no way to reach the user: the log
  line says so.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from chalicelib import limits, logs, secrets
from chalicelib.deadline import Deadline
from chalicelib.jobs import AssistantThreadStartedJob, MessageJob
from chalicelib.settings import Settings, SettingsError
from chalicelib.slack import history, messages, web
from chalicelib.slack.stream import UNCERTAIN, Replier

if TYPE_CHECKING:
    from chalicelib import llm

logger = logging.getLogger(__name__)

# Kept back from the LLM for stopping the stream and saying what went wrong, at worst.
FINISH_RESERVE_SECONDS = 10.0
# Kept back from every Slack call, so that a Slack that never answers cannot hold the worker
# past its deadline (in Lambda, a timeout): time to give up, log and return.
SLACK_RESERVE_SECONDS = 1.0
# Failures worth one more try when nothing was shown yet; a bad key or an empty quota is not.
RETRIED_KINDS = frozenset({"cut_off", "service_error", "unreadable"})
_END = object()


def answer(job: MessageJob, deadline: Deadline, environ: Mapping[str, str]) -> None:
    started = time.perf_counter()
    fields: dict[str, Any] = _job_fields(job)
    try:
        fields["outcome"] = _answer(job, deadline, environ, fields, started)
    except Exception:  # a last guard: log it; the user was told if they could be
        logger.exception("unexpected error while answering a message")
        fields["outcome"] = "internal_error"
    fields["total_ms"] = _ms_since(started)
    logs.emit("answer", **fields)


def offer_prompts(job: AssistantThreadStartedJob, deadline: Deadline, environ: Mapping[str, str]) -> None:
    fields: dict[str, Any] = _job_fields(job)
    try:
        settings, token = _settings_and_token(environ)
        _, error = _first_call(
            settings,
            token,
            deadline,
            lambda slack: web.set_suggested_prompts(slack, job.channel_id, job.thread_ts, settings.suggested_prompts),
        )
        if error is None:
            fields["outcome"] = "prompts_set"
        else:
            logger.error("could not set the suggested prompts: %s", error.code)
            fields.update(outcome="slack_error", slack_error=error.code)
    except _Unconfigured:
        fields["outcome"] = "not_configured"
    except Exception:
        logger.exception("unexpected error while setting the suggested prompts")
        fields["outcome"] = "internal_error"
    logs.emit("answer", **fields)


def say_too_late(job: MessageJob, deadline: Deadline, environ: Mapping[str, str]) -> None:
    """Tell the asker, in the thread, that the question waited too long; no LLM call."""
    try:
        settings, token = _settings_and_token(environ)
        web.post(
            web.client(token, settings.slack_api_url, deadline.shortened(SLACK_RESERVE_SECONDS)),
            job.channel_id,
            job.reply_thread_ts,
            text=messages.TOO_LATE_LINE,
        )
    except (_Unconfigured, web.SlackError) as error:
        logger.error("could not say the question came too late: %s", getattr(error, "code", "not_configured"))


class _Unconfigured(Exception):
    """The settings or the bot token are unusable (already logged)."""


def _settings_and_token(environ: Mapping[str, str]) -> tuple[Settings, str]:
    try:
        settings = Settings.from_env(environ)
    except SettingsError as error:
        logger.error("invalid setting: %s", error)
        raise _Unconfigured from None
    logs.configure(settings.log_level)
    try:
        return settings, secrets.slack_bot_token(settings)
    except secrets.SecretUnavailable:
        raise _Unconfigured from None


def _first_call(
    settings: Settings, token: str, deadline: Deadline, call: Callable[[Any], None]
) -> tuple[Any, web.SlackError | None]:
    """Make a job's first Slack call; after ``invalid_auth``, once more with the bot token read
    afresh (``make secrets`` may have replaced it since this container read it). Returns the
    client to go on with, and the call's error if it still failed."""
    deadline = deadline.shortened(SLACK_RESERVE_SECONDS)
    slack = web.client(token, settings.slack_api_url, deadline)
    try:
        call(slack)
        return slack, None
    except web.SlackError as error:
        if error.code != "invalid_auth" or not secrets.slack_bot_token_rejected(settings):
            return slack, error
        first_error = error
    try:
        slack = web.client(secrets.slack_bot_token(settings), settings.slack_api_url, deadline)
        call(slack)
        return slack, None
    except secrets.SecretUnavailable:
        return slack, first_error
    except web.SlackError as error:
        return slack, error


def _answer(
    job: MessageJob, deadline: Deadline, environ: Mapping[str, str], fields: dict[str, Any], started: float
) -> str:
    try:
        settings, token = _settings_and_token(environ)
    except _Unconfigured:
        return "not_configured"
    fields["model"] = settings.openai_model
    if settings.log_message_text:
        fields["text"] = job.text
    thread_ts = job.reply_thread_ts
    slack, error = _first_call(
        settings,
        token,
        deadline,
        lambda slack: web.set_status(slack, job.channel_id, thread_ts, messages.THINKING_STATUS),
    )
    if error is None:
        fields["status_ms"] = _ms_since(started)
    else:  # a sign of life is nice to have, not a reason to stop
        logger.warning("could not set the thread's status: %s", error.code)
        fields["status_error"] = error.code
    replier = Replier(
        slack,
        job.channel_id,
        thread_ts,
        recipient_user_id=job.user_id,
        recipient_team_id=job.team_id,
    )
    try:
        return _converse(job, settings, slack, replier, deadline, fields, started)
    except web.SlackError as error:
        # Slack refused the answer itself (not_in_channel, invalid_auth...): one last try to say
        # so, which may well be refused for the same reason. Not after a notice, nor after a
        # call that may have landed: the user must not read two endings.
        logger.error("Slack refused the answer: %s", error.code)
        fields["slack_error"] = error.code
        if not replier.notice_attempted and error.code not in UNCERTAIN:
            _notify(replier, messages.notice("slack_error"))
        return "slack_error"
    except Exception:  # a last guard: stop the stream and tell the user, as for any failure
        logger.exception("unexpected error while answering a message")
        if not replier.notice_attempted:
            _notify(replier, messages.notice("service_error"))
        return "internal_error"
    finally:
        fields["slack_calls"] = replier.calls + (1 if "status_ms" in fields or "status_error" in fields else 0)


def _converse(
    job: MessageJob,
    settings: Settings,
    slack: Any,
    replier: Replier,
    deadline: Deadline,
    fields: dict[str, Any],
    started: float,
) -> str:
    question = history.strip_mention(job.text, job.bot_user_id)
    thread: list[dict[str, Any]] = []
    if job.in_thread and job.thread_ts:
        try:
            thread = web.thread_messages(slack, job.channel_id, job.thread_ts, settings.max_history_messages)
        except web.SlackError as error:  # answer without the history rather than not at all
            logger.warning("could not read the thread: %s", error.code)
            fields["history_error"] = error.code
    if not question and not thread:
        replier.post_notice(messages.mention_usage(job.bot_user_id))
        return "usage"
    if len(question) > settings.max_input_chars:  # the same cap on cost as for a slash command
        replier.post_notice(messages.too_long(len(question), settings.max_input_chars)["text"])
        return "too_long_input"
    wait = limits.check(settings, job.team_id, job.user_id)
    if wait is not None:  # USER_RATE_LIMIT_PER_MINUTE: no LLM call
        fields["retry_after_s"] = wait
        replier.post_notice(messages.too_many_questions(settings.user_rate_limit_per_minute or 0, wait)["text"])
        return "user_rate_limited"
    current = {"ts": job.ts, "text": job.text, "user": job.user_id}
    chat = history.fit(
        history.to_chat(thread, current, job.bot_user_id, settings.system_prompt), settings.max_context_tokens
    )
    fields["history_messages"] = len(chat) - 2
    # Imported here, after the status is set: openai takes a quarter of a second to import, and a
    # cold worker's sign of life should not wait for it.
    from chalicelib import llm

    try:
        api_key = secrets.openai_api_key(settings)
    except secrets.SecretUnavailable:
        replier.post_notice(messages.notice("not_configured"))
        return "not_configured"
    llm_deadline = deadline.shortened(min(FINISH_RESERVE_SECONDS, deadline.remaining() / 4)).capped(
        settings.openai_timeout_seconds
    )
    retried = halved = False
    while True:
        try:
            result = _stream(chat, settings, api_key, llm_deadline, replier, fields, started)
            break
        except llm.LLMError as error:
            kind = error.kind
            if kind == "invalid_key" and not replier.visible:
                # `make secrets` may have replaced the key since this container read it.
                fresh_key = secrets.reread_openai_api_key(settings)
                if fresh_key is not None:
                    api_key = fresh_key
                    continue
            if not replier.visible and kind == "too_long" and not halved and len(chat) > 2:
                chat, halved = history.halve_history(chat), True
                replier.discard_pending()
                continue
            worth_retrying = kind in RETRIED_KINDS and llm_deadline.remaining() >= llm.MIN_ATTEMPT_SECONDS * 2
            if not replier.visible and worth_retrying and not retried:
                retried = True
                logger.warning("the LLM failed before any text was shown (%s); trying once more", kind)
                replier.discard_pending()  # held back by a rate limit: the second answer starts afresh
                continue
            if replier.visible:
                replier.finish()
                replier.post_notice(messages.cut_short(kind))
                return f"cut_short_{kind}"
            replier.post_notice(messages.notice(kind))
            return kind
    fields.update(llm.log_fields(result))
    replier.finish()
    if result.finish_reason == "length":
        replier.post_notice(messages.cut_short("length"))
        return "cut_short_length"
    return "answered"


def _stream(
    chat: list[dict[str, str]],
    settings: Settings,
    api_key: str,
    deadline: Deadline,
    replier: Replier,
    fields: dict[str, Any],
    started: float,
) -> llm.StreamResult:
    """Pump the LLM's deltas into ``replier``, which gets to send on its own cadence.

    The LLM is read in a thread of its own so that this loop can wake when the replier is due
    (buffered text must not wait for the next token), and all Slack calls stay on this thread.
    """
    from chalicelib import llm  # already imported by _converse; here for the name

    stream = llm.stream(chat, settings, api_key, deadline)
    deltas: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def read() -> None:
        try:
            for delta in stream:
                deltas.put(delta)
            deltas.put(_END)
        except llm.LLMError as error:
            deltas.put(error)
        except Exception:  # anything else from deep in the SDK: a failed stream all the same
            logger.exception("unexpected error while reading the LLM's stream")
            deltas.put(llm.LLMError("service_error"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while True:
            due = replier.due_in()
            wait = deadline.remaining() if due is None else min(due, deadline.remaining())
            try:
                item = deltas.get(timeout=max(wait, 0.001))
            except queue.Empty:
                if deadline.remaining() <= 0:
                    raise llm.LLMError("timeout") from None
                replier.flush_if_due()
                continue
            if item is _END:
                if not replier.visible and replier.due_in() is None:
                    # An answer with no text (or only blank lines): nothing to show for it.
                    raise llm.LLMError("unreadable")
                return stream.result
            if isinstance(item, llm.LLMError):
                raise item
            if "first_token_ms" not in fields:
                fields["first_token_ms"] = _ms_since(started)
            replier.push(item)
            if replier.visible and "first_text_ms" not in fields:
                fields["first_text_ms"] = _ms_since(started)
    finally:
        stream.close()
        reader.join(timeout=5)


def _notify(replier: Replier, text: str) -> None:
    try:
        replier.post_notice(text)
    except web.SlackError as error:
        logger.error("could not tell the user either: %s", error.code)


def _job_fields(job: MessageJob | AssistantThreadStartedJob) -> dict[str, Any]:
    return {
        "kind": job.kind,
        "job_id": job.id,
        "team_id": job.team_id,
        "channel_id": job.channel_id,
        "user_id": job.user_id,
    }


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
