"""scripts/ask.py: end to end against ``chalice local``, and its deployed-stage paths in process.

The end-to-end tests run the script as `make ask` does, a subprocess, against a real
``chalice local`` (one per module) whose LLM is the fake OpenAI server. A deployed stage
cannot be reached from a test, so those paths run ``converse`` in this process against a
fake bot, with ``chalice logs`` replaced by a stub that prints what CloudWatch would hold.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from chalicelib.slack import messages
from chalicelib.slack.command import parse
from chalicelib.slack.signature import verify
from tests import chalice_local
from tests.chalice_local import free_port
from tests.conftest import OPENAI_KEY, ROOT, SIGNING_SECRET, import_script
from tests.fakes import FakeServer, Received, Reply, echo_llm, fake_openai, openai_error

SCRIPT = ROOT / "scripts" / "ask.py"
# Whatever the environment of the test run, the script sees only what a test gives it.
SCRIPT_VARIABLES = ("URL", "TIMEOUT", "RESPONSE_URL", "LISTEN_PORT", "STAGE", "NO_COLOR")


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
def bot_url(llm_server: FakeServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`make run`: chalice local for stage dev, its secrets in the environment, its LLM the fake."""
    log = tmp_path_factory.mktemp("chalice-local") / "chalice-local.log"
    env = clean_env(
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=llm_server.url + "/v1",
        OPENAI_TIMEOUT_SECONDS="20",
    )
    with chalice_local.running(env, log) as url:
        yield url + "/slack/commands"


def run_ask(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=clean_env(**env),
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
        (["hello"], {}, "SLACK_SIGNING_SECRET is not set"),
        (["hello"], {"SLACK_SIGNING_SECRET": "x", "TIMEOUT": "soon"}, "TIMEOUT must be a number"),
        (["hello"], {"SLACK_SIGNING_SECRET": "x", "TIMEOUT": "0"}, "TIMEOUT must be more than 0"),
        (["hello"], {"SLACK_SIGNING_SECRET": "x", "URL": "ftp://example.com/"}, "URL must be an http(s) URL"),
    ],
)
def test_usage_errors_exit_2(args: list[str], env: dict[str, str], message: str) -> None:
    result = run_ask(*args, **env)

    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


# --- in process: the request, the deployed-stage paths, the rendering -------------------------------------------------


@pytest.fixture(scope="module")
def ask() -> ModuleType:
    return import_script("ask")


def acknowledging_bot(received: Received) -> Reply:
    return Reply(200, messages.acknowledgement(parse(received.body).text))


def options(ask: ModuleType, url: str, **fields: Any) -> Any:
    values = {
        "question": "hello",
        "secret": SIGNING_SECRET,
        "url": url,
        "timeout": 60.0,
        "response_url": None,
        "listen_port": 0,
        "stage": "prod",
    }
    return ask.Options(**{**values, **fields})


