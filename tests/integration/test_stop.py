"""Slack's stop button, end to end in one process: a mention through the events route, then its stop.

Locally (``chalice.test.Client``: both routes and the worker thread in one process) the stop
reaches the running answer in memory; on the Lambda path (moto's DynamoDB) the HTTP function
writes a stop mark and the worker's poll reads it. Each time the fake LLM drips a slow answer,
the fake Slack stops the thread's streams as Slack does, and the test delivers the
``agent_session_stopped`` event. The user must then see nothing more of the answer, one
"Stopped.", and the LLM's connection must be closed (no more tokens paid for).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from app import app
from chalicelib import gateway, stops, worker
from chalicelib.deadline import Deadline
from chalicelib.slack import events
from devkit import slack_requests
from devkit.fake_openai import StreamReply, split_deltas
from devkit.fake_slack_api import FakeSlackAPI
from devkit.http_fake import FakeServer
from tests.conftest import ROOT, signed_headers, wait_for_local_jobs
from tests.integration.test_claims_dynamodb import create_table

CHANNEL = slack_requests.CHANNEL_ID
TEXT = "東京の朝は静かで、川沿いの散歩道には桜の木が並んでいます。" * 8
STOPPED = "Stopped."
LOCAL_BOUND = 1.0  # chalice local: the stop reaches the answer at once
LAMBDA_BOUND = stops.POLL_SECONDS + 1.0  # Lambda: the next poll, plus one read


@pytest.fixture
def client(conversation_env: dict[str, str]) -> Iterator[Client]:
    with Client(app, stage_name="dev", project_dir=str(ROOT)) as client:
        yield client


def post_event(client: Client, body: bytes) -> Any:
    return client.http.post("/slack/events", headers=signed_headers(body, content_type=slack_requests.JSON), body=body)


def slow_reply() -> StreamReply:
    """About 6 s of answer, a piece every 0.15 s: long enough to be stopped in the middle."""
    return StreamReply(deltas=split_deltas(TEXT, 40), delay=0.15)


def log_lines(output: str, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def wait_for_text(slack_api: FakeSlackAPI, ts: str) -> str:
    """Wait until the answer's stream shows text past its first append; returns the stream's ts."""
    slack_api.wait_for("chat.appendStream", timeout=30)
    [start] = [call for call in slack_api.calls_to("chat.startStream") if call.params["thread_ts"] == ts]
    return str(start.response["ts"])


def assert_stopped(
    slack_api: FakeSlackAPI, reply: StreamReply, ts: str, stream_ts: str, shown: str, stopped_at: float, bound: float
) -> None:
    """The LLM's connection was closed within ``bound``; the user saw nothing more, then one "Stopped."."""
    assert reply.disconnected.wait(bound + 5), f"the LLM's stream was not closed ({reply.outcome})"
    assert reply.ended_at is not None and reply.ended_at - stopped_at < bound, reply.ended_at - stopped_at
    assert len(reply.sent_text) < len(TEXT)
    assert slack_api.text_of(CHANNEL, stream_ts) == shown  # not one character more
    after = [call for call in slack_api.calls if call.at > stopped_at]
    assert not [
        call
        for call in after
        if call.method in ("chat.startStream", "chat.update") or (call.ok and call.method == "chat.appendStream")
    ]
    [notice] = slack_api.wait_for("chat.postMessage", timeout=bound + 5)
    texts = [message.text for message in slack_api.bot_messages(CHANNEL, ts)]
    assert texts == [shown, STOPPED]
    assert notice.params["text"] == STOPPED  # a plain line, no warning sign
    assert slack_api.status(CHANNEL, ts) == ""  # "is thinking…" is gone
    assert_session_ended(slack_api, ts, bound)


def assert_session_ended(slack_api: FakeSlackAPI, ts: str, bound: float = 0.0) -> None:
    """The thread's agent session left "processing" (its stop button) for "active", once.

    The session ends after "Stopped." is posted: wait for that last call, up to ``bound``."""
    slack_api.wait_until(
        lambda: getattr(slack_api.session(CHANNEL, ts), "status", None) != "processing",
        timeout=bound + 5,
        what="the agent session to leave processing",
    )
    session = slack_api.session(CHANNEL, ts)
    assert session is not None and session.statuses == ["processing", "active"], session


