"""Parsing slash-command bodies."""

from __future__ import annotations

import random
from urllib.parse import parse_qs

import pytest

from chalicelib.slack.command import MalformedCommand, SlashCommand, parse, unescape
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
        (b"text=hi&response_url=http%3A%2F%2F%5B%3A%3A1", "response_url is not an http(s) URL"),  # urlsplit raises
    ],
)
def test_malformed_bodies_give_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedCommand, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse(body)


def test_agrees_with_parse_qs_on_generated_forms() -> None:
    # parse() unquotes only the fields it uses; it must read them exactly as parse_qs would.
    rng = random.Random(7)
    alphabet = "ab=&+%20%E8%B1%86%zz東 _-.~/:?"
    names = ["text", "response_url", "command", "user_id", "channel_id", "team_id", "token", "te%78t", "text+"]
    for _ in range(2000):
        pairs = [f"{rng.choice(names)}={''.join(rng.choices(alphabet, k=rng.randint(0, 12)))}" for _ in range(6)]
        pairs.append("response_url=https%3A%2F%2Fexample.com%2Fr")
        rng.shuffle(pairs)
        body = "&".join(pairs).encode()
        try:
            expected = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=True)
        except ValueError:
            with pytest.raises(MalformedCommand):
                parse(body)
            continue
        try:
            command = parse(body)
        except MalformedCommand as error:
            assert "response_url" in str(error)  # a generated URL that urlsplit rejects
            continue
        assert command.text == unescape(expected.get("text", [""])[0]).strip()
        assert command.response_url == expected["response_url"][0]
        assert command.command == (expected.get("command", [""])[0] or "/mameka")
