"""Deadline safety: the worker is done before its Lambda timeout, whatever its dependencies do.

Contract: each test runs ``worker.run`` (or the Lambda handler, ``app.handler_map["worker"]``)
with a short deadline against one dependency that misbehaves in time (a Slack Web API that
rate-limits for longer than the job has, or answers late; an SSM that throttles or never
answers; an LLM that stalls), and checks that it returned before the deadline, with the time
it is expected to take at least 2 s below it (a busy 2-core machine must not make these flaky),
and that the user was still told what they can be told.

The LLM step also stays within ``OPENAI_TIMEOUT_SECONDS`` (a bug that allowed 19 s past it
passed the whole suite): bounded here through a whole worker run, for both kinds of job.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.local import LambdaContext

from app import app
from chalicelib import worker
from chalicelib.deadline import Deadline
from chalicelib.slack import events, web
from devkit import slack_requests
from devkit.fake_openai import StreamReply, chat_completion, split_deltas
from devkit.fake_slack_api import FakeSlackAPI
from devkit.http_fake import FakeServer, Reply
from tests.conftest import response_path, slash_payload
from tests.integration.test_response_url import RawServer

CHANNEL = slack_requests.CHANNEL_ID
USER = slack_requests.USER_ID
IN_LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "mameka-dev-worker", "RESPONSE_URL_HOSTS": "127.0.0.1"}
TOO_SLOW = ":warning: The AI service took too long to answer, so I gave up. Please try again."
NOT_SET_UP = ":warning: The bot is not set up correctly, so it can't answer. Please tell the bot's admin."
BUSY = ":warning: The bot is busy right now, so it can't answer yet. Please try again in a minute."
ANSWER = f"**Answer** to: <@{USER}>: hi"  # what the fake LLM answers to the mention
CUT_SHORT_SLOW = (
    ":warning: The answer above was cut short because the AI service took too long. "
    "Please ask again if you need the rest."
)


def timed_command(env: dict[str, str], slack_server: FakeServer, seconds: float) -> tuple[list[str], float, Deadline]:
    """Run one slash command with ``seconds`` to live: its replies' texts, how long it took, its deadline."""
    path = response_path()
    deadline = Deadline.in_seconds(seconds)
    started = time.monotonic()
    assert worker.run(slash_payload(slack_server.url + path), deadline, env) is None
    elapsed = time.monotonic() - started
    return [r.json()["text"] for r in slack_server.requests_to(path)], elapsed, deadline


def timed_mention(env: dict[str, str], slack_api: FakeSlackAPI, seconds: float) -> tuple[list[str], float, Deadline]:
    """Run one mention with ``seconds`` to live: the bot's texts in its thread, how long it took, its deadline."""
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event("hi", ts=ts)
    slack_api.add_event(body)
    job, _ = events.parse(body)
    assert job is not None
    deadline = Deadline.in_seconds(seconds)
    started = time.monotonic()
    assert worker.run(job.to_payload(), deadline, env) is None
    elapsed = time.monotonic() - started
    return [m.text for m in slack_api.bot_messages(CHANNEL, ts)], elapsed, deadline


def answer_line(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line["event"] == "answer"]
    return line


# --- the Slack Web API -----------------------------------------------------------------------------------------------