# --- chalice local: one process ----------------------------------------------------------------------------------


def test_a_stop_pressed_mid_answer_closes_the_llm_and_says_stopped_once(
    client: Client, slack_api: FakeSlackAPI, openai_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    reply = slow_reply()
    openai_server.script = [reply]
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event("長い話をして", ts=ts)
    slack_api.add_event(body)
    assert post_event(client, body).status_code == 200
    stream_ts = wait_for_text(slack_api, ts)

    stopped_at = time.monotonic()
    listed = slack_api.stop_session(CHANNEL, ts)  # Slack stops the streams, then sends the event
    shown = slack_api.text_of(CHANNEL, stream_ts)
    stop = slack_requests.agent_session_stopped_event(ts, streaming_message_ts=listed)
    response = post_event(client, stop)
    assert (response.status_code, response.json_body) == (200, {})
    assert listed == [stream_ts] and shown

    assert_stopped(slack_api, reply, ts, stream_ts, shown or "", stopped_at, LOCAL_BOUND)
    wait_for_local_jobs()
    output = capsys.readouterr().out
    [answer] = log_lines(output, "answer")
    assert answer["outcome"] == "stopped" and answer["attempts"] == 1
    outcomes = [line["outcome"] for line in log_lines(output, "slack_event")]
    assert outcomes == ["dispatched", "stop_recorded"]
    assert len(openai_server.received) == 1  # not asked again


def test_a_stop_before_the_worker_starts_stops_it_at_its_start(
    client: Client, slack_api: FakeSlackAPI, openai_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event("hi", ts=ts)
    slack_api.add_event(body)
    # The stop's event (pressed after the question) is handled before the question's.
    assert post_event(client, slack_requests.agent_session_stopped_event(ts)).status_code == 200
    assert post_event(client, body).status_code == 200
    wait_for_local_jobs()

    assert openai_server.received == []
    assert [message.text for message in slack_api.bot_messages(CHANNEL, ts)] == [STOPPED]
    assert slack_api.status(CHANNEL, ts) == ""
    assert_session_ended(slack_api, ts)
    [answer] = log_lines(capsys.readouterr().out, "answer")
    assert (answer["outcome"], answer["attempts"]) == ("stopped", 0)


def test_a_stop_pressed_before_a_later_question_in_the_thread_does_not_stop_it(
    client: Client, slack_api: FakeSlackAPI, openai_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    root = slack_requests.new_ts()
    slack_api.add_message(CHANNEL, "the thread", ts=root)
    pressed = slack_requests.new_ts()
    assert post_event(client, slack_requests.agent_session_stopped_event(root, event_ts=pressed)).status_code == 200
    ts = slack_requests.new_ts()  # asked after the stop, in the same thread
    body = slack_requests.mention_event("and now?", ts=ts, thread_ts=root)
    slack_api.add_event(body)
    assert post_event(client, body).status_code == 200
    wait_for_local_jobs()

    texts = [message.text for message in slack_api.bot_messages(CHANNEL, root)]
    assert texts == [f"**Answer** to: <@{slack_requests.USER_ID}>: and now?"]
    [answer] = log_lines(capsys.readouterr().out, "answer")
    assert answer["outcome"] == "answered"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"user": ""}, "event has no user"),
        ({"streaming_message_ts": "1700000000.000100"}, "event.streaming_message_ts is not a list of Slack timestamps"),
        ({"event_ts": "now"}, "event.event_ts is not a Slack timestamp"),
    ],
)
def test_a_malformed_stop_is_a_clear_400(
    client: Client, openai_server: FakeServer, fields: dict[str, Any], error: str
) -> None:
    body = slack_requests.agent_session_stopped_event(slack_requests.new_ts(), **fields)
    response = post_event(client, body)
    assert (response.status_code, response.json_body) == (400, {"error": error})


