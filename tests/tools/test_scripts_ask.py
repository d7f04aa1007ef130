"""scripts/ask.py: end to end against ``chalice local``, and its parts in process.

The end-to-end tests run the script as `make ask` does, a subprocess, against a real
``chalice local`` (one per module) whose LLM is the fake OpenAI server; without
``SLACK_SIGNING_SECRET`` and ``URL``, against the playground it starts itself, from a user's
shell full of credentials that must not reach that bot (tests/tools/test_demo.py's). For ``EVENT=mention``
and ``EVENT=dm`` the script serves the fake Slack Web API itself: ``chalice local`` is started
with ``SLACK_API_URL`` on a free port (not 8790, which a developer's `make ask` may hold), and
each run of the script is given the same URL, as the README tells a developer to do. What a
real bot cannot be made to do (send a reply Slack would refuse, stop at its acknowledgement)
runs ``converse`` in this process against a fake bot.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chalicelib.slack import messages
from chalicelib.slack.command import parse
from chalicelib.slack.signature import verify
from devkit import stand_in_model
from devkit.fake_openai import StreamReply, echo_llm, fake_openai, openai_error, split_deltas
from devkit.http_fake import FakeServer, Received, Reply
from devkit.slack_requests import USER_ID
from tests import chalice_local
from tests.chalice_local import free_port
from tests.conftest import OPENAI_KEY, ROOT, SIGNING_SECRET, import_script
from tests.tools.test_demo import (
    CANARIES,
    assert_nothing_leaked,
    assert_stopped,
    interrupted_once_listening,
    user_env,
)

SCRIPT = ROOT / "scripts" / "ask.py"
# Whatever the environment of the test run, the script sees only what a test gives it.
SCRIPT_VARIABLES = ("URL", "TIMEOUT", "NO_COLOR", "EVENT")
BOT_TOKEN = "xoxb-ask-script-test-not-real"


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "OPENAI_", "SLACK_")) and k not in SCRIPT_VARIABLES and "proxy" not in k.lower()
    }
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONIOENCODING="utf-8",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeServer]:
    with fake_openai() as server:
        yield server


@pytest.fixture
def llm(llm_server: FakeServer) -> Iterator[FakeServer]:
    """The module's fake OpenAI, answering by echo unless a test says otherwise."""
    yield llm_server
    llm_server.default = echo_llm
    llm_server.script.clear()


@pytest.fixture(scope="module")
def slack_api_url() -> str:
    """Where `make run` calls the Slack Web API: the fake that each `make ask EVENT=...` serves there."""
    return f"http://127.0.0.1:{free_port()}/api/"


