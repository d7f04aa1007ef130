"""The worker: exactly one plain-language reply per job, whatever fails, and it never raises."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from moto import mock_aws

from chalicelib import worker
from chalicelib.deadline import Deadline
from chalicelib.slack import events, messages
from devkit import slack_requests
from devkit.fake_openai import StreamReply, openai_error
from devkit.fake_slack_api import FakeSlackAPI
from devkit.http_fake import FakeServer, Reply
from tests.conftest import OPENAI_KEY, response_path, slash_payload


def run_job(slack_server: FakeServer, env: dict[str, str], text: str = "hi", seconds: float = 60) -> list[dict]:
    """Run one job to completion and return every message posted to its response_url."""
    path = response_path()
    assert worker.run(slash_payload(slack_server.url + path, text), Deadline.in_seconds(seconds), env) is None
    return [r.json() for r in slack_server.requests_to(path)]


def without_blocks(reply: dict) -> dict:
    """A reply as its text shows it: a completed answer's blocks are its feedback buttons (test_feedback.py)."""
    return {name: value for name, value in reply.items() if name != "blocks"}


def log_lines(captured: str) -> list[dict]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


def test_answer_is_posted_once_and_logged(bot_env, slack_server: FakeServer, capsys) -> None:
    env = {**bot_env, "SLACK_RESPONSE_TYPE": "in_channel"}
    [reply] = run_job(slack_server, env, "秘密の質問")
    assert without_blocks(reply) == {"response_type": "in_channel", "text": "```秘密の質問```\n*Answer* to: 秘密の質問"}
    assert [block["type"] for block in reply["blocks"]] == ["markdown", "context_actions"]  # the feedback buttons
    output = capsys.readouterr().out
    [line] = log_lines(output)
    assert line["event"] == "answer" and line["outcome"] == "answered" and line["delivered"] is True
    assert (line["model"], line["tokens_in"], line["tokens_out"]) == ("fake-model", 11, 7)
    assert {"llm_ms", "reply_ms", "user_id", "channel_id", "team_id"} <= line.keys()
    assert "秘密の質問" not in output and OPENAI_KEY not in output


def test_message_text_is_logged_only_when_asked(bot_env, slack_server: FakeServer, capsys) -> None:
    run_job(slack_server, {**bot_env, "LOG_MESSAGE_TEXT": "true"}, "秘密の質問")
    assert log_lines(capsys.readouterr().out)[0]["text"] == "秘密の質問"


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (openai_error(429, "rate_limit_exceeded"), "rate limited"),
        (openai_error(429, "insufficient_quota"), "quota is used up"),
        (openai_error(401, "invalid_api_key"), "API key was rejected"),
        (openai_error(403, "unsupported_country_region_territory"), "refused the bot access"),
        (openai_error(404, "model_not_found"), "doesn't know the AI model"),
        (openai_error(400, "context_length_exceeded"), "too long for the AI model"),
        (openai_error(500, "server_error"), "had a problem answering"),
        (Reply(200, "not json"), "couldn't read"),
        (Reply(200, "{}", delay=30), "took too long"),
    ],
)
def test_each_llm_failure_gets_exactly_one_plain_reply(
    bot_env, openai_server: FakeServer, slack_server: FakeServer, capsys, reply: Reply, words: str
) -> None:
    reply.headers["retry-after-ms"] = "10"
    openai_server.script = [reply] * 3
    env = {**bot_env, "OPENAI_TIMEOUT_SECONDS": "2"}
    [message] = run_job(slack_server, env)
    assert message["response_type"] == "ephemeral"
    assert message["text"].startswith(":warning: ") and words in message["text"]
    output = capsys.readouterr().out
    assert "Traceback" not in output and "fake server" not in message["text"]
    assert log_lines(output)[0]["outcome"] != "answered"


# As in Lambda, where the key comes from SSM (outside it, a loopback LLM needs no key) and the
# loopback response_url must be listed.
IN_LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "mameka-dev-worker", "RESPONSE_URL_HOSTS": "127.0.0.1"}


def test_missing_api_key_parameter_says_not_set_up(bot_env, slack_server: FakeServer) -> None:
    env = {k: v for k, v in bot_env.items() if k != "OPENAI_API_KEY"} | IN_LAMBDA
    with mock_aws():
        [message] = run_job(slack_server, env)
    assert "not set up correctly" in message["text"]


