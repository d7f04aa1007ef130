"""Ask the bot a question from a terminal, the way Slack would. Not deployed.

    make run                                   # terminal 1: the bot on http://127.0.0.1:8000
    make ask Q="東京でおすすめの散歩道は？"       # terminal 2, with the same SLACK_SIGNING_SECRET
    make ask EVENT=mention Q="鎌倉のおすすめは？"  # a mention, answered in its thread (see below)

    URL=https://{id}.execute-api.{region}.amazonaws.com/api/ STAGE=prod make ask Q="..."   # deployed

``EVENT=command`` (the default) sends a slash command signed with ``SLACK_SIGNING_SECRET``
(form fields as Slack sends them), prints the acknowledgement, waits for the reply on
``response_url`` and prints it, rendered for a terminal.

``EVENT=mention`` (or ``EVENT=dm``) sends an Events API ``app_mention`` (or a DM ``message``)
to ``/slack/events``. The bot answers those through the Slack Web API, so this script serves
a fake one (``devkit.fake_slack_api``) on 127.0.0.1, holding the message, and prints the
bot's answer in the thread as it is streamed: the status while it thinks, the text as it
grows, a rule where a new message starts, and a ``:warning:`` line if there is one. The bot
must call this fake: start ``make run`` with ``SLACK_API_URL=http://127.0.0.1:8790/api/``
(read when chalice local starts) and the same ``SLACK_BOT_TOKEN`` as here.

Progress goes to stderr; the messages go to stdout.

Environment:

- ``SLACK_SIGNING_SECRET`` (required): the secret the server checks signatures with.
- ``EVENT``: ``command`` (default), ``mention`` or ``dm``.
- ``URL``: the bot's URL, default ``http://127.0.0.1:8000/slack/commands`` (or
  ``.../slack/events`` for an event); a base URL (such as ``chalice url`` prints) gets the
  route appended, and one route of ours is switched for the other.
- ``TIMEOUT``: seconds to wait for the reply after the acknowledgement, default 150.
- ``RESPONSE_URL``: a public URL to send as ``response_url`` instead of this script's
  listener; ``LISTEN_PORT`` fixes the listener's port (default: any free one), so that a
  tunnel from ``RESPONSE_URL`` to it brings the reply back here. A deployed stage posts only to
  hosts in its ``RESPONSE_URL_HOSTS``: add the tunnel's host there first.
- ``STAGE``: for a deployed ``URL``, the stage whose worker logs to read (default ``dev``).
- For an event: ``SLACK_BOT_TOKEN``, the token the fake accepts (default ``xoxb-fake-bot-token``);
  ``SLACK_API_URL``, whose port the fake listens on (default 8790), so that the same
  variables in both terminals keep `make run` and `make ask` together.

Where the reply comes from: for a loopback ``URL`` (``make run``) the reply is POSTed to a
listener on 127.0.0.1. A worker in AWS cannot reach this machine's loopback, so for any
other ``URL`` the script reads the worker's outcome from ``chalice logs --name worker``
(it recognises its job by a user id made for this run), and shows a reply only if one
reaches the listener through ``RESPONSE_URL``. An event needs a loopback ``URL``: a deployed
worker answers in the real Slack, not in this script's fake.

Exit status: 0 the bot answered; 1 it did not (nothing listening, non-200, a reply starting
with ``:warning:``, no reply within ``TIMEOUT``, or a message saying it did not start);
2 usage error (empty question, ``SLACK_SIGNING_SECRET`` unset, a bad setting, the fake Slack
API's port taken); 130 Ctrl-C.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for chalicelib and devkit, when run as `python scripts/...`

from chalicelib.slack import messages  # noqa: E402
from devkit import slack_requests  # noqa: E402
from devkit.fake_slack_api import FAKE_BOT_TOKEN, LOCAL_PORT, Call, FakeSlackAPI  # noqa: E402

DEFAULT_URL = "http://127.0.0.1:8000/slack/commands"
COMMAND_PATH = "slack/commands"
EVENTS_PATH = "slack/events"
EVENTS = ("command", "mention", "dm")
COMMAND = "/mameka"
DEFAULT_TIMEOUT = 150.0
DEFAULT_STAGE = "dev"
SLACK_ACK_SECONDS = 3.0  # Slack shows operation_timeout when the acknowledgement takes longer
POST_TIMEOUT = 30.0
# Where a deployed worker's reply goes when nothing here can take it: a host the deployed bot
# allows (RESPONSE_URL_HOSTS), on a path Slack answers 404, so the reply is simply dropped.
PLACEHOLDER_RESPONSE_URL = "https://hooks.slack.com/commands/T0ASKSCRIPT/0/not-a-real-response-url"
ERROR_MARK = ":warning:"  # every error reply of the bot's starts with it (chalicelib.slack.messages.error)
# The acknowledgement's first word: anything else means the bot did not start a job (chalicelib.slack.messages).
ACK_MARK = messages.acknowledgement("?")["text"].split(" ", 1)[0]
LOG_POLL_SECONDS = 10.0
LOG_FIRST_POLL_SECONDS = 4.0
LOG_LOOKBACK_SECONDS = 120  # CloudWatch timestamps come from another clock
TUNNEL_GRACE_SECONDS = 5.0
# The worker's first Slack call (the "is thinking…" status) comes within a second of the event;
# no call by then means the bot calls another Slack API, and waiting out TIMEOUT would only hide it.
FIRST_CALL_SECONDS = 15.0
# A stopped stream is the end unless the answer goes on in a new message or a notice follows,
# which the worker sends at once: this long with no Slack call after a stop means it is done.
SETTLE_SECONDS = 1.0
AUTH_ERRORS = frozenset({"invalid_auth", "not_authed"})


class UsageError(Exception):
    """A setting or argument is wrong; ``str(error)`` says which and how to fix it."""


class Failure(Exception):
    """The bot did not answer; ``str(error)`` says why."""


# --- settings -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    question: str
    secret: str = field(repr=False)
    url: str
    timeout: float
    response_url: str | None
    listen_port: int
    stage: str
    event: str = "command"
    slack_port: int = LOCAL_PORT  # the fake Slack Web API's, for an event
    bot_token: str = field(default=FAKE_BOT_TOKEN, repr=False)


def route_url(url: str, route: str) -> str:
    """The URL of ``route`` for ``url``: a base URL gets it appended, our other route is swapped for it."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    for known in (COMMAND_PATH, EVENTS_PATH):
        if path.endswith("/" + known):
            return url if known == route else parts._replace(path=path.removesuffix(known) + route).geturl()
    return url.rstrip("/") + "/" + route