@pytest.fixture
def as_if_deployed(ask: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake bot is on loopback; the script must treat it as a deployed stage."""
    monkeypatch.setattr(ask, "is_loopback", lambda url: False)
    monkeypatch.setattr(ask, "LOG_FIRST_POLL_SECONDS", 0.0)
    monkeypatch.setattr(ask, "LOG_POLL_SECONDS", 0.2)
    for name in list(os.environ):
        if "proxy" in name.lower():
            monkeypatch.delenv(name)


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


def logs_stub(bot: FakeServer, calls: list[list[str]], outcome: dict[str, Any]) -> Any:
    """`chalice logs`: noise, another user's job, then this job's answer line."""

    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        user_id = parse(bot.received[-1].body).user_id
        lines = [
            "2026-01-01 00:00:00.000000+00:00 abc123 not json",
            "2026-01-01 00:00:00.000000+00:00 abc123 "
            + json.dumps({"event": "answer", "user_id": "UOTHER", "outcome": "answered"}),
            "2026-01-01 00:00:01.000000+00:00 abc123 "
            + json.dumps({"event": "answer", "user_id": user_id, "delivered": False, **outcome}),
        ]
        return subprocess.CompletedProcess(command, 0, stdout="\n".join(lines) + "\n", stderr="")

    return run


@pytest.mark.usefixtures("as_if_deployed")
def test_a_deployed_stage_reports_the_workers_outcome_from_its_logs(
    ask: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ask.WorkerLog, "available", lambda self: True)
    calls: list[list[str]] = []
    out, err = io.StringIO(), io.StringIO()
    with FakeServer(acknowledging_bot) as bot:
        outcome = {"outcome": "answered", "model": "fake-model", "llm_ms": 42}
        monkeypatch.setattr(ask, "run_chalice", logs_stub(bot, calls, outcome))
        code = ask.converse(options(ask, bot.url + "/slack/commands"), out, err)

    assert code == 0, err.getvalue()
    assert "Thinking about your question" in out.getvalue()
    assert "The worker answered (model fake-model, llm_ms 42)" in out.getvalue()
    assert "RESPONSE_URL=" in out.getvalue()
    # Nothing here can take a reply: the worker is given a URL that never resolves.
    assert parse(bot.received[0].body).response_url == ask.PLACEHOLDER_RESPONSE_URL
    assert calls[0][1:6] == ["logs", "--name", "worker", "--stage", "prod"]
    assert calls[0][6] == "--since" and calls[0][7].endswith("s")


@pytest.mark.usefixtures("as_if_deployed")
def test_a_deployed_workers_error_outcome_exits_1_with_the_users_message(
    ask: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ask.WorkerLog, "available", lambda self: True)
    out = io.StringIO()
    with FakeServer(acknowledging_bot) as bot:
        monkeypatch.setattr(ask, "run_chalice", logs_stub(bot, [], {"outcome": "quota_exhausted"}))
        code = ask.converse(options(ask, bot.url + "/slack/commands"), out, io.StringIO())

    assert code == 1
    assert messages.ERROR_TEXTS["quota_exhausted"] in out.getvalue()
    assert "quota_exhausted" in out.getvalue()


@pytest.mark.usefixtures("as_if_deployed")
def test_a_deployed_stage_without_a_deployment_record_says_what_to_set(ask: ModuleType) -> None:
    out = io.StringIO()
    reason = r"stage 'no-such-stage' has no deployment record.*RESPONSE_URL="
    with FakeServer(acknowledging_bot) as bot, pytest.raises(ask.Failure, match=reason):
        ask.converse(options(ask, bot.url + "/slack/commands", stage="no-such-stage"), out, io.StringIO())
    assert "Thinking about your question" in out.getvalue()  # the command itself went through


@pytest.mark.usefixtures("as_if_deployed")
def test_a_public_response_url_brings_the_reply_back_through_a_tunnel(ask: ModuleType) -> None:
    port = free_port()
    public = "https://tunnel.example/hooks/abc"

    def bot_behind_a_tunnel(received: Received) -> Reply:
        command = parse(received.body)
        reply = json.dumps(messages.answer(command.text, "**Yes**, via the tunnel.", "ephemeral")).encode()
        # The tunnel maps RESPONSE_URL to LISTEN_PORT and keeps the path, which the script never saw.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/hooks/abc", data=reply, headers={"Content-Type": "application/json"}
        )
        threading.Thread(target=lambda: urllib.request.urlopen(request, timeout=30).read()).start()
        return Reply(200, messages.acknowledgement(command.text))

    out = io.StringIO()
    with FakeServer(bot_behind_a_tunnel) as bot:
        code = ask.converse(
            options(ask, bot.url + "/slack/commands", response_url=public, listen_port=port, stage="no-such-stage"),
            out,
            io.StringIO(),
        )

    assert code == 0
    assert parse(bot.received[0].body).response_url == public
    assert "Yes, via the tunnel." in out.getvalue()


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


def test_worker_outcome_finds_only_this_jobs_answer_line(ask: ModuleType) -> None:
    logs = "\n".join(
        [
            "2026-01-01 00:00:00 abc {not json",
            '2026-01-01 00:00:00 abc {"event": "command", "user_id": "UASK1"}',
            '2026-01-01 00:00:00 abc {"event": "answer", "user_id": "UASK2", "outcome": "timeout"}',
            '2026-01-01 00:00:00 abc {"event": "answer", "user_id": "UASK1", "outcome": "answered"}',
        ]
    )
    assert ask.worker_outcome(logs, "UASK1") == {"event": "answer", "user_id": "UASK1", "outcome": "answered"}
    assert ask.worker_outcome(logs, "UASK3") is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/slack/commands"),
        (
            "https://x.execute-api.us-east-1.amazonaws.com/api/",
            "https://x.execute-api.us-east-1.amazonaws.com/api/slack/commands",
        ),
        ("https://bot.example.com/slack/commands", "https://bot.example.com/slack/commands"),
        ("https://bot.example.com/slack/commands/", "https://bot.example.com/slack/commands/"),
    ],
)
def test_command_url_appends_the_route_to_a_base_url(ask: ModuleType, url: str, expected: str) -> None:
    assert ask.command_url(url) == expected


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
def test_only_loopback_urls_get_the_local_listener(ask: ModuleType, url: str, loopback: bool) -> None:
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


@pytest.mark.usefixtures("as_if_deployed")
def test_unreadable_worker_logs_fail_at_once_with_chalices_reason(
    ask: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ask.WorkerLog, "available", lambda self: True)

    def no_credentials(command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="botocore...: Unable to locate credentials\n")

    monkeypatch.setattr(ask, "run_chalice", no_credentials)
    started = time.monotonic()
    with FakeServer(acknowledging_bot) as bot, pytest.raises(ask.Failure, match="Unable to locate credentials"):
        ask.converse(options(ask, bot.url + "/slack/commands", timeout=600.0), io.StringIO(), io.StringIO())
    assert time.monotonic() - started < 300  # not the 600 s timeout


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
