"""What Slack sends us: slash-command forms, Events API envelopes, and their v0 signatures.

Contract (pure functions, standard library only, never imports ``chalicelib``):

- ``command_form(text, response_url, **overrides) -> bytes``: the urlencoded body Slack POSTs
  for a slash command, fields in Slack's order; an override of ``None`` leaves a field out.
- Events API bodies, as the JSON bytes Slack POSTs: ``mention_event`` (``app_mention``),
  ``dm_event`` (``message`` with ``channel_type`` ``im``), ``assistant_message_event`` (a DM
  message in a thread, as the assistant pane sends it), ``assistant_thread_started_event``,
  ``agent_session_stopped_event`` (the user pressed stop on the agent session of a thread),
  ``app_home_opened_event`` (``tab`` ``messages`` or ``home``),
  ``url_verification``, and the generic ``event_callback(event)``. ``event_envelope`` is the
  same envelope as a dict. Each envelope has ``type`` ``event_callback``, ``team_id``,
  ``api_app_id``, a unique ``event_id`` (``Ev`` + random, unless given), ``event_time`` and
  ``authorizations: [{"user_id": <bot user id>, "is_bot": true, ...}]``, which is where a bot
  learns its own user id. Event builders take ``**fields`` to add or replace event fields
  (``None`` removes one), e.g. ``bot_id="B1"`` or ``subtype="message_changed"``.
- ``sign(secret, timestamp, body) -> "v0=<hex>"``: HMAC-SHA256 of ``v0:{timestamp}:{body}``.
- ``signed_headers(secret, body, timestamp=None, content_type=FORM) -> dict``: the headers
  Slack sends with a request (use ``content_type=JSON`` for events); ``timestamp`` defaults
  to now. ``retry_num`` adds Slack's retry headers.
- Interactivity: ``feedback_payload(value, message_ts, response_url, **fields)`` is the
  ``block_actions`` payload of a click on a ``feedback_buttons`` button, and
  ``interaction_form(payload)`` the form body (``payload=<JSON>``) Slack POSTs it in.
- ``new_ts() -> "1700000000.000100"``-like strings, unique and increasing within the process
  (microseconds since the epoch, bumped past the last one handed out).

Every id and token here is a visible fake; nothing resembles a real credential.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlencode

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"

TEAM_ID = "T0001"
TEAM_DOMAIN = "example"
CHANNEL_ID = "C2147483705"
CHANNEL_NAME = "test"
DM_CHANNEL_ID = "D2147483705"
USER_ID = "U2147483697"
USER_NAME = "steve"
API_APP_ID = "A123456"
BOT_USER_ID = "UBOT0001"
COMMAND = "/mameka"
VERIFICATION_TOKEN = "deprecated-verification-token"  # Slack still sends it; nothing should check it
TRIGGER_ID = "13345224609.738474920.8088930838d88f008e0"


# --- slash commands ---------------------------------------------------------------------------------------------------


def command_form(text: str, response_url: str, **overrides: str | None) -> bytes:
    """The body Slack POSTs for ``/mameka text``; ``overrides`` replace fields, ``None`` drops one."""
    form: dict[str, str | None] = {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": CHANNEL_ID,
        "channel_name": CHANNEL_NAME,
        "user_id": USER_ID,
        "user_name": USER_NAME,
        "command": COMMAND,
        "text": text,
        "api_app_id": API_APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": TRIGGER_ID,
    }
    form.update(overrides)  # a new field goes last; an existing one keeps its place
    return urlencode({name: value for name, value in form.items() if value is not None}).encode()


# --- timestamps and ids -----------------------------------------------------------------------------------------------

_ts_lock = threading.Lock()
_last_micros = 0


def new_ts() -> str:
    """A Slack message timestamp ("seconds.micros"), unique and increasing in this process."""
    global _last_micros
    with _ts_lock:
        _last_micros = max(_last_micros + 1, time.time_ns() // 1000)
        micros = _last_micros
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def new_event_id() -> str:
    return "Ev" + uuid.uuid4().hex[:10].upper()


# --- Events API -------------------------------------------------------------------------------------------------------


def event_envelope(
    event: dict[str, Any],
    *,
    team_id: str = TEAM_ID,
    api_app_id: str = API_APP_ID,
    bot_user_id: str = BOT_USER_ID,
    event_id: str | None = None,
    event_time: int | None = None,
) -> dict[str, Any]:
    """The ``event_callback`` envelope around ``event``, as a dict."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or new_event_id(),
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + uuid.uuid4().hex,
    }


