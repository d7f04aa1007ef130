"""The fault table (README, "Faults"): every dependency failure, run through ``worker.run``.

Contract: each row runs one job, a slash command or a mention, against real servers on
127.0.0.1 (the fake OpenAI server, the fake Slack Web API, a fake response_url; SSM through
moto, or through a fake SSM endpoint on loopback where moto cannot produce the fault) and
shows four things:

- the user hears exactly one plain-language message wherever they can still be reached (the
  slash command's one ``response_url`` reply, or one line in the mention's thread), and its
  text is exactly the one in ``chalicelib.slack.messages``: never an exception's text;
- exactly one structured log line (``"event":"answer"``) whose ``outcome`` (and error fields)
  names the fault;
- the worker returns normally (None);
- no secret, and no message text, appears anywhere in the output.

The ``response_url`` rows (404 expired, 500, timeout, connection reset) are
``test_fault_expired_url``, ``test_fault_server_error``, ``test_fault_timeout`` and
``test_fault_connection_reset`` in ``tests/integration/test_response_url.py``, which make the same checks.
An unexpected error (the worker's catch-all) is ``tests/integration/test_worker.py``'s
``test_an_unexpected_error_gets_the_plain_service_error_reply``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from chalicelib import worker
from chalicelib.deadline import Deadline
from chalicelib.slack import events, stream
from devkit import slack_requests
from devkit.fake_openai import StreamReply, chat_completion, openai_error
from devkit.fake_slack_api import FAKE_BOT_TOKEN, FakeSlackAPI
from devkit.http_fake import FakeServer, Reply
from tests.conftest import OPENAI_KEY, SIGNING_SECRET, closed_port, response_path, slash_payload

# Which attempts are made and what the user sees, not how long the pause between them is.
pytestmark = pytest.mark.usefixtures("quick_retries")

QUESTION = "秘密の質問"  # must never reach the logs (LOG_MESSAGE_TEXT is off)
CHANNEL = slack_requests.CHANNEL_ID
USER = slack_requests.USER_ID
CHAT = "/v1/chat/completions"
# As in Lambda: secrets come from SSM (outside Lambda a loopback LLM needs no key), and the
# loopback response_url must be listed to be answered.
IN_LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "mameka-dev-worker", "RESPONSE_URL_HOSTS": "127.0.0.1"}
OPENAI_KEY_PARAMETER = "/mameka/test/openai-api-key"
BOT_TOKEN_PARAMETER = "/mameka/test/slack-bot-token"

# What the user reads, verbatim: the README's table quotes these.
SAYS = {
    "invalid_key": ":warning: The bot's OpenAI API key was rejected. Please tell the bot's admin.",
    "permission_denied": (
        ":warning: The AI service refused the bot access to its AI model. Please tell the bot's admin."
    ),
    "model_not_found": (
        ":warning: The AI service doesn't know the AI model the bot is set up for. Please tell the bot's admin."
    ),
    "rate_limited": ":warning: The AI service is busy right now (rate limited). Please try again in a minute.",
    "quota_exhausted": ":warning: The AI service's usage quota is used up. Please tell the bot's admin.",
    "too_long": ":warning: Your question is too long for the AI model. Please shorten it and try again.",
    "service_error": ":warning: The AI service had a problem answering. Please try again later.",
    "timeout": ":warning: The AI service took too long to answer, so I gave up. Please try again.",
    "unreadable": ":warning: The AI service sent an answer I couldn't read. Please try again.",
    "not_configured": ":warning: The bot is not set up correctly, so it can't answer. Please tell the bot's admin.",
    "stalled": ":warning: The AI service stopped sending its answer part-way. Please try again.",
    "secrets_busy": ":warning: The bot is busy right now, so it can't answer yet. Please try again in a minute.",
    "slack_error": ":warning: Slack refused part of my answer, so it may be incomplete. Please try again.",
}
CUT_SHORT = {
    "cut_off": ":warning: The answer above was cut short because the AI service stopped sending it. "
    "Please ask again if you need the rest.",
    "timeout": ":warning: The answer above was cut short because the AI service took too long. "
    "Please ask again if you need the rest.",
    "stalled": ":warning: The answer above was cut short because the AI service stopped sending it for too long. "
    "Please ask again if you need the rest.",
}
ANSWER = f"**Answer** to: <@{USER}>: {QUESTION}"  # what the fake LLM answers to the mention


# --- running one job --------------------------------------------------------------------------------------------------


def ask_by_command(env: dict[str, str], slack_server: FakeServer) -> list[dict[str, Any]]:
    """Run one slash command to its end; every message posted to its response_url."""
    path = response_path()
    assert worker.run(slash_payload(slack_server.url + path, QUESTION), Deadline.in_seconds(60), env) is None
    return [received.json() for received in slack_server.requests_to(path)]


def ask_by_mention(env: dict[str, str], slack_api: FakeSlackAPI) -> list[str]:
    """Run one mention to its end; the texts of the bot's messages in its thread, oldest first."""
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event(QUESTION, ts=ts)
    slack_api.add_event(body)  # Slack has the message before it sends the event
    job, _ = events.parse(body)
    assert job is not None
    assert worker.run(job.to_payload(), Deadline.in_seconds(60), env) is None
    return [message.text for message in slack_api.bot_messages(CHANNEL, ts)]


