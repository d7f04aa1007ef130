"""scripts/demo.py (`make demo`): run as a subprocess, as `make demo` does, with real chalice local.

Each run gets a clean environment (PATH and HOME) plus fake but present credentials of every
kind the user may have exported (OpenAI key, Slack token and signing secret, AWS keys and
profile, a proxy): the demo must succeed without them and show none of them, and the bot's model
must never see the key. What the app's own environment holds is checked in process.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.slack import messages
from devkit import stand_in_model
from tests.chalice_local import free_port
from tests.conftest import ROOT, import_script

SCRIPT = ROOT / "scripts" / "demo.py"
CANARIES = {
    "OPENAI_API_KEY": "sk-demo-canary-must-not-leak-0001",
    "SLACK_BOT_TOKEN": "xoxb-demo-canary-must-not-leak-0002",
    "SLACK_SIGNING_SECRET": "demo-canary-signing-secret-0003",
    "AWS_ACCESS_KEY_ID": "AKIADEMOCANARY0004",
    "AWS_SECRET_ACCESS_KEY": "demo-canary-aws-secret-must-not-leak-0005",
    "AWS_SESSION_TOKEN": "demo-canary-aws-session-0006",
    "AWS_PROFILE": "demo-canary-profile-0007",
}
SCENES = ("━━ 1. /mameka", "━━ 2. @mameka", "━━ 3. @mameka", "━━ 4. @mameka")
STARTED = re.compile(r"chalice local on http://127\.0\.0\.1:(\d+)")
PLAYGROUND = import_script("playground")


def user_env(**extra: str) -> dict[str, str]:
    """A user's shell: PATH and HOME, credentials of every kind, and a proxy that leads nowhere."""
    env = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    env.update(CANARIES, HTTP_PROXY=dead_proxy, HTTPS_PROXY=dead_proxy, http_proxy=dead_proxy, **extra)
    return env


def run_demo(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=user_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=240,
        check=False,
    )


def assert_nothing_leaked(output: str) -> None:
    for name, value in CANARIES.items():
        assert value not in output, f"{name} shows in the output"
    assert PLAYGROUND.BOT_TOKEN_PREFIX not in output  # the token the playground makes for its fake Slack
    assert "Traceback" not in output


def assert_stopped(stderr: str) -> None:
    """chalice local's port (from the progress line) no longer takes connections."""
    match = STARTED.search(stderr)
    assert match, stderr
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=2).close()


def in_order(text: str, parts: tuple[str, ...]) -> bool:
    positions = [text.find(part) for part in parts]
    return -1 not in positions and positions == sorted(positions)


def test_the_demo_plays_four_scenes_with_the_stand_in_model() -> None:
    result = run_demo()

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert in_order(out, SCENES), out
    starts = [out.index(header) for header in SCENES]
    command, mention, follow_up, error = (out[a:b] for a, b in zip(starts, [*starts[1:], len(out)], strict=True))
    assert in_order(command, ("── acknowledgement", "Thinking about your question", "── reply", "You asked:"))
    for answer in (command, mention, follow_up):
        assert answer.count(stand_in_model.LABEL) == 1, answer  # every answer says it is no LLM
    assert "── reply in the thread" in mention
    # The follow-up's answer is built from the thread the bot read back from Slack.
    assert "I remember this thread: 2 earlier messages (1 from you, 1 from me)." in follow_up
    assert "It began with 「鎌倉でおすすめの散歩道は？」." in follow_up
    assert "I remember" not in mention
    # The error, as the user sees it: one plain line, and no answer.
    error_lines = [line for line in error.splitlines()[1:] if line.strip() and not line.startswith("──")]
    assert error_lines == ["⚠️ " + messages.ERROR_TEXTS["rate_limited"]], error
    assert stand_in_model.LABEL not in error
    assert result.stderr.strip().splitlines()[-1].startswith("all four scenes went as expected")
    assert_nothing_leaked(out + result.stderr)
    assert_stopped(result.stderr)


@pytest.fixture
def local_model() -> Iterator[stand_in_model.FakeServer]:
    """Stands for the user's own OpenAI-compatible server (Ollama, llama.cpp, vLLM) on loopback."""
    with stand_in_model.server() as server:
        yield server


