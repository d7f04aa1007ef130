"""Parsing slash-command bodies, and the rule for where a reply may go."""

from __future__ import annotations

import random
import subprocess
import sys
from urllib.parse import parse_qs, unquote_plus

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chalicelib.slack.command import (
    _SLACK_SHAPED,
    MalformedCommand,
    SlashCommand,
    _is_http_url,
    _refusal,
    _unquote_plus,
    parse,
    response_url_refusal,
    unescape,
)
from tests.conftest import ROOT, command_form, examples


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


# --- where a reply may go --------------------------------------------------------------------------------------------

SLACK = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})


@pytest.mark.parametrize(
    ("url", "hosts", "in_lambda"),
    [
        ("https://hooks.slack.com/commands/T1/2/x", SLACK, True),
        ("https://hooks.slack-gov.com/commands/T1/2/x", SLACK, True),
        ("HTTPS://Hooks.Slack.COM/commands/T1/2/x", SLACK, True),  # compared lower-cased
        ("https://hooks.slack.com:8443/commands/T1/2/x", SLACK, True),  # the port is ignored
        ("https://hooks.slack.com/commands/T1/2/x?a=1&b=%20#f", SLACK, True),
        ("https://proxy.example/r", frozenset({"proxy.example"}), True),
        ("http://127.0.0.1:8790/r", SLACK, False),  # outside Lambda: make ask, the tests
        ("http://localhost/r", SLACK, False),
        ("http://[::1]:9/r", SLACK, False),
        ("http://127.0.0.1:8790/r", SLACK | {"127.0.0.1"}, True),  # listed: in Lambda too
        ("http://[::1]:9/r", frozenset({"::1"}), True),
    ],
)
def test_allowed_response_urls(url: str, hosts: frozenset[str], in_lambda: bool) -> None:
    assert response_url_refusal(url, hosts, in_lambda) is None


@pytest.mark.parametrize(
    ("url", "hosts", "in_lambda", "reason"),
    [
        ("https://evil.example/r", SLACK, False, "host is not in RESPONSE_URL_HOSTS"),
        ("https://hooks.slack.com.evil.example/r", SLACK, False, "host is not in RESPONSE_URL_HOSTS"),
        ("https://slack.com/r", SLACK, False, "host is not in RESPONSE_URL_HOSTS"),
        ("https://127.0.0.1/r", SLACK, False, "host is not in RESPONSE_URL_HOSTS"),  # https: listed hosts only
        ("http://hooks.slack.com/r", SLACK, False, "must be https"),
        ("http://10.0.0.1/r", frozenset({"10.0.0.1"}), False, "must be https"),  # plain http: loopback only
        ("http://169.254.169.254/latest/meta-data/", SLACK, False, "must be https"),
        ("http://127.0.0.1:8790/r", SLACK, True, "loopback host is not in RESPONSE_URL_HOSTS"),
        ("http://localhost/r", frozenset({"127.0.0.1"}), True, "loopback host is not in RESPONSE_URL_HOSTS"),
        ("ftp://hooks.slack.com/r", SLACK, False, "not an http(s) URL"),
        # urlsplit reads hooks.slack.com here, urllib3 would connect to evil.example
        ("https://evil.example\\@hooks.slack.com/r", SLACK, False, "not a plain URL"),
        ("https://evil.example@hooks.slack.com/r", SLACK, False, "not a plain URL"),
        ("https://u:p@hooks.slack.com/r", SLACK, False, "not a plain URL"),
        ("https://hooks.slack.com\\.evil.example/r", SLACK, False, "not a plain URL"),
        ("https://hooks.sla\tck.com/r", SLACK, False, "not a plain URL"),  # urlsplit drops the tab
        ("https://hooks.slack.com /r", SLACK, False, "not a plain URL"),
        (" https://hooks.slack.com/r", SLACK, False, "not a plain URL"),
        ("https://hooks.slack.com/r\n", SLACK, False, "not a plain URL"),
        ("https://hooks.slack.com/ré", SLACK, False, "not a plain URL"),
        ("https://hooks%2eslack.com/r", SLACK, False, "not a plain URL"),
        ("https://hooks.slack.com:99999/r", SLACK, False, "not a plain URL"),
        ("https://hooks.slack.com:x/r", SLACK, False, "not a plain URL"),
        ("https://hooks.slack.com:/r", SLACK, False, "not a plain URL"),
        ("https://[::1/r", SLACK, False, "not a plain URL"),
        ("https:///r", SLACK, False, "not a plain URL"),
        ("hooks.slack.com/r", SLACK, False, "not a plain URL"),
        ("", SLACK, False, "not a plain URL"),
    ],
)
def test_refused_response_urls_say_why(url: str, hosts: frozenset[str], in_lambda: bool, reason: str) -> None:
    refusal = response_url_refusal(url, hosts, in_lambda)
    assert refusal is not None and reason in refusal
    assert "evil" not in refusal and "slack.com" not in refusal  # the reason never repeats the URL