@pytest.fixture(scope="module")
def bot_url(llm_server: FakeServer, slack_api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`make run`: chalice local for stage dev, its secrets in the environment, its LLM the fake."""
    log = tmp_path_factory.mktemp("chalice-local") / "chalice-local.log"
    env = clean_env(
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=llm_server.url + "/v1",
        OPENAI_TIMEOUT_SECONDS="20",
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_API_URL=slack_api_url,
    )
    with chalice_local.running(env, log) as url:
        yield url + "/slack/commands"


def run_ask(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_in(clean_env(**env), *args)


def run_in(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        check=False,
    )


# --- end to end, against chalice local ------------------------------------------------------------------------------


def test_asks_and_prints_the_acknowledgement_then_the_answer(bot_url: str, llm: FakeServer) -> None:
    question = "東京でおすすめの<散歩道> & 公園は？"
    result = run_ask(question, URL=bot_url, SLACK_SIGNING_SECRET=SIGNING_SECRET)

    assert result.returncode == 0, result.stderr
    ack = result.stdout.index("Thinking about your question")
    answer = result.stdout.index(f"Answer to: {question}")  # **Answer** → *Answer* → plain, & < > unescaped
    assert ack < answer
    assert f"│ {question}" in result.stdout  # the question, quoted as Slack's code block
    assert "only visible to you" in result.stdout
    assert [r.json()["messages"][-1]["content"] for r in llm.received[-1:]] == [question]
    # Progress on a pipe is a line, not a spinner's flood.
    assert len(result.stderr.splitlines()) <= 3, result.stderr
    assert "\r" not in result.stderr


def test_the_bot_answering_rate_limited_exits_1_with_its_message(bot_url: str, llm: FakeServer) -> None:
    llm.default = lambda received: openai_error(429, "rate_limit_exceeded")
    result = run_ask("hello", URL=bot_url, SLACK_SIGNING_SECRET=SIGNING_SECRET)

    assert result.returncode == 1
    assert messages.ERROR_TEXTS["rate_limited"] in result.stdout
    assert "⚠️" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_question_the_bot_will_not_start_on_exits_1_without_waiting(bot_url: str, llm: FakeServer) -> None:
    sent_before = len(llm.received)
    result = run_ask("x" * 4001, URL=bot_url, SLACK_SIGNING_SECRET=SIGNING_SECRET, TIMEOUT="150")

    assert result.returncode == 1
    assert "the limit is 4,000" in result.stdout
    assert "did not start on the question" in result.stderr
    assert len(llm.received) == sent_before


def test_a_wrong_signing_secret_shows_the_401_and_its_reason(bot_url: str) -> None:
    result = run_ask("hello", URL=bot_url, SLACK_SIGNING_SECRET="not-the-servers-secret")

    assert result.returncode == 1
    assert "HTTP 401" in result.stderr
    assert "signature does not match" in result.stderr
    assert result.stdout == ""


def test_no_reply_within_the_timeout_exits_1(bot_url: str, llm: FakeServer) -> None:
    llm.default = lambda received: Reply(200, {"choices": [{"message": {"content": "late"}}]}, delay=15)
    result = run_ask("slow one", URL=bot_url, SLACK_SIGNING_SECRET=SIGNING_SECRET, TIMEOUT="2")

    assert result.returncode == 1
    assert "Thinking about your question" in result.stdout
    assert "no reply within 2 s" in result.stderr
    assert "make run" in result.stderr


def test_nothing_listening_says_to_start_make_run() -> None:
    result = run_ask("hello", URL=f"http://127.0.0.1:{free_port()}/slack/commands", SLACK_SIGNING_SECRET="x")

    assert result.returncode == 1
    assert "nothing is listening" in result.stderr
    assert "`make run`" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # what was sent, and why it failed


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([""], {"SLACK_SIGNING_SECRET": "x"}, "usage: make ask Q="),  # `make ask` without Q passes ""
        (["  "], {"SLACK_SIGNING_SECRET": "x"}, "usage: make ask Q="),
        (["hello"], {"URL": "http://127.0.0.1:8000/"}, "SLACK_SIGNING_SECRET is not set"),
        (["hello"], {"OPENAI_BASE_URL": "https://api.openai.com/v1", "OPENAI_MODEL": "m"}, "must be a local server"),
        (["hello"], {"EVENT": "reaction"}, "EVENT must be one of command, mention, dm"),
        (["hello"], {"SLACK_SIGNING_SECRET": "x", "TIMEOUT": "soon"}, "TIMEOUT must be a number"),
        (["hello"], {"SLACK_SIGNING_SECRET": "x", "TIMEOUT": "0"}, "TIMEOUT must be more than 0"),
        (["hello"], {"SLACK_SIGNING_SECRET": "x", "URL": "ftp://example.com/"}, "URL must be an http(s) URL"),
        (["hello"], {"SLACK_SIGNING_SECRET": "x", "EVENT": "reaction"}, "EVENT must be one of command, mention, dm"),
        (
            ["hello"],
            {"SLACK_SIGNING_SECRET": "x", "URL": "https://x.execute-api.us-east-1.amazonaws.com/api/"},
            "URL must be the bot on this machine",
        ),
        (
            ["hello"],
            {"SLACK_SIGNING_SECRET": "x", "EVENT": "mention", "URL": "http://192.168.1.5:8000/"},
            "URL must be the bot on this machine",
        ),
        (
            ["hello"],
            {"SLACK_SIGNING_SECRET": "x", "EVENT": "dm", "SLACK_API_URL": "https://slack.com/api/"},
            "for an event it must be this script's fake Slack Web API",
        ),
    ],
)
def test_usage_errors_exit_2(args: list[str], env: dict[str, str], message: str) -> None:
    result = run_ask(*args, **env)

    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


# --- end to end: a mention or a DM, answered in its thread through the script's fake Slack Web API ---------------


def ask_in_thread(question: str, event: str, bot_url: str, slack_api_url: str, **env: str) -> Any:
    """`make ask EVENT=... Q=...` with the variables of the README's second shell (``env`` overrides them)."""
    variables = {
        "URL": bot_url,  # the command URL: the script switches it to /slack/events
        "EVENT": event,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_URL": slack_api_url,
    }
    return run_ask(question, **{**variables, **env})


def long_answer() -> str:
    """Markdown paragraphs past one streamed message's cap (9,000 bytes), so the answer goes on in a second."""
    return "\n\n".join(f"{i:02d} " + "散歩道と公園。" * 40 for i in range(12))  # 12 x ~850 bytes


def test_a_mention_prints_the_answer_streamed_into_its_thread(
    bot_url: str, slack_api_url: str, llm: FakeServer
) -> None:
    answer = long_answer()
    llm.script.append(StreamReply(deltas=split_deltas(answer, 40)))
    result = ask_in_thread("鎌倉 & 江ノ島のおすすめは？", "mention", bot_url, slack_api_url)

    assert result.returncode == 0, result.stderr
    assert "mameka is thinking…" in result.stderr  # the thread's status, as a progress line
    first, second = result.stdout.index("── reply in the thread"), result.stdout.index("── message 2 in the thread")
    assert first < second
    for paragraph in answer.split("\n\n"):  # nothing lost at the rollover
        assert paragraph in result.stdout
    assert "⚠️" not in result.stdout
    # The question reached the LLM as the user wrote it: the bot's mention stripped, Slack's escaping undone.
    assert llm.received[-1].json()["messages"][-1]["content"] == f"<@{USER_ID}>: 鎌倉 & 江ノ島のおすすめは？"


class Recorder(io.StringIO):
    """Stdout that keeps each write apart, to see the answer arrive in pieces."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_the_answer_is_shown_as_it_grows(ask: ModuleType, bot_url: str, slack_api_url: str, llm: FakeServer) -> None:
    # Paced past the 2 s between appends, so Slack sees the answer start, grow, then stop.
    deltas = ["First ", "words, ", "then ", "more ", "words, ", "then ", "the end."]
    llm.script.append(StreamReply(deltas=deltas, delay=0.5))
    out, err = Recorder(), io.StringIO()
    slack_port = int(slack_api_url.split(":")[2].split("/")[0])
    url = ask.route_url(bot_url, ask.EVENTS_PATH)
    settings = options(ask, url, event="mention", slack_port=slack_port, bot_token=BOT_TOKEN)

    assert ask.converse(settings, out, err) == 0, err.getvalue()

    pieces = [w for w in out.writes if w.strip() and "── " not in w]
    assert len(pieces) >= 2, out.writes  # shown in steps, not all at the end
    assert "".join(pieces) == "".join(deltas)
    assert out.getvalue().count("── ") == 1  # one message


def test_a_dm_that_fails_prints_the_warning_line_and_exits_1(bot_url: str, slack_api_url: str, llm: FakeServer) -> None:
    llm.default = lambda received: openai_error(429, "rate_limit_exceeded")
    result = ask_in_thread("こんにちは", "dm", bot_url, slack_api_url)

    assert result.returncode == 1, result.stderr
    assert "⚠️ " + messages.ERROR_TEXTS["rate_limited"] in result.stdout
    assert result.stderr.startswith("DM: こんにちは")
    assert "Traceback" not in result.stderr


def test_a_bot_that_calls_another_slack_api_times_out_with_what_to_check(bot_url: str, llm: FakeServer) -> None:
    elsewhere = f"http://127.0.0.1:{free_port()}/api/"  # make run's SLACK_API_URL is another one
    result = ask_in_thread("hello", "mention", bot_url, elsewhere, TIMEOUT="2")

    assert result.returncode == 1
    assert f"no Slack call reached this script's fake Slack Web API ({elsewhere}) within 2 s" in result.stderr
    assert f"`make run` running with SLACK_API_URL={elsewhere} and the same SLACK_BOT_TOKEN" in result.stderr
    assert result.stdout == ""


def test_another_bot_token_is_named_at_the_first_refused_call(
    bot_url: str, slack_api_url: str, llm: FakeServer
) -> None:
    result = ask_in_thread("hello", "mention", bot_url, slack_api_url, SLACK_BOT_TOKEN="xoxb-another-test-token")

    assert result.returncode == 1
    assert "refused the bot's agents.sessions.setStatus (invalid_auth)" in result.stderr
    assert "same SLACK_BOT_TOKEN" in result.stderr


def test_a_taken_fake_slack_port_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = ask_in_thread("hello", "mention", "http://127.0.0.1:9/", f"http://127.0.0.1:{port}/api/")

    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot serve the fake Slack Web API on 127.0.0.1:{port}")
    assert "another `make ask EVENT=...` still running" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


# --- end to end, without SLACK_SIGNING_SECRET and URL: the playground -------------------------------------------


def users_shell(**extra: str) -> dict[str, str]:
    """A user's shell with credentials of every kind, but no SLACK_SIGNING_SECRET: `make ask` starts the playground."""
    env = {name: value for name, value in user_env(**extra).items() if name != "SLACK_SIGNING_SECRET"}
    return {**env, "PYTHONIOENCODING": "utf-8"}


@pytest.mark.parametrize("event", ["command", "mention"])
def test_without_a_secret_it_asks_the_playground_and_stops_it(event: str) -> None:
    result = run_in(users_shell(EVENT=event), "東京でおすすめの散歩道は？")

    assert result.returncode == 0, result.stderr
    reply = "── reply · only visible to you" if event == "command" else "── reply in the thread"
    assert reply in result.stdout
    assert result.stdout.count(stand_in_model.LABEL) == 1  # the stand-in's answer, once
    assert "You asked: 「東京でおすすめの散歩道は？」" in result.stdout
    assert "- streamed: the text grows" in result.stdout  # its Markdown shown as Slack shows it, not raw
    assert "**" not in result.stdout
    assert "the bot's log" not in result.stderr  # deleted: nothing went wrong
    assert_nothing_leaked(result.stdout + result.stderr)
    assert_stopped(result.stderr)


@pytest.fixture
def local_model() -> Iterator[stand_in_model.FakeServer]:
    """Stands for the user's own OpenAI-compatible server on loopback."""
    with stand_in_model.server() as server:
        yield server


def test_the_playground_uses_a_local_model_without_the_users_key(local_model: stand_in_model.FakeServer) -> None:
    env = users_shell(EVENT="dm", OPENAI_BASE_URL=local_model.url + "/v1", OPENAI_MODEL="llama3.2-ask-test")
    result = run_in(env, "こんにちは")

    assert result.returncode == 0, result.stderr
    assert result.stdout.count(stand_in_model.LABEL) == 1
    [request] = local_model.requests_to("/v1/chat/completions")
    assert request.json()["model"] == "llama3.2-ask-test"
    assert CANARIES["OPENAI_API_KEY"] not in request.headers.get("authorization", "")
    assert_nothing_leaked(result.stdout + result.stderr)
    assert_stopped(result.stderr)


def test_when_the_playground_does_not_answer_its_log_is_kept_and_named() -> None:
    # A local model server that is not running: the bot replies with its plain error line.
    result = run_in(users_shell(OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1", OPENAI_MODEL="m"), "hello")

    assert result.returncode == 1
    assert messages.ERROR_TEXTS["service_error"] in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("the bot's log: "), result.stderr
    log = Path(last.removeprefix("the bot's log: "))
    assert log.is_file()
    with contextlib.suppress(OSError):
        log.unlink()
        log.parent.rmdir()
    assert_nothing_leaked(result.stdout + result.stderr)
    assert_stopped(result.stderr)


def test_sigterm_stops_the_playground() -> None:
    interrupted_once_listening([sys.executable, str(SCRIPT), "hello"], users_shell(EVENT="mention"), signal.SIGTERM)


# --- in process: the request, the reply, the rendering -------------------------------------------------------------


@pytest.fixture(scope="module")
def ask() -> ModuleType:
    return import_script("ask")


def acknowledging_bot(received: Received) -> Reply:
    return Reply(200, messages.acknowledgement(parse(received.body).text))


def options(ask: ModuleType, url: str, **fields: Any) -> Any:
    values = {"question": "hello", "secret": SIGNING_SECRET, "url": url, "timeout": 60.0}
    return ask.Options(**{**values, **fields})


def test_the_request_is_a_signed_slash_command_as_slack_sends_it(ask: ModuleType) -> None:
    not_configured = FakeServer(lambda received: Reply(200, messages.not_configured()))
    with not_configured as bot, pytest.raises(ask.Failure, match="did not start"):
        ask.converse(options(ask, bot.url + "/slack/commands", question="a < b & c"), io.StringIO(), io.StringIO())
    [request] = bot.received
    assert request.path == "/slack/commands"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    verify(
        SIGNING_SECRET,
        request.headers["x-slack-request-timestamp"],
        request.headers["x-slack-signature"],
        request.body,
        time.time(),
    )
    assert b"text=a+%26lt%3B+b+%26amp%3B+c" in request.body  # escaped as Slack escapes it
    command = parse(request.body)
    assert command.text == "a < b & c"
    assert command.command == "/mameka"
    assert command.response_url.startswith("http://127.0.0.1:")
    assert command.user_id.startswith("UASK") and command.team_id and command.channel_id


def test_a_reply_slack_would_refuse_is_a_failure(ask: ModuleType) -> None:
    refusals: list[tuple[int, bytes]] = []

    def bot(received: Received) -> Reply:
        # `markdown_text` alone is what Slack's response_url refuses with no_text.
        request = urllib.request.Request(parse(received.body).response_url, data=b'{"markdown_text": "x"}')

        def post() -> None:
            try:
                urllib.request.urlopen(request, timeout=30)
            except urllib.error.HTTPError as error:
                refusals.append((error.code, error.read()))

        threading.Thread(target=post).start()
        return Reply(200, messages.acknowledgement(parse(received.body).text))

    with FakeServer(bot) as server, pytest.raises(ask.Failure, match="no_text"):
        ask.converse(options(ask, server.url + "/slack/commands"), io.StringIO(), io.StringIO())
    assert refusals == [(400, b"no_text")]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/slack/commands"),
        ("http://127.0.0.1:8000/api/", "http://127.0.0.1:8000/api/slack/commands"),
        ("http://127.0.0.1:8000/slack/commands", "http://127.0.0.1:8000/slack/commands"),
        ("http://127.0.0.1:8000/slack/commands/", "http://127.0.0.1:8000/slack/commands"),
    ],
)
def test_command_url_appends_the_route_to_a_base_url(ask: ModuleType, url: str, expected: str) -> None:
    assert ask.route_url(url, ask.COMMAND_PATH) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/slack/events"),
        ("http://127.0.0.1:8000/slack/commands", "http://127.0.0.1:8000/slack/events"),
        ("http://127.0.0.1:8000/api/slack/commands/", "http://127.0.0.1:8000/api/slack/events"),
        ("http://127.0.0.1:8000/slack/events", "http://127.0.0.1:8000/slack/events"),
    ],
)
def test_an_event_goes_to_the_events_route(ask: ModuleType, url: str, expected: str) -> None:
    assert ask.route_url(url, ask.EVENTS_PATH) == expected