def command_url(url: str) -> str:
    """The slash-command URL for ``url``, which is either that URL or the API's base URL."""
    return route_url(url, COMMAND_PATH)


def parse_options(argv: list[str], environ: Mapping[str, str]) -> Options:
    question = " ".join(argv).strip()
    if not question:
        raise UsageError('usage: make ask Q="your question" [EVENT=mention|dm]   (or: scripts/ask.py QUESTION...)')
    secret = environ.get("SLACK_SIGNING_SECRET", "").strip()
    if not secret:
        raise UsageError(
            "SLACK_SIGNING_SECRET is not set: export the signing secret the server checks "
            "(for `make run`, the same value in both terminals)"
        )
    event = environ.get("EVENT", "").strip().lower() or "command"
    if event not in EVENTS:
        raise UsageError(f"EVENT must be one of {', '.join(EVENTS)}; got {environ.get('EVENT')!r}")
    route = COMMAND_PATH if event == "command" else EVENTS_PATH
    url = route_url(environ.get("URL", "").strip() or DEFAULT_URL, route)
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise UsageError(f"URL must be an http(s) URL, got {url!r}")
    try:
        timeout = float(environ.get("TIMEOUT", "").strip() or DEFAULT_TIMEOUT)
    except ValueError:
        raise UsageError(f"TIMEOUT must be a number of seconds, got {environ.get('TIMEOUT')!r}") from None
    if not 0 < timeout < float("inf"):
        raise UsageError(f"TIMEOUT must be more than 0 seconds, got {environ.get('TIMEOUT')!r}")
    response_url = environ.get("RESPONSE_URL", "").strip() or None
    if response_url and (urlsplit(response_url).scheme not in ("http", "https") or not urlsplit(response_url).hostname):
        raise UsageError(f"RESPONSE_URL must be an http(s) URL, got {response_url!r}")
    try:
        listen_port = int(environ.get("LISTEN_PORT", "").strip() or 0)
    except ValueError:
        raise UsageError(f"LISTEN_PORT must be a port number, got {environ.get('LISTEN_PORT')!r}") from None
    if not 0 <= listen_port <= 65535:
        raise UsageError(f"LISTEN_PORT must be a port number, got {listen_port}")
    stage = environ.get("STAGE", "").strip() or DEFAULT_STAGE
    if event == "command":
        return Options(question, secret, url, timeout, response_url, listen_port, stage)
    if not is_loopback(url):
        raise UsageError(
            f"EVENT={event} needs the bot on this machine (`make run`): the answer comes through this "
            "script's fake Slack Web API, and a deployed worker answers in the real Slack instead"
        )
    bot_token = environ.get("SLACK_BOT_TOKEN", "").strip() or FAKE_BOT_TOKEN
    return Options(question, secret, url, timeout, None, 0, stage, event, fake_slack_port(environ), bot_token)


