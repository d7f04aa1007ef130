"""The playground: the real app on this machine against local stand-ins, no keys. Not deployed.

`make demo` (scripts/demo.py) plays its scenes on it; `make ask` (scripts/ask.py) without
``SLACK_SIGNING_SECRET`` and ``URL`` asks its one question there.

Contract:

- ``parse_model(environ) -> Model``: the stand-in model (``devkit.stand_in_model``), or, with
  ``OPENAI_BASE_URL`` and ``OPENAI_MODEL`` (both required then), a local OpenAI-compatible
  server: Ollama, llama.cpp's server, vLLM. ``UsageError`` (``common.UsageError``) if that URL
  is not http(s) on loopback: the playground sends nothing off this machine.
  ``Model.timeout`` is how long one answer may take: ``STAND_IN_TIMEOUT`` with the stand-in,
  ``MODEL_TIMEOUT`` with a local model (which may first have to load).
- ``started(model, environ, err)``, a context manager, yields a ``Stage`` once the bot listens:
  ``chalice local --stage dev`` (a subprocess in a session of its own, on a free 127.0.0.1 port,
  the worker in-process as in `make run`), a fake Slack Web API (``devkit.fake_slack_api``) on
  a free port, and the stand-in model unless ``model`` is a local server. Progress (``starting
  the bot: chalice local on URL…``, ``the bot is listening (N s)``) goes to ``err``.
- The bot's environment is ``bot_environment(...)``, built afresh rather than inherited: PATH,
  HOME, the locale, a signing secret and a bot token made for this run, the stand-ins' URLs,
  no ``OPENAI_API_KEY`` (the bot needs none for a loopback model outside Lambda), no AWS
  credentials or profile, AWS's endpoint on a closed loopback port, and no proxy. So no key,
  token or AWS setting of the user's reaches the bot, and nothing it does leaves the machine.
- ``Stage``: ``url`` (the bot's base URL), ``secret`` and ``bot_token`` (this run's; hidden from
  ``repr`` and never printed), ``slack`` (the fake Slack Web API), ``calls`` (every call the
  fake answers, put there as it answers, to wake a follower), ``stand_in`` (the stand-in's
  server, whose ``script`` makes a request fail; None with a local model), ``model`` and ``log``
  (chalice local's output).
- Leaving the ``with`` in any way stops chalice local and everything it started (its session:
  SIGTERM, then SIGKILL after ``STOP_SECONDS``), then the stand-ins, and deletes the log unless
  ``stage.keep_log()`` (which returns its path) was called. ``StartFailed`` (chalice local
  exited or did not listen within ``STARTUP_TIMEOUT``) names the log, which it keeps;
  ``ScriptError`` (``common.chalice_command``'s) if chalice is not installed.
- ``stop_on_signals()``: from then on SIGTERM and SIGHUP unwind as Ctrl-C does
  (``KeyboardInterrupt``), so a ``with started(...)`` stops everything on them too.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO
from urllib.parse import urlsplit

# For common (which puts the repository on sys.path for devkit), also when a test imports this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, ScriptError, UsageError, chalice_command, is_loopback

from devkit import stand_in_model
from devkit.fake_slack_api import Call, FakeSlackAPI
from devkit.http_fake import FakeServer

STAND_IN_TIMEOUT = 30.0  # seconds one answer may take with the stand-in (it answers in about 3)
MODEL_TIMEOUT = 150.0  # with a real model, which may first have to load
STARTUP_TIMEOUT = 60.0  # chalice local listens within a few seconds, even on a busy machine
STOP_SECONDS = 5.0
# What the bot keeps of this environment: enough to run Python, nothing that reaches a service.
KEPT_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
# Where any AWS call would go: a closed port on loopback (the app calls AWS only in Lambda anyway).
AWS_DEAD_END = "http://127.0.0.1:9"
BOT_TOKEN_PREFIX = "xoxb-playground-"  # then a random part: each run has a token of its own


class StartFailed(ScriptError):
    """chalice local did not start; ``str(error)`` says how and where its log is."""


@dataclass(frozen=True)
class Model:
    base_url: str | None  # None: the stand-in, served by the playground
    name: str

    def describe(self) -> str:
        if self.base_url is None:
            return "a stand-in model (not an LLM)"
        return f"your model {self.name} at {self.base_url}"

    @property
    def timeout(self) -> float:
        return STAND_IN_TIMEOUT if self.base_url is None else MODEL_TIMEOUT


def parse_model(environ: Mapping[str, str]) -> Model:
    base_url = environ.get("OPENAI_BASE_URL", "").strip()
    if not base_url:
        return Model(None, stand_in_model.MODEL_NAME)
    if not is_loopback(base_url) or urlsplit(base_url).scheme not in ("http", "https"):
        raise UsageError(
            f"OPENAI_BASE_URL must be a local server (http://127.0.0.1:PORT/v1 or localhost), got {base_url!r}: "
            "the playground sends nothing off this machine"
        )
    name = environ.get("OPENAI_MODEL", "").strip()
    if not name:
        raise UsageError("with OPENAI_BASE_URL, set OPENAI_MODEL to a model that server has (e.g. llama3.2)")
    return Model(base_url, name)


def bot_environment(
    environ: Mapping[str, str], *, secret: str, bot_token: str, slack_url: str, model_url: str, model_name: str
) -> dict[str, str]:
    """The bot's whole environment: built afresh, so no key, token or AWS setting of the user's reaches it."""
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


@dataclass
class Stage:
    """The running playground; see the module docstring."""

    url: str
    secret: str = field(repr=False)
    bot_token: str = field(repr=False)
    slack: FakeSlackAPI
    calls: queue.SimpleQueue[Call]
    stand_in: FakeServer | None
    model: Model
    log: Path
    log_kept: bool = False

    def keep_log(self) -> Path:
        """Keeps chalice local's log after the playground stops (for a line that points at it); its path."""
        self.log_kept = True
        return self.log


