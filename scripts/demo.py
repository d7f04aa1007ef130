"""A playground without keys: the real app, on this machine, against stand-ins. Not deployed.

    make demo                                                          # a stand-in model
    OPENAI_BASE_URL=http://127.0.0.1:11434/v1 OPENAI_MODEL=llama3.2 make demo   # a local model

Contract:

- It starts the real app with ``chalice local`` (a subprocess on a free 127.0.0.1 port, the
  worker in-process as in `make run`), a fake Slack Web API (``devkit.fake_slack_api``) and,
  unless ``OPENAI_BASE_URL`` is given, the stand-in model (``devkit.stand_in_model``), and
  plays four scenes, printed on stdout as Slack would show them (scripts/ask.py's rendering):
  1. a slash command: its acknowledgement, then its reply;
  2. a mention: the answer streamed into its thread;
  3. a follow-up in that thread: the answer uses the thread (the stand-in counts and quotes it);
  4. an error, as the bot tells it: the stand-in model fails the request (HTTP 429) and the
     thread gets the bot's one plain-language line. A real model cannot be made to fail on
     cue, so with ``OPENAI_BASE_URL`` the error is a question over the bot's length limit.
- ``OPENAI_BASE_URL`` (with ``OPENAI_MODEL``, both required then) points the bot at a local
  OpenAI-compatible server instead of the stand-in: Ollama, llama.cpp's server, vLLM. It must
  be on loopback: the demo sends nothing off this machine (exit 2 otherwise).
- Only loopback: the app gets a fresh environment, not this one: PATH, HOME and the locale,
  a signing secret and a bot token made for this run (never printed), the stand-ins' URLs, no
  ``OPENAI_API_KEY`` (the bot needs none for a loopback model outside Lambda), no AWS
  credentials or profile, AWS's endpoint on a closed loopback port, and no proxy.
- Progress goes to stderr. Exit 0 when every scene went as expected (an answer arrived for
  1-3; for 4, exactly one message, the expected error line); 1 otherwise, with one line saying
  which scene failed and where the bot's log is kept; 2 usage; 130 interrupted. Every exit
  path (Ctrl-C and SIGTERM included) stops chalice local and the stand-ins.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import TextIO, cast
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for chalicelib, devkit and the fake OpenAI server, when run as `python scripts/...`
sys.path.insert(1, str(ROOT / "scripts"))  # for ask.py: scripts/ is not a package

import ask  # noqa: E402

from chalicelib.settings import Settings  # noqa: E402
from chalicelib.slack import messages  # noqa: E402
from devkit import slack_requests, stand_in_model  # noqa: E402
from devkit.fake_slack_api import Call, FakeSlackAPI, Message  # noqa: E402

COMMAND_QUESTION = "東京でおすすめの散歩道は？"
MENTION_QUESTION = "鎌倉でおすすめの散歩道は？"
FOLLOW_UP_QUESTION = "その近くでランチするならどこ？"
FAILING_QUESTION = "京都でおすすめの散歩道は？"
STAND_IN_TIMEOUT = 30.0  # seconds a scene may take with the stand-in (it answers in about 3)
REAL_MODEL_TIMEOUT = ask.DEFAULT_TIMEOUT  # a local model may first have to load
STARTUP_TIMEOUT = 60.0  # chalice local listens within a few seconds, even on a busy machine
STOP_SECONDS = 5.0
# What the app keeps of this environment: enough to run Python, nothing that reaches a service.
KEPT_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
# Where any AWS call would go: a closed port on loopback (the app calls AWS only in Lambda anyway).
AWS_DEAD_END = "http://127.0.0.1:9"


class UsageError(Exception):
    """A setting is wrong; ``str(error)`` says which."""


class SceneFailed(Exception):
    """A scene did not go as expected; ``str(error)`` says how."""


@dataclass(frozen=True)
class Model:
    base_url: str | None  # None: the stand-in, served by this script
    name: str

    def describe(self) -> str:
        if self.base_url is None:
            return "a stand-in model (not an LLM)"
        return f"your model {self.name} at {self.base_url}"


def parse_model(environ: Mapping[str, str]) -> Model:
    base_url = environ.get("OPENAI_BASE_URL", "").strip()
    if not base_url:
        return Model(None, stand_in_model.MODEL_NAME)
    if not ask.is_loopback(base_url) or urlsplit(base_url).scheme not in ("http", "https"):
        raise UsageError(
            f"OPENAI_BASE_URL must be a local server (http://127.0.0.1:PORT/v1 or localhost), got {base_url!r}: "
            "the demo sends nothing off this machine"
        )
    name = environ.get("OPENAI_MODEL", "").strip()
    if not name:
        raise UsageError("with OPENAI_BASE_URL, set OPENAI_MODEL to a model that server has (e.g. llama3.2)")
    return Model(base_url, name)


def bot_environment(
    environ: Mapping[str, str], *, secret: str, bot_token: str, slack_url: str, model_url: str, model_name: str
) -> dict[str, str]:
    """The app's whole environment: built afresh, so no key, token or AWS setting of the user's reaches it."""
    env = {name: environ[name] for name in KEPT_VARIABLES if name in environ}
    env.update(
        SLACK_SIGNING_SECRET=secret,
        SLACK_BOT_TOKEN=bot_token,
        SLACK_API_URL=slack_url,
        OPENAI_BASE_URL=model_url,
        OPENAI_MODEL=model_name,
        PYTHONUNBUFFERED="1",  # the log is readable as it is written
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL=AWS_DEAD_END,
        AWS_DEFAULT_REGION="us-east-1",  # boto3 wants one to build a client, which then goes nowhere
        NO_PROXY="*",  # a system proxy setting must not carry loopback traffic either
        no_proxy="*",
    )
    return env


# --- chalice local ----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_bot(env: dict[str, str], log_path: Path, err: TextIO) -> Iterator[str]:
    """``chalice local`` with ``env``, its output in ``log_path``; yields its base URL once it listens."""
    chalice = ask.chalice_command()
    if chalice is None:
        raise UsageError("chalice is not installed: run `make venv`")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [chalice, "local", "--stage", "dev", "--host", "127.0.0.1", "--port", str(port), "--no-autoreload"]
    print(f"starting the bot: chalice local on {url}…", file=err, flush=True)
    started = time.monotonic()
    with log_path.open("wb") as log:
        # A session of its own: the terminal's Ctrl-C reaches only this script, which stops it in order.
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_listening(process, port, STARTUP_TIMEOUT)
        print(f"the bot is listening ({time.monotonic() - started:.1f} s)", file=err, flush=True)
        yield url
    finally:
        stop(process)


def wait_until_listening(process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise SceneFailed(f"chalice local exited ({process.returncode}) before it listened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise SceneFailed(f"chalice local did not listen within {timeout:g} s") from None
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ends chalice local and anything it started (its session), politely first."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- the scenes -------------------------------------------------------------------------------------------------------


@dataclass
class Stage:
    """What every scene uses: the bot, the fakes around it, the terminal."""

    url: str
    secret: str = field(repr=False)
    slack: FakeSlackAPI
    calls: queue.SimpleQueue[Call]
    stand_in: stand_in_model.FakeServer | None  # None: the user's own model
    timeout: float
    style: ask.Style
    out: TextIO
    err: TextIO


class RepliesAfter:
    """What ``ask.ThreadView`` reads of the fake: only the bot's messages after ``ts`` (the
    question), so a follow-up shows its own answer, not the thread's earlier one again."""

    def __init__(self, slack: FakeSlackAPI, ts: str) -> None:
        self.slack, self.after = slack, Decimal(ts)

    def bot_messages(self, channel: str, thread_ts: str) -> list[Message]:
        return [m for m in self.slack.bot_messages(channel, thread_ts) if Decimal(m.ts) > self.after]