def the_answer_line(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, *secrets: str, traceback: bool = False
) -> dict[str, Any]:
    """The job's one ``answer`` log line, after checking that no output shows a secret or the question."""
    captured = capsys.readouterr()
    output = captured.out + captured.err + caplog.text
    for secret in (OPENAI_KEY, SIGNING_SECRET, FAKE_BOT_TOKEN, QUESTION, *secrets):
        assert secret not in output
    assert ("Traceback" in output) is traceback
    lines = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line["event"] == "answer"]
    return line


# --- SSM --------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def ssm_failing_with(code: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer | None]:
    """SSM answering every GetParameter with ``code``.

    ParameterNotFound comes from moto (the parameter simply is not there). moto cannot be told
    to deny or throttle, so those come from a fake SSM endpoint on loopback
    (``AWS_ENDPOINT_URL_SSM``) answering as SSM does: HTTP 400 with the code in ``__type``.
    botocore's own retry rules then apply, as against SSM (a throttle is retried once).
    """
    if code == "ParameterNotFound":
        with mock_aws():
            yield None
        return
    ssm = FakeServer(lambda received: Reply(400, {"__type": code, "message": f"fake SSM says {code}"}))
    with ssm:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", ssm.url)
        yield ssm


SSM_FAULTS = [
    pytest.param("ParameterNotFound", 1, id="missing"),
    pytest.param("AccessDeniedException", 1, id="access-denied"),
    pytest.param("ThrottlingException", 2, id="throttled"),  # botocore retries a throttle once
]


# A throttled SSM is a passing trouble, not a broken setup: "busy, try again in a minute".
SSM_ENDINGS = {
    "ParameterNotFound": ("not_configured", "not_configured"),
    "AccessDeniedException": ("not_configured", "not_configured"),
    "ThrottlingException": ("secrets_busy", "secrets_unavailable"),
}