def test_a_slack_api_that_rate_limits_longer_than_the_job_has_is_not_waited_for(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every call says "come back in a minute" (slack_sdk's own handler would sleep it, each time).
    for method in ("agents.sessions.setStatus", "chat.startStream", "chat.postMessage", "chat.stopStream"):
        slack_api.fail_next(method, "ratelimited", retry_after=60, count=5)
    texts, elapsed, _ = timed_mention(conversation_env, slack_api, seconds=8)
    assert elapsed < 8  # expected: well under a second, as nothing is waited for
    assert texts == []  # Slack took nothing: nobody could be told
    line = answer_line(capsys)
    assert (line["outcome"], line["slack_error"]) == ("slack_error", "ratelimited")


@pytest.mark.parametrize(
    ("method", "outcome", "texts"),
    [
        # A slow sign of life costs one call's time, not the answer.
        ("agents.sessions.setStatus", "answered", [ANSWER]),
        # The first words landed, but the worker could not know it: it finds the message in the
        # thread, finishes it, and goes on in a new one. Nothing doubled, nothing lost.
        ("chat.startStream", "answered", [split_deltas(ANSWER)[0], "".join(split_deltas(ANSWER)[1:])]),
    ],
)
def test_a_slack_api_that_answers_late_does_not_hold_the_worker_past_its_deadline(
    conversation_env: dict[str, str],
    slack_api: FakeSlackAPI,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    outcome: str,
    texts: list[str],
) -> None:
    # Applied at once but answered a minute later (released when the fake stops). Each call waits
    # at most web.CALL_TIMEOUT_SECONDS (10 s; 2 s here, with the job's time cut in proportion), so
    # with 6 s to live the job is done by about 2 s. (Before the fix a call could wait out the
    # job's whole deadline: done 30 ms after it.)
    monkeypatch.setattr(web, "CALL_TIMEOUT_SECONDS", 2.0)
    slack_api.delay_next(method, 60)
    texts_seen, elapsed, _ = timed_mention(conversation_env, slack_api, seconds=6)
    assert elapsed < 6
    assert texts_seen == texts
    line = answer_line(capsys)
    assert line["outcome"] == outcome
    if method == "agents.sessions.setStatus":
        assert line["status_error"] == "timeout"


# --- SSM -------------------------------------------------------------------------------------------------------------


@pytest.fixture
def throttling_ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """An SSM endpoint on loopback that throttles every call, as SSM answers it (moto cannot)."""
    with FakeServer(lambda r: Reply(400, {"__type": "ThrottlingException", "message": "Rate exceeded"})) as ssm:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", ssm.url)
        yield ssm


@pytest.fixture
def silent_ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[RawServer]:
    """An SSM endpoint on loopback that reads each request and never answers it."""
    with RawServer() as ssm:
        ssm.mode = "stall"
        monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", ssm.url)
        yield ssm


def key_from_ssm(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "OPENAI_API_KEY"} | IN_LAMBDA


def test_an_ssm_that_throttles_is_given_up_on_in_time(
    bot_env: dict[str, str], slack_server: FakeServer, throttling_ssm: FakeServer
) -> None:
    texts, elapsed, _ = timed_command(key_from_ssm(bot_env), slack_server, seconds=8)
    assert elapsed < 8  # expected: botocore's one retry after a backoff under a second
    assert texts == [BUSY]  # a passing trouble, not a broken setup
    assert len(throttling_ssm.received) == 2


def test_an_ssm_that_never_answers_is_given_up_on_in_time(
    bot_env: dict[str, str], slack_server: FakeServer, silent_ssm: RawServer
) -> None:
    # The SSM client's own limits (aws.py: a 2 s read timeout, 2 attempts) bound it to about
    # 5 s: the job still answers, within a 10 s deadline.
    texts, elapsed, _ = timed_command(key_from_ssm(bot_env), slack_server, seconds=10)
    assert elapsed < 10
    assert texts == [BUSY]
    assert silent_ssm.received == 2


def test_an_ssm_that_never_answers_the_bot_token_is_given_up_on_in_time(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, silent_ssm: RawServer, capsys
) -> None:
    env = {k: v for k, v in conversation_env.items() if k != "SLACK_BOT_TOKEN"} | IN_LAMBDA
    texts, elapsed, _ = timed_mention(env, slack_api, seconds=10)
    assert elapsed < 10
    assert texts == [] and slack_api.calls == []  # without the token nobody can be told
    assert answer_line(capsys)["outcome"] == "secrets_unavailable"  # a silent SSM is a passing trouble


# --- the LLM ---------------------------------------------------------------------------------------------------------


def test_an_llm_that_never_answers_a_command_leaves_time_for_the_reply(
    bot_env: dict[str, str], openai_server: FakeServer, slack_server: FakeServer
) -> None:
    # With 6 s left the LLM gets 4.5 (a quarter is kept for the reply), give or take the SDK's
    # backoff of 0.5 s: done by about 5 s.
    openai_server.script = [Reply(200, chat_completion("late"), delay=30)] * 3
    texts, elapsed, _ = timed_command({**bot_env, "OPENAI_TIMEOUT_SECONDS": "60"}, slack_server, seconds=6)
    assert elapsed < 6
    assert texts == [TOO_SLOW]


def test_an_llm_stream_that_stalls_leaves_time_to_finish_the_thread(
    conversation_env: dict[str, str], openai_server: FakeServer, slack_api: FakeSlackAPI
) -> None:
    # With 8 s left the stream gets 6 (a quarter is kept to stop it and say why): done by about 6 s.
    # The stall limit (STREAM_STALL_SECONDS, 7 s here) is longer, so the deadline ends the stall
    # whether or not the first words were shown yet.
    openai_server.script = [StreamReply(["A slow start"], stall_after=1) for _ in range(3)]
    env = {**conversation_env, "OPENAI_TIMEOUT_SECONDS": "60", "STREAM_STALL_SECONDS": "7"}
    texts, elapsed, _ = timed_mention(env, slack_api, seconds=8)
    assert elapsed < 8
    assert texts == ["A slow start", CUT_SHORT_SLOW]


def test_the_llm_step_of_a_command_stays_within_openai_timeout_seconds(
    bot_env: dict[str, str], openai_server: FakeServer, slack_server: FakeServer
) -> None:
    # 60 s to live, but OPENAI_TIMEOUT_SECONDS=2: done by about 2.5 s (one SDK backoff of 0.5 s at most).
    openai_server.script = [Reply(200, chat_completion("late"), delay=30)] * 3
    texts, elapsed, _ = timed_command({**bot_env, "OPENAI_TIMEOUT_SECONDS": "2"}, slack_server, seconds=60)
    assert elapsed < 2 + 2.5
    assert texts == [TOO_SLOW]


def test_the_llm_step_of_a_mention_stays_within_openai_timeout_seconds(
    conversation_env: dict[str, str], openai_server: FakeServer, slack_api: FakeSlackAPI
) -> None:
    openai_server.script = [StreamReply(["A slow start"], stall_after=1)]
    texts, elapsed, _ = timed_mention({**conversation_env, "OPENAI_TIMEOUT_SECONDS": "2"}, slack_api, seconds=60)
    assert elapsed < 2 + 2.5
    assert texts == ["A slow start", CUT_SHORT_SLOW]


# --- through the Lambda handler --------------------------------------------------------------------------------------


def test_the_lambda_handler_returns_before_the_contexts_timeout(
    bot_env: dict[str, str], openai_server: FakeServer, slack_server: FakeServer
) -> None:
    # The handler takes its deadline from the context's remaining time, as in Lambda.
    openai_server.script = [Reply(200, chat_completion("late"), delay=30)] * 3
    path = response_path()
    context = LambdaContext("worker", memory_size=512, max_runtime_ms=6_000)
    started = time.monotonic()
    assert app.handler_map["worker"](slash_payload(slack_server.url + path), context) is None
    assert time.monotonic() - started < 6  # expected: about 5 s, as for worker.run above
    assert context.get_remaining_time_in_millis() > 0
    assert [r.json()["text"] for r in slack_server.requests_to(path)] == [TOO_SLOW]
