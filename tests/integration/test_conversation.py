"""Mentions, DMs and the assistant pane, through ``worker.run``: the fake LLM streams, the fake Slack Web API shows.

Each job is made the way the HTTP function makes it: a Slack event body (``devkit``) parsed by
``chalicelib.slack.events``. The fakes are real HTTP servers that the real openai and slack_sdk
clients talk to; they refuse what OpenAI and Slack refuse.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from chalicelib import worker
from chalicelib.deadline import Deadline
from chalicelib.settings import DEFAULT_SUGGESTED_PROMPTS
from chalicelib.slack import events
from devkit import slack_requests
from devkit.fake_openai import StreamReply, openai_error, split_deltas
from devkit.fake_slack_api import FakeSlackAPI
from devkit.http_fake import FakeServer
from tests.conftest import OPENAI_KEY

# Which attempts are made and what the user sees, not how long the pause between them is.
pytestmark = pytest.mark.usefixtures("quick_retries")

USER = slack_requests.USER_ID
BOT = slack_requests.BOT_USER_ID
CHANNEL = slack_requests.CHANNEL_ID
DM = slack_requests.DM_CHANNEL_ID
CHAT = "/v1/chat/completions"


def run(body: bytes, env: dict[str, str], slack_api: FakeSlackAPI | None = None, seconds: float = 60) -> None:
    """Run the job the HTTP function would dispatch for ``body``, after Slack stored the message."""
    if slack_api is not None:
        slack_api.add_event(body)
    job, _ = events.parse(body)
    assert worker.run(job.to_payload(), Deadline.in_seconds(seconds), env) is None  # type: ignore[union-attr]


def answer_lines(captured: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == "answer"]


def bot_texts(slack_api: FakeSlackAPI, channel: str, thread_ts: str) -> list[str]:
    return [message.text for message in slack_api.bot_messages(channel, thread_ts)]


def test_a_mention_is_answered_in_a_thread_under_it_streamed(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, capsys
) -> None:
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("東京でおすすめの散歩道は？", ts=ts), conversation_env, slack_api)

    # Inside an agent session: "processing" first (its title the question), "active" at the end.
    status, active = slack_api.calls_to("agents.sessions.setStatus")
    assert status.params == {
        "channel_id": CHANNEL,
        "thread_ts": ts,
        "status": "processing",
        "title": "東京でおすすめの散歩道は？",  # the question, the mention taken out
        "initiator_user_id": USER,
    }
    assert active.params == {"channel_id": CHANNEL, "thread_ts": ts, "status": "active"}
    assert slack_api.calls[-1] == active
    assert slack_api.calls_to("assistant.threads.setStatus") == []
    [start] = slack_api.calls_to("chat.startStream")
    assert start.params["thread_ts"] == ts
    # A channel: Slack wants to know who the stream is for.
    assert (start.params["recipient_user_id"], start.params["recipient_team_id"]) == (USER, slack_requests.TEAM_ID)
    assert len(slack_api.calls_to("chat.stopStream")) == 1
    assert bot_texts(slack_api, CHANNEL, ts) == [f"**Answer** to: <@{USER}>: 東京でおすすめの散歩道は？"]
    assert slack_api.calls.index(status) < slack_api.calls.index(start)  # the sign of life comes first

    output = capsys.readouterr().out
    [line] = answer_lines(output)
    assert line["outcome"] == "answered" and line["kind"] == "message" and line["session"] == "agent"
    assert (line["tokens_in"], line["tokens_out"], line["finish_reason"]) == (11, 7, "stop")
    assert {"status_ms", "first_token_ms", "first_text_ms", "llm_ms", "slack_calls"} <= line.keys()
    assert "東京" not in output and OPENAI_KEY not in output


def test_a_mention_inside_a_thread_sees_the_earlier_messages(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    root = slack_api.add_message(CHANNEL, "週末どこか行きたいな", user="U0FRIEND")
    slack_api.add_message(CHANNEL, f"<@{BOT}> 鎌倉はどう？", thread_ts=root)
    slack_api.add_message(CHANNEL, "鎌倉なら長谷寺がおすすめだよ！", thread_ts=root, bot=True)
    run(slack_requests.mention_event("じゃあお昼は？", thread_ts=root), conversation_env, slack_api)

    [request] = openai_server.requests_to(CHAT)
    chat = request.json()["messages"]
    assert [(m["role"], m["content"]) for m in chat[1:]] == [
        ("user", "<@U0FRIEND>: 週末どこか行きたいな"),
        ("user", f"<@{USER}>: 鎌倉はどう？"),
        ("assistant", "鎌倉なら長谷寺がおすすめだよ！"),
        ("user", f"<@{USER}>: じゃあお昼は？"),  # the current message, last and once, mention stripped
    ]
    assert chat[0]["role"] == "system"
    assert bot_texts(slack_api, CHANNEL, root)[-1] == f"**Answer** to: <@{USER}>: じゃあお昼は？"


def test_the_history_is_cut_to_the_newest_messages_and_the_context_budget(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    root = slack_api.add_message(CHANNEL, "root question")
    for i in range(30):
        slack_api.add_message(CHANNEL, f"reply {i}", thread_ts=root)
    env = {**conversation_env, "MAX_HISTORY_MESSAGES": "10"}
    run(slack_requests.mention_event("latest", thread_ts=root), env, slack_api)
    contents = [m["content"] for m in openai_server.requests_to(CHAT)[0].json()["messages"][1:]]
    # Ten messages read: the root and the nine newest replies, the current message among them.
    assert contents == [f"<@{USER}>: root question"] + [f"<@{USER}>: reply {i}" for i in range(22, 30)] + [
        f"<@{USER}>: latest"
    ]


def test_a_dm_is_answered_in_a_thread_under_it(conversation_env: dict[str, str], slack_api: FakeSlackAPI) -> None:
    ts = slack_requests.new_ts()
    run(slack_requests.dm_event("こんにちは", ts=ts), conversation_env, slack_api)
    [start] = slack_api.calls_to("chat.startStream")
    assert start.params["channel"] == DM and start.params["thread_ts"] == ts
    assert "recipient_user_id" not in start.params  # a DM needs none
    assert bot_texts(slack_api, DM, ts) == [f"**Answer** to: <@{USER}>: こんにちは"]


def test_an_assistant_pane_message_is_answered_in_its_thread_with_its_history(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    opened = slack_requests.assistant_thread_started_event()
    thread_ts = json.loads(opened)["event"]["assistant_thread"]["thread_ts"]
    run(opened, conversation_env, slack_api)
    run(slack_requests.assistant_message_event("一つ目", thread_ts=thread_ts), conversation_env, slack_api)
    run(slack_requests.assistant_message_event("二つ目", thread_ts=thread_ts), conversation_env, slack_api)
    assert bot_texts(slack_api, DM, thread_ts) == [
        f"**Answer** to: <@{USER}>: 一つ目",
        f"**Answer** to: <@{USER}>: 二つ目",
    ]
    second = openai_server.requests_to(CHAT)[1].json()["messages"]
    assert [m["role"] for m in second[-3:]] == ["user", "assistant", "user"]


def test_opening_the_assistant_pane_sets_the_suggested_prompts(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, capsys
) -> None:
    body = slack_requests.assistant_thread_started_event()
    thread_ts = json.loads(body)["event"]["assistant_thread"]["thread_ts"]
    run(body, conversation_env, slack_api)
    expected = [{"title": title, "message": message} for title, message in DEFAULT_SUGGESTED_PROMPTS]
    assert slack_api.suggested_prompts(DM, thread_ts) == expected
    assert answer_lines(capsys.readouterr().out)[0]["outcome"] == "prompts_set"


def test_suggested_prompts_come_from_the_setting(conversation_env: dict[str, str], slack_api: FakeSlackAPI) -> None:
    prompts = [{"title": "Plan", "message": "Plan my day"}]
    body = slack_requests.assistant_thread_started_event()
    thread_ts = json.loads(body)["event"]["assistant_thread"]["thread_ts"]
    run(body, {**conversation_env, "SUGGESTED_PROMPTS": json.dumps(prompts)}, slack_api)
    assert slack_api.suggested_prompts(DM, thread_ts) == prompts


def test_a_redelivered_event_and_the_same_message_under_a_new_event_id_are_answered_once(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, capsys
) -> None:
    ts = slack_requests.new_ts()
    first = slack_requests.mention_event("hi", ts=ts, event_id="Ev1")
    run(first, conversation_env, slack_api)
    run(first, conversation_env)  # Slack's retry of the same event
    run(slack_requests.mention_event("hi", ts=ts, event_id="Ev2"), conversation_env)  # same message, new id
    assert len(openai_server.requests_to(CHAT)) == 1
    assert len(bot_texts(slack_api, CHANNEL, ts)) == 1
    assert [line["outcome"] for line in answer_lines(capsys.readouterr().out)] == [
        "answered",
        "duplicate",
        "duplicate",
    ]


def test_an_llm_failure_before_any_text_is_one_plain_line(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, capsys
) -> None:
    openai_server.script = [openai_error(401, "invalid_api_key", "Incorrect API key provided: sk-test...")]
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)
    assert bot_texts(slack_api, CHANNEL, ts) == [
        ":warning: The bot's OpenAI API key was rejected. Please tell the bot's admin."
    ]
    assert slack_api.calls_to("chat.startStream") == []
    output = capsys.readouterr().out
    assert answer_lines(output)[0]["outcome"] == "invalid_key"
    assert "Incorrect API key" not in output


def test_an_llm_failure_mid_stream_keeps_the_text_and_says_why_once(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, capsys
) -> None:
    # Broken each time it is asked (the first try and two more): the last attempt's text stays.
    openai_server.script = [StreamReply(["前半の答え。", "まだ続く", "…"], break_after=2) for _ in range(3)]
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)
    answer, notice = bot_texts(slack_api, CHANNEL, ts)
    assert answer == "前半の答え。まだ続く"
    assert notice.startswith(":warning: The answer above was cut short because the AI service stopped sending it")
    assert not any(message.streaming for message in slack_api.bot_messages(CHANNEL, ts))
    assert len(openai_server.requests_to(CHAT)) == 3  # no retry left after the third
    assert answer_lines(capsys.readouterr().out)[0]["outcome"] == "cut_short_cut_off"


def test_a_stream_cut_off_before_any_text_is_tried_once_more(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    openai_server.script = [StreamReply(["never"], break_after=0)]  # then the default echo answer
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)
    assert len(openai_server.requests_to(CHAT)) == 2
    assert bot_texts(slack_api, CHANNEL, ts) == [f"**Answer** to: <@{USER}>: hi"]


def test_a_stream_that_ends_without_finishing_is_a_failure_too(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    # A server that closes the connection cleanly mid-answer: the SDK raises nothing.
    openai_server.script = [StreamReply(["partial answer"], close_cleanly_after=1) for _ in range(3)]
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)
    answer, notice = bot_texts(slack_api, CHANNEL, ts)
    assert answer == "partial answer" and "cut short" in notice


def test_a_stalled_stream_is_cut_short_at_the_deadline(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    openai_server.script = [StreamReply(["slow start"], stall_after=1)]
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("hi", ts=ts), {**conversation_env, "OPENAI_TIMEOUT_SECONDS": "2"}, slack_api)
    answer, notice = bot_texts(slack_api, CHANNEL, ts)
    assert answer == "slow start" and "took too long" in notice


def test_context_too_long_is_tried_again_with_half_the_history(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    root = slack_api.add_message(CHANNEL, "root")
    for i in range(8):
        slack_api.add_message(CHANNEL, f"reply {i}", thread_ts=root)
    openai_server.script = [openai_error(400, "context_length_exceeded")]
    run(slack_requests.mention_event("question", thread_ts=root), conversation_env, slack_api)
    first, second = (len(r.json()["messages"]) for r in openai_server.requests_to(CHAT))
    assert openai_server.requests_to(CHAT)[1].json()["messages"][1]["content"].endswith("root")
    # system + 9 history + current, then system + the root (it states the task) + the newer
    # half of the 8 replies + current
    assert (first, second) == (11, 7)
    assert bot_texts(slack_api, CHANNEL, root)[-1].endswith("question")


def test_a_30000_character_answer_arrives_whole_in_messages_slack_accepts(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    paragraph = "豆香のおすすめはね、朝の散歩だよ。" * 20 + "\n\n"
    code = "```python\n" + "".join(f"print({i})\n" for i in range(300)) + "```\n\n"
    text = (paragraph * 60 + code)[:30_000]
    openai_server.script = [StreamReply(split_deltas(text, 600))]
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("長い答えをちょうだい", ts=ts), conversation_env, slack_api)
    refused = [call for call in slack_api.calls if not call.ok]
    assert refused == []
    texts = bot_texts(slack_api, CHANNEL, ts)
    assert len(texts) >= 4
    assert all(len(t.encode()) <= 9_000 for t in texts)
    assert strip_fence_joins(texts) == text


def strip_fence_joins(texts: list[str]) -> str:
    """The answer as the model wrote it: undo a code fence closed at a cut and reopened after it."""
    whole = texts[0]
    for text in texts[1:]:
        if whole.endswith("\n```") and text.startswith("```python\n"):
            whole, text = whole[: -len("\n```")], text[len("```python") :]
        elif whole.endswith("```\n") and text.startswith("```python\n"):
            whole, text = whole[: -len("```\n")], text[len("```python\n") :]
        whole += text
    return whole


def test_streaming_refused_falls_back_to_a_message_that_is_updated(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI
) -> None:
    slack_api.fail_next("chat.startStream", error="not_allowed_token_type")
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)
    assert bot_texts(slack_api, CHANNEL, ts) == [f"**Answer** to: <@{USER}>: hi"]
    assert len(slack_api.calls_to("chat.postMessage")) == 1


def test_a_refused_status_is_no_reason_to_stop(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, capsys
) -> None:
    slack_api.fail_next("agents.sessions.setStatus", error="missing_scope")
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)
    assert bot_texts(slack_api, CHANNEL, ts) == [f"**Answer** to: <@{USER}>: hi"]
    assert answer_lines(capsys.readouterr().out)[0]["status_error"] == "missing_scope"


def test_a_bare_mention_gets_a_usage_hint(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server
) -> None:
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event(f"<@{BOT}>", ts=ts), conversation_env, slack_api)
    assert bot_texts(slack_api, CHANNEL, ts) == [f"Ask me anything, for example: <@{BOT}> 東京でおすすめの散歩道は？"]
    assert openai_server.requests_to(CHAT) == []


def test_a_question_over_the_limit_is_refused_before_the_llm(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("x" * 101, ts=ts), {**conversation_env, "MAX_INPUT_CHARS": "100"}, slack_api)
    assert bot_texts(slack_api, CHANNEL, ts) == [
        "Your question is 101 characters long; the limit is 100. Please shorten it and try again."
    ]
    assert openai_server.requests_to(CHAT) == []


def test_without_a_bot_token_nothing_reaches_slack_and_the_log_says_why(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, capsys
) -> None:
    env = {k: v for k, v in conversation_env.items() if k != "SLACK_BOT_TOKEN"}
    from moto import mock_aws

    with mock_aws():
        run(slack_requests.mention_event("hi"), env, slack_api)
    assert slack_api.calls == []
    assert answer_lines(capsys.readouterr().out)[0]["outcome"] == "not_configured"


def test_a_wrong_bot_token_is_logged_not_raised(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, capsys
) -> None:
    run(slack_requests.mention_event("hi"), {**conversation_env, "SLACK_BOT_TOKEN": "xoxb-wrong"}, slack_api)
    assert all(call.error == "invalid_auth" for call in slack_api.calls)
    output = capsys.readouterr().out
    assert answer_lines(output)[0]["outcome"] == "slack_error"
    assert "xoxb-wrong" not in output


# --- review findings: each of these failed before its fix ----------------------------------------------------------


@pytest.mark.parametrize("deltas", [[], ["\n", "\n"]])
def test_an_answer_with_no_text_is_one_plain_line_not_silence(
    deltas: list[str], conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    openai_server.script = [StreamReply(deltas) for _ in range(3)]  # the retries are empty too
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)
    assert bot_texts(slack_api, CHANNEL, ts) == [
        ":warning: The AI service sent an answer I couldn't read. Please try again."
    ]
    assert len(openai_server.requests_to(CHAT)) == 3


@pytest.mark.parametrize("method", ["chat.postMessage", "chat.stopStream"])
def test_a_post_that_landed_but_was_not_answered_is_not_followed_by_another(
    method: str, conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    # The fake applies the call, then drops the connection: the worker cannot know it landed.
    if method == "chat.postMessage":
        openai_server.script = [openai_error(401, "invalid_api_key")]
    slack_api.fail_next(method, error="disconnect")
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)
    # One message each: the notice, or the answer. (An "either text" check let each case pass
    # with the other's outcome.)
    expected = {
        "chat.postMessage": ":warning: The bot's OpenAI API key was rejected. Please tell the bot's admin.",
        "chat.stopStream": f"**Answer** to: <@{USER}>: hi",
    }
    assert bot_texts(slack_api, CHANNEL, ts) == [expected[method]]


def test_an_unexpected_failure_stops_the_stream_and_tells_the_user(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, capsys
) -> None:
    # A lone surrogate in the event's JSON: the openai SDK cannot encode it (before the fix it
    # raised a UnicodeEncodeError past every handler, and nobody was told).
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event("broken emoji \\ud83d here", ts=ts).replace(b"\\\\ud83d", b"\\ud83d")
    run(body, conversation_env, slack_api)
    assert bot_texts(slack_api, CHANNEL, ts) == [f"**Answer** to: <@{USER}>: broken emoji ? here"]


def test_a_retry_does_not_repeat_text_held_back_from_the_first_attempt(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    slack_api.fail_next("chat.startStream", error="not_allowed_token_type")
    slack_api.fail_next("chat.postMessage", error="ratelimited", retry_after=300)  # longer than the job
    openai_server.script = [StreamReply(["FIRST-ATTEMPT-PARTIAL "], break_after=1)]
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)
    assert bot_texts(slack_api, CHANNEL, ts) == [f"**Answer** to: <@{USER}>: hi"]


def test_context_too_long_without_history_is_not_asked_twice(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    openai_server.script = [openai_error(400, "context_length_exceeded")]
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)
    assert len(openai_server.requests_to(CHAT)) == 1
    assert "too long for the AI model" in bot_texts(slack_api, CHANNEL, ts)[0]


def test_debug_logging_shows_no_message_text(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, caplog, capsys
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    root = slack_api.add_message(CHANNEL, "秘密の前置き")
    run(
        slack_requests.mention_event("秘密の質問", thread_ts=root),
        {**conversation_env, "LOG_LEVEL": "DEBUG"},
        slack_api,
    )
    assert bot_texts(slack_api, CHANNEL, root)
    everything = caplog.text + capsys.readouterr().out
    assert "秘密" not in everything


def test_a_rotated_bot_token_is_read_again_after_invalid_auth(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI
) -> None:
    from moto import mock_aws

    env = {k: v for k, v in conversation_env.items() if k != "SLACK_BOT_TOKEN"}
    env["SLACK_BOT_TOKEN_PARAMETER"] = "/bot"
    with mock_aws():
        import boto3

        ssm = boto3.client("ssm")
        ssm.put_parameter(Name="/bot", Value="xoxb-fake-old-token", Type="SecureString")
        slack_api.token = "xoxb-fake-old-token"
        first = slack_requests.new_ts()
        run(slack_requests.mention_event("one", ts=first), env, slack_api)
        assert bot_texts(slack_api, CHANNEL, first) == [f"**Answer** to: <@{USER}>: one"]

        # `make secrets` stores a new token, and Slack revokes the old one.
        ssm.put_parameter(Name="/bot", Value="xoxb-fake-new-token", Type="SecureString", Overwrite=True)
        slack_api.token = "xoxb-fake-new-token"
        second = slack_requests.new_ts()
        run(slack_requests.mention_event("two", ts=second), env, slack_api)
        assert bot_texts(slack_api, CHANNEL, second) == [f"**Answer** to: <@{USER}>: two"]


def test_a_message_that_waited_too_long_is_told_so_in_its_thread(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event("hi", ts=ts)
    slack_api.add_event(body)
    job, _ = events.parse(body)
    payload = {**job.to_payload(), "asked_at": time.time() - 400}  # type: ignore[union-attr]
    worker.run(payload, Deadline.in_seconds(60), {**conversation_env, "JOB_MAX_AGE_SECONDS": "300"})
    assert bot_texts(slack_api, CHANNEL, ts) == [
        ":warning: Sorry, I was too busy to get to your question in time. Please ask again."
    ]
    assert openai_server.requests_to(CHAT) == []


def test_a_rotated_openai_key_is_read_again_after_a_401(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    from moto import mock_aws

    env = {k: v for k, v in conversation_env.items() if k != "OPENAI_API_KEY"}
    env |= {"OPENAI_API_KEY_PARAMETER": "/k", "AWS_LAMBDA_FUNCTION_NAME": "mameka-dev-worker"}
    with mock_aws():
        import boto3

        ssm = boto3.client("ssm")
        ssm.put_parameter(Name="/k", Value="sk-fake-old", Type="SecureString")
        run(slack_requests.mention_event("one"), env, slack_api)  # the old key, now cached
        ssm.put_parameter(Name="/k", Value="sk-fake-new", Type="SecureString", Overwrite=True)
        openai_server.script = [openai_error(401, "invalid_api_key")]  # OpenAI revoked the old key
        ts = slack_requests.new_ts()
        run(slack_requests.mention_event("two", ts=ts), env, slack_api)
    assert bot_texts(slack_api, CHANNEL, ts) == [f"**Answer** to: <@{USER}>: two"]
    keys = [r.headers["authorization"] for r in openai_server.requests_to(CHAT)]
    assert keys == ["Bearer sk-fake-old", "Bearer sk-fake-old", "Bearer sk-fake-new"]


def test_a_user_over_the_per_minute_limit_is_told_in_the_thread(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    env = {**conversation_env, "USER_RATE_LIMIT_PER_MINUTE": "1"}
    run(slack_requests.mention_event("one"), env, slack_api)
    ts = slack_requests.new_ts()
    run(slack_requests.mention_event("two", ts=ts), env, slack_api)
    [line] = bot_texts(slack_api, CHANNEL, ts)
    assert line.startswith("You've reached the limit of 1 question a minute.")
    assert len(openai_server.requests_to(CHAT)) == 1
