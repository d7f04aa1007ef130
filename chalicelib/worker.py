"""The worker's job: take one dispatched job, claim it, and answer it exactly once.

Contract: ``run(payload, deadline, environ)`` validates the payload (``chalicelib.jobs``),
parses the worker's settings from ``environ`` once, claims the job's keys
(``chalicelib.claims``: a job already claimed, such as Slack's redelivery of an event, is
dropped with a log line), and hands it to its kind's handler:

- a slash command is answered through its ``response_url`` by ``chalicelib.slash``: the
  LLM's answer, or one plain-language error, POSTed once;
- a message (mention, DM, assistant pane) is answered in its thread by
  ``chalicelib.conversation``, streamed as it is written;
- an opened assistant pane gets its suggested prompts in its new thread, and an opened
  Messages tab (agent view) gets them pinned atop it, once per user per claim's TTL
  (``chalicelib.conversation``);
- a vote on an answer (its feedback buttons) is stored, and the voter thanked once, by
  ``chalicelib.feedback``, however long the job waited.

Everything below gets the parsed ``Settings``, never ``environ``. When a setting is unusable,
the handlers get ``Unconfigured`` instead: the bad setting's name (logged here, with why) and
only what reaching the asker takes, parsed alone (``Settings.reach_from_env``), so that the
asker still gets one plain line naming the setting, never its value.

A job older than ``JOB_MAX_AGE_SECONDS`` (it waited in Lambda's queue while the worker was
throttled) gets "too busy, please ask again" instead, without an LLM call.

Both answer through the one answer core (``chalicelib.answer``), within the Lambda's time
and at most ``ANSWER_TIMEOUT_SECONDS``.

It never raises: in Lambda a raise makes the async invocation run again and the user sees
duplicates. Every part of it is done before it returns (Lambda freezes the sandbox after the
handler). It writes one JSON log line per job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from chalicelib import claims, conversation, feedback, jobs, logs, slash
from chalicelib.deadline import Deadline
from chalicelib.jobs import FeedbackJob, Job, SlashCommandJob
from chalicelib.settings import REPLY, THREAD, Settings, SettingsError, Unconfigured

logger = logging.getLogger(__name__)


def run(payload: Any, deadline: Deadline, environ: Mapping[str, str]) -> None:
    try:
        job = jobs.from_payload(payload)
    except ValueError as error:
        # Without a valid job there is no one to tell; the log is all we can do.
        logger.error("dropping a job with a bad payload: %s", error)
        logs.emit("answer", outcome="bad_payload")
        return
    try:
        _run(job, deadline, _settings(job, environ))
    except Exception:  # a last guard for the handlers, which answer their own failures
        logger.exception("unexpected error while handling a %s job", job.kind)
        logs.emit("answer", kind=job.kind, job_id=job.id, outcome="internal_error")


def _settings(job: Job, environ: Mapping[str, str]) -> Settings | Unconfigured:
    """The worker's settings; or, when one is unusable, its name and what reaching the asker takes."""
    try:
        settings = Settings.from_env(environ, function="worker")
    except SettingsError as error:
        logger.error("invalid setting: %s", error)
        try:
            reach: Settings | None = Settings.reach_from_env(
                environ, REPLY if isinstance(job, (SlashCommandJob, FeedbackJob)) else THREAD
            )
        except SettingsError as unusable:
            logger.error("and the asker cannot be told: %s", unusable)
            reach = None
        return Unconfigured(error.name, reach)
    logs.configure(settings.log_level)
    return settings


def _run(job: Job, deadline: Deadline, settings: Settings | Unconfigured) -> None:
    # Unconfigured: claimed in memory (no table name was read); the handler tells the asker.
    if not claims.store(settings if isinstance(settings, Settings) else None).claim(job.claim_keys):
        logger.info("dropping %s job %s: already claimed", job.kind, job.id)
        logs.emit("answer", kind=job.kind, job_id=job.id, outcome="duplicate")
        return
    if isinstance(job, FeedbackJob):  # a vote is worth keeping however late: no LLM, no thread
        feedback.record(job, settings)
        return
    age = time.time() - job.asked_at
    if isinstance(settings, Settings) and age > settings.job_max_age_seconds:
        # It waited in Lambda's queue (throttled): a late answer costs and may no longer help.
        logger.warning("%s job %s is %.0f s old: too late to answer", job.kind, job.id, age)
        if isinstance(job, SlashCommandJob):
            slash.too_late(job, settings)
        elif isinstance(job, jobs.MessageJob):
            conversation.say_too_late(job, deadline, settings)
        logs.emit("answer", kind=job.kind, job_id=job.id, outcome="too_late", age_s=round(age))
        return
    if isinstance(settings, Settings):
        deadline = deadline.capped(settings.answer_timeout_seconds)
    if isinstance(job, SlashCommandJob):
        slash.answer(job, deadline, settings)
    elif isinstance(job, jobs.MessageJob):
        conversation.answer(job, deadline, settings)
    else:
        conversation.offer_prompts(job, deadline, settings)
