"""Parse an Events API request body into what the bot should do with it.

Contract: ``parse(body)`` is pure and returns one of:

- ``UrlVerification(challenge)``: Slack checking the request URL; echo the challenge;
- a ``MessageJob``: a mention of the bot, or a message in a DM with it (``channel_type``
  ``im``, which is also what the assistant pane sends);
- an ``AssistantThreadStartedJob``: the user opened the assistant pane (apps installed with
  the legacy ``assistant_view``);
- a ``MessagesTabOpenedJob``: ``app_home_opened`` on the ``messages`` tab (the agent view's
  chat); the ``home`` tab, or any other, is ``Ignored``;
- a ``StopRequest``: the user pressed the stop button of an agent session
  (``agent_session_stopped``): its channel, thread, user, the ``event_ts`` it was pressed at and
  the streams Slack stopped itself (``streaming_message_ts``, empty when none ran; absent is
  read as empty). The gateway records it; no job is dispatched;
- ``Ignored(reason)``: everything else, answered 200 and not dispatched: any event with a
  ``bot_id``, any ``subtype`` but ``file_share`` and ``thread_broadcast`` (edits, deletions,
  joins...), the bot's own messages (its user id is ``authorizations[0].user_id``), and every
  other event or envelope type.

It raises ``MalformedEvent`` with a short, client-safe reason for a body that is not a JSON
object, or an envelope or event without the fields that its type needs (a finite
``event_time``; a ``ts``, ``thread_ts`` or ``event_ts`` that is a Slack timestamp; a stop's
``streaming_message_ts`` that is a list of them; a ``user`` and ``channel`` for
``app_home_opened`` on the messages tab).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chalicelib.jobs import AssistantThreadStartedJob, MessageJob, MessagesTabOpenedJob, finite_number, is_slack_ts

ANSWERED_SUBTYPES = frozenset({"file_share", "thread_broadcast"})


class MalformedEvent(ValueError):
    """The body is not a usable Events API request. ``str(error)`` is safe to send back."""


@dataclass(frozen=True)
class UrlVerification:
    challenge: str


@dataclass(frozen=True)
class Ignored:
    reason: str


@dataclass(frozen=True)
class EventInfo:
    """What the HTTP function logs about an event, whatever became of it."""

    type: str | None = None
    event_id: str | None = None
    team_id: str | None = None
    channel_id: str | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class StopRequest:
    """The user pressed stop on the agent session of a thread (``agent_session_stopped``)."""

    team_id: str
    channel_id: str
    thread_ts: str
    user_id: str
    event_ts: str  # when it was pressed: it stops the work asked for before, not a later question
    streaming_message_ts: tuple[str, ...]  # the streams Slack stopped itself (empty: none ran)


Decision = UrlVerification | Ignored | MessageJob | AssistantThreadStartedJob | MessagesTabOpenedJob | StopRequest


def parse(body: bytes) -> tuple[Decision, EventInfo]:
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError included; RecursionError: [[[[...
        raise MalformedEvent("body is not JSON") from None
    if not isinstance(envelope, dict):
        raise MalformedEvent("body is not a JSON object")
    kind = envelope.get("type")
    if kind == "url_verification":
        challenge = envelope.get("challenge")
        if not isinstance(challenge, str) or not challenge:
            raise MalformedEvent("url_verification has no challenge")
        return UrlVerification(challenge), EventInfo(type=kind)
    if kind != "event_callback":
        return Ignored(f"envelope type {str(kind)[:40]}"), EventInfo(type=_text(kind))
    event = envelope.get("event")
    if not isinstance(event, dict):
        raise MalformedEvent("event_callback has no event object")
    event_id = _required(envelope, "event_id", "event_callback")
    team_id = _required(envelope, "team_id", "event_callback")
    # JSON's NaN and Infinity, or an int past float's range (400 digits), fit no job payload.
    asked_at = finite_number(envelope.get("event_time"))
    if asked_at is None:
        raise MalformedEvent("event_callback has no event_time")
    event_type = _text(event.get("type"))
    info = EventInfo(
        type=event_type,
        event_id=event_id,
        team_id=team_id,
        channel_id=_text(event.get("channel")),
        user_id=_text(event.get("user")),
    )
    if event_type == "assistant_thread_started":
        return _assistant_thread_started(event, event_id, asked_at, team_id), info
    if event_type == "agent_session_stopped":
        return _stop_request(event, team_id), info
    if event_type == "app_home_opened":
        return _app_home_opened(event, event_id, asked_at, team_id), info
    if event_type == "app_mention" or (event_type == "message" and event.get("channel_type") == "im"):
        return _message(envelope, event, event_id, asked_at, team_id), info
    return Ignored(f"event type {str(event_type)[:40]}"), info


def _message(
    envelope: dict[str, Any], event: dict[str, Any], event_id: str, asked_at: float, team_id: str
) -> MessageJob | Ignored:
    # The bot's own streamed answers come back as message.im events with a bot_id and no subtype.
    if event.get("bot_id"):
        return Ignored("bot message")
    subtype = event.get("subtype")
    # A subtype that is not a string (a list cannot even be looked up in a set) is no message either.
    if subtype is not None and not (isinstance(subtype, str) and subtype in ANSWERED_SUBTYPES):
        return Ignored(f"subtype {str(subtype)[:40]}")
    bot_user_id = _bot_user_id(envelope)
    user = _required(event, "user", "event")
    if user == bot_user_id:
        return Ignored("own message")
    thread_ts = event.get("thread_ts")
    if thread_ts is not None and not (isinstance(thread_ts, str) and thread_ts):
        raise MalformedEvent("event.thread_ts is not a string")
    if thread_ts is not None and not is_slack_ts(thread_ts):
        raise MalformedEvent("event.thread_ts is not a Slack timestamp")
    text = event.get("text")
    channel = _required(event, "channel", "event")
    return MessageJob(
        id=event_id,
        asked_at=asked_at,
        # In a Slack Connect channel the asker's team is not the envelope's; streams go to the asker.
        team_id=_text(event.get("user_team")) or _text(event.get("team")) or team_id,
        channel_id=channel,
        user_id=user,
        # JSON may carry a lone surrogate ("\ud83d"), which no UTF-8 encoder downstream accepts.
        text=text.encode("utf-8", "replace").decode("utf-8") if isinstance(text, str) else "",
        ts=_timestamp(event, "ts", "event"),
        thread_ts=thread_ts,
        bot_user_id=bot_user_id,
    )


def _assistant_thread_started(
    event: dict[str, Any], event_id: str, asked_at: float, team_id: str
) -> AssistantThreadStartedJob:
    thread = event.get("assistant_thread")
    if not isinstance(thread, dict):
        raise MalformedEvent("assistant_thread_started has no assistant_thread")
    return AssistantThreadStartedJob(
        id=event_id,
        asked_at=asked_at,
        team_id=team_id,
        channel_id=_required(thread, "channel_id", "assistant_thread"),
        thread_ts=_timestamp(thread, "thread_ts", "assistant_thread"),
        user_id=_required(thread, "user_id", "assistant_thread"),
    )


def _stop_request(event: dict[str, Any], team_id: str) -> StopRequest:
    streams = event.get("streaming_message_ts", [])
    if not isinstance(streams, list) or not all(is_slack_ts(ts) for ts in streams):
        raise MalformedEvent("event.streaming_message_ts is not a list of Slack timestamps")
    return StopRequest(
        team_id=team_id,
        channel_id=_required(event, "channel", "event"),
        thread_ts=_timestamp(event, "thread_ts", "event"),
        user_id=_required(event, "user", "event"),
        event_ts=_timestamp(event, "event_ts", "event"),
        streaming_message_ts=tuple(streams),
    )


def _app_home_opened(
    event: dict[str, Any], event_id: str, asked_at: float, team_id: str
) -> MessagesTabOpenedJob | Ignored:
    tab = event.get("tab")
    if tab != "messages":  # the Home tab (or a tab Slack adds later): nothing to pin there
        return Ignored(f"app_home_opened tab {str(tab)[:40]}")
    return MessagesTabOpenedJob(
        id=event_id,
        asked_at=asked_at,
        team_id=team_id,
        channel_id=_required(event, "channel", "app_home_opened"),
        user_id=_required(event, "user", "app_home_opened"),
    )


def _bot_user_id(envelope: dict[str, Any]) -> str:
    authorizations = envelope.get("authorizations")
    first = authorizations[0] if isinstance(authorizations, list) and authorizations else None
    user_id = first.get("user_id") if isinstance(first, dict) else None
    if not isinstance(user_id, str) or not user_id:
        raise MalformedEvent("event_callback has no authorizations[0].user_id")
    return user_id


def _required(container: dict[str, Any], name: str, where: str) -> str:
    value = container.get(name)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"{where} has no {name}")
    return value


def _timestamp(container: dict[str, Any], name: str, where: str) -> str:
    # The worker reads a ts as numbers (history orders messages by it): "Ev0FUZZ" would end
    # its job in the catch-all, with no answer to anyone.
    value = _required(container, name, where)
    if not is_slack_ts(value):
        raise MalformedEvent(f"{where}.{name} is not a Slack timestamp")
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