@contextlib.contextmanager
def started(model: Model, environ: Mapping[str, str], err: TextIO) -> Iterator[Stage]:
    """The playground, running; stopped (and its log deleted unless kept) when the ``with`` is left."""
    chalice = chalice_command()  # first: without it there is nothing to start
    log = Path(tempfile.mkdtemp(prefix="mameka-playground-")) / "chalice-local.log"
    stage: Stage | None = None
    start_failed = False  # then the log is kept, for the line that names it
    try:
        with contextlib.ExitStack() as stack:
            stand_in = None
            model_url = model.base_url
            if model_url is None:
                stand_in = stack.enter_context(stand_in_model.server())
                model_url = stand_in.url + "/v1"
            calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
            # Made for this run: no secret of the user's is needed, and none could be shown.
            secret, bot_token = secrets.token_hex(32), BOT_TOKEN_PREFIX + secrets.token_hex(12)
            slack = stack.enter_context(FakeSlackAPI(token=bot_token, on_call=calls.put))
            env = bot_environment(
                environ, secret=secret, bot_token=bot_token, slack_url=slack.url, model_url=model_url,
                model_name=model.name,
            )  # fmt: skip
            try:
                url = stack.enter_context(running_bot(chalice, env, log, err))
            except StartFailed as error:
                start_failed = True
                raise StartFailed(f"{error}; the bot's log: {log}") from None
            stage = Stage(url, secret, bot_token, slack, calls, stand_in, model, log)
            yield stage
    finally:
        if not start_failed and (stage is None or not stage.log_kept):
            shutil.rmtree(log.parent, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_bot(chalice: str, env: dict[str, str], log: Path, err: TextIO) -> Iterator[str]:
    """``chalice local`` with ``env``, its output in ``log``; yields its base URL once it listens."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [chalice, "local", "--stage", "dev", "--host", "127.0.0.1", "--port", str(port)]
    command.append("--no-autoreload")  # its reloader would be a second process, outliving a SIGKILL of this one
    print(f"starting the bot: chalice local on {url}…", file=err, flush=True)
    started_at = time.monotonic()
    with log.open("wb") as output:
        # A session of its own: the terminal's Ctrl-C reaches only this script, which stops it in order.
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        problem = wait_until_listening(process, port, STARTUP_TIMEOUT)
        if problem is not None:
            raise StartFailed(problem)
        print(f"the bot is listening ({time.monotonic() - started_at:.1f} s)", file=err, flush=True)
        yield url
    finally:
        stop(process)


def wait_until_listening(process: subprocess.Popen[bytes], port: int, timeout: float) -> str | None:
    """None once something accepts connections on ``port``; else what went wrong."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return None
        except OSError:
            if time.monotonic() >= deadline:
                return f"chalice local did not listen within {timeout:g} s"
            time.sleep(0.05)
    return f"chalice local exited ({process.returncode}) before it listened"


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


def interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGHUP: unwind as Ctrl-C does, so that chalice local and the stand-ins are stopped."""
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