def without(env: dict[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in env.items() if key != name}


@pytest.mark.parametrize(("code", "attempts"), SSM_FAULTS)
def test_ssm_openai_key_for_a_slash_command(
    bot_env: dict[str, str],
    slack_server: FakeServer,
    openai_server: FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    code: str,
    attempts: int,
) -> None:
    env = without(bot_env, "OPENAI_API_KEY") | IN_LAMBDA | {"OPENAI_API_KEY_PARAMETER": OPENAI_KEY_PARAMETER}
    with ssm_failing_with(code, monkeypatch) as ssm:
        replies = ask_by_command(env, slack_server)
    says, outcome = SSM_ENDINGS[code]
    assert replies == [{"response_type": "ephemeral", "text": SAYS[says]}]
    assert openai_server.received == []
    line = the_answer_line(capsys, caplog)
    assert (line["outcome"], line["delivered"]) == (outcome, True)
    assert f"could not read SSM parameter {OPENAI_KEY_PARAMETER}: {code}" in caplog.text
    if ssm is not None:
        assert [r.headers["x-amz-target"] for r in ssm.received] == ["AmazonSSM.GetParameter"] * attempts


@pytest.mark.parametrize(("code", "attempts"), SSM_FAULTS)
def test_ssm_openai_key_for_a_mention(
    conversation_env: dict[str, str],
    slack_api: FakeSlackAPI,
    openai_server: FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    code: str,
    attempts: int,
) -> None:
    env = without(conversation_env, "OPENAI_API_KEY") | IN_LAMBDA | {"OPENAI_API_KEY_PARAMETER": OPENAI_KEY_PARAMETER}
    with ssm_failing_with(code, monkeypatch) as ssm:
        texts = ask_by_mention(env, slack_api)
    says, outcome = SSM_ENDINGS[code]
    assert texts == [SAYS[says]]
    assert openai_server.received == []
    assert the_answer_line(capsys, caplog)["outcome"] == outcome
    assert f"could not read SSM parameter {OPENAI_KEY_PARAMETER}: {code}" in caplog.text
    if ssm is not None:
        assert len(ssm.received) == attempts


@pytest.mark.parametrize(("code", "attempts"), SSM_FAULTS)
def test_ssm_bot_token_for_a_mention(
    conversation_env: dict[str, str],
    slack_api: FakeSlackAPI,
    openai_server: FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    code: str,
    attempts: int,
) -> None:
    # Without the token nobody can be told: the log line is all there is, and the LLM is not paid for.
    env = without(conversation_env, "SLACK_BOT_TOKEN") | IN_LAMBDA | {"SLACK_BOT_TOKEN_PARAMETER": BOT_TOKEN_PARAMETER}
    with ssm_failing_with(code, monkeypatch) as ssm:
        assert ask_by_mention(env, slack_api) == []
    assert slack_api.calls == [] and openai_server.received == []
    assert the_answer_line(capsys, caplog)["outcome"] == SSM_ENDINGS[code][1]
    assert f"could not read SSM parameter {BOT_TOKEN_PARAMETER}: {code}" in caplog.text
    if ssm is not None:
        assert len(ssm.received) == attempts


# --- the LLM ----------------------------------------------------------------------------------------------------------


FAST_RETRY = {"retry-after-ms": "10"}  # the SDK's retries (and their backoff) stay quick in tests

# (what the fake LLM answers, or "refused" for a closed port; the kind the user is told; extra settings)
LLM_FAULTS = [
    pytest.param(
        openai_error(401, "invalid_api_key", "Incorrect API key provided: sk-test-***-real"),
        "invalid_key",
        {},
        id="401",
    ),
    pytest.param(
        openai_error(403, "unsupported_country_region_territory", "Country, region, or territory not supported"),
        "permission_denied",
        {},
        id="403",
    ),
    pytest.param(
        openai_error(404, "model_not_found", "The model `gpt-9` does not exist"), "model_not_found", {}, id="404-model"
    ),
    pytest.param(openai_error(429, "rate_limit_exceeded"), "rate_limited", {}, id="429-rate-limit"),
    pytest.param(openai_error(429, "insufficient_quota"), "quota_exhausted", {}, id="429-insufficient-quota"),
    pytest.param(openai_error(400, "context_length_exceeded"), "too_long", {}, id="400-context-length"),
    pytest.param(openai_error(500, "server_error"), "service_error", {}, id="500"),
    pytest.param(Reply(503, "<html>503 Service Temporarily Unavailable</html>"), "service_error", {}, id="503"),
    pytest.param(
        Reply(200, chat_completion("too late"), delay=30),
        "timeout",
        {"OPENAI_TIMEOUT_SECONDS": "2"},
        id="read-timeout",
    ),
    pytest.param("refused", "service_error", {}, id="connection-refused"),
    pytest.param(Reply(200, "<html>gateway says hi</html>"), "unreadable", {}, id="not-json"),
]


def llm_failing_with(reply: Reply | str, openai_server: FakeServer, env: dict[str, str]) -> dict[str, str]:
    """Script the fake LLM to fail every attempt (the SDK's retries and the thread's second try
    included); returns the settings that point the bot at it."""
    if reply == "refused":
        return {**env, "OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1"}
    assert isinstance(reply, Reply)
    reply.headers.update(FAST_RETRY)
    openai_server.script = [reply] * 6
    return env


@pytest.mark.parametrize(("reply", "kind", "settings"), LLM_FAULTS)
def test_llm_fault_for_a_slash_command(
    bot_env: dict[str, str],
    openai_server: FakeServer,
    slack_server: FakeServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    reply: Reply | str,
    kind: str,
    settings: dict[str, str],
) -> None:
    env = llm_failing_with(reply, openai_server, {**bot_env, **settings})
    assert ask_by_command(env, slack_server) == [{"response_type": "ephemeral", "text": SAYS[kind]}]
    line = the_answer_line(capsys, caplog)
    assert (line["outcome"], line["delivered"]) == (kind, True)


@pytest.mark.parametrize(("reply", "kind", "settings"), LLM_FAULTS)
def test_llm_fault_for_a_mention(
    conversation_env: dict[str, str],
    openai_server: FakeServer,
    slack_api: FakeSlackAPI,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    reply: Reply | str,
    kind: str,
    settings: dict[str, str],
) -> None:
    env = llm_failing_with(reply, openai_server, {**conversation_env, **settings})
    assert ask_by_mention(env, slack_api) == [SAYS[kind]]
    assert slack_api.calls_to("chat.startStream") == []  # nothing was streamed before the line
    assert the_answer_line(capsys, caplog)["outcome"] == kind


# A mention's answer is streamed, so it can also fail part-way. A broken stream is asked for
# again (twice at most) and replaces what was shown; with no retry or no time left, the text
# already shown stays and one line says why. The step has OPENAI_TIMEOUT_SECONDS (6 s: room for
# three attempts and their backoffs) unless a case says otherwise; a stall is STREAM_STALL_SECONDS
# of silence: short for a test, long enough that a busy machine's scheduling is not taken for one.
STREAM_SETTINGS = {"OPENAI_TIMEOUT_SECONDS": "6", "STREAM_STALL_SECONDS": "0.5"}
CUT = StreamReply(["The first half. ", "The second half", "."], break_after=2)
STREAM_FAULTS = [
    pytest.param([CUT], [ANSWER], "answered", 2, {}, id="stream-cut-off-then-whole"),
    pytest.param(
        [CUT, CUT, CUT],
        ["The first half. The second half", CUT_SHORT["cut_off"]],
        "cut_short_cut_off",
        3,
        {},
        id="stream-cut-off-every-time",
    ),
    pytest.param(
        [StreamReply(["A slow start", " and then"], pause_after=1, pause_seconds=2.5)],
        [ANSWER],
        "answered",
        2,
        {},
        id="stream-stalls-then-whole",  # STREAM_STALL_SECONDS of silence after text
    ),
    pytest.param(
        [StreamReply(["A slow start", " and nothing more"], stall_after=1)] * 3,
        ["A slow start", CUT_SHORT["stalled"]],
        "cut_short_stalled",
        3,
        {},
        id="stream-stalls-every-time",
    ),
    pytest.param(
        [StreamReply(["never sent"], stall_after=0)] * 3,
        [SAYS["stalled"]],
        "stalled",
        3,
        {},
        id="stream-stalls-after-its-first-chunk",  # the role chunk, before any text
    ),
    pytest.param(
        [StreamReply(["never sent"], wait_before=60)],
        [SAYS["timeout"]],
        "timeout",
        1,
        {"OPENAI_TIMEOUT_SECONDS": "2"},  # four stall limits of silence, and no stall: the timeout ends it
        id="stream-silent-before-its-first-chunk",  # a reasoning model thinks: only the step's timeout bounds it
    ),
]


@pytest.mark.parametrize(("replies", "texts", "outcome", "requests", "settings"), STREAM_FAULTS)
def test_llm_stream_fault_for_a_mention(
    conversation_env: dict[str, str],
    openai_server: FakeServer,
    slack_api: FakeSlackAPI,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    replies: list[StreamReply],
    texts: list[str],
    outcome: str,
    requests: int,
    settings: dict[str, str],
) -> None:
    openai_server.script = [dataclasses.replace(reply) for reply in replies]  # each with its own `ended`
    env = {**conversation_env, **STREAM_SETTINGS, **settings}
    assert ask_by_mention(env, slack_api) == texts
    assert all(message.stream != "streaming" for message in slack_api.messages(CHANNEL))  # the stream was stopped
    assert len(openai_server.requests_to(CHAT)) == requests
    assert the_answer_line(capsys, caplog)["outcome"] == outcome


# --- the Slack Web API (a mention's answer) ---------------------------------------------------------------------------


def test_slack_ratelimited_with_a_retry_after_that_fits_is_waited_for(
    conversation_env: dict[str, str],
    slack_api: FakeSlackAPI,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack_api.fail_next("chat.startStream", "ratelimited", retry_after=1)
    started = time.monotonic()
    assert ask_by_mention(conversation_env, slack_api) == [ANSWER]
    assert time.monotonic() - started >= 1  # Slack's Retry-After was honoured, then the call went through
    assert [call.error for call in slack_api.calls_to("chat.startStream")] == ["ratelimited", None]
    assert slack_api.calls_to("chat.postMessage") == []  # streamed as usual: no fallback
    assert the_answer_line(capsys, caplog)["outcome"] == "answered"


def test_slack_ratelimited_with_a_retry_after_past_the_deadline_posts_the_answer_instead(
    conversation_env: dict[str, str],
    slack_api: FakeSlackAPI,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Five minutes is past the job's minute: not waited for. Streaming counts as refused, so the
    # answer is posted whole with chat.postMessage (another method, with its own rate limit).
    slack_api.fail_next("chat.startStream", "ratelimited", retry_after=300)
    started = time.monotonic()
    assert ask_by_mention(conversation_env, slack_api) == [ANSWER]
    assert time.monotonic() - started < 30  # no sleep of 300 s (or of what was left)
    assert len(slack_api.calls_to("chat.startStream")) == 1
    assert len(slack_api.calls_to("chat.postMessage")) == 1
    assert "Slack refused to stream (ratelimited)" in caplog.text
    assert the_answer_line(capsys, caplog)["outcome"] == "answered"


def refuse_every_write(slack_api: FakeSlackAPI, error: str, **script: Any) -> None:
    """Every call the answer could make is refused with ``error`` (enough of them for any path)."""
    for method in ("agents.sessions.setStatus", "chat.startStream", "chat.postMessage", "chat.stopStream"):
        slack_api.fail_next(method, error, count=5, **script)


@pytest.mark.parametrize(
    ("error", "script"), [pytest.param("ratelimited", {"retry_after": 300}, id="ratelimited-past-the-deadline")]
)
def test_slack_refusing_every_post_leaves_only_the_log(
    conversation_env: dict[str, str],
    slack_api: FakeSlackAPI,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    error: str,
    script: dict[str, Any],
) -> None:
    refuse_every_write(slack_api, error, **script)
    started = time.monotonic()
    assert ask_by_mention(conversation_env, slack_api) == []  # the user cannot be reached
    assert time.monotonic() - started < 30  # a Retry-After past the deadline is not slept through
    # The answer was tried streamed, then posted (a rate-limited part held back for the next turn);
    # then one notice (plain ``text``, where the answer is ``markdown_text``) was tried: never two.
    assert len(slack_api.calls_to("chat.startStream")) == 1
    posts = slack_api.calls_to("chat.postMessage")
    assert [call.params.get("text") for call in posts if "text" in call.params] == [SAYS["slack_error"]]
    assert all(call.error == error for call in posts)
    line = the_answer_line(capsys, caplog)
    assert (line["outcome"], line["slack_error"], line["status_error"]) == ("slack_error", error, error)


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel"])
def test_slack_without_the_channel_costs_no_llm_call_and_leaves_only_the_log(
    conversation_env: dict[str, str],
    slack_api: FakeSlackAPI,
    openai_server: FakeServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    error: str,
) -> None:
    # The status call, the first, says the answer could not be posted: the LLM is not paid for.
    refuse_every_write(slack_api, error)
    assert ask_by_mention(conversation_env, slack_api) == []
    assert openai_server.requests_to(CHAT) == []
    assert [call.method for call in slack_api.calls] == ["agents.sessions.setStatus"]
    line = the_answer_line(capsys, caplog)
    assert (line["outcome"], line["slack_error"], line["status_error"]) == ("slack_error", error, error)


def test_slack_invalid_auth_leaves_only_the_log(
    conversation_env: dict[str, str],
    slack_api: FakeSlackAPI,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A revoked or wrong token (from the environment: it is not read again, see test_conversation
    # for one from SSM that is). Every call is refused, so nobody can be told.
    wrong = "xoxb-fake-revoked-token"
    assert ask_by_mention({**conversation_env, "SLACK_BOT_TOKEN": wrong}, slack_api) == []
    assert slack_api.calls and all(call.error == "invalid_auth" for call in slack_api.calls)
    line = the_answer_line(capsys, caplog, wrong)
    assert line["outcome"] == "slack_error"
    assert line["slack_error"] == line["status_error"] == "invalid_auth"


def test_slack_msg_too_long_on_an_append_goes_on_in_a_new_message(
    conversation_env: dict[str, str],
    slack_api: FakeSlackAPI,
    openai_server: FakeServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Slack's cap on a streamed message turned out lower than ours: that message ends where it is
    # and the answer goes on in a new one. Paced over 0.6 s with appends due every 0.4 s (2 s in
    # production), so that an append is due on the way.
    monkeypatch.setattr(stream, "STREAM_INTERVAL_SECONDS", 0.4)
    deltas = ["First part. ", "Second part. ", "Third part. ", "Fourth part."]
    openai_server.script = [StreamReply(deltas, delay=0.2)]
    slack_api.fail_next("chat.appendStream", "msg_too_long")
    texts = ask_by_mention(conversation_env, slack_api)
    assert len(texts) == 2 and "".join(texts) == "".join(deltas)  # nothing lost, nothing repeated
    assert [call.error for call in slack_api.calls_to("chat.appendStream")][:1] == ["msg_too_long"]
    assert "Slack found a streamed message too long" in caplog.text
    assert the_answer_line(capsys, caplog)["outcome"] == "answered"


def test_slack_msg_too_long_on_the_last_piece_says_so_in_one_line(
    conversation_env: dict[str, str],
    slack_api: FakeSlackAPI,
    openai_server: FakeServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # chat.stopStream refuses the answer's end: what was streamed stays, the stream is stopped,
    # and one line says the answer may be incomplete.
    openai_server.script = [StreamReply(["Shown at once. ", "Refused at the end."])]
    slack_api.fail_next("chat.stopStream", "msg_too_long")
    assert ask_by_mention(conversation_env, slack_api) == ["Shown at once. ", SAYS["slack_error"]]
    assert all(message.stream != "streaming" for message in slack_api.messages(CHANNEL))
    line = the_answer_line(capsys, caplog)
    assert (line["outcome"], line["slack_error"]) == ("slack_error", "msg_too_long")


def test_slack_answering_bytes_that_are_not_utf8_is_a_slack_error(
    conversation_env: dict[str, str],
    slack_api: FakeSlackAPI,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Found by this table: slack_sdk raised UnicodeDecodeError for an answer that is not UTF-8 (a
    # proxy's error page) and chalicelib.slack.web let it through (outcome internal_error).
    with FakeServer(lambda received: Reply(200, b"\xff\xfe<html>502 Bad Gateway</html>")) as proxy:
        env = {**conversation_env, "SLACK_API_URL": proxy.url + "/api/"}
        assert ask_by_mention(env, slack_api) == []  # the real Slack never heard of it
    assert the_answer_line(capsys, caplog)["outcome"] == "slack_error"