def test_key_from_ssm_is_used(bot_env, openai_server: FakeServer, slack_server: FakeServer) -> None:
    env = {k: v for k, v in bot_env.items() if k != "OPENAI_API_KEY"} | IN_LAMBDA
    env["OPENAI_API_KEY_PARAMETER"] = "/mameka/test/openai"
    with mock_aws():
        import boto3

        boto3.client("ssm").put_parameter(Name="/mameka/test/openai", Value="sk-from-ssm-fake", Type="SecureString")
        [message] = run_job(slack_server, env)
    assert message["text"].endswith("*Answer* to: hi")
    assert openai_server.received[0].headers["authorization"] == "Bearer sk-from-ssm-fake"


NOT_SET_UP = {
    "response_type": "ephemeral",
    "text": ":warning: The bot is not set up correctly, so it can't answer. Please tell the bot's admin.",
}
SERVICE_ERROR = {
    "response_type": "ephemeral",
    "text": ":warning: The AI service had a problem answering. Please try again later.",
}


def test_bad_settings_say_not_set_up(bot_env, slack_server: FakeServer, caplog) -> None:
    # The whole reply, not a part of it: a reply that also quoted the setting's raw value
    # ("got 'hot'") passed a check for "not set up correctly". The value goes to the log only.
    # The reply names the setting (the admin's first clue), never its value.
    settings = {**bot_env, "OPENAI_TEMPERATURE": "hot"}
    assert run_job(slack_server, settings) == [messages.not_configured("OPENAI_TEMPERATURE")]
    assert "OPENAI_TEMPERATURE must be a number, got 'hot'" in caplog.text


# --- the last guards: an unexpected error is answered plainly, and the worker never raises ---------------------------
#
# Each input below really gets past a handler's own error handling at a library boundary (no
# module of ours is stood in for): a typo in OPENAI_BASE_URL's port makes httpx2 raise InvalidURL
# before any request is made, which is no openai error.

BAD_PORT = "http://127.0.0.1:80a/v1"  # httpx2.InvalidURL("Invalid port: '80a'")


def test_an_unexpected_error_gets_the_plain_service_error_reply(bot_env, slack_server: FakeServer, capsys) -> None:
    # The catch-all around composing the reply: exactly the plain message, never the error's text.
    assert run_job(slack_server, {**bot_env, "OPENAI_BASE_URL": BAD_PORT}) == [SERVICE_ERROR]
    [line] = log_lines(capsys.readouterr().out)
    assert (line["outcome"], line["delivered"]) == ("internal_error", True)


def test_an_unexpected_error_in_a_mention_gets_the_plain_service_error_line(
    conversation_env, slack_api, openai_server: FakeServer, capsys
) -> None:
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event("hi", ts=ts)
    slack_api.add_event(body)
    job, _ = events.parse(body)
    env = {**conversation_env, "OPENAI_BASE_URL": BAD_PORT}
    assert worker.run(job.to_payload(), Deadline.in_seconds(60), env) is None
    assert [m.text for m in slack_api.bot_messages(slack_requests.CHANNEL_ID, ts)] == [SERVICE_ERROR["text"]]
    [line] = log_lines(capsys.readouterr().out)
    assert line["outcome"] == "internal_error"


# Inputs that got past every handler into worker.run's last guard, or still do (each a bug
# while it does: reported with the test that found it). Without that guard the worker raised for
# them, and Lambda would have run the job again. They stay here whatever their outcome once fixed.
DEEP_PROMPTS = "[" * 3000  # 3 KB, inside Lambda's 4 KB of variables: json.loads raised RecursionError
UNENCODABLE_MODEL = "gpt-\ud83d"  # a lone surrogate, JSON-escaped on the wire: writing the log line raised


@pytest.fixture
def slack_not_utf8() -> Iterator[FakeServer]:
    """A Slack Web API (or a proxy before it) answering bytes that are not UTF-8: slack_sdk raises
    a UnicodeDecodeError, which chalicelib.slack.web does not turn into a SlackError."""
    with FakeServer(lambda received: Reply(200, b"\xff\xfe<html>proxy error</html>")) as server:
        yield server


