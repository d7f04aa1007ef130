"""Votes on answers: the feedback buttons under an answer, and what happens when one is clicked.

Contract (worker side only: it imports slack_sdk's block models):

- ``buttons(model)`` is the ``context_actions`` block with one ``feedback_buttons`` element
  that ends every completed answer (never an error line or an answer cut short); each button's
  value says the vote and the model (``slack.interactions.button_value``).
- ``with_buttons(message, question, answer_markdown, model)`` is a slash command's reply with
  the buttons: a message with blocks shows its blocks, not its ``text``, so the question (as a
  code block) and the answer go into a ``markdown`` block first, ``text`` staying as the
  notification's fallback. An answer past the block's ``MAX_MARKDOWN_BLOCK_CHARS`` keeps the
  reply as it was, without buttons, rather than cut it.
- ``record(job, settings)`` handles a ``FeedbackJob``: it stores the vote as one item, then
  thanks the user ephemerally through the job's ``response_url`` ONCE per answer and user (a
  second click changes the stored vote and says nothing). The item is
  ``feedback#<channel>:<answer ts>:<user>`` in the claims table (``IDEMPOTENCY_TABLE``, in
  Lambda: ``chalicelib.claims.table_name``; else this process's memory), with ``vote``,
  ``model``, ``voted_at``, ``first_voted_at`` and a TTL of ``FEEDBACK_TTL_SECONDS`` (90 days).
  A vote that could not be stored is answered with one plain line saying so; with unusable
  settings the line names the bad setting. It never raises and writes the worker's one JSON
  log line (``"event": "answer"``, ``kind`` ``feedback``, outcome ``vote_recorded``,
  ``vote_changed`` or ``vote_not_stored``); the vote itself is logged by the HTTP function
  (``"event": "feedback"``), which is what ``make feedback`` counts.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from typing import Any

from slack_sdk.models.blocks import ContextActionsBlock, FeedbackButtonObject, FeedbackButtonsElement, MarkdownBlock

from chalicelib import aws, claims, container, logs
from chalicelib.jobs import FeedbackJob
from chalicelib.kinds import Outcome
from chalicelib.settings import Settings, Unconfigured
from chalicelib.slack import markdown, messages, response_url
from chalicelib.slack.interactions import FEEDBACK_ACTION_ID, VOTES, button_value
from chalicelib.slack.messages import Message

logger = logging.getLogger(__name__)

FEEDBACK_PREFIX = "feedback#"
FEEDBACK_TTL_SECONDS = 90 * 24 * 3600
MAX_MARKDOWN_BLOCK_CHARS = MarkdownBlock.text_max_length  # 12,000
# Voters remembered by one process when there is no table (chalice local, tests).
MAX_MEMORY_VOTES = 10_000
POSITIVE_TEXT, NEGATIVE_TEXT = "Good answer", "Bad answer"


def buttons(model: str) -> ContextActionsBlock:
    return ContextActionsBlock(
        elements=[
            FeedbackButtonsElement(
                action_id=FEEDBACK_ACTION_ID,
                positive_button=FeedbackButtonObject(
                    text=POSITIVE_TEXT, accessibility_label="This answer was helpful", value=button_value("up", model)
                ),
                negative_button=FeedbackButtonObject(
                    text=NEGATIVE_TEXT,
                    accessibility_label="This answer was not helpful",
                    value=button_value("down", model),
                ),
            )
        ]
    )


def with_buttons(message: Message, question: str, answer_markdown: str, model: str) -> Message:
    """The slash reply ``message`` with the answer in a markdown block and the buttons after it."""
    if len(question) > messages.MAX_ECHOED_QUESTION_CHARS:  # as the text's echo is cut
        question = question[: messages.MAX_ECHOED_QUESTION_CHARS] + "…"
    text = markdown.defuse_broadcasts(_fenced(question) + "\n" + answer_markdown)
    if len(text) > MAX_MARKDOWN_BLOCK_CHARS:
        return message  # the answer whole matters more than the buttons
    return {**message, "blocks": [MarkdownBlock(text=text).to_dict(), buttons(model).to_dict()]}


def _fenced(text: str) -> str:
    """``text`` as a Markdown code block: a fence longer than any run of backticks in it."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