def test_a_stop_from_outside_the_allowed_lists_is_not_recorded(
    client: Client, openai_server: FakeServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALLOWED_USER_IDS", "USOMEONEELSE")
    ts = slack_requests.new_ts()
    assert post_event(client, slack_requests.agent_session_stopped_event(ts)).status_code == 200
    with stops.store(None).watching(CHANNEL, ts, ts) as signal:  # the process's store, as the gateway's
        assert not signal.is_set()
    [line] = log_lines(capsys.readouterr().out, "slack_event")
    assert line["outcome"] == "denied"


# --- the Lambda path: the stop mark in DynamoDB (moto) ----------------------------------------------------------


TABLE = "mameka-test-claims"


@pytest.fixture
def lambda_env(conversation_env: dict[str, str]) -> Iterator[dict[str, str]]:
    with mock_aws():
        create_table(boto3.client("dynamodb", region_name="us-east-1"))
        yield {**conversation_env, "AWS_LAMBDA_FUNCTION_NAME": "mameka-test", "IDEMPOTENCY_TABLE": TABLE}


def handle(env: dict[str, str], body: bytes) -> tuple[int, Any]:
    headers = {k.lower(): v for k, v in signed_headers(body, content_type=slack_requests.JSON).items()}
    return gateway.handle_event(headers, body, env, "req-stop")


def start_worker(env: dict[str, str], body: bytes) -> threading.Thread:
    """The worker function's run, as Lambda would invoke it for the event's job."""
    job, _ = events.parse(body)
    payload = job.to_payload()  # type: ignore[union-attr]
    thread = threading.Thread(target=worker.run, args=(payload, Deadline.in_seconds(60), env))
    thread.start()
    return thread


def stop_items() -> list[dict[str, Any]]:
    items = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=TABLE)["Items"]
    return [item for item in items if item["pk"]["S"].startswith(stops.STOP_PREFIX)]


def test_on_lambda_the_http_function_marks_the_stop_and_the_workers_poll_stops_the_answer(
    lambda_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    reply = slow_reply()
    openai_server.script = [reply]
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event("長い話をして", ts=ts)
    slack_api.add_event(body)
    running = start_worker(lambda_env, body)
    stream_ts = wait_for_text(slack_api, ts)

    stopped_at = time.monotonic()
    listed = slack_api.stop_session(CHANNEL, ts)
    shown = slack_api.text_of(CHANNEL, stream_ts)
    event_ts = slack_requests.new_ts()
    status, message = handle(
        lambda_env, slack_requests.agent_session_stopped_event(ts, streaming_message_ts=listed, event_ts=event_ts)
    )
    assert (status, message) == (200, {})
    [item] = stop_items()
    assert item["pk"]["S"] == f"stop#{CHANNEL}:{ts}" and item["event_ts"]["N"] == event_ts
    assert int(item["expires_at"]["N"]) >= int(item["stopped_at"]["N"]) + stops.STOP_TTL_SECONDS

    assert_stopped(slack_api, reply, ts, stream_ts, shown or "", stopped_at, LAMBDA_BOUND)
    running.join(30)
    assert not running.is_alive()
    [answer] = log_lines(capsys.readouterr().out, "answer")
    assert answer["outcome"] == "stopped"
    assert not [t for t in threading.enumerate() if t.name == "mameka-stop-poll"]  # the poll ended with the answer


def test_on_lambda_a_redelivered_older_stop_does_not_replace_a_newer_mark(lambda_env: dict[str, str]) -> None:
    ts = slack_requests.new_ts()
    older, newer = slack_requests.new_ts(), slack_requests.new_ts()
    assert handle(lambda_env, slack_requests.agent_session_stopped_event(ts, event_ts=newer))[0] == 200
    assert handle(lambda_env, slack_requests.agent_session_stopped_event(ts, event_ts=older))[0] == 200
    [item] = stop_items()
    assert item["event_ts"]["N"] == newer


def test_on_lambda_a_stop_that_cannot_be_written_is_a_503_so_slack_sends_it_again(
    lambda_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**lambda_env, "IDEMPOTENCY_TABLE": "no-such-table"}
    status, message = handle(env, slack_requests.agent_session_stopped_event(slack_requests.new_ts()))
    assert (status, message) == (503, {"error": "could not record the stop"})
    [line] = log_lines(capsys.readouterr().out, "slack_event")
    assert line["outcome"] == "stop_failed"