@pytest.mark.parametrize(
    ("kind", "case"),
    [
        ("slash_command", "deep-setting"),
        ("message", "deep-setting"),
        ("slash_command", "unencodable-model"),
        ("message", "slack-not-utf8-too-late"),  # "ask again" is said outside the thread's own guard
    ],
    ids=lambda value: value,
)
def test_the_worker_never_raises_past_its_handlers(
    conversation_env,
    slack_api: FakeSlackAPI,
    openai_server: FakeServer,
    slack_server: FakeServer,
    slack_not_utf8: FakeServer,
    capsys,
    kind: str,
    case: str,
) -> None:
    env = dict(conversation_env)
    asked_at = time.time()
    if case == "deep-setting":
        env["SUGGESTED_PROMPTS"] = DEEP_PROMPTS
    elif case == "unencodable-model":
        openai_server.script = [StreamReply(deltas=["fine"], model=UNENCODABLE_MODEL)]
    else:
        env["SLACK_API_URL"] = slack_not_utf8.url + "/api/"
        asked_at -= 400  # older than JOB_MAX_AGE_SECONDS
    if kind == "slash_command":
        payload = slash_payload(slack_server.url + response_path())
    else:
        body = slack_requests.mention_event("hi")
        slack_api.add_event(body)
        job, _ = events.parse(body)
        assert job is not None
        payload = job.to_payload()
    payload["asked_at"] = asked_at
    assert worker.run(payload, Deadline.in_seconds(60), env) is None
    [line] = log_lines(capsys.readouterr().out)  # one line, whatever happened
    assert line["kind"] == kind


def test_a_setting_too_deeply_nested_to_read_says_not_set_up(bot_env, slack_server: FakeServer) -> None:
    # Was no reply at all: json.loads raised RecursionError (not a ValueError) past Settings.from_env.
    assert run_job(slack_server, {**bot_env, "SUGGESTED_PROMPTS": DEEP_PROMPTS}) == [
        messages.not_configured("SUGGESTED_PROMPTS")
    ]


def test_a_model_name_the_log_cannot_encode_keeps_the_answer_line(
    bot_env, openai_server: FakeServer, slack_server: FakeServer, capsys
) -> None:
    # Was: the reply delivered, but logs.emit raised UnicodeEncodeError and the line said internal_error.
    openai_server.script = [StreamReply(deltas=["fine"], model=UNENCODABLE_MODEL)]
    [reply] = run_job(slack_server, bot_env)
    assert without_blocks(reply) == {"response_type": "ephemeral", "text": "```hi```\nfine"}
    [line] = log_lines(capsys.readouterr().out)
    assert (line["outcome"], line["delivered"]) == ("answered", True)


def test_a_reply_that_fails_is_retried_then_given_up_without_raising(bot_env, slack_server: FakeServer, capsys) -> None:
    slack_server.script = [Reply(500, "x")] * 3
    assert len(run_job(slack_server, bot_env)) == 3  # one try and two retries of the same reply
    assert log_lines(capsys.readouterr().out)[0]["delivered"] is False


def test_a_bad_payload_is_dropped_without_raising(capsys) -> None:
    assert worker.run({"text": "hi"}, Deadline.in_seconds(60), {}) is None
    assert log_lines(capsys.readouterr().out) == [{"event": "answer", "outcome": "bad_payload"}]


def test_a_job_delivered_twice_is_answered_once(bot_env, slack_server: FakeServer, capsys) -> None:
    path = response_path()
    payload = slash_payload(slack_server.url + path)
    for _ in range(2):  # Lambda's async invoke is at-least-once
        assert worker.run(payload, Deadline.in_seconds(60), bot_env) is None
    assert len(slack_server.requests_to(path)) == 1
    outcomes = [line["outcome"] for line in log_lines(capsys.readouterr().out)]
    assert outcomes == ["answered", "duplicate"]


def test_the_reply_is_kept_time_for(bot_env, openai_server: FakeServer, slack_server: FakeServer) -> None:
    # With 6 s left, the LLM gets 4.5 s (a quarter is kept for the reply), so a slow LLM still gets a reply.
    openai_server.script = [Reply(200, "{}", delay=30)]
    started = time.monotonic()
    [message] = run_job(slack_server, {**bot_env, "OPENAI_TIMEOUT_SECONDS": "60"}, seconds=6)
    assert time.monotonic() - started < 6
    assert "took too long" in message["text"]


