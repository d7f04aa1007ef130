"""The HTTP function's job, called directly: outcomes that need a broken setup, and its log line."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from botocore.stub import Stubber
from chalice.test import Client
from moto import mock_aws

from app import app
from chalicelib import aws
from chalicelib.gateway import handle_event, handle_slash_command
from devkit import slack_requests
from devkit.http_fake import FakeServer, Reply
from tests.conftest import ROOT, SIGNING_SECRET, command_form, signed_headers

ENV = {"SLACK_SIGNING_SECRET": SIGNING_SECRET}


def call(env: dict[str, str], text: str = "hi", **sign: object) -> tuple[int, dict]:
    body = command_form(text, "https://hooks.slack.com/commands/T/1/x")
    headers = {k.lower(): v for k, v in signed_headers(body, **sign).items()}
    return handle_slash_command(headers, body, env, "req-1")


def log_line(captured: str) -> dict:
    [line] = [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
    return line


def test_an_invalid_setting_is_a_plain_message_not_a_5xx(capsys, caplog) -> None:
    status, message = call({**ENV, "MAX_INPUT_CHARS": "lots"})
    assert status == 200
    assert (
        message["text"] == ":warning: The bot is not set up correctly, so it can't answer. Please tell the bot's admin."
    )
    assert "MAX_INPUT_CHARS must be a number, got 'lots'" in caplog.text
    assert log_line(capsys.readouterr().out)["outcome"] == "not_configured"


def test_an_unreadable_signing_secret_is_a_plain_message_not_a_5xx(capsys) -> None:
    with mock_aws():  # no such parameter in SSM
        status, message = call({})
    assert status == 200 and "not set up correctly" in message["text"]
    assert log_line(capsys.readouterr().out)["outcome"] == "not_configured"


def test_a_failed_dispatch_tells_the_user(lambda_server: FakeServer, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambda_server.url)
    status, message = call({**ENV, "AWS_LAMBDA_FUNCTION_NAME": "mameka-dev"})  # no WORKER_FUNCTION_NAME
    assert status == 200
    assert message == {
        "response_type": "ephemeral",
        "text": ":warning: Sorry, I couldn't start working on your question. Please try again in a moment.",
    }
    assert log_line(capsys.readouterr().out)["outcome"] == "dispatch_failed"


def test_one_log_line_per_command_without_text_by_default(lambda_server: FakeServer, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambda_server.url)
    env = {**ENV, "AWS_LAMBDA_FUNCTION_NAME": "mameka-dev", "WORKER_FUNCTION_NAME": "w"}
    lambda_server.script = [Reply(202, b"", delay=0.2)]  # the invoke takes 200 ms: the ack can't take less
    started = time.perf_counter()
    assert call(env, "秘密の質問")[0] == 200
    took_ms = (time.perf_counter() - started) * 1000
    output = capsys.readouterr().out
    line = log_line(output)
    assert line["event"] == "command" and line["outcome"] == "dispatched" and line["status"] == 200
    assert (line["request_id"], line["team_id"], line["channel_id"], line["user_id"]) == (
        "req-1",
        "T0001",
        "C2147483705",
        "U2147483697",
    )
    assert 200 <= line["ack_ms"] <= took_ms  # milliseconds, the dispatch included (was: isinstance float)
    assert "秘密" not in output and SIGNING_SECRET not in output

    call({**env, "LOG_MESSAGE_TEXT": "true"}, "秘密の質問")
    assert log_line(capsys.readouterr().out)["text"] == "秘密の質問"


def test_rejected_requests_are_logged_too(capsys) -> None:
    assert call(ENV, secret="wrong")[0] == 401
    line = log_line(capsys.readouterr().out)
    assert line["outcome"] == "invalid_signature" and line["user_id"] is None


def test_debug_logging_never_shows_the_secret_from_ssm(caplog) -> None:
    import logging

    with mock_aws():
        boto3.client("ssm").put_parameter(Name="/slack/signing-secret", Value=SIGNING_SECRET, Type="SecureString")
        with caplog.at_level(logging.DEBUG):
            status, message = call({"LOG_LEVEL": "DEBUG"}, text="")  # empty: a usage hint, nothing dispatched
    assert status == 200 and "Ask me anything" in message["text"]
    assert SIGNING_SECRET not in caplog.text


def call_event(env: dict[str, str], body: bytes, **headers: str) -> tuple[int, dict]:
    signed = signed_headers_for_json(body)
    signed.update(headers)
    return handle_event({k.lower(): v for k, v in signed.items()}, body, env, "req-2")


def signed_headers_for_json(body: bytes) -> dict[str, str]:
    return slack_requests.signed_headers(SIGNING_SECRET, body, content_type=slack_requests.JSON)


def test_an_event_that_cannot_be_dispatched_is_a_503_so_that_slack_delivers_it_again(
    lambda_server: FakeServer, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambda_server.url)
    env = {**ENV, "AWS_LAMBDA_FUNCTION_NAME": "mameka-dev"}  # no WORKER_FUNCTION_NAME
    status, body = call_event(env, slack_requests.mention_event("hi"))
    assert (status, body) == (503, {"error": "could not start working on this event"})
    assert log_line(capsys.readouterr().out)["outcome"] == "dispatch_failed"


def test_a_messages_tab_open_that_cannot_be_dispatched_is_tried_again_when_slack_redelivers_it(
    lambda_server: FakeServer, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambda_server.url)
    env = {**ENV, "AWS_LAMBDA_FUNCTION_NAME": "mameka-dev", "WORKER_FUNCTION_NAME": "w"}
    lambda_server.script = [Reply(500, b'{"Message": "down"}'), Reply(202, b"")]
    body = slack_requests.app_home_opened_event()
    assert call_event(env, body)[0] == 503
    assert call_event(env, body, **{"X-Slack-Retry-Num": "1"})[0] == 200  # not "recently offered"
    assert call_event(env, slack_requests.app_home_opened_event())[0] == 200
    outcomes = [json.loads(line)["outcome"] for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert outcomes == ["dispatch_failed", "dispatched", "recently_offered"]
    assert len(lambda_server.received) == 2


def test_an_event_with_a_broken_setup_is_acknowledged_and_logged(capsys, caplog) -> None:
    # A setting the HTTP function itself uses (a worker-only one no longer stops it: see below).
    status, body = call_event({**ENV, "MAX_INPUT_CHARS": "many"}, slack_requests.mention_event("hi"))
    assert (status, body) == (200, {})
    assert "MAX_INPUT_CHARS must be a number" in caplog.text
    assert log_line(capsys.readouterr().out)["outcome"] == "not_configured"


def test_one_log_line_per_event_with_ids_and_no_text(lambda_server: FakeServer, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambda_server.url)
    env = {**ENV, "AWS_LAMBDA_FUNCTION_NAME": "mameka-dev", "WORKER_FUNCTION_NAME": "w"}
    body = slack_requests.mention_event("秘密の質問", event_id="Ev42")
    lambda_server.script = [Reply(202, b"", delay=0.2)]  # the invoke takes 200 ms: the ack can't take less
    started = time.perf_counter()
    assert call_event(env, body, **{"X-Slack-Retry-Num": "1"})[0] == 200
    took_ms = (time.perf_counter() - started) * 1000
    output = capsys.readouterr().out
    line = log_line(output)
    assert line["event"] == "slack_event" and line["outcome"] == "dispatched"
    assert (line["event_type"], line["event_id"], line["retry_num"]) == ("app_mention", "Ev42", "1")
    assert (line["team_id"], line["user_id"], line["request_id"]) == ("T0001", "U2147483697", "req-2")
    assert 200 <= line["ack_ms"] <= took_ms  # milliseconds, the dispatch included (was: isinstance float)
    assert "秘密" not in output
    # The retry was dispatched like a first delivery: the worker's claims decide.
    [invoke] = lambda_server.received
    assert invoke.json()["kind"] == "message" and invoke.json()["id"] == "Ev42"


def test_a_rotated_signing_secret_is_picked_up_by_a_warm_container(lambda_server: FakeServer, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambda_server.url)
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": "mameka-dev",
        "WORKER_FUNCTION_NAME": "w",
        "SLACK_SIGNING_SECRET_PARAMETER": "/s",
    }
    body = command_form("hi", "https://hooks.slack.com/commands/T/1/x")

    def call_with(secret: str) -> int:
        headers = {k.lower(): v for k, v in signed_headers(body, secret=secret).items()}
        return handle_slash_command(headers, body, env, "req-r")[0]

    with mock_aws():
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name="/s", Value="the-old-secret", Type="SecureString")
        assert call_with("the-old-secret") == 200  # read once and cached
        ssm.put_parameter(Name="/s", Value="the-new-secret", Type="SecureString", Overwrite=True)
        assert call_with("the-new-secret") == 200  # the mismatch made it read the parameter again
        ssm.put_parameter(Name="/s", Value="the-newest-secret", Type="SecureString", Overwrite=True)
        assert call_with("the-newest-secret") == 401  # but only once a minute: forgers cannot flood SSM
        assert call_with("the-new-secret") == 200


# --- SSM busy is not "not set up" -------------------------------------------------------------


BUSY = ":warning: The bot is busy right now, so it can't answer yet. Please try again in a minute."


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 400), ("TooManyUpdates", 400), ("InternalServerError", 500), ("ServiceUnavailable", 503)],
)
def test_a_signing_secret_ssm_cannot_give_for_now_is_busy_not_not_set_up(capsys, code: str, status: int) -> None:
    """Before, a throttled SSM told the user "not set up" and Slack never redelivered the event.
    moto cannot throttle: botocore's Stubber answers for SSM here, on the container's own client."""
    body = command_form("hi", "https://hooks.slack.com/commands/T/1/x")
    event = slack_requests.mention_event("hi")
    with Stubber(aws.client("ssm")) as ssm:
        for _ in range(2):  # one answer per request: a cold container holds no value to fall back on
            ssm.add_client_error("get_parameter", service_error_code=code, http_status_code=status)
        command_status, message = handle_slash_command(lower(signed_headers(body)), body, {}, "req-b")
        event_status, event_body = handle_event(lower(signed_headers_for_json(event)), event, {}, "req-e")
        ssm.assert_no_pending_responses()

    assert (command_status, message) == (200, {"response_type": "ephemeral", "text": BUSY})
    assert (event_status, event_body) == (503, {"error": "secrets are unavailable for now"})  # Slack delivers it again
    command_line, event_line = log_lines(capsys.readouterr().out)
    assert (command_line["outcome"], command_line["status"]) == ("secrets_unavailable", 200)
    assert (event_line["outcome"], event_line["status"]) == ("secrets_unavailable", 503)


def test_a_missing_or_forbidden_signing_secret_is_still_not_set_up(capsys) -> None:
    event = slack_requests.mention_event("hi")
    with mock_aws():  # no such parameter
        assert call_event({}, event) == (200, {})
    with Stubber(aws.client("ssm")) as ssm:  # moto grants everything: access denied comes from the Stubber
        ssm.add_client_error("get_parameter", service_error_code="AccessDeniedException", http_status_code=400)
        status, message = call({})
    assert status == 200 and "not set up correctly" in message["text"]
    assert [line["outcome"] for line in log_lines(capsys.readouterr().out)] == ["not_configured", "not_configured"]


# --- worker-only settings never stop the HTTP function -----------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [("SUGGESTED_PROMPTS", "["), ("OPENAI_TEMPERATURE", "warm"), ("MAX_HISTORY_MESSAGES", "many")],
)
def test_a_bad_worker_only_setting_never_stops_verification_or_the_ack(
    lambda_server: FakeServer, monkeypatch, capsys, name: str, value: str
) -> None:
    """Before, any bad setting made every request "not set up": even url_verification failed,
    so the app's events URL could not be verified. Only the worker, which uses it, refuses it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambda_server.url)
    for variable, setting in {**ENV, "AWS_LAMBDA_FUNCTION_NAME": "mameka-dev", name: value}.items():
        monkeypatch.setenv(variable, setting)
    challenge = slack_requests.url_verification("c-42")
    mention = slack_requests.mention_event("hi")
    command = command_form("hi", "https://hooks.slack.com/commands/T/1/x")
    with Client(app, stage_name="dev", project_dir=str(ROOT)) as client:  # the stage names the worker

        def post(path: str, body: bytes, content_type: str, secret: str = SIGNING_SECRET):
            headers = signed_headers(body, secret=secret, content_type=content_type)
            return client.http.post(path, headers=headers, body=body)

        verified = post("/slack/events", challenge, slack_requests.JSON)
        forged = post("/slack/events", challenge, slack_requests.JSON, secret="not-the-secret")
        mentioned = post("/slack/events", mention, slack_requests.JSON)
        acknowledged = post("/slack/commands", command, slack_requests.FORM)

    assert (verified.status_code, verified.json_body) == (200, {"challenge": "c-42"})
    assert forged.status_code == 401
    assert (mentioned.status_code, mentioned.json_body) == (200, {})
    assert acknowledged.status_code == 200 and "Thinking about your question" in acknowledged.json_body["text"]
    assert [invoke.json()["kind"] for invoke in lambda_server.received] == ["message", "slash_command"]
    outcomes = [line["outcome"] for line in log_lines(capsys.readouterr().out)]
    assert outcomes == ["url_verification", "invalid_signature", "dispatched", "dispatched"]


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def log_lines(captured: str) -> list[dict]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