def fake_slack_port(environ: Mapping[str, str]) -> int:
    """The fake Slack Web API's port: ``SLACK_API_URL``'s, so that one value in both terminals
    keeps `make run` and `make ask` together (and tests can pick a free port); else ``LOCAL_PORT``."""
    api_url = environ.get("SLACK_API_URL", "").strip()
    if not api_url:
        return LOCAL_PORT
    expected = f"http://127.0.0.1:{LOCAL_PORT}/api/"
    try:
        port = urlsplit(api_url).port
    except ValueError:
        port = None
    if urlsplit(api_url).scheme != "http" or not is_loopback(api_url) or port is None:
        raise UsageError(
            f"SLACK_API_URL is {api_url!r}: for an event it must be this script's fake Slack Web API, "
            f"such as {expected} (or unset), and `make run` must have the same"
        )
    return port


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- the request ----------------------------------------------------------------------------------------------------


def command_form(question: str, response_url: str, user_id: str) -> bytes:
    """The body Slack would POST for ``/mameka question``; every id is a visible fake."""
    return slack_requests.command_form(
        # Slack escapes exactly these three in slash-command text, even with should_escape false.
        messages.escape(question),
        response_url,
        token="unused-verification-token",
        team_id="T0ASKSCRIPT",
        team_domain="ask-script",
        channel_id="C0ASKSCRIPT",
        channel_name="ask-script",
        user_id=user_id,
        user_name="ask-script",
        command=COMMAND,
        api_app_id="A0ASKSCRIPT",
        trigger_id="0000000000.0000000000.ask-script",
    )