def event_callback(
    event: dict[str, Any],
    *,
    team_id: str = TEAM_ID,
    api_app_id: str = API_APP_ID,
    bot_user_id: str = BOT_USER_ID,
    event_id: str | None = None,
    event_time: int | None = None,
) -> bytes:
    """The JSON body Slack POSTs for ``event``."""
    envelope = event_envelope(
        event,
        team_id=team_id,
        api_app_id=api_app_id,
        bot_user_id=bot_user_id,
        event_id=event_id,
        event_time=event_time,
    )
    return json.dumps(envelope, ensure_ascii=False).encode()


def _with_fields(event: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    event.update(fields)
    return {name: value for name, value in event.items() if value is not None}


def mention_event(
    text: str,
    *,
    channel: str = CHANNEL_ID,
    user: str = USER_ID,
    ts: str | None = None,
    thread_ts: str | None = None,
    bot_user_id: str = BOT_USER_ID,
    event_id: str | None = None,
    team_id: str = TEAM_ID,
    **fields: Any,
) -> bytes:
    """An ``app_mention``: ``text`` gets ``<@bot_user_id> `` in front unless it mentions the bot already."""
    if f"<@{bot_user_id}" not in text:
        text = f"<@{bot_user_id}> {text}"
    ts = ts or new_ts()
    event = {
        "client_msg_id": str(uuid.uuid4()),
        "type": "app_mention",
        "text": text,
        "user": user,
        "ts": ts,
        "team": team_id,
        "thread_ts": thread_ts,
        "channel": channel,
        "event_ts": ts,
    }
    return event_callback(_with_fields(event, fields), team_id=team_id, bot_user_id=bot_user_id, event_id=event_id)


def dm_event(
    text: str,
    *,
    channel: str = DM_CHANNEL_ID,
    user: str = USER_ID,
    ts: str | None = None,
    thread_ts: str | None = None,
    bot_user_id: str = BOT_USER_ID,
    event_id: str | None = None,
    team_id: str = TEAM_ID,
    **fields: Any,
) -> bytes:
    """A ``message`` in the bot's DM (``message.im``): ``channel_type`` ``im``, channel ``D...``."""
    ts = ts or new_ts()
    event = {
        "client_msg_id": str(uuid.uuid4()),
        "type": "message",
        "text": text,
        "user": user,
        "ts": ts,
        "team": team_id,
        "thread_ts": thread_ts,
        "channel": channel,
        "event_ts": ts,
        "channel_type": "im",
    }
    return event_callback(_with_fields(event, fields), team_id=team_id, bot_user_id=bot_user_id, event_id=event_id)


def assistant_message_event(
    text: str,
    *,
    thread_ts: str | None = None,
    channel: str = DM_CHANNEL_ID,
    user: str = USER_ID,
    ts: str | None = None,
    bot_user_id: str = BOT_USER_ID,
    event_id: str | None = None,
    team_id: str = TEAM_ID,
    **fields: Any,
) -> bytes:
    """What the assistant pane sends when the user writes: a DM ``message`` inside a thread.

    Without ``thread_ts`` a new thread is made up, older than the message.
    """
    thread_ts = thread_ts or new_ts()
    return dm_event(
        text,
        channel=channel,
        user=user,
        ts=ts,
        thread_ts=thread_ts,
        bot_user_id=bot_user_id,
        event_id=event_id,
        team_id=team_id,
        **fields,
    )


def assistant_thread_started_event(
    *,
    channel: str = DM_CHANNEL_ID,
    user: str = USER_ID,
    thread_ts: str | None = None,
    context_channel_id: str | None = CHANNEL_ID,
    bot_user_id: str = BOT_USER_ID,
    event_id: str | None = None,
    team_id: str = TEAM_ID,
    **fields: Any,
) -> bytes:
    """``assistant_thread_started``: the user opened the assistant pane (a new thread in the bot's DM)."""
    context: dict[str, Any] = {"team_id": team_id, "enterprise_id": None}
    if context_channel_id is not None:
        context["channel_id"] = context_channel_id
    event = {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": user,
            "context": context,
            "channel_id": channel,
            "thread_ts": thread_ts or new_ts(),
        },
        "event_ts": new_ts(),
    }
    return event_callback(_with_fields(event, fields), team_id=team_id, bot_user_id=bot_user_id, event_id=event_id)