def test_a_local_model_is_used_instead_of_the_stand_in_without_any_key(
    local_model: stand_in_model.FakeServer,
) -> None:
    result = run_demo(OPENAI_BASE_URL=local_model.url + "/v1", OPENAI_MODEL="llama3.2-demo-test")

    assert result.returncode == 0, result.stderr
    assert f"your model llama3.2-demo-test at {local_model.url}/v1" in result.stdout
    requests = local_model.requests_to("/v1/chat/completions")
    assert len(requests) == 3  # scenes 1 to 3; the error scene never reaches a model
    assert {r.json()["model"] for r in requests} == {"llama3.2-demo-test"}
    for request in requests:
        assert CANARIES["OPENAI_API_KEY"] not in request.headers.get("authorization", "")
    # A real model cannot be made to fail on cue: the error is a question over the bot's limit.
    assert "the limit is 4,000. Please shorten it and try again." in result.stdout
    assert_nothing_leaked(result.stdout + result.stderr)
    assert_stopped(result.stderr)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OPENAI_BASE_URL": "https://api.openai.com/v1", "OPENAI_MODEL": "gpt-4.1-mini"}, "must be a local server"),
        ({"OPENAI_BASE_URL": "http://127.0.0.1.example.com/v1", "OPENAI_MODEL": "m"}, "must be a local server"),
        ({"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}, "set OPENAI_MODEL"),
    ],
)
def test_a_model_it_cannot_use_is_a_usage_error(env: dict[str, str], message: str) -> None:
    result = run_demo(**env)

    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""
    assert "chalice local" not in result.stderr  # refused before anything started


def test_a_scene_that_fails_exits_1_naming_it_and_stops_the_bot() -> None:
    # A local model server that is not running: the bot says its plain line instead of an answer.
    result = run_demo("--timeout", "60", OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1", OPENAI_MODEL="m")

    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: scene 1 (a slash command) failed: the reply is an error line"), result.stderr
    assert messages.ERROR_TEXTS["service_error"] in result.stdout
    log = Path(last.rsplit("the bot's log: ", 1)[1])
    assert log.is_file()  # kept, for the line that points at it
    with contextlib.suppress(OSError):
        log.unlink()
        log.parent.rmdir()
    assert_nothing_leaked(result.stdout + result.stderr)
    assert_stopped(result.stderr)


def interrupted_once_listening(command: list[str], env: dict[str, str], signum: int) -> str:
    """Runs ``command`` (a script that starts the playground), sends ``signum`` once the bot
    listens, and checks that it exits 130 having stopped the bot; its stderr."""
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, encoding="utf-8"
    )
    try:
        assert process.stderr is not None
        seen = ""
        for line in process.stderr:  # blocks on the pipe, no sleeps: the script says when the bot listens
            seen += line
            if "the bot is listening" in line:
                break
        process.send_signal(signum)
        seen += process.stderr.read()
        assert process.wait(timeout=30) == 130, seen
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "interrupted" in seen
    assert_stopped(seen)
    return seen


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_stops_the_bot_and_the_stand_ins(signum: int) -> None:
    interrupted_once_listening([sys.executable, str(SCRIPT)], user_env(), signum)


def test_the_bot_gets_a_fresh_environment_with_nothing_of_the_users() -> None:
    environ = {**user_env(), "OPENAI_BASE_URL": "https://api.openai.com/v1", "LANG": "C.UTF-8", "SYSTEM_PROMPT": "x"}

    env = PLAYGROUND.bot_environment(
        environ,
        secret="s" * 64,
        bot_token="xoxb-demo-t",
        slack_url="http://127.0.0.1:1/api/",
        model_url="http://127.0.0.1:2/v1",
        model_name="m",
    )

    assert not set(CANARIES.values()) & set(env.values())
    assert "OPENAI_API_KEY" not in env and "AWS_ACCESS_KEY_ID" not in env and "AWS_PROFILE" not in env
    assert not {name for name in env if name.lower().endswith("_proxy") and name.lower() != "no_proxy"}
    assert env["OPENAI_BASE_URL"] == "http://127.0.0.1:2/v1"
    assert env["SLACK_SIGNING_SECRET"] == "s" * 64 and env["SLACK_BOT_TOKEN"] == "xoxb-demo-t"
    assert env["PATH"] == environ["PATH"] and env["LANG"] == "C.UTF-8"
    assert "SYSTEM_PROMPT" not in env  # the demo shows the bot as it ships
    # Anything that still tried AWS would find a closed port on loopback, with no credentials.
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == env["AWS_CONFIG_FILE"] == os.devnull