def test_the_rule_imports_only_the_standard_library() -> None:
    # The HTTP function imports it on every cold start: it must stay cheap.
    code = "import sys, chalicelib.slack.command; print(sorted(m for m in ('requests', 'urllib3') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"


# --- the short paths agree with the general ones ----------------------------------------------------------------------

# URLs built from pieces that the short path and the general rule treat differently (scheme and
# host case, user info, ports, backslashes, escapes, non-ASCII, blanks), half of them close to
# the short path's shape.
_HOSTS = st.sampled_from(
    ["hooks.slack.com", "Hooks.Slack.COM", "hooks.slack-gov.com", "hooks.slack.com.", "127.0.0.1", "localhost",
     "LOCALHOST", "[::1]", "[::1", "evil.example", "evil.example\\@hooks.slack.com", "u:p@hooks.slack.com",
     "hooks%2eslack.com", "hooks.sla\tck.com", "é.example", "a_b.example", ""]
)  # fmt: skip
_PORTS = st.sampled_from(["", "", ":443", ":8790", ":99999", ":x", ":"])
_PATHS = st.sampled_from(
    ["", "commands/T1/2/x", "?a=1", "#f", "a b", "a\\b", "é", "a@b:c", "%41", "r\n", "/"]
) | st.text(max_size=10)  # fmt: skip
_URLS = (
    st.builds("https://{}{}/{}".format, _HOSTS, _PORTS, _PATHS)
    | st.builds(
        "{}{}{}{}".format,
        st.sampled_from(["https://", "http://", "HTTPS://", "Https://", "ftp://", "https:/", "https:", ""]),
        _HOSTS,
        _PORTS,
        st.sampled_from(["", "/", "?a=1", "#f"]) | _PATHS.map("/{}".format),
    )
    | st.text(max_size=30)
)
# Derandomized, as the fuzz tests are: the same examples every run, and no .hypothesis/ database.
PROPERTY = settings(max_examples=examples(1000), deadline=None, derandomize=True, database=None)
_HOST_LISTS = st.sampled_from([SLACK, SLACK | {"127.0.0.1", "localhost", "::1", "evil.example"}, frozenset()])


@PROPERTY
@given(url=_URLS, hosts=_HOST_LISTS, in_lambda=st.booleans())
@example(url="https://hooks.slack.com/commands/T1/2/x", hosts=SLACK, in_lambda=True)
@example(url="https://evil.example/r", hosts=SLACK, in_lambda=True)
def test_the_slack_shaped_short_path_says_what_the_general_rule_says(
    url: str, hosts: frozenset[str], in_lambda: bool
) -> None:
    assert response_url_refusal(url, hosts, in_lambda) == _refusal(url, hosts, in_lambda)
    if _SLACK_SHAPED.fullmatch(url):  # parse() takes such a URL as http(s) without asking urlsplit
        assert _is_http_url(url)


_FORM_VALUES = st.lists(
    st.sampled_from(["%", "%2", "%E6%9D%B1", "%e3%81", "%41", "%4g", "%zz", "+", "%2B", "\\", "\\x41", "x", "é", "東"])
    | st.text(max_size=4),
    max_size=10,
).map("".join)


@PROPERTY
@given(value=_FORM_VALUES)
@example(value="%E6%9D%B1%E4%BA%AC+%26amp%3B")
@example(value="\\%41%")
def test_form_values_are_unquoted_exactly_as_unquote_plus_does(value: str) -> None:
    assert _unquote_plus(value) == unquote_plus(value)