def agent_session_stopped_event(
    thread_ts: str,
    *,
    channel: str = CHANNEL_ID,
    user: str = USER_ID,
    streaming_message_ts: Any = None,
    event_ts: str | None = None,
    bot_user_id: str = BOT_USER_ID,
    event_id: str | None = None,
    team_id: str = TEAM_ID,
    **fields: Any,
) -> bytes:
    """``agent_session_stopped``: the user pressed stop in ``thread_ts``; ``streaming_message_ts``
    lists the streams Slack stopped (``[]`` when none ran); ``event_ts`` defaults to now."""
    event = {
        "type": "agent_session_stopped",
        "channel": channel,
        "thread_ts": thread_ts,
        "user": user,
        "streaming_message_ts": [] if streaming_message_ts is None else streaming_message_ts,
        "event_ts": event_ts or new_ts(),
    }
    return event_callback(_with_fields(event, fields), team_id=team_id, bot_user_id=bot_user_id, event_id=event_id)


def app_home_opened_event(
    *,
    tab: str = "messages",
    channel: str = DM_CHANNEL_ID,
    user: str = USER_ID,
    bot_user_id: str = BOT_USER_ID,
    event_id: str | None = None,
    team_id: str = TEAM_ID,
    **fields: Any,
) -> bytes:
    """``app_home_opened``: the user opened the bot's Messages tab (``tab="messages"``) or Home tab."""
    event: dict[str, Any] = {
        "type": "app_home_opened",
        "user": user,
        "channel": channel,
        "tab": tab,
        "event_ts": new_ts(),
    }
    if tab == "home":
        event["view"] = {"id": "V0HOME", "type": "home", "team_id": team_id}  # Slack adds the tab's view
    return event_callback(_with_fields(event, fields), team_id=team_id, bot_user_id=bot_user_id, event_id=event_id)


def url_verification(challenge: str) -> bytes:
    """The body Slack POSTs when the Request URL is set, to check that we echo ``challenge``."""
    return json.dumps({"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}).encode()


# --- interactivity --------------------------------------------------------------------------------------------------


def feedback_payload(
    value: str,
    message_ts: str,
    response_url: str,
    *,
    channel_id: str = CHANNEL_ID,
    user_id: str = USER_ID,
    team_id: str = TEAM_ID,
    **fields: Any,
) -> dict[str, Any]:
    """The ``block_actions`` payload Slack sends when a user clicks a ``feedback_buttons`` button
    whose ``value`` is ``value``, under the bot's message ``message_ts``. ``fields`` add or
    replace top-level fields (``None`` removes one)."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": USER_NAME, "name": USER_NAME, "team_id": team_id},
        "api_app_id": API_APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel_id, "is_ephemeral": False},
        "trigger_id": TRIGGER_ID,
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": CHANNEL_NAME},
        "message": {"type": "message", "user": BOT_USER_ID, "ts": message_ts, "text": "an answer"},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "type": "feedback_buttons",
                "action_id": "answer_feedback",
                "block_id": "fb",
                "value": value,
                "text": {"type": "plain_text", "text": "Good answer"},
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return _with_fields(payload, fields)


def interaction_form(payload: dict[str, Any] | str) -> bytes:
    """The form body Slack POSTs to the interactivity Request URL: ``payload=<JSON>``."""
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return urlencode({"payload": text}).encode()


# --- signing ----------------------------------------------------------------------------------------------------------


def sign(secret: str, timestamp: str | int, body: bytes) -> str:
    """Slack's v0 signature of ``body`` sent at ``timestamp`` (seconds since the epoch)."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    secret: str,
    body: bytes,
    timestamp: int | str | None = None,
    content_type: str = FORM,
    *,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
) -> dict[str, str]:
    """The headers Slack sends with ``body``, signed with ``secret`` at ``timestamp`` (default: now).

    ``retry_num`` (1 to 3) marks a redelivery, with ``X-Slack-Retry-Reason: retry_reason``.
    """
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": content_type,
        "User-Agent": USER_AGENT,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign(secret, ts, body),
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return headers
