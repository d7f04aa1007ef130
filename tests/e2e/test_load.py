"""Load: 200 slash commands at once, then 200 mentions at once, through ``chalice local``.

``chalice local`` runs as a real subprocess (``tests/chalice_local.py``), its workers in
threads of that process as in ``make run``; the LLM is a fake on loopback that takes 1 s per
answer (a whole reply for a slash command, a stream paced over 1 s for a mention), the
``response_url`` and the Slack Web API are loopback fakes too. For each burst, every request
starts at once (a barrier), and the test holds:

- every acknowledgement is a 200 within Slack's 3 s;
- every command gets exactly one reply at its own ``response_url``, with its own answer, and
  every mention exactly one answer in its own thread: nothing lost, nothing twice;
- the worker logged one ``answered`` line per job, and no traceback.

Counts and time are bounded (``BURST``, ``ANSWER_TIMEOUT``); nothing leaves 127.0.0.1. The
figures (ack p50/p99/max, time until all were answered) are printed for the README: run
``pytest tests/e2e/test_load.py -s``.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chalicelib import chalice_local as backlog
from devkit import slack_requests
from devkit.fake_openai import StreamReply, chat_completion, split_deltas
from devkit.fake_slack_api import FAKE_BOT_TOKEN, FakeSlackAPI
from devkit.http_fake import FakeServer, Received, Reply
from tests import chalice_local
from tests.conftest import OPENAI_KEY, ROOT, SIGNING_SECRET, command_form, response_path, signed_headers

BURST = 200
ACK_LIMIT_SECONDS = 3.0  # Slack's: an acknowledgement later than this is a failure to the user
LLM_SECONDS = 1.0
ANSWER_TIMEOUT = 120.0  # bounds the test: 200 answers of 1 s each take a few seconds when all goes well
CHANNEL, USER = slack_requests.CHANNEL_ID, slack_requests.USER_ID


def slow_llm(received: Received) -> Reply | StreamReply:
    """The echo LLM, taking ``LLM_SECONDS`` for every answer, whole or streamed."""
    request = received.json()
    answer = f"**Answer** to: {request['messages'][-1]['content']}"
    if request.get("stream"):
        deltas = split_deltas(answer, 5)
        return StreamReply(deltas=deltas, delay=LLM_SECONDS / max(1, len(deltas) - 1))  # paced between deltas
    return Reply(200, chat_completion(answer), delay=LLM_SECONDS)


@dataclass
class Burst:
    """What a burst measured: each request's status and time to its acknowledgement."""

    statuses: list[int]
    ack_seconds: list[float]
    started: float  # time.monotonic() (the system's clock) when the client let every request go
    errors: list[str]

    def figures(self, answered_at: float) -> str:
        acks = sorted(self.ack_seconds)
        p99 = acks[min(len(acks) - 1, int(len(acks) * 0.99))]
        return (
            f"ack p50 {statistics.median(acks) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {acks[-1] * 1000:.0f} ms; "
            f"all {len(acks)} answered {answered_at - self.started:.1f} s after the burst started"
        )


