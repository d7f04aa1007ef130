"""The agent experience end to end, through ``chalice.test.Client`` and ``worker.run``, against the
fake Slack Web API (which refuses what Slack refuses) and the fake LLM: the Messages tab's pinned
prompts, answers in a DM message's own thread, and every thread answer inside an agent session
(processing, then active on every ending), or the legacy status where there are none."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib import container, worker
from chalicelib.deadline import Deadline
from chalicelib.settings import DEFAULT_SUGGESTED_PROMPTS
from chalicelib.slack import events
from devkit import slack_requests
from devkit.fake_openai import StreamReply, openai_error
from devkit.fake_slack_api import FakeSlackAPI
from devkit.http_fake import FakeServer
from tests.conftest import ROOT, signed_headers, wait_for_local_jobs

DM = slack_requests.DM_CHANNEL_ID
USER = slack_requests.USER_ID
DEFAULT_PROMPTS = [{"title": title, "message": message} for title, message in DEFAULT_SUGGESTED_PROMPTS]


@pytest.fixture
def client(conversation_env: dict[str, str]) -> Client:
    with Client(app, stage_name="dev", project_dir=str(ROOT)) as client:
        yield client


def post_event(client: Client, body: bytes) -> Any:
    return client.http.post("/slack/events", headers=signed_headers(body, content_type="application/json"), body=body)


def log_lines(captured: str, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == event]


# --- the Messages tab -------------------------------------------------------------------------------------------------


def test_opening_the_messages_tab_pins_the_prompts_atop_it(client: Client, slack_api: FakeSlackAPI, capsys) -> None:
    response = post_event(client, slack_requests.app_home_opened_event(tab="messages"))
    assert (response.status_code, response.json_body) == (200, {})
    wait_for_local_jobs()

    [call] = slack_api.calls_to("assistant.threads.setSuggestedPrompts")
    assert call.ok and "thread_ts" not in call.params  # pinned atop the tab, in no thread
    assert slack_api.suggested_prompts(DM) == DEFAULT_PROMPTS
    assert [c.method for c in slack_api.calls] == ["assistant.threads.setSuggestedPrompts"]
    [answer] = log_lines(capsys.readouterr().out, "answer")
    assert (answer["kind"], answer["outcome"]) == ("messages_tab_opened", "prompts_set")


def test_opening_the_home_tab_dispatches_nothing(
    client: Client, slack_api: FakeSlackAPI, openai_server: FakeServer, capsys
) -> None:
    response = post_event(client, slack_requests.app_home_opened_event(tab="home"))
    assert (response.status_code, response.json_body) == (200, {})
    wait_for_local_jobs()
    assert slack_api.calls == [] and openai_server.received == []
    [line] = log_lines(capsys.readouterr().out, "slack_event")
    assert (line["event_type"], line["outcome"]) == ("app_home_opened", "ignored")


def test_reopening_the_tab_soon_after_costs_no_worker_and_no_slack_call(
    client: Client, slack_api: FakeSlackAPI, conversation_env: dict[str, str], capsys
) -> None:
    for _ in range(3):
        assert post_event(client, slack_requests.app_home_opened_event()).status_code == 200
    wait_for_local_jobs()
    assert len(slack_api.calls_to("assistant.threads.setSuggestedPrompts")) == 1
    output = capsys.readouterr().out
    assert [line["outcome"] for line in log_lines(output, "slack_event")] == [
        "dispatched",
        "recently_offered",
        "recently_offered",
    ]
    assert len(log_lines(output, "answer")) == 1  # the worker ran once

    # Another user is another key: pinned for them too.
    assert (
        post_event(client, slack_requests.app_home_opened_event(user="U0OTHER", channel="D0OTHER")).status_code == 200
    )
    wait_for_local_jobs()
    assert slack_api.suggested_prompts("D0OTHER") == DEFAULT_PROMPTS
    capsys.readouterr()

    # An open that another container dispatched (its memo had not seen this user) reaches a
    # worker whose claim on the user's prompts key is still held: no second Slack call.
    body = slack_requests.app_home_opened_event()
    job, _ = events.parse(body)
    worker.run(job.to_payload(), Deadline.in_seconds(30), conversation_env)  # type: ignore[union-attr]
    assert len(slack_api.calls_to("assistant.threads.setSuggestedPrompts")) == 2
    [answer] = log_lines(capsys.readouterr().out, "answer")
    assert answer["outcome"] == "duplicate"


def test_the_legacy_assistant_pane_still_gets_prompts_in_its_thread(client: Client, slack_api: FakeSlackAPI) -> None:
    body = slack_requests.assistant_thread_started_event()
    thread_ts = json.loads(body)["event"]["assistant_thread"]["thread_ts"]
    assert post_event(client, body).status_code == 200
    wait_for_local_jobs()
    [call] = slack_api.calls_to("assistant.threads.setSuggestedPrompts")
    assert call.params["thread_ts"] == thread_ts
    assert slack_api.suggested_prompts(DM, thread_ts) == DEFAULT_PROMPTS


# --- agent sessions ---------------------------------------------------------------------------------------------------

CHANNEL = slack_requests.CHANNEL_ID


def run(body: bytes, env: dict[str, str], slack_api: FakeSlackAPI) -> None:
    """The job the HTTP function would dispatch for ``body``, run by the worker, after Slack stored the message."""
    slack_api.add_event(body)
    job, _ = events.parse(body)
    assert worker.run(job.to_payload(), Deadline.in_seconds(60), env) is None  # type: ignore[union-attr]


def statuses(slack_api: FakeSlackAPI, channel: str, thread_ts: str) -> list[str]:
    session = slack_api.session(channel, thread_ts)
    return [] if session is None else session.statuses


def test_a_top_level_dm_is_answered_in_its_own_thread_inside_a_session(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, capsys
) -> None:
    # Under the agent view every top-level DM message is a thread root: the answer goes under it.
    ts = slack_requests.new_ts()
    run(slack_requests.dm_event("こんにちは", ts=ts), conversation_env, slack_api)
    [answer] = slack_api.bot_messages(DM, ts)
    assert answer.thread_ts == ts and answer.text == f"**Answer** to: <@{USER}>: こんにちは"
    assert [m.ts for m in slack_api.messages(DM) if m.thread_ts is None] == []  # nothing at the top level
    session = slack_api.session(DM, ts)
    assert session is not None
    assert (session.title, session.initiator_user_id, session.statuses) == (
        "こんにちは",
        USER,
        ["processing", "active"],
    )
    assert log_lines(capsys.readouterr().out, "answer")[0]["session"] == "agent"


def test_an_llm_failure_still_ends_the_session(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, capsys
) -> None:
    openai_server.script = [openai_error(429, "rate_limit_exceeded")] * 5
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)
    texts = [m.text for m in slack_api.bot_messages(CHANNEL, ts)]
    assert len(texts) == 1 and "busy" in texts[0]  # the one error line
    assert statuses(slack_api, CHANNEL, ts) == ["processing", "active"]  # not left "processing"
    assert slack_api.calls[-1].method == "agents.sessions.setStatus"
    line = log_lines(capsys.readouterr().out, "answer")[0]
    assert (line["outcome"], line["session"]) == ("rate_limited", "agent")


def test_an_answer_cut_short_ends_the_session_once(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    openai_server.script = [StreamReply(deltas=["part ", "of it"], finish_reason="length")]
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)
    assert statuses(slack_api, CHANNEL, ts) == ["processing", "active"]


def test_a_long_question_is_a_title_slack_takes(conversation_env: dict[str, str], slack_api: FakeSlackAPI) -> None:
    ts = slack_requests.new_ts()
    question = "とても長い質問 " * 60  # 480 characters
    run(slack_requests.mention_event(question, ts=ts), conversation_env, slack_api)
    session = slack_api.session(CHANNEL, ts)
    assert session is not None and session.statuses == ["processing", "active"]
    assert session.title is not None and len(session.title) == 200 and session.title.endswith("…")
    assert session.title.startswith("とても長い質問 とても長い質問")


@pytest.mark.parametrize("error", ["feature_disabled", "not_agent_app"])
def test_without_agent_sessions_the_assistant_status_is_used_and_remembered(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, capsys, caplog, error: str
) -> None:
    slack_api.agent_sessions_error = error
    first, second = slack_requests.new_ts(), slack_requests.new_ts()
    run(slack_requests.mention_event("one", ts=first), conversation_env, slack_api)
    run(slack_requests.mention_event("two", ts=second), conversation_env, slack_api)

    # Asked once in this container; both answers then ran under the legacy status, silently.
    [refused] = slack_api.calls_to("agents.sessions.setStatus")
    assert refused.error == error
    thinking = [c.params for c in slack_api.calls_to("assistant.threads.setStatus")]
    assert [(p["thread_ts"], p["status"]) for p in thinking] == [(first, "is thinking…"), (second, "is thinking…")]
    for ts, text in ((first, "one"), (second, "two")):
        assert [m.text for m in slack_api.bot_messages(CHANNEL, ts)] == [f"**Answer** to: <@{USER}>: {text}"]
    lines = log_lines(capsys.readouterr().out, "answer")
    assert [(line["outcome"], line["session"]) for line in lines] == [("answered", "assistant")] * 2
    assert "status_error" not in lines[0]
    assert [r.levelname for r in caplog.records if error in r.getMessage()] == ["INFO"]

    # A new container asks again (the workspace may have turned agent sessions on since).
    container.reset()
    slack_api.agent_sessions_error = None
    third = slack_requests.new_ts()
    run(slack_requests.mention_event("three", ts=third), conversation_env, slack_api)
    assert statuses(slack_api, CHANNEL, third) == ["processing", "active"]
    assert len(slack_api.calls_to("assistant.threads.setStatus")) == 2
