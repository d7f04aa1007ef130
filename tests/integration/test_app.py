"""The HTTP route and the worker function through ``chalice.test.Client``, over the fakes."""

from __future__ import annotations

import json

import pytest
from chalice.local import LambdaContext
from chalice.test import Client

from app import app
from chalicelib import dispatch
from devkit import slack_requests
from devkit.fake_slack_api import FakeSlackAPI
from devkit.http_fake import FakeServer, Reply
from tests.conftest import (
    ROOT,
    command_form,
    response_path,
    signed_headers,
    slash_payload,
    wait_for_local_jobs,
)

pytestmark = pytest.mark.usefixtures("bot_env")


@pytest.fixture
def client() -> Client:
    with Client(app, stage_name="dev", project_dir=str(ROOT)) as client:
        yield client


def post_command(client: Client, text: str, response_url: str, **kwargs):
    body = command_form(text, response_url)
    return client.http.post("/slack/commands", headers=signed_headers(body, **kwargs), body=body)


def test_command_is_acknowledged_then_answered_once(
    client: Client, slack_server: FakeServer, openai_server: FakeServer
) -> None:
    path = response_path()
    response = post_command(client, "東京でおすすめの散歩道は？", slack_server.url + path)

    assert response.status_code == 200
    ack = response.json_body
    assert ack["response_type"] == "ephemeral"
    assert "東京でおすすめの散歩道は？" in ack["text"]

    reply = slack_server.wait_for(path)[0].json()
    wait_for_local_jobs()
    assert len(slack_server.requests_to(path)) == 1
    assert reply["response_type"] == "ephemeral"
    assert reply["text"] == "```東京でおすすめの散歩道は？```\n*Answer* to: 東京でおすすめの散歩道は？"
    sent = openai_server.received[0].json()
    assert sent["messages"][0]["content"].startswith("美少女キャラとしてフレンドリーに話してください。")
    assert sent["temperature"] == 0.9


def test_bad_signature_is_401_and_nothing_is_dispatched(
    client: Client, slack_server: FakeServer, openai_server: FakeServer
) -> None:
    path = response_path()
    response = post_command(client, "hello", slack_server.url + path, secret="wrong-secret")
    wait_for_local_jobs()
    assert response.status_code == 401
    assert json.loads(response.body)["error"] == "signature does not match"
    assert openai_server.received == [] and slack_server.received == []


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Content-Type": "application/x-www-form-urlencoded"}, "missing X-Slack-Request-Timestamp header"),
        (
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": "abc",
                "X-Slack-Signature": "v0=00",
            },
            "X-Slack-Request-Timestamp is not an integer",
        ),
        (
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": "1",
                "X-Slack-Signature": "v0=00",
            },
            "request timestamp is more than 5 minutes from now",
        ),
    ],
)
def test_unsigned_requests_get_401_with_a_reason(client: Client, headers: dict[str, str], reason: str) -> None:
    response = client.http.post("/slack/commands", headers=headers, body=b"text=hi")
    assert response.status_code == 401
    assert json.loads(response.body) == {"error": reason}


def test_json_body_is_415(client: Client) -> None:
    response = client.http.post("/slack/commands", headers={"Content-Type": "application/json"}, body=b"{}")
    assert response.status_code == 415


def test_signed_body_without_response_url_is_400(client: Client) -> None:
    body = b"command=%2Fmameka&text=hi"
    response = client.http.post("/slack/commands", headers=signed_headers(body), body=body)
    assert response.status_code == 400
    assert json.loads(response.body) == {"error": "response_url is missing"}


def test_empty_text_gets_usage_hint(client: Client, slack_server: FakeServer) -> None:
    body = command_form("   ", slack_server.url + "/x", command="/ask")
    response = client.http.post("/slack/commands", headers=signed_headers(body), body=body)
    wait_for_local_jobs()
    assert response.status_code == 200
    assert response.json_body["response_type"] == "ephemeral"
    assert "/ask 東京でおすすめの散歩道は？" in response.json_body["text"]
    assert slack_server.received == []


