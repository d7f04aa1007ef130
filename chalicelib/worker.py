"""The worker's job: take one dispatched job, claim it, and answer it exactly once.

Contract: ``run(payload, deadline, environ)`` validates the payload (``chalicelib.jobs``),
claims the job's keys (``chalicelib.claims``: a job already claimed, such as Slack's
redelivery of an event, is dropped with a log line), and hands it to its kind's handler:

- a slash command is answered here: the LLM's answer, or one plain-language error, is
  POSTed once to its ``response_url`` (Slack allows only five uses: no interim posts);
- a message (mention, DM, assistant pane) is answered in its thread by
  ``chalicelib.conversation``, streamed as it is written;
- an opened assistant pane gets its suggested prompts (``chalicelib.conversation``).

A job older than ``JOB_MAX_AGE_SECONDS`` (it waited in Lambda's queue while the worker was
throttled) gets "too busy, please ask again" instead, without an LLM call.

It never raises: in Lambda a raise makes the async invocation run again and the user sees
duplicates. Every part of it is done before it returns (Lambda freezes the sandbox after the
handler). For a slash command the LLM step ends early enough to leave time for the reply:
``REPLY_RESERVE_SECONDS``, or a quarter of the time left when that is shorter.
It writes one JSON log line per job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from chalicelib import claims, conversation, jobs, limits, logs, secrets
from chalicelib.deadline import Deadline
from chalicelib.jobs import Job, SlashCommandJob
from chalicelib.settings import Settings, SettingsError
from chalicelib.slack import messages, response_url
from chalicelib.slack.messages import Message

logger = logging.getLogger(__name__)

# Time kept back from the LLM for the reply: its worst case. A short-lived run (a 3 s test
# context) keeps a quarter of what it has instead, rather than leave nothing for the LLM.
REPLY_RESERVE_SECONDS = response_url.WORST_CASE_SECONDS


def run(payload: Any, deadline: Deadline, environ: Mapping[str, str]) -> None:
    try:
        job = jobs.from_payload(payload)
    except ValueError as error:
        # Without a valid job there is no one to tell; the log is all we can do.
        logger.error("dropping a job with a bad payload: %s", error)
        logs.emit("answer", outcome="bad_payload")
        return
    try:
        _run(job, deadline, environ)
    except Exception:  # a last guard for the handlers, which answer their own failures
        logger.exception("unexpected error while handling a %s job", job.kind)
        logs.emit("answer", kind=job.kind, job_id=job.id, outcome="internal_error")


def _run(job: Job, deadline: Deadline, environ: Mapping[str, str]) -> None:
    try:
        settings: Settings | None = Settings.from_env(environ)
    except SettingsError:
        settings = None  # claimed in memory; the handler tells the user the bot is not set up
    if not claims.store(settings).claim(job.claim_keys):
        logger.info("dropping %s job %s: already claimed", job.kind, job.id)
        logs.emit("answer", kind=job.kind, job_id=job.id, outcome="duplicate")
        return
    age = time.time() - job.asked_at
    if settings is not None and age > settings.job_max_age_seconds:
        # It waited in Lambda's queue (throttled): a late answer costs and may no longer help.
        logger.warning("%s job %s is %.0f s old: too late to answer", job.kind, job.id, age)
        if isinstance(job, SlashCommandJob):
            response_url.post(job.response_url, messages.too_late(), environ)
        elif isinstance(job, jobs.MessageJob):
            conversation.say_too_late(job, deadline, environ)
        logs.emit("answer", kind=job.kind, job_id=job.id, outcome="too_late", age_s=round(age))
        return
    if isinstance(job, SlashCommandJob):
        answer_command(job, deadline, environ)
    elif isinstance(job, jobs.MessageJob):
        conversation.answer(job, deadline, environ)
    else:
        conversation.offer_prompts(job, deadline, environ)


def answer_command(job: SlashCommandJob, deadline: Deadline, environ: Mapping[str, str]) -> None:
    fields: dict[str, Any] = {
        "kind": job.kind,
        "job_id": job.id,
        "team_id": job.team_id,
        "channel_id": job.channel_id,
        "user_id": job.user_id,
    }
    try:
        message, outcome = _compose(job, deadline, environ, fields)
    except Exception:  # the user must hear back whatever went wrong
        logger.exception("unexpected error while answering a job")
        message, outcome = messages.error("service_error"), "internal_error"
    started = time.perf_counter()
    # post() checks the URL against RESPONSE_URL_HOSTS again: a refused one is not posted to.
    delivery = response_url.post(job.response_url, message, environ)
    fields.update(outcome=outcome, delivered=delivery.delivered, reply_ms=round((time.perf_counter() - started) * 1000))
    if not delivery.delivered:  # the user cannot be told: the log line is all there is
        fields["reply_error"] = delivery.error
        if delivery.status is not None:
            fields["reply_status"] = delivery.status
        if delivery.detail is not None:
            fields["reply_detail"] = delivery.detail
    logs.emit("answer", **fields)


def _compose(
    job: SlashCommandJob, deadline: Deadline, environ: Mapping[str, str], fields: dict[str, Any]
) -> tuple[Message, str]:
    """The one reply for this job and its outcome; adds what it learns to ``fields``."""
    from chalicelib import llm  # see conversation.py: openai is imported only once it is needed

    try:
        settings = Settings.from_env(environ)
    except SettingsError as error:
        logger.error("invalid setting: %s", error)
        return messages.not_configured(), "not_configured"
    logs.configure(settings.log_level)
    fields["model"] = settings.openai_model
    if settings.log_message_text:
        fields["text"] = job.text
    wait = limits.check(settings, job.team_id, job.user_id)
    if wait is not None:
        fields["retry_after_s"] = wait
        return messages.too_many_questions(settings.user_rate_limit_per_minute or 0, wait), "user_rate_limited"
    try:
        api_key: str | None = secrets.openai_api_key(settings)
    except secrets.SecretUnavailable:
        return messages.not_configured(), "not_configured"
    reserve = min(REPLY_RESERVE_SECONDS, deadline.remaining() / 4)
    llm_deadline = deadline.shortened(reserve).capped(settings.openai_timeout_seconds)
    while True:
        try:
            answer = llm.ask(job.text, settings, api_key or "", llm_deadline)
            break
        except llm.LLMError as error:
            # A 401: `make secrets` may have replaced the key since this container read it.
            api_key = secrets.reread_openai_api_key(settings) if error.kind == "invalid_key" else None
            if api_key is None:
                return messages.error(error.kind), error.kind
    fields.update(llm.log_fields(answer))
    message = messages.answer(job.text, answer.text, settings.slack_response_type, answer.finish_reason)
    # Stopped at MAX_OUTPUT_TOKENS: the same outcome as a streamed answer's (conversation.py).
    return message, "cut_short_length" if answer.finish_reason == "length" else "answered"
