"""Parse an interactivity request (``POST /slack/interactions``) and the feedback buttons' values.

Contract: ``parse(body)`` takes the ``application/x-www-form-urlencoded`` body Slack POSTs when
a user clicks something in a message (one form field, ``payload``, holding JSON) and returns a
decision, or raises ``MalformedInteraction`` with a short, client-safe reason; it never raises
anything else, whatever the bytes:

- ``FeedbackVote`` for a ``block_actions`` payload whose ``actions[0].type`` is
  ``feedback_buttons``: who voted (team, channel, user), on which answer (``message.ts``), the
  vote (``up`` / ``down``) and the model, both read from the clicked button's ``value``
  (``button_value`` makes it), and the payload's ``response_url`` (None when it has none);
- ``Ignored(reason)`` for every other interaction type, or block action, the bot has no use for.

``button_value(vote, model)`` is the value each feedback button carries (at most
``MAX_VALUE_CHARS``, Slack's limit: a model name past it is cut), and ``read_value(value)``
reads it back, or None. The buttons themselves are built in the worker (``chalicelib.feedback``,
with slack_sdk's models); this module is pure and stdlib-only: the HTTP function imports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

from chalicelib.jobs import is_slack_ts

Vote = Literal["up", "down"]
VOTES: tuple[Vote, ...] = ("up", "down")
FEEDBACK_ACTION_TYPE = "feedback_buttons"
FEEDBACK_ACTION_ID = "answer_feedback"
MAX_VALUE_CHARS = 2000  # a feedback button's value: Slack's limit
_SEPARATOR = ":"  # "up:gpt-4o-mini": the vote never holds one, so the first one splits
# Slack's interactivity form has one field; a body with thousands of fields is not from Slack.
_MAX_FIELDS = 16


class MalformedInteraction(ValueError):
    """The body is not an interaction payload the bot can read. ``str(error)`` is safe to send back."""


@dataclass(frozen=True)
class FeedbackVote:
    team_id: str
    channel_id: str
    user_id: str
    message_ts: str  # the answer voted on
    vote: Vote
    model: str
    response_url: str | None


@dataclass(frozen=True)
class Ignored:
    reason: str


Decision = FeedbackVote | Ignored


def button_value(vote: Vote, model: str) -> str:
    return f"{vote}{_SEPARATOR}{model}"[:MAX_VALUE_CHARS]


def read_value(value: Any) -> tuple[Vote, str] | None:
    """``(vote, model)`` from a button's value, or None if it is not one ``button_value`` made."""
    if not isinstance(value, str):
        return None
    vote, separator, model = value.partition(_SEPARATOR)
    for known in VOTES:
        if vote == known and separator and model:
            return known, model
    return None


def parse(body: bytes) -> Decision:
    payload = _payload(body)
    kind = payload.get("type")
    if not isinstance(kind, str) or not kind:
        raise MalformedInteraction("payload has no type")
    if kind != "block_actions":
        return Ignored(f"interaction type {kind[:40]}")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise MalformedInteraction("block_actions has no actions")
    action = actions[0]
    if action.get("type") != FEEDBACK_ACTION_TYPE:
        return Ignored(f"block action {str(action.get('type'))[:40]}")
    read = read_value(action.get("value"))
    if read is None:
        raise MalformedInteraction("feedback_buttons action has no vote in its value")
    message = _object(payload, "message")
    message_ts = message.get("ts")
    if not isinstance(message_ts, str) or not is_slack_ts(message_ts):
        raise MalformedInteraction("block_actions has no message.ts")
    channel_id = _id(_object(payload, "channel"), "channel")
    user = _object(payload, "user")
    user_id = _id(user, "user")
    team = payload.get("team")
    team_id = team.get("id") if isinstance(team, dict) else None
    if not isinstance(team_id, str) or not team_id:
        team_id = _id(user, "user", "team_id")  # Slack sends team null for an org-wide app
    response_url = payload.get("response_url")
    return FeedbackVote(
        team_id=team_id,
        channel_id=channel_id,
        user_id=user_id,
        message_ts=message_ts,
        vote=read[0],
        model=read[1],
        response_url=response_url if isinstance(response_url, str) and response_url else None,
    )


def _payload(body: bytes) -> dict[str, Any]:
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):  # ValueError: too many fields
        raise MalformedInteraction("body is not a form") from None
    values = [value for name, value in fields if name == "payload"]
    if len(values) != 1:
        raise MalformedInteraction("form has no single payload field")
    try:
        payload = json.loads(values[0])
    except (ValueError, RecursionError):  # RecursionError: [[[[...
        raise MalformedInteraction("payload is not JSON") from None
    if not isinstance(payload, dict):
        raise MalformedInteraction("payload is not a JSON object")
    return payload


def _object(payload: dict[str, Any], name: str) -> dict[str, Any]:
    value = payload.get(name)
    if not isinstance(value, dict):
        raise MalformedInteraction(f"block_actions has no {name}")
    return value


def _id(container: dict[str, Any], where: str, name: str = "id") -> str:
    value = container.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedInteraction(f"block_actions has no {where}.{name}")
    return value