def event_body(event: str, question: str, ts: str) -> tuple[bytes, str]:
    """The Events API body Slack would POST for ``question`` at ``ts``, and its channel; ids are devkit's fakes."""
    # Slack escapes exactly these three in a message's text, as in a slash command's.
    text = messages.escape(question)
    if event == "dm":
        return slack_requests.dm_event(text, ts=ts), slack_requests.DM_CHANNEL_ID
    return slack_requests.mention_event(text, ts=ts), slack_requests.CHANNEL_ID


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """The status and body of the server's answer; raises ``Failure`` if there is none."""
    # A proxy from the environment must not carry a request meant for this machine's loopback.
    handlers = [urllib.request.ProxyHandler({})] if is_loopback(url) else []
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with opener.open(request, timeout=POST_TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except urllib.error.URLError as error:
        if isinstance(error.reason, ConnectionRefusedError):
            hint = "Start the bot with `make run` in another terminal" if is_loopback(url) else "Check URL="
            raise Failure(f"nothing is listening at {url}. {hint}, or set URL= to where it runs.") from None
        raise Failure(f"could not reach {url}: {error.reason}") from None
    except TimeoutError:
        raise Failure(f"{url} did not answer within {POST_TIMEOUT:.0f} s") from None
    except OSError as error:
        raise Failure(f"could not reach {url}: {error}") from None


# --- the response_url listener ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    message: dict[str, Any] | None  # None: a body Slack would refuse
    problem: str = ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class ReplyListener:
    """A stand-in for Slack's response_url on 127.0.0.1; answers as Slack does ("ok" or an error code)."""

    def __init__(self, port: int = 0) -> None:
        self.replies: queue.Queue[Reply] = queue.Queue()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                # Any path: a tunnel from RESPONSE_URL forwards that URL's path, unknown here.
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    message = json.loads(body)
                except ValueError:
                    message = None
                if not isinstance(message, dict):
                    listener.replies.put(Reply(None, "the reply is not a JSON object (Slack answers invalid_payload)"))
                    self._answer(400, "invalid_payload")
                elif not message.get("text") and not message.get("blocks"):
                    listener.replies.put(Reply(None, "the reply has no text (Slack answers no_text)"))
                    self._answer(400, "no_text")
                else:
                    listener.replies.put(Reply(message))
                    self._answer(200, "ok")

            def _answer(self, status: int, text: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        try:
            self._server = _Server(("127.0.0.1", port), Handler)
        except OSError as error:
            raise UsageError(f"cannot listen on 127.0.0.1:{port} for the reply: {error.strerror}") from None
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/response"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ReplyListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- a deployed worker's outcome, from its logs ----------------------------------------------------------------------


def worker_outcome(log_text: str, user_id: str) -> dict[str, Any] | None:
    """The worker's ``answer`` log line for this run's job, from ``chalice logs`` output."""
    for line in log_text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "answer" and record.get("user_id") == user_id:
            return record
    return None


def chalice_command() -> str | None:
    for candidate in (ROOT / ".venv" / "bin" / "chalice", Path(sys.executable).parent / "chalice"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("chalice")


def run_chalice(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


class WorkerLog:
    """Polls ``chalice logs --name worker`` in the background until this run's job shows up."""

    def __init__(self, stage: str, user_id: str, started: float) -> None:
        self.stage, self.user_id, self.started = stage, user_id, started
        self.problem = ""  # why the logs cannot be read, if they cannot
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._future: concurrent.futures.Future[dict[str, Any] | None] | None = None
        self._next_poll = time.monotonic() + LOG_FIRST_POLL_SECONDS

    def available(self) -> bool:
        if not (ROOT / ".chalice" / "deployed" / f"{self.stage}.json").is_file():
            self.problem = f"stage {self.stage!r} has no deployment record in .chalice/deployed (set STAGE=)"
        elif not chalice_command():
            self.problem = "chalice is not installed (run `make venv`)"
        return not self.problem

    def check(self) -> dict[str, Any] | None:
        """The outcome if a finished poll found it; starts the next poll when one is due.

        Raises ``Failure`` if ``chalice logs`` failed: a retry would fail the same way
        (no credentials, no access), and waiting out the timeout would only hide why.
        """
        if self._future is not None and self._future.done():
            future, self._future = self._future, None
            self._next_poll = time.monotonic() + LOG_POLL_SECONDS
            try:
                return future.result()
            except (OSError, subprocess.SubprocessError, RuntimeError) as error:
                self.problem = str(error)
                raise Failure(f"cannot read the worker's logs: {error}") from None
        if self._future is None and time.monotonic() >= self._next_poll:
            self._future = self._pool.submit(self._poll)
        return None

    def _poll(self) -> dict[str, Any] | None:
        since = int(time.time() - self.started) + LOG_LOOKBACK_SECONDS
        command = [chalice_command() or "chalice", "logs", "--name", "worker", "--stage", self.stage]
        result = run_chalice([*command, "--since", f"{since}s"])
        if result.returncode != 0:
            last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"`chalice logs` failed: {last_line}")
        return worker_outcome(result.stdout, self.user_id)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# --- the terminal -----------------------------------------------------------------------------------------------------


class Style:
    """ANSI styling when writing to a terminal (and NO_COLOR is unset), plain text otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def italic(self, text: str) -> str:
        return self._wrap("3", text)

    def strike(self, text: str) -> str:
        return self._wrap("9", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def code(self, text: str) -> str:
        return self._wrap("36", text) if self.enabled else f"`{text}`"


EMOJI = {"warning": "⚠️", "hourglass_flowing_sand": "⏳", "white_check_mark": "✅", "x": "❌"}
_CODE = re.compile(r"```(.*?)```|`([^`\n]+)`", re.DOTALL)
_ANGLE = re.compile(r"<([^<>|\s]+)(?:\|([^<>]+))?>")
_EMOJI = re.compile(r":([a-z0-9_+\-]+):")
_BOLD = re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?!\s)([^_\n]+?)(?<!\s)_(?![\w_])")
_STRIKE = re.compile(r"(?<![\w~])~(?!\s)([^~\n]+?)(?<!\s)~(?![\w~])")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _angle(match: re.Match[str]) -> str:
    target, label = match.group(1), match.group(2)
    if target[0] in "@#":
        return target[0] + (label or target[1:])
    if target[0] == "!":
        return "@" + (label or target[1:].split("^")[0])
    return f"{label} ({target})" if label and label != target else target


def render(text: str, style: Style) -> str:
    """Slack mrkdwn, lightly, for a terminal: styles, links as "label (url)", code blocks as "│ " lines."""
    out: list[str] = []
    position = 0
    for match in _CODE.finditer(text):
        out.append(_render_prose(text[position : match.start()], style))
        if match.group(1) is not None:
            block = "\n".join(style.dim("│ ") + line for line in unescape(match.group(1)).strip("\n").split("\n"))
            before = "".join(out)
            if before and not before.endswith("\n"):
                block = "\n" + block
            if not text[match.end() :].startswith("\n") and match.end() < len(text):
                block += "\n"
            out.append(block)
        else:
            out.append(style.code(unescape(match.group(2))))
        position = match.end()
    out.append(_render_prose(text[position:], style))
    return "".join(out)


def _render_prose(text: str, style: Style) -> str:
    text = _ANGLE.sub(_angle, text)
    text = _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)
    text = _BOLD.sub(lambda m: style.bold(m.group(1)), text)
    text = _ITALIC.sub(lambda m: style.italic(m.group(1)), text)
    text = _STRIKE.sub(lambda m: style.strike(m.group(1)), text)
    return unescape(text)


def show(kind: str, message: dict[str, Any], seconds: float, style: Style, out: TextIO) -> None:
    visibility = "in the channel" if message.get("response_type") == "in_channel" else "only visible to you"
    out.write(style.dim(f"── {kind} · {visibility} · {seconds:.1f} s") + "\n")
    out.write(render(str(message.get("text") or ""), style).rstrip("\n") + "\n")
    if message.get("blocks"):
        out.write(style.dim(f"({len(message['blocks'])} blocks not shown)") + "\n")
    out.flush()


class Progress:
    """Elapsed time on stderr while waiting: a spinner on a terminal, a line now and then otherwise."""

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
    PLAIN_EVERY = 30.0

    def __init__(self, stream: TextIO, label: str, timeout: float) -> None:
        self.stream, self.label = stream, label
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._frame = 0
        self._next_line = self.started + self.PLAIN_EVERY
        if not self.tty:
            self._write(f"{label} (up to {timeout:.0f} s)…\n")

    def tick(self) -> None:
        elapsed = time.monotonic() - self.started
        if self.tty:
            self._frame = (self._frame + 1) % len(self.FRAMES)
            self._write(f"\r{self.FRAMES[self._frame]} {self.label}… {elapsed:.0f} s\033[K")
        elif time.monotonic() >= self._next_line:
            self._write(f"…still waiting, {elapsed:.0f} s\n")
            self._next_line += self.PLAIN_EVERY

    def relabel(self, label: str) -> None:
        """Says what is awaited now: in the spinner on a terminal, as a line otherwise."""
        if label != self.label:
            self.label = label
            if not self.tty:
                self._write(f"{label}…\n")

    def done(self) -> float:
        if self.tty:
            self._write("\r\033[K")
        return time.monotonic() - self.started

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


# --- the conversation ---------------------------------------------------------------------------------------------


def wait(
    listener: ReplyListener | None, log: WorkerLog | None, timeout: float, progress: Progress
) -> Reply | dict[str, Any] | None:
    """The first of: a reply on the listener, the worker's log outcome; None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        progress.tick()
        if listener is not None:
            try:
                return listener.replies.get(timeout=min(0.1, left))
            except queue.Empty:
                pass
        else:
            time.sleep(min(0.1, left))
        if log is not None and (record := log.check()) is not None:
            return record
    return None


def describe_outcome(record: dict[str, Any], response_url: str | None) -> tuple[str, int]:
    """A line for the terminal and the exit status, from the worker's ``answer`` log line."""
    outcome = str(record.get("outcome"))
    facts = ", ".join(f"{key} {record[key]}" for key in ("model", "llm_ms") if record.get(key) is not None)
    if outcome == "answered":
        if response_url and record.get("delivered"):
            return f"The worker answered ({facts}) and delivered the reply to RESPONSE_URL.", 0
        if response_url:
            return f"The worker answered ({facts}) but could not deliver the reply to RESPONSE_URL.", 1
        return (
            f"The worker answered ({facts}). A worker in AWS cannot reach this machine, so the text went "
            "nowhere; set RESPONSE_URL= to a public URL (e.g. a tunnel to LISTEN_PORT) to see it here.",
            0,
        )
    text = messages.ERROR_TEXTS.get(outcome, messages.ERROR_TEXTS["service_error"])
    return f"{ERROR_MARK} {text} (worker outcome: {outcome})", 1


def deliver(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """POSTs ``body`` to the bot; its answer's body, or ``Failure`` for anything but HTTP 200."""
    status, raw = post(url, body, headers)
    if status != 200:
        detail = raw.decode("utf-8", "replace").strip()[:2000] or "(empty body)"
        hint = " Is SLACK_SIGNING_SECRET the server's?" if status == 401 else ""
        raise Failure(f"the bot answered HTTP {status}: {detail}{hint}")
    return raw


def warn_if_slow(ack_seconds: float, err: TextIO) -> None:
    if ack_seconds > SLACK_ACK_SECONDS:
        print(f"warning: the acknowledgement took {ack_seconds:.1f} s; Slack gives up after 3 s.", file=err)


def converse(options: Options, out: TextIO, err: TextIO) -> int:
    style = Style(out.isatty() and not os.environ.get("NO_COLOR"))
    if options.event == "command":
        return ask_command(options, style, out, err)
    return ask_in_thread(options, style, out, err)


def ask_command(options: Options, style: Style, out: TextIO, err: TextIO) -> int:
    deployed = not is_loopback(options.url)
    user_id = "UASK" + uuid.uuid4().hex[:8].upper()  # finds this run's job in a deployed worker's logs
    with contextlib.ExitStack() as cleanup:
        listener = None
        if not deployed or options.response_url:
            listener = cleanup.enter_context(ReplyListener(options.listen_port))
            if options.response_url:
                print(f"Listening on http://127.0.0.1:{listener.port} for replies sent to RESPONSE_URL.", file=err)
        log = None
        if deployed:
            log = WorkerLog(options.stage, user_id, time.time())
            cleanup.callback(log.close)
        response_url = options.response_url or (listener.url if listener else PLACEHOLDER_RESPONSE_URL)

        body = command_form(options.question, response_url, user_id)
        print(f"{COMMAND} {options.question}  →  {options.url}", file=err)
        sent = time.monotonic()
        raw = deliver(options.url, body, slack_requests.signed_headers(options.secret, body))
        ack_seconds = time.monotonic() - sent
        try:
            ack = json.loads(raw)
        except ValueError:
            ack = None
        if not isinstance(ack, dict):
            raise Failure(f"the bot's acknowledgement is not a JSON message: {raw[:500]!r}")
        show("acknowledgement", ack, ack_seconds, style, out)
        warn_if_slow(ack_seconds, err)
        if not str(ack.get("text", "")).startswith(ACK_MARK):
            raise Failure("the bot did not start on the question; its message above says why")
        log_readable = log is not None and log.available()
        if log is not None and listener is None and not log_readable:
            raise Failure(
                f"sent, but a worker in AWS cannot reach this machine and its logs cannot be read: {log.problem}. "
                "Set RESPONSE_URL= to a public URL to get the reply."
            )

        progress = Progress(err, "waiting for the reply", options.timeout)
        try:
            result = wait(listener, log if log_readable else None, options.timeout, progress)
            if isinstance(result, dict) and listener is not None and result.get("delivered"):
                # The reply may be on its way through the tunnel: give it a moment to arrive.
                result = wait(listener, None, TUNNEL_GRACE_SECONDS, progress) or result
        finally:
            waited = progress.done()
        if result is None:
            where = "the `make run` terminal shows the worker's log line" if not deployed else "see `chalice logs`"
            problem = f" ({log.problem})" if log and log.problem else ""
            raise Failure(f"no reply within {options.timeout:g} s{problem}; {where}")
        if isinstance(result, Reply):
            if result.message is None:
                raise Failure(f"the bot sent a reply Slack would refuse: {result.problem}")
            out.write("\n")
            show("reply", result.message, ack_seconds + waited, style, out)
            return 1 if str(result.message.get("text", "")).startswith(ERROR_MARK) else 0
        line, code = describe_outcome(result, options.response_url)
        out.write("\n" + style.dim(f"── worker · {ack_seconds + waited:.1f} s") + "\n" + render(line, style) + "\n")
        return code


# --- a conversation in a thread, through the fake Slack Web API ----------------------------------------------------


class ThreadView:
    """Prints the bot's messages in one thread of the fake as they grow: only what is new each time,
    a rule where a message starts, a notice (one mrkdwn line) rendered like a slash command's reply.

    Streamed text is standard Markdown, shown as it comes: a piece may end inside a code block
    or a word, which rendering it piece by piece would garble.
    """

    def __init__(
        self, slack: FakeSlackAPI, channel: str, thread_ts: str, sent: float, style: Style, progress: Progress
    ) -> None:
        self.slack, self.channel, self.thread_ts = slack, channel, thread_ts
        self.sent, self.style, self.progress = sent, style, progress
        self.shown: dict[str, str] = {}  # ts → the text printed so far
        self.line_open = False  # the last text printed did not end its line
        self.notice = ""  # the text of the bot's notice, once there is one: the answer's last message
        self.stopped = False  # the last message is a stream that has ended

    def refresh(self, out: TextIO) -> None:
        messages_now = self.slack.bot_messages(self.channel, self.thread_ts)
        for number, message in enumerate(messages_now, 1):
            shown = self.shown.get(message.ts)
            if shown == message.text:
                continue
            if not self.shown:
                self.progress.done()  # its line is cleared for the answer
            if shown is None or not message.text.startswith(shown):
                what = "reply in the thread" if number == 1 else f"message {number} in the thread"
                self._rule(out, what if shown is None else f"message {number}, rewritten")
                shown = ""
            new = message.text[len(shown) :] if message.markdown else render(message.text, self.style)
            out.write(new)
            if not message.markdown:
                self.notice = message.text
            self.shown[message.ts] = message.text
            self.line_open = not new.endswith("\n")
        if messages_now:
            self.stopped = messages_now[-1].stream == "stopped"
        out.flush()

    def finish(self, out: TextIO) -> None:
        if self.line_open:
            out.write("\n")
            out.flush()
            self.line_open = False

    def _rule(self, out: TextIO, what: str) -> None:
        seconds = time.monotonic() - self.sent
        out.write(("\n" if self.line_open else "") + self.style.dim(f"── {what} · {seconds:.1f} s") + "\n")


def ask_in_thread(options: Options, style: Style, out: TextIO, err: TextIO) -> int:
    calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
    try:
        slack = FakeSlackAPI(token=options.bot_token, port=options.slack_port, on_call=calls.put)
    except OSError as error:
        raise UsageError(
            f"cannot serve the fake Slack Web API on 127.0.0.1:{options.slack_port}: {error.strerror} "
            "(is another `make ask EVENT=...` still running?)"
        ) from None
    with slack:
        ts = slack_requests.new_ts()
        body, channel = event_body(options.event, options.question, ts)
        slack.add_event(body)  # in Slack the message is in the channel before the event is sent
        where = f"@{COMMAND[1:]}" if options.event == "mention" else "DM:"
        print(f"{where} {options.question}  →  {options.url}", file=err)
        sent = time.monotonic()
        headers = slack_requests.signed_headers(options.secret, body, content_type=slack_requests.JSON)
        deliver(options.url, body, headers)
        warn_if_slow(time.monotonic() - sent, err)
        progress = Progress(err, "waiting for the bot", options.timeout)
        view = ThreadView(slack, channel, ts, sent, style, progress)
        try:
            follow(slack, calls, view, options.timeout, out)
        finally:
            view.finish(out)
            progress.done()
        return 1 if view.notice.startswith(ERROR_MARK) else 0


def follow(slack: FakeSlackAPI, calls: queue.SimpleQueue[Call], view: ThreadView, timeout: float, out: TextIO) -> None:
    """Shows the answer as each Slack call changes it, until it ends; ``Failure`` if it does not."""
    started = time.monotonic()
    last_call = started
    while True:
        try:
            # Short waits only so that a terminal's spinner turns; every call wakes this at once.
            call: Call | None = calls.get(timeout=0.1)
        except queue.Empty:
            call = None
        now = time.monotonic()
        if call is not None:
            last_call = now
            if call.error in AUTH_ERRORS:
                raise Failure(
                    f"the fake Slack Web API refused the bot's {call.method} ({call.error}): "
                    "export the same SLACK_BOT_TOKEN for `make run` and `make ask`"
                )
            if call.method == "assistant.threads.setStatus" and call.ok and call.params.get("status"):
                view.progress.relabel(f"{COMMAND[1:]} {call.params['status'].rstrip('…')}")
        view.refresh(out)
        if view.notice or (view.stopped and now - last_call >= SETTLE_SECONDS):
            return
        if not slack.calls and now - started >= min(FIRST_CALL_SECONDS, timeout):
            raise Failure(
                f"no Slack call reached this script's fake Slack Web API ({slack.url}) within "
                f"{min(FIRST_CALL_SECONDS, timeout):g} s. Is `make run` running with SLACK_API_URL={slack.url} "
                "and the same SLACK_BOT_TOKEN? (chalice local reads them when it starts)"
            )
        if now - started >= timeout:
            raise Failure(
                f"the answer did not finish within {timeout:g} s; the `make run` terminal shows the worker's log line"
            )
        if not view.shown:
            view.progress.tick()


def main(argv: list[str], environ: Mapping[str, str] = os.environ) -> int:
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")  # a terminal that cannot show ⏳ still shows the answer
    try:
        options = parse_options(argv, environ)
        return converse(options, sys.stdout, sys.stderr)
    except UsageError as error:
        print(f"error: {error}" if not str(error).startswith("usage:") else error, file=sys.stderr)
        return 2
    except Failure as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
