"""Feedback buttons end to end: on a completed answer only, and a click through ``POST /slack/interactions``.

A thread's answer is run by ``worker.run`` against the fake LLM and the fake Slack Web API (which
refuses blocks Slack refuses); a slash command and the clicks go through ``chalice.test.Client``,
their replies and thanks to the fake ``response_url``; the claims table is moto's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from app import app
from chalicelib import claims, feedback, worker
from chalicelib.deadline import Deadline
from chalicelib.jobs import FeedbackJob, new_id
from chalicelib.settings import DEFAULT_MODEL, Settings
from chalicelib.slack import events, messages
from devkit import slack_requests
from devkit.fake_openai import StreamReply, answer_text, openai_error, split_deltas
from devkit.fake_slack_api import FakeSlackAPI
from devkit.http_fake import FakeServer
from tests.conftest import ROOT, command_form, response_path, signed_headers, wait_for_local_jobs

pytestmark = pytest.mark.usefixtures("quick_retries")

CHANNEL = slack_requests.CHANNEL_ID
USER = slack_requests.USER_ID
INTERACTIONS = "/slack/interactions"
THANKS = {"response_type": "ephemeral", "replace_original": False, "text": "Thanks for the feedback."}
BUTTONS = [f"up:{DEFAULT_MODEL}", f"down:{DEFAULT_MODEL}"]


@pytest.fixture
def client(bot_env: dict[str, str]) -> Iterator[Client]:
    with Client(app, stage_name="dev", project_dir=str(ROOT)) as client:
        yield client


def button_values(blocks: Any) -> list[str]:
    """The values of the feedback buttons in ``blocks`` ([] when there are none)."""
    values = []
    for block in blocks or []:
        if block.get("type") == "context_actions":
            for element in block["elements"]:
                if element["type"] == "feedback_buttons":
                    values += [element["positive_button"]["value"], element["negative_button"]["value"]]
    return values


def blocks_sent(slack_api: FakeSlackAPI) -> list[tuple[str, Any]]:
    return [(call.method, call.params["blocks"]) for call in slack_api.calls if "blocks" in call.params]


def run_mention(env: dict[str, str], slack_api: FakeSlackAPI, ts: str) -> None:
    body = slack_requests.mention_event("東京でおすすめの散歩道は？", ts=ts)
    slack_api.add_event(body)
    job, _ = events.parse(body)
    worker.run(job.to_payload(), Deadline.in_seconds(60), env)  # type: ignore[union-attr]


def log_lines(captured: str, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == event]


# --- the buttons under an answer --------------------------------------------------------------------------------------


def test_a_thread_answer_ends_with_the_buttons_on_its_stop_stream(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI
) -> None:
    ts = slack_requests.new_ts()
    run_mention(conversation_env, slack_api, ts)

    [stop] = slack_api.calls_to("chat.stopStream")
    assert stop.ok and button_values(stop.params["blocks"]) == BUTTONS
    [answer] = slack_api.bot_messages(CHANNEL, ts)
    assert button_values(answer.blocks) == BUTTONS
    assert answer.text == f"**Answer** to: <@{USER}>: 東京でおすすめの散歩道は？"
    assert [method for method, _ in blocks_sent(slack_api)] == ["chat.stopStream"]


def test_an_answer_in_several_messages_has_the_buttons_on_its_last_one_only(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    text = answer_text(20_000, seed=3)
    openai_server.script = [StreamReply(split_deltas(text, 400))]
    ts = slack_requests.new_ts()
    run_mention(conversation_env, slack_api, ts)

    stops = slack_api.calls_to("chat.stopStream")
    assert len(stops) >= 2
    assert [button_values(stop.params.get("blocks")) for stop in stops] == [[]] * (len(stops) - 1) + [BUTTONS]
    assert [method for method, _ in blocks_sent(slack_api)] == ["chat.stopStream"]


@pytest.mark.parametrize(
    "script",
    [
        pytest.param([openai_error(401, "invalid_api_key")], id="error"),
        pytest.param([StreamReply(["partial ", "answer"], finish_reason="length")], id="cut-short"),
    ],
)
def test_an_error_or_a_cut_short_ending_carries_no_buttons(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, script: list[Any]
) -> None:
    openai_server.script = script
    ts = slack_requests.new_ts()
    run_mention(conversation_env, slack_api, ts)

    assert slack_api.bot_messages(CHANNEL, ts)[-1].text.startswith(":warning:")  # the ending was said
    assert blocks_sent(slack_api) == []
    assert all(not message.blocks for message in slack_api.bot_messages(CHANNEL, ts))


def test_when_streaming_is_refused_a_final_update_shows_the_answer_and_the_buttons(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI
) -> None:
    slack_api.fail_next("chat.startStream", "not_allowed_token_type")
    ts = slack_requests.new_ts()
    run_mention(conversation_env, slack_api, ts)

    [answer] = slack_api.bot_messages(CHANNEL, ts)
    expected = f"**Answer** to: <@{USER}>: 東京でおすすめの散歩道は？"
    assert answer.text == expected  # the fallback text, and what the markdown block shows
    assert answer.blocks is not None and answer.blocks[0] == {"type": "markdown", "text": expected}
    assert button_values(answer.blocks) == BUTTONS
    assert [method for method, _ in blocks_sent(slack_api)] == ["chat.update"]


def test_blocks_refused_on_the_stop_leave_the_answer_whole_without_them(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    slack_api.fail_next("chat.stopStream", "invalid_blocks")
    ts = slack_requests.new_ts()
    run_mention(conversation_env, slack_api, ts)

    first, second = slack_api.calls_to("chat.stopStream")
    assert first.error == "invalid_blocks" and "blocks" in first.params
    assert second.ok and "blocks" not in second.params
    [answer] = slack_api.bot_messages(CHANNEL, ts)
    assert answer.text == f"**Answer** to: <@{USER}>: 東京でおすすめの散歩道は？" and not answer.blocks
    assert log_lines(capsys.readouterr().out, "answer")[0]["outcome"] == "answered"


def post_command(client: Client, text: str, response_url: str) -> Any:
    body = command_form(text, response_url)
    return client.http.post("/slack/commands", headers=signed_headers(body), body=body)


def test_a_slash_reply_carries_the_answer_in_a_markdown_block_and_the_buttons(
    client: Client, slack_server: FakeServer
) -> None:
    path = response_path()
    assert post_command(client, "東京で `x` は？", slack_server.url + path).status_code == 200
    reply = slack_server.wait_for(path)[0].json()
    wait_for_local_jobs()

    # The text is what it was before the buttons: now the notification's fallback.
    assert reply["text"] == "```東京で `x` は？```\n*Answer* to: 東京で `x` は？"
    assert reply["blocks"][0] == {
        "type": "markdown",
        "text": "```\n東京で `x` は？\n```\n**Answer** to: 東京で `x` は？",
    }
    assert button_values(reply["blocks"]) == BUTTONS


def test_a_slash_error_reply_has_no_buttons(
    client: Client, slack_server: FakeServer, openai_server: FakeServer
) -> None:
    openai_server.script = [openai_error(401, "invalid_api_key")]
    path = response_path()
    post_command(client, "hi", slack_server.url + path)
    reply = slack_server.wait_for(path)[0].json()
    wait_for_local_jobs()
    assert reply["text"].startswith(":warning:") and "blocks" not in reply


def test_a_slash_answer_too_long_for_a_markdown_block_keeps_its_text_and_has_no_buttons(
    client: Client, slack_server: FakeServer, openai_server: FakeServer
) -> None:
    openai_server.script = [StreamReply(split_deltas("長" * 13_000, 10))]
    path = response_path()
    post_command(client, "hi", slack_server.url + path)
    reply = slack_server.wait_for(path)[0].json()
    wait_for_local_jobs()
    assert "長" * 13_000 in reply["text"] and "blocks" not in reply


# --- a click ----------------------------------------------------------------------------------------------------------


def click(client: Client, value: str, message_ts: str, response_url: str, **headers: Any) -> Any:
    body = slack_requests.interaction_form(slack_requests.feedback_payload(value, message_ts, response_url))
    return client.http.post(INTERACTIONS, headers=signed_headers(body, **headers), body=body)


def test_two_clicks_store_the_last_vote_and_thank_once(
    client: Client, slack_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path, answer_ts = response_path(), slack_requests.new_ts()
    started = time.monotonic()
    first = click(client, f"up:{DEFAULT_MODEL}", answer_ts, slack_server.url + path)
    assert time.monotonic() - started < 3.0  # Slack's limit for the acknowledgement
    assert (first.status_code, first.json_body) == (200, {})
    slack_server.wait_for(path)
    wait_for_local_jobs()
    second = click(client, f"down:{DEFAULT_MODEL}", answer_ts, slack_server.url + path)
    assert second.status_code == 200
    wait_for_local_jobs()

    assert [received.json() for received in slack_server.requests_to(path)] == [THANKS]
    assert feedback.stored_vote(f"feedback#{CHANNEL}:{answer_ts}:{USER}") == "down"
    output = capsys.readouterr().out
    lines = log_lines(output, "feedback")
    assert [(line["vote"], line["outcome"]) for line in lines] == [("up", "dispatched"), ("down", "dispatched")]
    assert all(
        (line["message_ts"], line["channel_id"], line["user_id"], line["model"])
        == (answer_ts, CHANNEL, USER, DEFAULT_MODEL)
        for line in lines
    )
    answers = [line for line in log_lines(output, "answer") if line["kind"] == "feedback"]
    assert [line["outcome"] for line in answers] == ["vote_recorded", "vote_changed"]


@pytest.mark.parametrize("headers", [{"secret": "forged-secret-not-ours"}, {"timestamp": int(time.time()) - 3600}])
def test_a_forged_or_stale_click_is_401_and_nothing_is_stored(
    client: Client, slack_server: FakeServer, headers: dict[str, Any]
) -> None:
    answer_ts = slack_requests.new_ts()
    response = click(client, "up:m", answer_ts, slack_server.url + response_path(), **headers)
    wait_for_local_jobs()
    assert response.status_code == 401 and "error" in response.json_body
    assert slack_server.received == [] and feedback.stored_vote(f"feedback#{CHANNEL}:{answer_ts}:{USER}") is None


def test_an_unsigned_click_is_401(client: Client) -> None:
    body = slack_requests.interaction_form(slack_requests.feedback_payload("up:m", "1.2", "https://hooks.slack.com/a"))
    response = client.http.post(INTERACTIONS, headers={"Content-Type": slack_requests.FORM}, body=body)
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"payload=not-json", "payload is not JSON"),
        (b"text=hello", "form has no single payload field"),
        (b"&".join([b"payload=1"] * 20), "body is not a form"),
        (slack_requests.interaction_form("[1, 2]"), "payload is not a JSON object"),
        (
            slack_requests.interaction_form(
                slack_requests.feedback_payload("sideways", "1.2", "https://hooks.slack.com/a")
            ),
            "feedback_buttons action has no vote in its value",
        ),
        (
            slack_requests.interaction_form(
                slack_requests.feedback_payload("up:m", "1.2", "https://hooks.slack.com/a", message=None)
            ),
            "block_actions has no message",
        ),
    ],
)
def test_a_signed_malformed_click_is_400_with_its_reason(client: Client, body: bytes, reason: str) -> None:
    response = client.http.post(INTERACTIONS, headers=signed_headers(body), body=body)
    wait_for_local_jobs()
    assert (response.status_code, response.json_body) == (400, {"error": reason})


def test_a_click_whose_response_url_is_not_slack_is_400(client: Client) -> None:
    response = click(client, "up:m", slack_requests.new_ts(), "https://attacker.example.com/actions/x")
    assert response.status_code == 400
    assert response.json_body == {"error": "response_url's host is not in RESPONSE_URL_HOSTS"}


def test_other_interactions_are_acknowledged_and_ignored(
    client: Client, slack_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for payload in (
        {"type": "view_submission", "view": {}},
        slack_requests.feedback_payload("up:m", "1.2", slack_server.url + "/x", actions=[{"type": "button"}]),
    ):
        body = slack_requests.interaction_form(payload)
        response = client.http.post(INTERACTIONS, headers=signed_headers(body), body=body)
        assert (response.status_code, response.json_body) == (200, {})
    wait_for_local_jobs()
    assert slack_server.received == []
    lines = log_lines(capsys.readouterr().out, "interaction")
    assert [line["outcome"] for line in lines] == ["ignored", "ignored"]


# --- in Lambda: the claims table ---------------------------------------------------------------------------------


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(
            TableName="mameka-test-claims",
            KeySchema=[{"AttributeName": claims.KEY_ATTRIBUTE, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": claims.KEY_ATTRIBUTE, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def lambda_settings(table_name: str = "mameka-test-claims") -> Settings:
    return Settings.from_env(
        {
            "AWS_LAMBDA_FUNCTION_NAME": "mameka-test-worker",
            "IDEMPOTENCY_TABLE": table_name,
            "RESPONSE_URL_HOSTS": "127.0.0.1",
        },
        function="worker",
    )


def vote_job(vote: str, response_url: str, message_ts: str = "1700000000.000100") -> FeedbackJob:
    return FeedbackJob(
        id=new_id(),
        asked_at=time.time(),
        team_id=slack_requests.TEAM_ID,
        channel_id=CHANNEL,
        user_id=USER,
        message_ts=message_ts,
        vote=vote,
        model="gpt-test",
        response_url=response_url,
    )


def test_in_lambda_a_vote_is_one_item_in_the_claims_table_kept_90_days(table: Any, slack_server: FakeServer) -> None:
    path = response_path()
    before = time.time()
    feedback.record(vote_job("up", slack_server.url + path), lambda_settings())
    feedback.record(vote_job("down", slack_server.url + path), lambda_settings())

    key = f"feedback#{CHANNEL}:1700000000.000100:{USER}"
    [item] = table.scan(TableName="mameka-test-claims")["Items"]
    assert item["pk"] == {"S": key}
    assert (item["vote"], item["model"]) == ({"S": "down"}, {"S": "gpt-test"})
    assert int(item["expires_at"]["N"]) - before == pytest.approx(90 * 86400, abs=5)
    assert [received.json() for received in slack_server.requests_to(path)] == [THANKS]


def test_a_vote_the_table_cannot_take_is_answered_once_in_plain_words(
    table: Any, slack_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = response_path()
    feedback.record(vote_job("up", slack_server.url + path), lambda_settings("no-such-table"))
    assert [received.json()["text"] for received in slack_server.requests_to(path)] == [messages.FEEDBACK_NOT_RECORDED]
    [line] = log_lines(capsys.readouterr().out, "answer")
    assert line["outcome"] == "vote_not_stored" and line["delivered"] is True
