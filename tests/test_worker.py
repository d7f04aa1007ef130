"""The worker: exactly one plain-language reply per job, whatever fails, and it never raises."""

from __future__ import annotations

import json
import time

import pytest
from moto import mock_aws

from chalicelib import worker
from chalicelib.deadline import Deadline
from chalicelib.slack import messages
from tests.conftest import OPENAI_KEY, response_path, slash_payload
from tests.fakes import FakeServer, Reply, chat_completion, openai_error


def run_job(slack_server: FakeServer, env: dict[str, str], text: str = "hi", seconds: float = 60) -> list[dict]:
    """Run one job to completion and return every message posted to its response_url."""
    path = response_path()
    assert worker.run(slash_payload(slack_server.url + path, text), Deadline.in_seconds(seconds), env) is None
    return [r.json() for r in slack_server.requests_to(path)]


def log_lines(captured: str) -> list[dict]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


def test_answer_is_posted_once_and_logged(bot_env, slack_server: FakeServer, capsys) -> None:
    env = {**bot_env, "SLACK_RESPONSE_TYPE": "in_channel"}
    assert run_job(slack_server, env, "秘密の質問") == [
        {"response_type": "in_channel", "text": "```秘密の質問```\n*Answer* to: 秘密の質問"}
    ]
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


def test_bad_settings_say_not_set_up(bot_env, slack_server: FakeServer, caplog) -> None:
    [message] = run_job(slack_server, {**bot_env, "OPENAI_TEMPERATURE": "hot"})
    assert "not set up correctly" in message["text"]
    assert "OPENAI_TEMPERATURE must be a number" in caplog.text


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
    # With 12 s left, the LLM gets 9 s (a quarter is kept for the reply), so a slow LLM still gets a reply.
    openai_server.script = [Reply(200, "{}", delay=30)]
    started = time.monotonic()
    [message] = run_job(slack_server, {**bot_env, "OPENAI_TIMEOUT_SECONDS": "60"}, seconds=12)
    assert time.monotonic() - started < 12
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
    body = chat_completion("The first half of a long answ")
    body["choices"][0]["finish_reason"] = "length"  # the model stopped at max_completion_tokens
    openai_server.script = [Reply(200, body)]
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