def burst(url: str, bodies: list[bytes], headers: Callable[[bytes], dict[str, str]]) -> Burst:
    """POST every body to ``url`` at once, from a client process of its own (``tests/load_client.py``)."""
    requests = [{"url": url, "body": base64.b64encode(body).decode(), "headers": headers(body)} for body in bodies]
    client = subprocess.run(
        [sys.executable, "-m", "tests.load_client"],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    sent = json.loads(client.stdout)
    return Burst(
        [result["status"] for result in sent["results"]],
        [result["seconds"] for result in sent["results"]],
        sent["started"],
        [result["error"] for result in sent["results"] if result["error"]],
    )


def answer_lines(log: Path) -> list[dict]:
    lines = [json.loads(line) for line in log.read_text(errors="replace").splitlines() if line.startswith('{"event"')]
    return [line for line in lines if line["event"] == "answer"]


def wait_for_answer_lines(log: Path, count: int, timeout: float) -> list[dict]:
    """The worker's log lines once ``count`` jobs have finished (it writes its line last)."""
    deadline = time.monotonic() + timeout
    while len(found := answer_lines(log)) < count:
        assert time.monotonic() < deadline, f"{len(found)} of {count} jobs finished within {timeout}s"
        time.sleep(0.1)  # polling a subprocess's log file: there is no event to wait on
    return found


def reply_recorded(received: Received) -> Reply:
    """The response_url: 200, and when each reply arrived (the fake records no times)."""
    REPLY_TIMES.append(time.monotonic())
    return Reply(200, "ok")


REPLY_TIMES: list[float] = []


@pytest.fixture
def servers() -> Iterator[tuple[FakeServer, FakeServer, FakeSlackAPI]]:
    REPLY_TIMES.clear()
    with FakeServer(slow_llm) as llm, FakeServer(reply_recorded) as replies, FakeSlackAPI() as slack_api:
        yield llm, replies, slack_api


def test_backlog_takes_the_burst() -> None:
    assert backlog.BACKLOG >= BURST


def test_two_hundred_commands_then_two_hundred_mentions_at_once(
    tmp_path: Path, servers: tuple[FakeServer, FakeServer, FakeSlackAPI]
) -> None:
    llm, replies, slack_api = servers
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_"))}
    env.update(
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=llm.url + "/v1",
        OPENAI_TIMEOUT_SECONDS="60",
        SLACK_BOT_TOKEN=FAKE_BOT_TOKEN,
        SLACK_API_URL=slack_api.url,
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "chalice-local.log"
    with chalice_local.running(env, log) as url:
        # --- 200 slash commands ---
        paths = [response_path() for _ in range(BURST)]
        bodies = [command_form(f"q{i}", replies.url + paths[i]) for i in range(BURST)]
        commands = burst(url + "/slack/commands", bodies, signed_headers)
        deadline = commands.started + ANSWER_TIMEOUT
        for path in paths:
            replies.wait_for(path, timeout=max(0.0, deadline - time.monotonic()))
        commands_answered = max(REPLY_TIMES)
        print(f"\n{BURST} slash commands: {commands.figures(commands_answered)}")

        assert commands.statuses == [200] * BURST, commands.errors[:3]
        assert max(commands.ack_seconds) < ACK_LIMIT_SECONDS, commands.figures(commands_answered)
        lines = wait_for_answer_lines(log, BURST, ANSWER_TIMEOUT)
        for i, path in enumerate(paths):
            [reply] = replies.requests_to(path)  # exactly once
            assert reply.json()["text"] == f"```q{i}```\n*Answer* to: q{i}"
        assert [line["outcome"] for line in lines] == ["answered"] * BURST

        # --- 200 mentions, each a new thread ---
        stamps = [slack_requests.new_ts() for _ in range(BURST)]
        events = [slack_requests.mention_event(f"m{i}", ts=stamps[i]) for i in range(BURST)]
        for body in events:
            slack_api.add_event(body)

        mentions = burst(
            url + "/slack/events", events, lambda body: signed_headers(body, content_type=slack_requests.JSON)
        )
        slack_api.wait_until(
            lambda: len(slack_api.calls_to("chat.stopStream")) >= BURST,
            timeout=max(0.0, mentions.started + ANSWER_TIMEOUT - time.monotonic()),
            what=f"{BURST} streams stopped",
        )
        mentions_answered = max(call.at for call in slack_api.calls_to("chat.stopStream"))
        print(f"{BURST} mentions: {mentions.figures(mentions_answered)}")

        assert mentions.statuses == [200] * BURST, mentions.errors[:3]
        assert max(mentions.ack_seconds) < ACK_LIMIT_SECONDS, mentions.figures(mentions_answered)
        lines = wait_for_answer_lines(log, 2 * BURST, ANSWER_TIMEOUT)
        for i, ts in enumerate(stamps):
            [answer] = slack_api.bot_messages(CHANNEL, ts)  # exactly once, in its own thread
            assert answer.text == f"**Answer** to: <@{USER}>: m{i}" and not answer.streaming
        assert [line["outcome"] for line in lines[BURST:]] == ["answered"] * BURST
        assert [call for call in slack_api.calls if not call.ok] == []
    assert "Traceback" not in log.read_text(errors="replace")
    assert len(llm.received) == 2 * BURST  # one LLM call per job: no retry was needed