def header(stage: Stage, number: int, text: str) -> None:
    stage.out.write("\n" + stage.style.bold(f"━━ {number}. {text}") + "\n")
    stage.out.flush()


def slash_command(stage: Stage) -> None:
    options = ask.Options(COMMAND_QUESTION, stage.secret, f"{stage.url}/slack/commands", stage.timeout, None, 0, "dev")
    if ask.ask_command(options, stage.style, stage.out, stage.err) != 0:
        raise SceneFailed("the reply is an error line, not an answer")


def mention(stage: Stage, question: str, thread_ts: str | None = None) -> tuple[str, list[Message]]:
    """Asks ``@mameka question`` (in the thread ``thread_ts``, or a new one) and shows the answer as
    it streams; returns the thread's ts and the bot's messages for this question."""
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event(messages.escape(question), ts=ts, thread_ts=thread_ts)
    stage.slack.add_event(body)  # in Slack the message is in the channel before the event is sent
    url = f"{stage.url}/slack/events"
    print(f"@{ask.COMMAND[1:]} {one_line(question)}  →  {url}", file=stage.err)
    sent = time.monotonic()
    ask.deliver(url, body, slack_requests.signed_headers(stage.secret, body, content_type=slack_requests.JSON))
    ask.warn_if_slow(time.monotonic() - sent, stage.err)
    root = thread_ts or ts
    replies = RepliesAfter(stage.slack, ts)
    progress = ask.Progress(stage.err, "waiting for the bot", stage.timeout)
    # ThreadView reads only bot_messages of what it is given.
    view = ask.ThreadView(cast(FakeSlackAPI, replies), slack_requests.CHANNEL_ID, root, sent, stage.style, progress)
    try:
        ask.follow(stage.slack, stage.calls, view, stage.timeout, stage.out)
    finally:
        view.finish(stage.out)
        progress.done()
    return root, replies.bot_messages(slack_requests.CHANNEL_ID, root)


def expect_answer(answer: list[Message]) -> None:
    notices = [m.text for m in answer if not m.markdown]
    if notices:
        raise SceneFailed(f"the bot said {notices[-1]!r} instead of answering")
    if not any(m.text.strip() for m in answer):
        raise SceneFailed("no answer text arrived")


