"""Jobs: one typed record per kind, tagged in the payload, validated on the way in."""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest

from chalicelib import jobs
from chalicelib.jobs import AssistantThreadStartedJob, MessageJob, SlashCommandJob

SLASH = SlashCommandJob(
    id="b3c1",
    asked_at=1700000000.0,
    text="hi",
    response_url="https://hooks.slack.com/x",
    user_id="U1",
    channel_id="C1",
    team_id="T1",
)
MESSAGE = MessageJob(
    id="Ev1",
    asked_at=1700000000.0,
    team_id="T1",
    channel_id="C1",
    user_id="U1",
    text="<@UBOT> hi",
    ts="1700000000.000200",
    thread_ts="1700000000.000100",
    bot_user_id="UBOT",
)
STARTED = AssistantThreadStartedJob(
    id="Ev2", asked_at=1700000000.0, team_id="T1", channel_id="D1", thread_ts="1700000000.000300", user_id="U1"
)


@pytest.mark.parametrize("job", [SLASH, MESSAGE, STARTED])
def test_every_kind_survives_the_trip_through_json(job: jobs.Job) -> None:
    payload = json.loads(json.dumps(job.to_payload()))
    assert payload["kind"] == job.kind
    assert jobs.from_payload(payload) == job


def test_a_message_is_claimed_by_its_event_and_by_the_message_itself() -> None:
    # Slack has delivered one message twice under two event_ids: channel + ts catches that.
    assert MESSAGE.claim_keys == ("Ev1", "C1:1700000000.000200")
    assert SLASH.claim_keys == ("b3c1",)


def test_where_a_message_is_answered() -> None:
    assert MESSAGE.reply_thread_ts == "1700000000.000100" and MESSAGE.in_thread
    starts_thread = jobs.from_payload({**MESSAGE.to_payload(), "thread_ts": None})
    assert isinstance(starts_thread, MessageJob)
    assert starts_thread.reply_thread_ts == starts_thread.ts and not starts_thread.in_thread
    # The root of a thread carries thread_ts == ts: it has no earlier messages either.
    root = jobs.from_payload({**MESSAGE.to_payload(), "thread_ts": MESSAGE.ts})
    assert isinstance(root, MessageJob) and not root.in_thread


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("text", "payload is not an object"),
        ({"text": "hi"}, "unknown kind 'None'"),
        ({**SLASH.to_payload(), "kind": "dance"}, "unknown kind 'dance'"),
        ({**SLASH.to_payload(), "response_url": None}, "'response_url' is missing or not a string"),
        ({**SLASH.to_payload(), "text": 5}, "'text' is missing or not a string"),
        ({**SLASH.to_payload(), "response_url": ""}, "'response_url' is empty"),
        ({**MESSAGE.to_payload(), "ts": ""}, "'ts' is empty"),
        ({**SLASH.to_payload(), "text": ""}, "'text' is empty"),
        ({k: v for k, v in STARTED.to_payload().items() if k != "thread_ts"}, "'thread_ts' is missing"),
    ],
)
def test_bad_payloads_are_refused(payload: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        jobs.from_payload(payload)


@pytest.mark.parametrize("job", [SLASH, MESSAGE, STARTED])
def test_the_payload_is_every_field_in_order_after_the_kind(job: jobs.Job) -> None:
    expected = {"kind": job.kind, **{f.name: getattr(job, f.name) for f in dataclasses.fields(job)}}
    assert list(job.to_payload().items()) == list(expected.items())


def test_a_new_id_is_a_uuid4_in_its_usual_form() -> None:
    ids = {jobs.new_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        parsed = uuid.UUID(value)
        assert (str(parsed), parsed.version, parsed.variant) == (value, 4, uuid.RFC_4122)
