"""A slash command answered through its ``response_url``: the answer core's one-reply surface.

Contract: ``answer(job, deadline, settings)`` runs the answer core (``chalicelib.answer``) with
a surface that gathers the streamed answer and shows nothing until the end, then POSTs exactly
one reply: the answer (the question echoed, Markdown converted to mrkdwn), or one
plain-language line. A completed answer also carries its feedback buttons: the question and
answer in a ``markdown`` block, then the buttons (``chalicelib.feedback.with_buttons``; the
mrkdwn ``text`` stays as the fallback). Slack allows a ``response_url`` five uses, so there are
no interim posts; a retried attempt simply starts the gathered text afresh. The answer's first
pipe table within Slack's limits goes in the reply's ``attachments`` as a table block (a pointer
stands in the text where it was); any other table stays in the text as a code block
(``chalicelib.slack.tables.one_message``). Given ``Unconfigured``
settings (the worker could not read them), the one reply is "not set up correctly", naming
the bad setting, posted with only what reaching the asker takes. It never raises and writes
one JSON log line (``"event": "answer"``). ``too_late(job, settings)`` replies "too busy,
please ask again" without an LLM call.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from chalicelib import answer as core
from chalicelib import feedback, logs
from chalicelib.deadline import Deadline
from chalicelib.jobs import SlashCommandJob
from chalicelib.kinds import AnswerOutcome, CutShortFault
from chalicelib.settings import Settings, Unconfigured
from chalicelib.slack import messages, response_url, tables
from chalicelib.slack.messages import Message

logger = logging.getLogger(__name__)


class ReplySurface:
    """Gathers the answer; its ``message`` is the one reply, set by the ending."""

    # Kept back from the LLM for the reply: its worst case. A short-lived run (a 3 s test
    # context) keeps a quarter of what it has instead, rather than leave nothing for the LLM.
    reserve_seconds = response_url.WORST_CASE_SECONDS
    visible = False  # nothing is shown before the one reply
    paced = False

    def __init__(self, question: str, response_type: str, model: str | None = None) -> None:
        self._question = question
        self._response_type = response_type
        self._model = model  # set: a completed answer carries the feedback buttons for it
        self._text = ""
        self.message: Message | None = None

    def push(self, text: str) -> None:
        self._text += text

    def due_in(self) -> float | None:
        return None

    def flush_if_due(self) -> None:
        pass

    def restart(self) -> None:
        self._text = ""

    def complete(self) -> None:
        self.message = self._answer(None, self._model)

    def cut_short(self, kind: CutShortFault) -> None:
        self.message = self._answer(kind, None)

    def _answer(self, finish_reason: str | None, model: str | None) -> Message:
        """The reply; given the ``model``, with the feedback buttons for it."""
        text, table = tables.one_message(self._text)
        message = messages.answer(self._question, text, self._response_type, finish_reason=finish_reason)
        if model is not None:
            message = feedback.with_buttons(message, self._question, text, model)
        if table is not None:
            message["attachments"] = [tables.attachment(table.block, table.table).to_dict()]
        return message

    def say(self, text: str) -> None:
        self.message = messages.ephemeral(text)

    def stopped(self) -> None:  # the answer core's, never called: a slash command has no stop button
        self.say(messages.STOPPED)


def answer(job: SlashCommandJob, deadline: Deadline, settings: Settings | Unconfigured) -> None:
    fields = job.log_fields()
    started = time.perf_counter()
    try:
        message, outcome = _compose(job, deadline, settings, fields, started)
    except Exception:  # the user must hear back whatever went wrong
        logger.exception("unexpected error while answering a job")
        message, outcome = messages.error("service_error"), "internal_error"
    replying = time.perf_counter()
    # post() checks the URL against RESPONSE_URL_HOSTS again: a refused one is not posted to.
    delivery = _post(job, message, settings if isinstance(settings, Settings) else settings.reach)
    fields.update(outcome=outcome, delivered=delivery.delivered, reply_ms=logs.ms_since(replying))
    if not delivery.delivered:  # the user cannot be told: the log line is all there is
        fields["reply_error"] = delivery.error
        if delivery.status is not None:
            fields["reply_status"] = delivery.status
        if delivery.detail is not None:
            fields["reply_detail"] = delivery.detail
    core.no_llm_call(fields)
    logs.emit("answer", **fields)


def too_late(job: SlashCommandJob, settings: Settings) -> None:
    """Tell the asker the question waited too long; no LLM call."""
    response_url.post(job.response_url, messages.too_late(), settings)


def _post(job: SlashCommandJob, message: Message, settings: Settings | None) -> response_url.Delivery:
    if settings is None:  # RESPONSE_URL_HOSTS is never refused, so this is for the type's sake
        logger.error("not replying: where a reply may go could not be read")
        return response_url.Delivery(False, "refused", detail="RESPONSE_URL_HOSTS could not be read")
    return response_url.post(job.response_url, message, settings)


def _compose(
    job: SlashCommandJob,
    deadline: Deadline,
    settings: Settings | Unconfigured,
    fields: dict[str, Any],
    started: float,
) -> tuple[Message, AnswerOutcome]:
    """The one reply for this job and its outcome; adds what it learns to ``fields``."""
    if isinstance(settings, Unconfigured):  # the worker logged which and why
        fields["setting"] = settings.setting
        return messages.not_configured(settings.setting), "not_configured"
    fields["model"] = settings.openai_model
    if settings.log_message_text:
        fields["text"] = job.text
    surface = ReplySurface(job.text, settings.slack_response_type, settings.openai_model)
    chat = [{"role": "system", "content": settings.system_prompt}, {"role": "user", "content": job.text}]
    outcome = core.run(chat, surface, settings, deadline, fields, core.Asker(job.team_id, job.user_id), started)
    return surface.message or messages.error("service_error"), outcome
