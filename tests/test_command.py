"""Parsing slash-command bodies."""

from __future__ import annotations

import pytest

from chalicelib.slack.command import MalformedCommand, SlashCommand, parse
from tests.conftest import command_form


def test_parses_slack_fields() -> None:
    body = command_form("  東京でおすすめの散歩道は？ ", "https://hooks.slack.com/commands/T1/2/x", command="/ask")
    assert parse(body) == SlashCommand(
        command="/ask",
        text="東京でおすすめの散歩道は？",
        response_url="https://hooks.slack.com/commands/T1/2/x",
        user_id="U2147483697",
        channel_id="C2147483705",
        team_id="T0001",
    )


def test_undoes_slacks_escaping_of_text() -> None:
    body = command_form("a &lt;b&gt; &amp;amp; c", "https://example.com/r")
    assert parse(body).text == "a <b> &amp; c"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"text": "hi"}', "body is not a form"),
        (b"\xff\xfe", "body is not a form"),
        (b"text=hi", "response_url is missing"),
        (b"text=hi&response_url=", "response_url is missing"),
        (b"text=hi&response_url=ftp%3A%2F%2Fexample.com%2Fx", "response_url is not an http(s) URL"),
        (b"text=hi&response_url=https%3A%2F%2F", "response_url is not an http(s) URL"),
    ],
)
def test_malformed_bodies_give_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedCommand, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse(body)