# --- a click ---------------------------------------------------------------------------------------------------------


def item_key(job: FeedbackJob) -> str:
    return f"{FEEDBACK_PREFIX}{job.channel_id}:{job.message_ts}:{job.user_id}"


def record(job: FeedbackJob, settings: Settings | Unconfigured) -> None:
    fields = job.log_fields()
    try:
        message, outcome = _store(job, settings, fields)
    except Exception:  # the user must hear back whatever went wrong
        logger.exception("unexpected error while recording a vote")
        message, outcome = messages.feedback_not_recorded(), "vote_not_stored"
    reach = settings if isinstance(settings, Settings) else settings.reach
    if message is not None and job.response_url is not None and reach is not None:
        delivery = response_url.post(job.response_url, message, reach)
        fields.update(delivered=delivery.delivered)
        if not delivery.delivered:
            fields["reply_error"] = delivery.error
    fields["outcome"] = outcome
    logs.emit("answer", **fields)


def _store(
    job: FeedbackJob, settings: Settings | Unconfigured, fields: dict[str, Any]
) -> tuple[Message | None, Outcome]:
    """What to tell the user (None: nothing) and the outcome."""
    if isinstance(settings, Unconfigured):  # the worker logged which and why
        fields["setting"] = settings.setting
        return messages.not_configured(settings.setting), "not_configured"
    if job.vote not in VOTES:
        logger.error("a feedback job with an unknown vote: dropped")
        return None, "bad_payload"
    table = claims.table_name(settings)
    first = _memory.put(item_key(job), job.vote) if table is None else _put_in_table(table, job)
    if first is None:
        return messages.feedback_not_recorded(), "vote_not_stored"
    if first:
        return messages.feedback_thanks(), "vote_recorded"
    return None, "vote_changed"


def _put_in_table(table: str, job: FeedbackJob) -> bool | None:
    """Whether this is the user's first vote on the answer; None if the table could not be used."""
    now = time.time()
    try:
        response = aws.client("dynamodb").update_item(
            TableName=table,
            Key={claims.KEY_ATTRIBUTE: {"S": item_key(job)}},
            UpdateExpression=(
                f"SET #vote = :vote, #model = :model, voted_at = :now, {claims.TTL_ATTRIBUTE} = :expires, "
                "first_voted_at = if_not_exists(first_voted_at, :now)"
            ),
            # Placeholders: DynamoDB reserves hundreds of plain words, and a name it reserves is refused.
            ExpressionAttributeNames={"#vote": "vote", "#model": "model"},
            ExpressionAttributeValues={
                ":vote": {"S": job.vote},
                ":model": {"S": job.model},
                ":now": {"N": str(math.floor(now))},
                ":expires": {"N": str(math.ceil(now + FEEDBACK_TTL_SECONDS))},
            },
            # The item as it was: one that had a first vote makes this a change of vote.
            ReturnValues="ALL_OLD",
        )
    except Exception as error:
        logger.error("the feedback table could not be used (%s): the vote is not stored", aws.error_code(error))
        return None
    return "first_voted_at" not in (response.get("Attributes") or {})


class MemoryVotes:
    """Votes in this process (thread-safe, at most ``max_votes``, the oldest forgotten first)."""

    def __init__(self, max_votes: int = MAX_MEMORY_VOTES) -> None:
        self._max = max_votes
        self._lock = threading.Lock()
        self._votes: OrderedDict[str, str] = OrderedDict()

    def put(self, key: str, vote: str) -> bool:
        """Stores the vote; True if ``key`` had none."""
        with self._lock:
            first = key not in self._votes
            self._votes[key] = vote
            while len(self._votes) > self._max:
                self._votes.popitem(last=False)
            return first

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._votes.get(key)


_memory = MemoryVotes()


@container.register
def _forget_votes() -> None:
    global _memory
    _memory = MemoryVotes()


def stored_vote(key: str) -> str | None:
    """The vote this process holds under ``key`` (no table): for ``chalice local`` and tests."""
    return _memory.get(key)