def test_the_fake_slack_port_follows_slack_api_url(ask: ModuleType) -> None:
    assert ask.fake_slack_port({}) == 8790
    assert ask.fake_slack_port({"SLACK_API_URL": "http://127.0.0.1:8790/api/"}) == 8790
    assert ask.fake_slack_port({"SLACK_API_URL": "http://localhost:9123/api/"}) == 9123
    with pytest.raises(ask.UsageError, match="fake Slack Web API"):
        ask.fake_slack_port({"SLACK_API_URL": "http://127.0.0.1/api/"})


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8000/", True),
        ("http://127.9.9.9/", True),
        ("http://localhost:8000/", True),
        ("http://[::1]:8000/", True),
        ("https://abc.execute-api.us-east-1.amazonaws.com/api/", False),
        ("http://192.168.1.5:8000/", False),
    ],
)
def test_only_loopback_urls_are_asked(ask: ModuleType, url: str, loopback: bool) -> None:
    assert ask.is_loopback(url) is loopback


def test_render_turns_mrkdwn_into_terminal_text(ask: ModuleType) -> None:
    text = (
        ":warning: *bold*, _italic_, ~gone~, `a<b`, <https://example.com|a link>, <https://example.com>, "
        "<@U123>, <#C123|general>, <!here>, 2*3*4, snake_case_name, &lt;tag&gt; &amp;\n```line 1\nline &lt;2&gt;```"
    )
    plain = ask.render(text, ask.Style(False))
    assert plain == (
        "⚠️ bold, italic, gone, `a<b`, a link (https://example.com), https://example.com, "
        "@U123, #general, @here, 2*3*4, snake_case_name, <tag> &\n│ line 1\n│ line <2>"
    )
    styled = ask.render("*bold*", ask.Style(True))
    assert styled == "\033[1mbold\033[0m"


def test_render_puts_an_inline_code_block_on_its_own_lines(ask: ModuleType) -> None:
    assert ask.render("before ```code``` after", ask.Style(False)) == "before \n│ code\n after"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_spins_in_place_on_a_terminal_and_writes_one_line_otherwise(ask: ModuleType) -> None:
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = ask.Progress(stream, "waiting for the reply", 150)
        for _ in range(50):
            progress.tick()
        progress.done()

    assert terminal.getvalue().count("\r") == 51 and "\n" not in terminal.getvalue()
    assert terminal.getvalue().endswith("\r\033[K")  # the line is cleared for the reply
    assert pipe.getvalue() == "waiting for the reply (up to 150 s)…\n"


def test_a_reply_with_feedback_buttons_shows_them_not_a_hidden_blocks_note(ask: ModuleType) -> None:
    from chalicelib import feedback

    reply = feedback.with_buttons(messages.answer("q", "an answer", "ephemeral"), "q", "an answer", "gpt-x")
    out = io.StringIO()
    ask.show("reply", reply, 1.0, ask.Style(False), out)
    assert out.getvalue().splitlines()[-1] == "[Good answer] [Bad answer]  (feedback buttons)"
    assert "blocks not shown" not in out.getvalue()
