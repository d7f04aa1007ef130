"""End to end over HTTP against ``chalice local`` (a real subprocess), as Slack would drive it.

- Without ``AWS_LAMBDA_FUNCTION_NAME`` the worker runs in a thread of the local server.
- With it set, the HTTP function makes a real boto3 Event invoke; a fake Lambda endpoint
  captures it and runs the worker function on the payload, as Lambda would.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from chalice.local import LambdaContext

from app import app
from devkit import slack_requests
from devkit.fake_openai import StreamReply, split_deltas
from devkit.fake_slack_api import FAKE_BOT_TOKEN, FakeSlackAPI
from devkit.http_fake import FakeServer, Received, Reply
from tests import chalice_local
from tests.conftest import OPENAI_KEY, SIGNING_SECRET, command_form, response_path, signed_headers
from tests.integration.test_stop import LOCAL_BOUND, assert_stopped, slow_reply, wait_for_text


@dataclass
class LocalServer:
    url: str
    log: Path

    def log_lines(self) -> list[dict]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"event"')]

    def wait_for_log(self, event: str, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.log_lines() if line["event"] == event]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} {event!r} log lines; log:\n{self.log.read_text()}")

    def command(self, text: str, response_url: str, **sign: object) -> requests.Response:
        body = command_form(text, response_url)
        return requests.post(self.url + "/slack/commands", data=body, headers=signed_headers(body, **sign), timeout=30)

    def event(self, body: bytes, **headers: str) -> requests.Response:
        signed = {**signed_headers(body, content_type="application/json"), **headers}
        return requests.post(self.url + "/slack/events", data=body, headers=signed, timeout=30)


def start_chalice_local(tmp_path: Path, extra_env: dict[str, str]) -> Iterator[LocalServer]:
    log = tmp_path / "chalice-local.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_"))}
    env.update(
        {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "OPENAI_API_KEY": OPENAI_KEY, "PYTHONUNBUFFERED": "1", **extra_env}
    )
    with chalice_local.running(env, log) as url:
        yield LocalServer(url, log)


@pytest.fixture
def local_server(tmp_path: Path, openai_server: FakeServer, slack_api: FakeSlackAPI) -> Iterator[LocalServer]:
    yield from start_chalice_local(
        tmp_path,
        {
            "OPENAI_BASE_URL": openai_server.url + "/v1",
            "OPENAI_TIMEOUT_SECONDS": "5",
            "SLACK_BOT_TOKEN": FAKE_BOT_TOKEN,
            "SLACK_API_URL": slack_api.url,
        },
    )


def test_command_is_acknowledged_and_answered_exactly_once(
    local_server: LocalServer, slack_server: FakeServer, openai_server: FakeServer
) -> None:
    path = response_path()
    response = local_server.command("東京でおすすめの散歩道は？", slack_server.url + path)
    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral"
    assert "東京でおすすめの散歩道は？" in response.json()["text"]

    [reply] = slack_server.wait_for(path)
    assert reply.json()["text"] == "```東京でおすすめの散歩道は？```\n*Answer* to: 東京でおすすめの散歩道は？"
    [answer_log] = local_server.wait_for_log("answer", 1)  # the worker has finished
    assert answer_log["outcome"] == "answered"
    assert len(slack_server.requests_to(path)) == 1
    [command_log] = local_server.wait_for_log("command", 1)
    assert command_log["outcome"] == "dispatched" and command_log["user_id"] == "U2147483697"
    assert "東京" not in local_server.log.read_text()  # no message text in logs by default


def test_llm_failure_ends_in_one_plain_reply(
    local_server: LocalServer, slack_server: FakeServer, openai_server: FakeServer
) -> None:
    openai_server.script = [Reply(401, {"error": {"code": "invalid_api_key", "message": "Incorrect API key"}})]
    path = response_path()
    assert local_server.command("hi", slack_server.url + path).status_code == 200
    [reply] = slack_server.wait_for(path)
    assert reply.json() == {
        "response_type": "ephemeral",
        "text": ":warning: The bot's OpenAI API key was rejected. Please tell the bot's admin.",
    }
    local_server.wait_for_log("answer", 1)
    assert len(slack_server.requests_to(path)) == 1
    assert OPENAI_KEY not in local_server.log.read_text()


def test_bad_signature_and_bad_input_over_http(local_server: LocalServer, slack_server: FakeServer) -> None:
    assert local_server.command("hi", slack_server.url + "/x", secret="wrong").status_code == 401
    old = int(time.time()) - 600
    assert local_server.command("hi", slack_server.url + "/x", timestamp=old).status_code == 401
    form = requests.post(
        local_server.url + "/slack/commands",
        data=b"text=hi",
        timeout=30,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 401 and form.json() == {"error": "missing X-Slack-Request-Timestamp header"}
    as_json = requests.post(local_server.url + "/slack/commands", json={"text": "hi"}, timeout=30)
    assert as_json.status_code == 415
    assert slack_server.received == []


def test_fifty_commands_at_once(local_server: LocalServer, slack_server: FakeServer, openai_server: FakeServer) -> None:
    paths = [response_path() for _ in range(50)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(
            pool.map(lambda i: local_server.command(f"q{i}", slack_server.url + paths[i]).status_code, range(50))
        )
    assert statuses == [200] * 50
    for i, path in enumerate(paths):
        assert slack_server.wait_for(path)[0].json()["text"].endswith(f"to: q{i}")
    local_server.wait_for_log("answer", 50)
    assert all(len(slack_server.requests_to(path)) == 1 for path in paths)


@pytest.fixture
def lambda_runs_worker(openai_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeServer, list]]:
    """A Lambda Invoke endpoint that runs the worker function on each Event payload, then answers 202."""
    results: list[dict] = []
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url + "/v1")

    def invoke(received: Received) -> Reply:
        payload = received.json()
        app.handler_map["worker"](payload, LambdaContext("worker", memory_size=512, max_runtime_ms=120_000))
        results.append(
            {"function": received.path, "type": received.headers.get("x-amz-invocation-type"), "payload": payload}
        )
        return Reply(202, b"")

    with FakeServer(invoke) as server:
        yield server, results


def test_in_lambda_mode_the_worker_is_invoked_and_replies_before_returning(
    tmp_path: Path, lambda_runs_worker: tuple[FakeServer, list], slack_server: FakeServer
) -> None:
    lambda_server, results = lambda_runs_worker
    # The fake response_url is on loopback: in Lambda that host must be listed.
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": "mameka-dev",
        "AWS_ENDPOINT_URL_LAMBDA": lambda_server.url,
        "RESPONSE_URL_HOSTS": "127.0.0.1",
    }
    for server in start_chalice_local(tmp_path, env):
        path = response_path()
        response = server.command("hi", slack_server.url + path)
        assert response.status_code == 200 and "Thinking" in response.json()["text"]
        # The endpoint answered only after the worker returned, and the reply was already in.
        lambda_server.wait_for("/2015-03-31/functions/mameka-dev-worker/invocations")
        [result] = results
        assert result["type"] == "Event"
        assert result["payload"] == {
            "kind": "slash_command",
            "id": result["payload"]["id"],
            "asked_at": result["payload"]["asked_at"],
            "text": "hi",
            "response_url": slack_server.url + path,
            "user_id": "U2147483697",
            "channel_id": "C2147483705",
            "team_id": "T0001",
        }
        assert [r.json()["text"] for r in slack_server.requests_to(path)] == ["```hi```\n*Answer* to: hi"]
        assert server.wait_for_log("command", 1)[0]["outcome"] == "dispatched"


# --- conversations ---------------------------------------------------------------------------------------------------

CHANNEL, DM, USER = slack_requests.CHANNEL_ID, slack_requests.DM_CHANNEL_ID, slack_requests.USER_ID


def send(server: LocalServer, slack_api: FakeSlackAPI, body: bytes, answers: int, **headers: str) -> None:
    """Post ``body`` as Slack would (after storing its message), then wait for the worker's ``answers``-th log line."""
    slack_api.add_event(body)
    response = server.event(body, **headers)
    assert (response.status_code, response.json()) == (200, {})
    server.wait_for_log("answer", answers)


