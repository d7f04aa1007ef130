"""Events API parsing: what is answered, what is ignored, and what is refused as malformed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.jobs import AssistantThreadStartedJob, MessageJob, MessagesTabOpenedJob
from chalicelib.slack.events import Ignored, MalformedEvent, StopRequest, UrlVerification, parse

BOT = "UBOT0001"


def envelope(content: Any, **overrides: Any) -> bytes:
    body = {
        "token": "deprecated",
        "team_id": "T1",
        "api_app_id": "A1",
        "event": content,
        "type": "event_callback",
        "event_id": "Ev1",
        "event_time": 1700000000,
        "authorizations": [{"enterprise_id": None, "team_id": "T1", "user_id": BOT, "is_bot": True}],
        **overrides,
    }
    return json.dumps(body).encode()


MENTION = {"type": "app_mention", "user": "U1", "text": f"<@{BOT}> hi", "ts": "1.000200", "channel": "C1"}
DM = {"type": "message", "channel_type": "im", "user": "U1", "text": "hi", "ts": "1.000300", "channel": "D1"}


def test_url_verification_echoes_the_challenge() -> None:
    decision, _ = parse(json.dumps({"type": "url_verification", "challenge": "abc", "token": "t"}).encode())
    assert decision == UrlVerification("abc")


def test_a_mention_becomes_a_message_job() -> None:
    job, info = parse(envelope(MENTION))
    assert job == MessageJob(
        id="Ev1",
        asked_at=1700000000.0,
        team_id="T1",
        channel_id="C1",
        user_id="U1",
        text=f"<@{BOT}> hi",
        ts="1.000200",
        thread_ts=None,
        bot_user_id=BOT,
    )
    assert (info.type, info.event_id, info.channel_id, info.user_id) == ("app_mention", "Ev1", "C1", "U1")


def test_a_dm_in_a_thread_keeps_its_thread_and_the_askers_team() -> None:
    job, _ = parse(envelope({**DM, "thread_ts": "1.000100", "user_team": "T2"}))
    assert isinstance(job, MessageJob)
    assert (job.channel_id, job.thread_ts, job.team_id) == ("D1", "1.000100", "T2")


@pytest.mark.parametrize("subtype", ["file_share", "thread_broadcast"])
def test_messages_with_answered_subtypes_are_jobs(subtype: str) -> None:
    assert isinstance(parse(envelope({**DM, "subtype": subtype}))[0], MessageJob)


def test_assistant_thread_started_becomes_a_job() -> None:
    event = {
        "type": "assistant_thread_started",
        "assistant_thread": {"user_id": "U1", "channel_id": "D1", "thread_ts": "1.000500", "context": {}},
        "event_ts": "1.000501",
    }
    job, _ = parse(envelope(event))
    assert job == AssistantThreadStartedJob(
        id="Ev1", asked_at=1700000000.0, team_id="T1", channel_id="D1", thread_ts="1.000500", user_id="U1"
    )


HOME_OPENED = {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "messages", "event_ts": "1.000600"}


def test_the_messages_tab_opened_becomes_a_prompts_job_in_no_thread() -> None:
    job, info = parse(envelope(HOME_OPENED))
    assert job == MessagesTabOpenedJob(id="Ev1", asked_at=1700000000.0, team_id="T1", channel_id="D1", user_id="U1")
    assert isinstance(job, MessagesTabOpenedJob) and job.thread_ts is None  # pinned atop the tab
    # Every open sends the event: the claim on the user's prompts key drops the ones soon after.
    assert job.claim_keys == ("Ev1", "prompts:T1:U1")
    assert (info.type, info.channel_id, info.user_id) == ("app_home_opened", "D1", "U1")


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({**HOME_OPENED, "tab": "home", "view": {"type": "home"}}, "app_home_opened tab home"),
        ({**HOME_OPENED, "tab": None}, "app_home_opened tab None"),
        ({**HOME_OPENED, "tab": ["messages"]}, "app_home_opened tab ['messages']"),
    ],
)
def test_other_tabs_are_ignored(event: dict[str, Any], reason: str) -> None:
    assert parse(envelope(event))[0] == Ignored(reason)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({**DM, "bot_id": "B1"}, "bot message"),  # our own streamed answers come back like this
        ({**MENTION, "bot_id": "B2", "subtype": "bot_message"}, "bot message"),
        ({**DM, "subtype": "message_changed"}, "subtype message_changed"),
        ({**DM, "subtype": "message_deleted"}, "subtype message_deleted"),
        ({**DM, "user": BOT}, "own message"),
        ({**DM, "channel_type": "channel"}, "event type message"),  # not a DM
        ({"type": "reaction_added", "user": "U1"}, "event type reaction_added"),
    ],
)
def test_ignored_events(event: dict[str, Any], reason: str) -> None:
    assert parse(envelope(event))[0] == Ignored(reason)


def test_other_envelope_types_are_ignored() -> None:
    assert parse(json.dumps({"type": "app_rate_limited", "minute_rate_limited": 1}).encode())[0] == Ignored(
        "envelope type app_rate_limited"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[1, 2]", "body is not a JSON object"),
        (b"[" * 100_000, "body is not JSON"),  # json's RecursionError, a 500 before the fix
        (json.dumps({"type": "url_verification"}).encode(), "url_verification has no challenge"),
        (envelope(MENTION, event="x"), "event_callback has no event object"),
        (envelope(MENTION, event_id=None), "event_callback has no event_id"),
        (envelope(MENTION, team_id=7), "event_callback has no team_id"),
        (envelope(MENTION, authorizations=[]), r"no authorizations\[0\].user_id"),
        (envelope({**MENTION, "ts": None}), "event has no ts"),
        (envelope({**MENTION, "channel": ""}), "event has no channel"),
        (envelope({k: v for k, v in MENTION.items() if k != "user"}), "event has no user"),
        (envelope({**MENTION, "thread_ts": 5}), "thread_ts is not a string"),
        (envelope({"type": "assistant_thread_started"}), "has no assistant_thread"),
        (envelope({"type": "assistant_thread_started", "assistant_thread": {"user_id": "U"}}), "no channel_id"),
        (envelope({**HOME_OPENED, "channel": None}), "app_home_opened has no channel"),
        (envelope({**HOME_OPENED, "user": 7}), "app_home_opened has no user"),
    ],
)
def test_malformed_envelopes_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        parse(body)


STOP = {
    "type": "agent_session_stopped",
    "channel": "C1",
    "thread_ts": "1.000200",
    "user": "U1",
    "streaming_message_ts": ["1.000400"],
    "event_ts": "1.000500",
}


def test_a_stop_button_becomes_a_stop_request() -> None:
    decision, info = parse(envelope(STOP))
    assert decision == StopRequest(
        team_id="T1",
        channel_id="C1",
        thread_ts="1.000200",
        user_id="U1",
        event_ts="1.000500",
        streaming_message_ts=("1.000400",),
    )
    assert (info.type, info.channel_id, info.user_id) == ("agent_session_stopped", "C1", "U1")


def test_a_stop_with_no_stream_running_has_none_listed() -> None:
    for event in ({**STOP, "streaming_message_ts": []}, {k: v for k, v in STOP.items() if k != "streaming_message_ts"}):
        decision, _ = parse(envelope(event))
        assert isinstance(decision, StopRequest) and decision.streaming_message_ts == ()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"thread_ts": None}, "event has no thread_ts"),
        ({"thread_ts": "soon"}, "event.thread_ts is not a Slack timestamp"),
        ({"event_ts": None}, "event has no event_ts"),
        ({"channel": 7}, "event has no channel"),
        ({"user": ""}, "event has no user"),
        ({"streaming_message_ts": "1.000400"}, "event.streaming_message_ts is not a list of Slack timestamps"),
        ({"streaming_message_ts": [None]}, "event.streaming_message_ts is not a list of Slack timestamps"),
    ],
)
def test_a_malformed_stop_is_refused_with_a_reason(change: dict[str, Any], reason: str) -> None:
    event = {name: value for name, value in {**STOP, **change}.items() if value is not None}
    with pytest.raises(MalformedEvent) as raised:
        parse(envelope(event))
    assert str(raised.value) == reason