def error_scene(stage: Stage) -> None:
    if stage.stand_in is not None:
        stage.stand_in.script.append(stand_in_model.failure())  # the next request to the model fails
        header(stage, 4, f"@{ask.COMMAND[1:]} {FAILING_QUESTION}   (the stand-in model is made to fail this one)")
        question, expected = FAILING_QUESTION, messages.notice("rate_limited")
    else:
        limit = Settings().max_input_chars  # the app's default: the demo passes no MAX_INPUT_CHARS
        question = ("長い質問。" * (limit // 5 + 1))[: limit + 1]
        header(stage, 4, f"@{ask.COMMAND[1:]} {one_line(question)}: over the bot's limit of {limit:,}")
        expected = messages.too_long(len(question), limit)["text"]
    _, said = mention(stage, question)
    if [m.text for m in said] != [expected]:
        shown = [m.text for m in said] or "nothing"
        raise SceneFailed(f"expected the one line {expected!r}; the bot said {shown!r}")


def one_line(question: str) -> str:
    """The question for a one-line header: a long one cut short."""
    return question if len(question) <= 40 else f"{question[:20]}… ({len(question):,} characters)"


def play(stage: Stage) -> None:
    """The four scenes, in order; ``SceneFailed`` (or ``ask.Failure``) names the first that did not go as expected."""
    with scene(1, "a slash command"):
        header(stage, 1, f"{ask.COMMAND} {COMMAND_QUESTION}")
        slash_command(stage)
    with scene(2, "a mention, answered in its thread"):
        header(stage, 2, f"@{ask.COMMAND[1:]} {MENTION_QUESTION}   (in a channel: answered in its thread)")
        thread_ts, answer = mention(stage, MENTION_QUESTION)
        expect_answer(answer)
    with scene(3, "a follow-up in the thread"):
        header(stage, 3, f"@{ask.COMMAND[1:]} {FOLLOW_UP_QUESTION}   (in the same thread)")
        _, answer = mention(stage, FOLLOW_UP_QUESTION, thread_ts)
        expect_answer(answer)
    with scene(4, "an error"):
        error_scene(stage)


@contextlib.contextmanager
def scene(number: int, name: str) -> Iterator[None]:
    try:
        yield
    except (SceneFailed, ask.Failure, ask.UsageError) as error:
        raise SceneFailed(f"scene {number} ({name}) failed: {error}") from None


# --- main -------------------------------------------------------------------------------------------------------------


def run(model: Model, timeout: float, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    started = time.monotonic()
    style = ask.Style(out.isatty() and not environ.get("NO_COLOR"))
    calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
    bot_token = "xoxb-demo-" + secrets.token_hex(12)  # made for this run, as the signing secret is
    secret = secrets.token_hex(32)
    log_dir = Path(tempfile.mkdtemp(prefix="mameka-demo-"))
    log_path = log_dir / "chalice-local.log"
    failed = False  # then the log is kept, for the line that says so
    try:
        with contextlib.ExitStack() as stack:
            stand_in = None
            model_url = model.base_url
            if model_url is None:
                stand_in = stack.enter_context(stand_in_model.server())
                model_url = stand_in.url + "/v1"
            slack = stack.enter_context(FakeSlackAPI(token=bot_token, on_call=calls.put))
            env = bot_environment(
                environ, secret=secret, bot_token=bot_token, slack_url=slack.url, model_url=model_url,
                model_name=model.name,
            )  # fmt: skip
            out.write(
                style.dim(
                    f"mameka (the real app, chalice local) with {model.describe()} and a fake Slack, "
                    "all on 127.0.0.1: no keys, no workspace, no AWS."
                )
                + "\n"
            )
            out.flush()
            try:
                url = stack.enter_context(running_bot(env, log_path, err))
                play(Stage(url, secret, slack, calls, stand_in, timeout, style, out, err))
            except SceneFailed as error:
                failed = True
                print(f"error: {error}; the bot's log: {log_path}", file=err)
                return 1
        print(f"all four scenes went as expected, in {time.monotonic() - started:.1f} s", file=err)
        return 0
    finally:
        if not failed:
            log_path.unlink(missing_ok=True)
            log_dir.rmdir()


def interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGHUP: unwind as Ctrl-C does, so that chalice local and the stand-ins are stopped."""
    raise KeyboardInterrupt


def main(argv: list[str], environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(
        prog="make demo",
        description="Run the bot on this machine against stand-ins and show four scenes as Slack would. "
        "OPENAI_BASE_URL (loopback) and OPENAI_MODEL use a local OpenAI-compatible server instead of the stand-in.",
    )
    parser.add_argument(
        "--timeout", type=float, help=f"seconds each scene may take (default {STAND_IN_TIMEOUT:g}; "
        f"{REAL_MODEL_TIMEOUT:g} with OPENAI_BASE_URL)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")  # a terminal that cannot show ⏳ still shows the answer
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    try:
        model = parse_model(environ)
        timeout = args.timeout
        if timeout is None:
            timeout = STAND_IN_TIMEOUT if model.base_url is None else REAL_MODEL_TIMEOUT
        if not 0 < timeout < float("inf"):
            raise UsageError(f"--timeout must be more than 0 seconds, got {args.timeout:g}")
        return run(model, timeout, environ, sys.stdout, sys.stderr)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
