"""devkit.slack_requests: forms, envelopes and signatures as Slack makes them.

The signature is held to slack_sdk's ``SignatureVerifier`` as an oracle (an implementation
that is not ours); the envelopes are checked field by field against Slack's documented shape.
"""

from __future__ import annotations

import json
import re
import threading
from decimal import Decimal
from urllib.parse import parse_qs

from slack_sdk.signature import Clock, SignatureVerifier

from devkit import slack_requests
from devkit.slack_requests import (
    assistant_message_event,
    assistant_thread_started_event,
    command_form,
    dm_event,
    event_callback,
    mention_event,
    new_ts,
    sign,
    signed_headers,
    url_verification,
)

SECRET = "devkit-test-secret-not-real"


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self.fixed = now

    def now(self) -> float:
        return self.fixed


def test_signature_matches_slack_sdk() -> None:
    body = "text=東京&response_url=https%3A%2F%2Fexample.com".encode()
    verifier = SignatureVerifier(SECRET, clock=FixedClock(1_700_000_000))
    assert sign(SECRET, "1700000000", body) == verifier.generate_signature(timestamp="1700000000", body=body)
    assert sign(SECRET, 1_700_000_000, body) == sign(SECRET, "1700000000", body)

    headers = signed_headers(SECRET, body, timestamp=1_700_000_000)
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b"x", headers)
    assert not SignatureVerifier("another-secret", clock=FixedClock(1_700_000_000)).is_valid_request(body, headers)


def test_signed_headers_default_to_now_and_a_form() -> None:
    body = b"x=1"
    headers = signed_headers(SECRET, body)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert SignatureVerifier(SECRET).is_valid_request(body, headers)  # the real clock: "now" is within 5 minutes
    assert "X-Slack-Retry-Num" not in headers

    retried = signed_headers(SECRET, body, content_type=slack_requests.JSON, retry_num=2)
    assert retried["Content-Type"] == "application/json"
    assert retried["X-Slack-Retry-Num"] == "2" and retried["X-Slack-Retry-Reason"] == "http_timeout"


def test_command_form_has_slacks_fields_and_takes_overrides() -> None:
    form = parse_qs(command_form("a < b & c", "https://hooks.slack.com/commands/T/1/x").decode())
    assert form["command"] == ["/mameka"]
    assert form["text"] == ["a < b & c"]
    assert form["response_url"] == ["https://hooks.slack.com/commands/T/1/x"]
    assert form["team_id"] == ["T0001"] and form["channel_id"] == ["C2147483705"] and form["user_id"] == ["U2147483697"]
    assert {"token", "trigger_id", "api_app_id", "is_enterprise_install", "user_name"} <= set(form)

    changed = parse_qs(command_form("hi", "https://r", command="/ask", trigger_id=None, extra="1").decode())
    assert changed["command"] == ["/ask"] and changed["extra"] == ["1"]
    assert "trigger_id" not in changed


def envelope(body: bytes) -> dict:
    data = json.loads(body)
    assert isinstance(data, dict)
    return data


def test_mention_event_is_an_event_callback_with_the_bots_authorization() -> None:
    first = envelope(mention_event("東京の天気は？"))
    second = envelope(mention_event("again", thread_ts="1700000000.000100", bot_user_id="UOTHERBOT"))

    assert first["type"] == "event_callback"
    assert first["team_id"] == "T0001" and first["api_app_id"] == "A123456"
    assert re.fullmatch(r"Ev[0-9A-Z]{10}", first["event_id"]) and first["event_id"] != second["event_id"]
    assert isinstance(first["event_time"], int)
    assert first["authorizations"][0]["user_id"] == "UBOT0001" and first["authorizations"][0]["is_bot"] is True

    event = first["event"]
    assert event["type"] == "app_mention"
    assert event["text"] == "<@UBOT0001> 東京の天気は？"
    assert event["channel"] == "C2147483705" and event["user"] == "U2147483697"
    assert event["ts"] == event["event_ts"]
    assert "thread_ts" not in event

    assert second["event"]["thread_ts"] == "1700000000.000100"
    assert second["event"]["text"] == "<@UOTHERBOT> again"
    assert second["authorizations"][0]["user_id"] == "UOTHERBOT"
    # A text that mentions the bot already is left as it is.
    assert envelope(mention_event("hey <@UBOT0001> you"))["event"]["text"] == "hey <@UBOT0001> you"


def test_dm_and_assistant_messages() -> None:
    dm = envelope(dm_event("hello"))["event"]
    assert dm["type"] == "message" and dm["channel_type"] == "im" and dm["channel"].startswith("D")
    assert "thread_ts" not in dm

    pane = envelope(assistant_message_event("in the pane"))["event"]
    assert pane["channel_type"] == "im" and pane["channel"].startswith("D")
    assert Decimal(pane["thread_ts"]) < Decimal(pane["ts"])

    own = envelope(dm_event("my answer", user="UBOT0001", bot_id="BBOT0001", client_msg_id=None))["event"]
    assert own["bot_id"] == "BBOT0001" and "client_msg_id" not in own


def test_assistant_thread_started_and_url_verification() -> None:
    started = envelope(assistant_thread_started_event(thread_ts="1700000000.000200"))
    event = started["event"]
    assert event["type"] == "assistant_thread_started"
    thread = event["assistant_thread"]
    assert thread["user_id"] == "U2147483697" and thread["channel_id"].startswith("D")
    assert thread["thread_ts"] == "1700000000.000200"
    assert thread["context"]["channel_id"] == "C2147483705"

    assert envelope(url_verification("abc123")) == {
        "token": slack_requests.VERIFICATION_TOKEN,
        "challenge": "abc123",
        "type": "url_verification",
    }

    generic = envelope(event_callback({"type": "reaction_added"}, event_id="Ev0000000001", event_time=5))
    assert generic["event"] == {"type": "reaction_added"}
    assert generic["event_id"] == "Ev0000000001" and generic["event_time"] == 5


def test_new_ts_is_unique_and_increasing_across_threads() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(new_ts() for _ in range(500))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [ts for out in made for ts in out]
    assert len(set(every)) == len(every)
    assert all(re.fullmatch(r"\d{10}\.\d{6}", ts) for ts in every)
    for out in made:  # each thread sees them increase
        assert [Decimal(ts) for ts in out] == sorted(Decimal(ts) for ts in out)