def test_text_over_limit_is_refused(client: Client, slack_server: FakeServer, monkeypatch) -> None:
    monkeypatch.setenv("MAX_INPUT_CHARS", "10")
    response = post_command(client, "x" * 11, slack_server.url + "/x")
    wait_for_local_jobs()
    assert response.status_code == 200
    assert "11 characters long; the limit is 10" in response.json_body["text"]
    assert slack_server.received == []


def test_fifty_commands_at_once_are_all_answered_at_most_local_max_jobs_at_a_time(
    client: Client, slack_server: FakeServer, openai_server: FakeServer, monkeypatch
) -> None:
    # The first LLM calls wait until LOCAL_MAX_JOBS are in flight: that many run at once, and
    # the rest wait their turn (the server keeps the cores it needs to acknowledge in time).
    slow = openai_server.default

    def answer_when_the_slots_are_full(received):
        openai_server.wait_for("/v1/chat/completions", count=dispatch.LOCAL_MAX_JOBS, timeout=60)
        return slow(received)

    openai_server.default = answer_when_the_slots_are_full
    paths = [response_path() for _ in range(50)]
    for i, path in enumerate(paths):
        assert post_command(client, f"question {i}", slack_server.url + path).status_code == 200
    for i, path in enumerate(paths):
        assert slack_server.wait_for(path)[0].json()["text"].endswith(f"to: question {i}")
    assert openai_server.max_in_flight == dispatch.LOCAL_MAX_JOBS < 50


def test_worker_function_replies_before_returning(slack_server: FakeServer) -> None:
    path = response_path()
    context = LambdaContext("worker", memory_size=512, max_runtime_ms=120_000)
    assert app.handler_map["worker"](slash_payload(slack_server.url + path), context) is None
    assert [r.json()["text"] for r in slack_server.requests_to(path)] == ["```hi```\n*Answer* to: hi"]


def test_worker_in_a_short_lived_context_still_answers(client: Client, slack_server: FakeServer) -> None:
    # chalice.test gives every invoke a 3-second context; a quarter of it is kept for the reply.
    path = response_path()
    client.lambda_.invoke("worker", slash_payload(slack_server.url + path))
    assert [r.json()["text"] for r in slack_server.requests_to(path)] == ["```hi```\n*Answer* to: hi"]


def test_worker_says_it_timed_out_before_its_time_is_up(
    client: Client, slack_server: FakeServer, openai_server: FakeServer
) -> None:
    openai_server.script = [Reply(200, "{}", delay=30)]
    path = response_path()
    client.lambda_.invoke("worker", slash_payload(slack_server.url + path))
    assert [r.json()["text"] for r in slack_server.requests_to(path)] == [
        ":warning: The AI service took too long to answer, so I gave up. Please try again."
    ]


def post_event(client: Client, body: bytes, **kwargs):
    return client.http.post(
        "/slack/events", headers=signed_headers(body, content_type="application/json", **kwargs), body=body
    )


def test_url_verification_answers_the_challenge_once_signed(client: Client) -> None:
    body = slack_requests.url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    response = post_event(client, body)
    assert response.status_code == 200
    assert response.json_body == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    assert post_event(client, body, secret="wrong").status_code == 401


@pytest.mark.usefixtures("conversation_env")
def test_a_mention_is_acknowledged_at_once_then_answered_in_its_thread(
    client: Client, slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event("東京でおすすめの散歩道は？", ts=ts)
    slack_api.add_event(body)
    response = post_event(client, body)
    assert (response.status_code, response.json_body) == (200, {})
    wait_for_local_jobs()
    [answer] = slack_api.bot_messages(slack_requests.CHANNEL_ID, ts)
    assert answer.text == f"**Answer** to: <@{slack_requests.USER_ID}>: 東京でおすすめの散歩道は？"


@pytest.mark.usefixtures("conversation_env")
@pytest.mark.parametrize(
    "body",
    [
        slack_requests.dm_event("echo of our own answer", bot_id="BBOT0001"),
        slack_requests.dm_event("edited", subtype="message_changed"),
        slack_requests.dm_event("from ourselves", user=slack_requests.BOT_USER_ID),
        slack_requests.event_callback({"type": "reaction_added", "user": "U1", "reaction": "eyes"}),
    ],
)
def test_ignored_events_are_acknowledged_and_nothing_is_dispatched(
    client: Client, body: bytes, slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    response = post_event(client, body)
    assert (response.status_code, response.json_body) == (200, {})
    wait_for_local_jobs()
    assert slack_api.calls == [] and openai_server.received == []


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "body is not JSON"),
        (b'{"type": "event_callback", "event": {"type": "app_mention"}}', 400, "event_callback has no event_id"),
    ],
)
def test_signed_malformed_events_are_a_clear_400(client: Client, body: bytes, status: int, error: str) -> None:
    response = post_event(client, body)
    assert (response.status_code, response.json_body) == (status, {"error": error})


