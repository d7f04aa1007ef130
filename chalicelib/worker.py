"""The worker's job: answer one dispatched slash command, with exactly one reply.

Contract: ``run(payload, deadline, environ)`` asks the LLM and POSTs the answer, or one
plain-language error, to the job's ``response_url``, then returns. It never raises: in
Lambda a raise makes the async invocation run again and the user sees duplicates. Every
part of it is done before it returns (Lambda freezes the sandbox after the handler), and
the LLM step ends early enough to leave time for the reply: ``REPLY_RESERVE_SECONDS``, or a
quarter of the time left when that is shorter.
It writes one JSON log line per job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from chalicelib import llm, logs, secrets
from chalicelib.deadline import Deadline
from chalicelib.dispatch import Job
from chalicelib.settings import Settings, SettingsError
from chalicelib.slack import messages, response_url
from chalicelib.slack.messages import Message

logger = logging.getLogger(__name__)

# Time kept back from the LLM for the reply: its worst case. A short-lived run (a 3 s test
# context) keeps a quarter of what it has instead, rather than leave nothing for the LLM.
REPLY_RESERVE_SECONDS = response_url.WORST_CASE_SECONDS


def run(payload: Any, deadline: Deadline, environ: Mapping[str, str]) -> None:
    try:
        job = Job.from_payload(payload)
    except ValueError as error:
        # Without a response_url there is no one to tell; the log is all we can do.
        logger.error("dropping a job with a bad payload: %s", error)
        logs.emit("answer", outcome="bad_payload")
        return
    fields: dict[str, Any] = {"team_id": job.team_id, "channel_id": job.channel_id, "user_id": job.user_id}
    try:
        message, outcome = _compose(job, deadline, environ, fields)
    except Exception:  # a last guard: the worker must not raise, and the user must hear back
        logger.exception("unexpected error while answering a job")
        message, outcome = messages.error("service_error"), "internal_error"
    started = time.perf_counter()
    delivered = response_url.post(job.response_url, message)
    fields.update(outcome=outcome, delivered=delivered, reply_ms=round((time.perf_counter() - started) * 1000))
    logs.emit("answer", **fields)


def _compose(job: Job, deadline: Deadline, environ: Mapping[str, str], fields: dict[str, Any]) -> tuple[Message, str]:
    """The one reply for this job and its outcome; adds what it learns to ``fields``."""
    try:
        settings = Settings.from_env(environ)
    except SettingsError as error:
        logger.error("invalid setting: %s", error)
        return messages.not_configured(), "not_configured"
    logs.configure(settings.log_level)
    fields["model"] = settings.openai_model
    if settings.log_message_text:
        fields["text"] = job.text
    try:
        api_key = secrets.openai_api_key(settings)
        reserve = min(REPLY_RESERVE_SECONDS, deadline.remaining() / 4)
        llm_deadline = deadline.shortened(reserve).capped(settings.openai_timeout_seconds)
        answer = llm.ask(job.text, settings, api_key, llm_deadline)
    except secrets.SecretUnavailable:
        return messages.not_configured(), "not_configured"
    except llm.LLMError as error:
        return messages.error(error.kind), error.kind
    fields.update(
        model=answer.model,
        llm_ms=round(answer.seconds * 1000),
        tokens_in=answer.tokens_in,
        tokens_out=answer.tokens_out,
    )
    return messages.answer(job.text, answer.text, settings.slack_response_type), "answered"