def bot_texts(slack_api: FakeSlackAPI, channel: str, thread_ts: str) -> list[str]:
    return [message.text for message in slack_api.bot_messages(channel, thread_ts)]


def test_a_conversation_over_http(
    local_server: LocalServer, slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    """A mention streamed into its thread, a follow-up that remembers, a DM, the assistant pane."""
    ts = slack_requests.new_ts()
    send(local_server, slack_api, slack_requests.mention_event("鎌倉のおすすめは？", ts=ts), 1)
    assert bot_texts(slack_api, CHANNEL, ts) == [f"**Answer** to: <@{USER}>: 鎌倉のおすすめは？"]
    assert len(slack_api.calls_to("chat.startStream")) == 1

    send(local_server, slack_api, slack_requests.mention_event("お昼は？", thread_ts=ts), 2)
    history = openai_server.requests_to("/v1/chat/completions")[-1].json()["messages"]
    assert [m["role"] for m in history[1:]] == ["user", "assistant", "user"]
    assert history[2]["content"] == f"**Answer** to: <@{USER}>: 鎌倉のおすすめは？"

    dm_ts = slack_requests.new_ts()
    send(local_server, slack_api, slack_requests.dm_event("こんにちは", ts=dm_ts), 3)
    assert bot_texts(slack_api, DM, dm_ts) == [f"**Answer** to: <@{USER}>: こんにちは"]

    opened = slack_requests.assistant_thread_started_event()
    pane = json.loads(opened)["event"]["assistant_thread"]["thread_ts"]
    send(local_server, slack_api, opened, 4)
    assert len(slack_api.suggested_prompts(DM, pane)) == 4
    send(local_server, slack_api, slack_requests.assistant_message_event("散歩したい", thread_ts=pane), 5)
    assert bot_texts(slack_api, DM, pane) == [f"**Answer** to: <@{USER}>: 散歩したい"]
    assert [line["outcome"] for line in local_server.log_lines() if line["event"] == "answer"] == [
        "answered",
        "answered",
        "answered",
        "prompts_set",
        "answered",
    ]


def test_redeliveries_are_answered_once_and_bots_are_ignored(
    local_server: LocalServer, slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event("hi", ts=ts, event_id="EvFIRST")
    send(local_server, slack_api, body, 1)
    send(local_server, slack_api, body, 2, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    send(local_server, slack_api, slack_requests.mention_event("hi", ts=ts, event_id="EvSECOND"), 3)
    assert bot_texts(slack_api, CHANNEL, ts) == [f"**Answer** to: <@{USER}>: hi"]
    outcomes = [line["outcome"] for line in local_server.log_lines() if line["event"] == "answer"]
    assert outcomes == ["answered", "duplicate", "duplicate"]

    # Our own answer echoed back as a message.im event: acknowledged, not dispatched.
    echo = slack_requests.dm_event("our answer", bot_id=slack_api.bot_id, user=slack_api.bot_user_id)
    response = local_server.event(echo)
    assert response.status_code == 200
    [*_, line] = local_server.wait_for_log("slack_event", 4)
    assert line["outcome"] == "ignored"
    assert len(openai_server.requests_to("/v1/chat/completions")) == 1


def test_llm_failures_over_http_end_in_one_plain_line(
    local_server: LocalServer, slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    openai_server.script = [Reply(401, {"error": {"code": "invalid_api_key", "message": "Incorrect API key"}})]
    before = slack_requests.new_ts()
    send(local_server, slack_api, slack_requests.mention_event("hi", ts=before), 1)
    assert bot_texts(slack_api, CHANNEL, before) == [
        ":warning: The bot's OpenAI API key was rejected. Please tell the bot's admin."
    ]

    # Broken after text was shown, with no retry left: the text stays, and one line says why.
    openai_server.script = [StreamReply(["半分だけ", "の答え", "…"], break_after=2) for _ in range(3)]
    during = slack_requests.new_ts()
    send(local_server, slack_api, slack_requests.mention_event("hi", ts=during), 2)
    answer, notice = bot_texts(slack_api, CHANNEL, during)
    assert answer == "半分だけの答え"
    assert notice.startswith(":warning: The answer above was cut short")
    assert OPENAI_KEY not in local_server.log.read_text()


def test_broken_streams_are_asked_again_and_replaced_over_http(
    local_server: LocalServer, slack_api: FakeSlackAPI, slack_server: FakeServer, openai_server: FakeServer
) -> None:
    """A mention, a DM and a slash command whose first stream breaks after text: one whole answer each."""
    whole = "もう一度聞いた、全部の答え。"
    for answers, body in enumerate(
        [slack_requests.mention_event("hi", ts=slack_requests.new_ts()), slack_requests.dm_event("hi")], start=1
    ):
        openai_server.script = [StreamReply(["壊れる", "答え", "…"], close_cleanly_after=2), StreamReply([whole])]
        send(local_server, slack_api, body, answers)
        event = json.loads(body)["event"]
        assert bot_texts(slack_api, event["channel"], event["ts"]) == [whole]

    openai_server.script = [StreamReply(["壊れる", "答え", "…"], break_after=2), StreamReply([whole])]
    path = response_path()
    assert local_server.command("hi", slack_server.url + path).status_code == 200
    [reply] = slack_server.wait_for(path)
    assert reply.json()["text"] == "```hi```\n" + whole
    lines = local_server.wait_for_log("answer", 3)
    assert [(line["outcome"], line["attempts"]) for line in lines] == [("answered", 2)] * 3
    assert len(slack_server.requests_to(path)) == 1


def test_the_models_broadcast_mentions_are_defused_over_http(
    local_server: LocalServer, slack_api: FakeSlackAPI, slack_server: FakeServer, openai_server: FakeServer
) -> None:
    injected = ["<!here> <!channel> <", "!everyone> <!subteam^S1> ", "<@U0FRIEND>"]
    openai_server.script = [StreamReply(injected)]
    ts = slack_requests.new_ts()
    send(local_server, slack_api, slack_requests.mention_event("hi", ts=ts), 1)
    [text] = bot_texts(slack_api, CHANNEL, ts)
    assert "<!" not in text and "<@U0FRIEND>" in text

    openai_server.script = [StreamReply(injected)]
    path = response_path()
    local_server.command("hi", slack_server.url + path)
    [reply] = slack_server.wait_for(path)
    assert "<!" not in reply.json()["text"] and "<@U0FRIEND>" in reply.json()["text"]


def test_a_30000_character_answer_over_http_arrives_whole(
    local_server: LocalServer, slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    text = ("長い答えの一文だよ。" * 50 + "\n\n") * 60
    text = text[:30_000]
    openai_server.script = [StreamReply(split_deltas(text, 300))]
    ts = slack_requests.new_ts()
    send(local_server, slack_api, slack_requests.mention_event("長く話して", ts=ts), 1)
    texts = bot_texts(slack_api, CHANNEL, ts)
    assert len(texts) >= 4 and "".join(texts) == text
    assert [call for call in slack_api.calls if not call.ok] == []


def test_a_stop_pressed_mid_answer_over_http_closes_the_llm_and_says_stopped_once(
    local_server: LocalServer, slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    """Slack's stop button against the real server: the stop's event reaches the worker's thread in memory."""
    reply = slow_reply()  # about 6 s of answer, dripped
    openai_server.script = [reply]
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event("長い話をして", ts=ts)
    slack_api.add_event(body)
    assert local_server.event(body).status_code == 200
    stream_ts = wait_for_text(slack_api, ts)  # the first text is visible

    stopped_at = time.monotonic()
    listed = slack_api.stop_session(CHANNEL, ts)  # Slack stops the streams, then sends the event
    shown = slack_api.text_of(CHANNEL, stream_ts)
    response = local_server.event(slack_requests.agent_session_stopped_event(ts, streaming_message_ts=listed))
    assert (response.status_code, response.json()) == (200, {})
    assert listed == [stream_ts] and shown

    # The LLM's connection closed at once, nothing more appended, one "Stopped.", the session "active".
    assert_stopped(slack_api, reply, ts, stream_ts, shown or "", stopped_at, LOCAL_BOUND)
    [answer] = local_server.wait_for_log("answer", 1)
    assert (answer["outcome"], answer["attempts"]) == ("stopped", 1)
    events = [line["outcome"] for line in local_server.log_lines() if line["event"] == "slack_event"]
    assert events == ["dispatched", "stop_recorded"]
    assert len(openai_server.requests_to("/v1/chat/completions")) == 1  # not asked again


@pytest.mark.usefixtures("conversation_env")
def test_in_lambda_mode_a_mention_is_streamed_before_the_worker_returns(
    tmp_path: Path, lambda_runs_worker: tuple[FakeServer, list], slack_api: FakeSlackAPI
) -> None:
    lambda_server, results = lambda_runs_worker
    env = {"AWS_LAMBDA_FUNCTION_NAME": "mameka-dev", "AWS_ENDPOINT_URL_LAMBDA": lambda_server.url}
    for server in start_chalice_local(tmp_path, env):
        ts = slack_requests.new_ts()
        body = slack_requests.mention_event("hi", ts=ts, event_id="EvLAMBDA")
        slack_api.add_event(body)
        assert server.event(body).status_code == 200
        lambda_server.wait_for("/2015-03-31/functions/mameka-dev-worker/invocations")
        [result] = results  # the endpoint answered only after the worker returned
        assert result["type"] == "Event"
        assert result["payload"]["kind"] == "message" and result["payload"]["id"] == "EvLAMBDA"
        assert bot_texts(slack_api, CHANNEL, ts) == [f"**Answer** to: <@{USER}>: hi"]
        assert not any(message.streaming for message in slack_api.bot_messages(CHANNEL, ts))
        assert server.wait_for_log("slack_event", 1)[0]["outcome"] == "dispatched"


@pytest.mark.usefixtures("conversation_env")
def test_in_lambda_mode_with_the_claims_table_a_redelivery_is_answered_once(
    tmp_path: Path, lambda_runs_worker: tuple[FakeServer, list], slack_api: FakeSlackAPI, monkeypatch
) -> None:
    from moto import mock_aws

    from chalicelib import claims

    lambda_server, results = lambda_runs_worker
    # The worker runs in this process (the fake Invoke endpoint calls it), as Lambda would, with
    # the claims table of the stage (moto). Each delivery starts in a fresh "container".
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "mameka-dev-worker")
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "mameka-dev-claims")
    env = {"AWS_LAMBDA_FUNCTION_NAME": "mameka-dev", "AWS_ENDPOINT_URL_LAMBDA": lambda_server.url}
    with mock_aws():
        import boto3

        boto3.client("dynamodb").create_table(
            TableName="mameka-dev-claims",
            KeySchema=[{"AttributeName": claims.KEY_ATTRIBUTE, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": claims.KEY_ATTRIBUTE, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for server in start_chalice_local(tmp_path, env):
            ts = slack_requests.new_ts()
            first = slack_requests.mention_event("hi", ts=ts, event_id="EvFIRST")
            slack_api.add_event(first)
            assert server.event(first).status_code == 200
            lambda_server.wait_for("/2015-03-31/functions/mameka-dev-worker/invocations", 1)
            claims._store = None  # the redelivery lands in another container
            again = slack_requests.mention_event("hi", ts=ts, event_id="EvAGAIN")  # same message, new id
            assert server.event(again, **{"X-Slack-Retry-Num": "1"}).status_code == 200
            lambda_server.wait_for("/2015-03-31/functions/mameka-dev-worker/invocations", 2)
            assert len(results) == 2
            assert bot_texts(slack_api, CHANNEL, ts) == [f"**Answer** to: <@{USER}>: hi"]
        items = boto3.client("dynamodb").scan(TableName="mameka-dev-claims")["Items"]
        assert {item[claims.KEY_ATTRIBUTE]["S"] for item in items} >= {"claim#EvFIRST", f"claim#{CHANNEL}:{ts}"}