def test_unsigned_events_are_401_and_a_form_is_415(client: Client) -> None:
    body = slack_requests.mention_event("hi")
    unsigned = client.http.post("/slack/events", headers={"Content-Type": "application/json"}, body=body)
    assert (unsigned.status_code, unsigned.json_body) == (401, {"error": "missing X-Slack-Request-Timestamp header"})
    form = client.http.post("/slack/events", headers=signed_headers(body), body=body)
    assert form.status_code == 415


def test_ssl_check_is_a_200_with_an_empty_body_before_anything_else(client: Client) -> None:
    # Slack sends it unsigned, to check the URL's certificate; it was a 400 "malformed" before.
    body = b"ssl_check=1&token=deprecated-verification-token"
    response = client.http.post(
        "/slack/commands", headers={"Content-Type": "application/x-www-form-urlencoded"}, body=body
    )
    assert (response.status_code, response.body) == (200, b"")


@pytest.mark.parametrize(
    ("setting", "value", "allowed"),
    [
        ("ALLOWED_TEAM_IDS", "T0001", True),
        ("ALLOWED_TEAM_IDS", "T9999, T8888", False),
        ("ALLOWED_USER_IDS", "U2147483697", True),
        ("ALLOWED_USER_IDS", "U0OTHER", False),
        ("ALLOWED_CHANNEL_IDS", "C2147483705", True),
        ("ALLOWED_CHANNEL_IDS", "C0OTHER", False),
    ],
)
def test_a_slash_command_from_outside_the_allowed_lists_gets_a_polite_no(
    client: Client, slack_server: FakeServer, openai_server: FakeServer, monkeypatch, setting, value, allowed
) -> None:
    monkeypatch.setenv(setting, value)
    path = response_path()
    response = post_command(client, "hi", slack_server.url + path)
    wait_for_local_jobs()
    assert response.status_code == 200
    if allowed:
        assert "Thinking" in response.json_body["text"]
        assert len(slack_server.requests_to(path)) == 1
    else:
        assert response.json_body == {
            "response_type": "ephemeral",
            "text": "Sorry, I'm not available to you here. Please ask the bot's admin if you need me.",
        }
        assert slack_server.received == [] and openai_server.received == []


@pytest.mark.usefixtures("conversation_env")
def test_events_from_outside_the_allowed_lists_get_nothing_at_all(
    client: Client, slack_api: FakeSlackAPI, openai_server: FakeServer, monkeypatch
) -> None:
    monkeypatch.setenv("ALLOWED_CHANNEL_IDS", "C0ONLY")
    monkeypatch.setenv("ALLOWED_USER_IDS", "U2147483697")
    refused = [
        slack_requests.mention_event("hi"),  # a channel not on the list
        slack_requests.dm_event("hi", user="U0STRANGER"),  # a user not on the list
    ]
    for body in refused:
        response = post_event(client, body)
        assert (response.status_code, response.json_body) == (200, {})
    # A DM obeys the team and user lists only: the channel list does not apply.
    ts = slack_requests.new_ts()
    dm = slack_requests.dm_event("hi", ts=ts)
    slack_api.add_event(dm)
    assert post_event(client, dm).status_code == 200
    wait_for_local_jobs()
    assert len(openai_server.received) == 1
    assert len(slack_api.bot_messages(slack_requests.DM_CHANNEL_ID, ts)) == 1