def test_a_job_that_waited_too_long_is_told_to_ask_again_without_the_llm(
    bot_env, slack_server: FakeServer, openai_server: FakeServer, capsys
) -> None:
    path = response_path()
    payload = {**slash_payload(slack_server.url + path), "asked_at": time.time() - 301}  # throttled in the queue
    worker.run(payload, Deadline.in_seconds(60), bot_env)
    assert [r.json() for r in slack_server.requests_to(path)] == [
        {
            "response_type": "ephemeral",
            "text": ":warning: Sorry, I was too busy to get to your question in time. Please ask again.",
        }
    ]
    assert openai_server.received == []
    [line] = log_lines(capsys.readouterr().out)
    assert line["outcome"] == "too_late" and line["age_s"] >= 301
    fresh = response_path()
    worker.run(
        {**slash_payload(slack_server.url + fresh), "asked_at": time.time() - 200}, Deadline.in_seconds(60), bot_env
    )
    assert slack_server.requests_to(fresh)[0].json()["text"].endswith("*Answer* to: hi")


def test_an_answer_cut_at_the_output_cap_says_so_in_one_line(
    bot_env, openai_server: FakeServer, slack_server: FakeServer, capsys
) -> None:
    # The model stopped at max_completion_tokens.
    openai_server.script = [StreamReply(deltas=["The first half ", "of a long answ"], finish_reason="length")]
    [message] = run_job(slack_server, {**bot_env, "MAX_OUTPUT_TOKENS": "300"})
    assert message["text"] == "```hi```\nThe first half of a long answ" + messages.LENGTH_LIMITED
    assert openai_server.received[0].json()["max_completion_tokens"] == 300
    [line] = log_lines(capsys.readouterr().out)
    assert (line["outcome"], line["finish_reason"], line["delivered"]) == ("cut_short_length", "length", True)


def test_a_whole_answer_has_no_length_line(bot_env, slack_server: FakeServer, capsys) -> None:
    [message] = run_job(slack_server, bot_env)
    assert message["text"] == "```hi```\n*Answer* to: hi"
    [line] = log_lines(capsys.readouterr().out)
    assert (line["outcome"], line["finish_reason"]) == ("answered", "stop")


def test_a_rotated_openai_key_is_read_again_after_a_401(
    bot_env, openai_server: FakeServer, slack_server: FakeServer
) -> None:
    env = {k: v for k, v in bot_env.items() if k != "OPENAI_API_KEY"} | IN_LAMBDA
    env["OPENAI_API_KEY_PARAMETER"] = "/mameka/test/openai"
    with mock_aws():
        import boto3

        ssm = boto3.client("ssm")
        ssm.put_parameter(Name="/mameka/test/openai", Value="sk-fake-old", Type="SecureString")
        assert run_job(slack_server, env)[0]["text"].endswith("*Answer* to: hi")  # the old key, now cached
        ssm.put_parameter(Name="/mameka/test/openai", Value="sk-fake-new", Type="SecureString", Overwrite=True)
        openai_server.script = [openai_error(401, "invalid_api_key")]  # OpenAI revoked the old key
        assert run_job(slack_server, env)[0]["text"].endswith("*Answer* to: hi")
    keys = [r.headers["authorization"] for r in openai_server.requests_to("/v1/chat/completions")]
    assert keys == ["Bearer sk-fake-old", "Bearer sk-fake-old", "Bearer sk-fake-new"]


def test_a_user_over_the_per_minute_limit_is_told_when_to_ask_again(
    bot_env, slack_server: FakeServer, openai_server: FakeServer, capsys
) -> None:
    env = {**bot_env, "USER_RATE_LIMIT_PER_MINUTE": "2"}
    replies = [run_job(slack_server, env)[0]["text"] for _ in range(3)]
    assert replies[0].endswith("*Answer* to: hi") and replies[1].endswith("*Answer* to: hi")
    assert replies[2].startswith("You've reached the limit of 2 questions a minute. Please ask again in ")
    assert len(openai_server.received) == 2  # no LLM call for the third
    assert log_lines(capsys.readouterr().out)[-1]["outcome"] == "user_rate_limited"
