"""Ask the bot on this machine a question, the way Slack would. Not deployed.

    make ask Q="東京でおすすめの散歩道は？"       # no keys: a bot of its own, against stand-ins
    make run                                   # or terminal 1: the bot on http://127.0.0.1:8000
    make ask Q="東京でおすすめの散歩道は？"       # terminal 2, with the same SLACK_SIGNING_SECRET
    make ask EVENT=mention Q="鎌倉のおすすめは？"  # a mention, answered in its thread (see below)

Without ``SLACK_SIGNING_SECRET`` and ``URL`` it asks the playground (scripts/playground.py,
as `make demo` does): it starts the real app under ``chalice local`` against the stand-in
model (or the local model of ``OPENAI_BASE_URL`` and ``OPENAI_MODEL``, loopback only) and a
fake Slack Web API, asks the one question, prints the answer as below, and stops them all
(also on Ctrl-C and SIGTERM). No key, token, AWS setting or proxy of this environment
reaches that bot (``playground.bot_environment``); ``SLACK_API_URL`` and ``SLACK_BOT_TOKEN``
are ignored then. When the bot
does not answer, chalice local's log is kept and named. With either variable set, it asks
the bot at ``URL`` (your `make run`), as follows.

``EVENT=command`` (the default) sends a slash command signed with ``SLACK_SIGNING_SECRET``
(form fields as Slack sends them), prints the acknowledgement, waits for the reply on
``response_url`` (``devkit.fake_response_url``, on a free 127.0.0.1 port, answering as Slack
does) and prints it, rendered for a terminal.

``EVENT=mention`` (or ``EVENT=dm``) sends an Events API ``app_mention`` (or a DM ``message``)
to ``/slack/events``. The bot answers those through the Slack Web API, so this script serves
a fake one (``devkit.fake_slack_api``) on 127.0.0.1, holding the message, and prints the
bot's answer in the thread as it is streamed: the status while it thinks, the text as it
grows, a rule where a new message starts, and a ``:warning:`` line if there is one. The bot
must call this fake: start ``make run`` with ``SLACK_API_URL=http://127.0.0.1:8790/api/``
(read when chalice local starts) and the same ``SLACK_BOT_TOKEN`` as here.

Progress goes to stderr; the messages go to stdout.

Environment:

- ``SLACK_SIGNING_SECRET``: the secret the server checks signatures with (required with ``URL``).
- ``EVENT``: ``command`` (default), ``mention`` or ``dm``.
- ``URL``: the bot's URL on this machine (loopback), default
  ``http://127.0.0.1:8000/slack/commands`` (or ``.../slack/events`` for an event); a base URL
  gets the route appended, and one route of ours is switched for the other.
- ``TIMEOUT``: seconds to wait for the reply after the acknowledgement, default 150 (30 with
  the playground's stand-in model).
- For an event: ``SLACK_BOT_TOKEN``, the token the fake accepts (default ``xoxb-fake-bot-token``);
  ``SLACK_API_URL``, whose port the fake listens on (default 8790), so that the same
  variables in both terminals keep `make run` and `make ask` together.

A deployed stage is asked in Slack itself: its worker cannot reach this machine's loopback.

Exit status: 0 the bot answered; 1 it did not (nothing listening, non-200, a reply starting
with ``:warning:``, no reply within ``TIMEOUT``, or a message saying it did not start);
2 usage error (empty question, ``URL`` without ``SLACK_SIGNING_SECRET``, a bad setting, a URL
off this machine, the fake Slack Web API's port taken); 130 Ctrl-C (or SIGTERM in the playground).
"""

from __future__ import annotations

import json
import os
import queue
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

# For common (which puts the repository on sys.path for chalicelib and devkit), also when a test imports this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import playground
from common import COMMAND_PATH, EVENTS_PATH, UsageError, is_loopback, route_url

from chalicelib.slack import messages
from chalicelib.slack.mrkdwn import ZWSP, to_mrkdwn
from devkit import slack_requests
from devkit.fake_response_url import fake_response_url, refusal
from devkit.fake_slack_api import FAKE_BOT_TOKEN, LOCAL_PORT, Call, FakeSlackAPI
from devkit.http_fake import FakeServer, Received
from devkit.slack_model import Message

DEFAULT_URL = f"http://127.0.0.1:8000/{COMMAND_PATH}"
EVENTS = ("command", "mention", "dm")
COMMAND = "/mameka"
DEFAULT_TIMEOUT = playground.MODEL_TIMEOUT
SLACK_ACK_SECONDS = 3.0  # Slack shows operation_timeout when the acknowledgement takes longer
POST_TIMEOUT = 30.0
ERROR_MARK = ":warning:"  # every error reply of the bot's starts with it (chalicelib.slack.messages.error)
# The acknowledgement's first word: anything else means the bot did not start a job (chalicelib.slack.messages).
ACK_MARK = messages.acknowledgement("?")["text"].split(" ", 1)[0]
# The worker's first Slack call (the "is thinking…" status) comes within a second of the event;
# no call by then means the bot calls another Slack API, and waiting out TIMEOUT would only hide it.
FIRST_CALL_SECONDS = 15.0
# A stopped stream is the end unless the answer goes on in a new message or a notice follows,
# which the worker sends at once: this long with no Slack call after a stop means it is done.
SETTLE_SECONDS = 1.0
AUTH_ERRORS = frozenset({"invalid_auth", "not_authed"})
MAKE_RUN_LOG = "the `make run` terminal shows the worker's log line"


class Failure(Exception):
    """The bot did not answer; ``str(error)`` says why. ``worker_log``: the worker's log would
    say more, and the caller, who knows where that log is, adds where to look."""

    def __init__(self, message: str, *, worker_log: bool = False) -> None:
        super().__init__(message)
        self.worker_log = worker_log


# --- settings -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    question: str
    secret: str = field(repr=False)
    url: str
    timeout: float
    event: str = "command"
    slack_port: int = LOCAL_PORT  # the fake Slack Web API's, for an event
    bot_token: str = field(default=FAKE_BOT_TOKEN, repr=False)
    # Set: ask the playground with this model; secret, url and the Slack fields are then the
    # playground's, filled in once it runs (``in_playground``).
    model: playground.Model | None = None


def parse_options(argv: list[str], environ: Mapping[str, str]) -> Options:
    question = " ".join(argv).strip()
    if not question:
        raise UsageError('usage: make ask Q="your question" [EVENT=mention|dm]   (or: scripts/ask.py QUESTION...)')
    event = environ.get("EVENT", "").strip().lower() or "command"
    if event not in EVENTS:
        raise UsageError(f"EVENT must be one of {', '.join(EVENTS)}; got {environ.get('EVENT')!r}")
    secret = environ.get("SLACK_SIGNING_SECRET", "").strip()
    if not secret and not environ.get("URL", "").strip():
        model = playground.parse_model(environ)
        return Options(question, "", "", parse_timeout(environ, model.timeout), event, model=model)
    if not secret:
        raise UsageError(
            "SLACK_SIGNING_SECRET is not set: export the signing secret the server at URL checks "
            "(for `make run`, the same value in both terminals), or unset URL to ask a bot of this script's own"
        )
    route = COMMAND_PATH if event == "command" else EVENTS_PATH
    url = route_url(environ.get("URL", "").strip() or DEFAULT_URL, route)
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise UsageError(f"URL must be an http(s) URL, got {url!r}")
    if not is_loopback(url):
        raise UsageError(
            f"URL must be the bot on this machine (`make run`), got {url!r}: a deployed worker answers "
            "in Slack and cannot reach this script, so ask a deployed stage in Slack"
        )
    timeout = parse_timeout(environ, DEFAULT_TIMEOUT)
    if event == "command":
        return Options(question, secret, url, timeout)
    bot_token = environ.get("SLACK_BOT_TOKEN", "").strip() or FAKE_BOT_TOKEN
    return Options(question, secret, url, timeout, event, fake_slack_port(environ), bot_token)


def parse_timeout(environ: Mapping[str, str], default: float) -> float:
    try:
        timeout = float(environ.get("TIMEOUT", "").strip() or default)
    except ValueError:
        raise UsageError(f"TIMEOUT must be a number of seconds, got {environ.get('TIMEOUT')!r}") from None
    if not 0 < timeout < float("inf"):
        raise UsageError(f"TIMEOUT must be more than 0 seconds, got {environ.get('TIMEOUT')!r}")
    return timeout


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


def event_body(event: str, question: str, ts: str, thread_ts: str | None = None) -> tuple[bytes, str]:
    """The Events API body Slack would POST for ``question`` at ``ts`` (in the thread ``thread_ts``,
    or as a new message), and its channel; ids are devkit's fakes."""
    # Slack escapes exactly these three in a message's text, as in a slash command's.
    text = messages.escape(question)
    if event == "dm":
        return slack_requests.dm_event(text, ts=ts, thread_ts=thread_ts), slack_requests.DM_CHANNEL_ID
    return slack_requests.mention_event(text, ts=ts, thread_ts=thread_ts), slack_requests.CHANNEL_ID


def one_line(question: str) -> str:
    """The question for a one-line header or progress line: a long one cut short."""
    return question if len(question) <= 40 else f"{question[:20]}… ({len(question):,} characters)"


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """The status and body of the server's answer; raises ``Failure`` if there is none."""
    # A proxy from the environment must not carry a request meant for this machine's loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with opener.open(request, timeout=POST_TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except urllib.error.URLError as error:
        if isinstance(error.reason, ConnectionRefusedError):
            raise Failure(
                f"nothing is listening at {url}. Start the bot with `make run` in another terminal, "
                "or set URL= to where it runs (without SLACK_SIGNING_SECRET and URL, this script starts one)."
            ) from None
        raise Failure(f"could not reach {url}: {error.reason}") from None
    except TimeoutError:
        raise Failure(f"{url} did not answer within {POST_TIMEOUT:.0f} s") from None
    except OSError as error:
        raise Failure(f"could not reach {url}: {error}") from None


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
# What may begin Markdown that text still to come can change (emphasis, code, a link, an escape,
# an emoji code, a heading): a line still being streamed is shown up to the first of these only.
_UNSETTLED = re.compile(r"[*_~`\[<\\:#]")


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


def settled(markdown: str, final: bool = False) -> str:
    """What of a streamed Markdown text can be shown now: all of it when ``final``; else its
    complete lines, and of the line still growing what comes before anything that what follows
    could turn into formatting. Rendering what is settled gives a prefix of every later rendering."""
    if final:
        return markdown
    match = _UNSETTLED.search(markdown, markdown.rfind("\n") + 1)
    return markdown if match is None else markdown[: match.start()]


def render_markdown(markdown: str, style: Style) -> str:
    """Standard Markdown (what the bot streams into a thread) for a terminal, as Slack shows it:
    made mrkdwn as the bot makes a slash command's answer (chalicelib.slack.mrkdwn), rendered as
    ``render`` renders mrkdwn, without the zero-width spaces that only tell Slack where words end."""
    return render(to_mrkdwn(markdown), style).replace(ZWSP, "")


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
    blocks = [block for block in message.get("blocks") or [] if isinstance(block, dict)]
    buttons = [
        str((element.get(side) or {}).get("text", {}).get("text", "?"))
        for block in blocks
        if block.get("type") == "context_actions"
        for element in block.get("elements") or []
        if isinstance(element, dict) and element.get("type") == "feedback_buttons"
        for side in ("positive_button", "negative_button")
    ]
    if buttons:
        out.write(style.dim(" ".join(f"[{text}]" for text in buttons) + "  (feedback buttons)") + "\n")
    # A markdown block holds the answer the text above shows; the buttons are drawn above.
    hidden = [block for block in blocks if block.get("type") not in ("markdown", "context_actions")]
    if hidden:
        out.write(style.dim(f"({len(hidden)} blocks not shown)") + "\n")
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


def wait_for_reply(listener: FakeServer, timeout: float, progress: Progress) -> Received | None:
    """The first reply posted to ``listener``; None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        progress.tick()
        if listener.received:
            return listener.received[0]
        time.sleep(min(0.1, left))  # short: a terminal's spinner turns while it waits
    return None


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


def converse(options: Options, out: TextIO, err: TextIO, stage: playground.Stage | None = None) -> int:
    """Asks ``options.question`` and shows the answer; the exit status. For an event the fake Slack
    Web API is the ``stage``'s (the playground's), or else one this serves on ``options.slack_port``."""
    style = Style(out.isatty() and not os.environ.get("NO_COLOR"))
    if options.event == "command":
        return ask_command(options, style, out, err)
    view = ask_in_thread(options, style, out, err, stage)
    return 1 if view.notice.startswith(ERROR_MARK) else 0


def ask_command(options: Options, style: Style, out: TextIO, err: TextIO) -> int:
    user_id = "UASK" + uuid.uuid4().hex[:8].upper()
    with fake_response_url() as listener:
        body = command_form(options.question, listener.url + "/response", user_id)
        print(f"{COMMAND} {one_line(options.question)}  →  {options.url}", file=err)
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

        progress = Progress(err, "waiting for the reply", options.timeout)
        try:
            reply = wait_for_reply(listener, options.timeout, progress)
        finally:
            waited = progress.done()
    if reply is None:
        raise Failure(f"no reply within {options.timeout:g} s", worker_log=True)
    problem = refusal(reply.body)
    if problem is not None:
        raise Failure(f"the bot sent a reply Slack would refuse ({problem})")
    message = reply.json()
    out.write("\n")
    show("reply", message, ack_seconds + waited, style, out)
    return 1 if str(message.get("text", "")).startswith(ERROR_MARK) else 0


# --- a conversation in a thread, through the fake Slack Web API ----------------------------------------------------


class ThreadView:
    """Prints the bot's messages in one thread of the fake as they grow: only what is new each time,
    a rule where a message starts, a notice (one mrkdwn line) rendered like a slash command's reply.
    With ``after`` (a message's ts), only the bot's messages after it: a follow-up's own answer,
    not the thread's earlier ones again.

    Streamed text is standard Markdown, rendered as Slack shows it (``render_markdown``) as far as
    it is ``settled``: a piece may end inside a code span or a word, and what was printed stays.
    """

    def __init__(
        self,
        slack: FakeSlackAPI,
        channel: str,
        thread_ts: str,
        sent: float,
        style: Style,
        progress: Progress,
        after: str | None = None,
    ) -> None:
        self.slack, self.channel, self.thread_ts = slack, channel, thread_ts
        self.sent, self.style, self.progress = sent, style, progress
        self.after = None if after is None else Decimal(after)  # Slack's ts compare as decimal numbers
        self.messages: list[Message] = []  # the bot's messages shown, as they were last seen
        self.shown: dict[str, str] = {}  # ts → the text printed so far, as rendered
        self.line_open = False  # the last text printed did not end its line
        self.notice = ""  # the text of the bot's notice, once there is one: the answer's last message
        self.stopped = False  # the last message is a stream that has ended

    def refresh(self, out: TextIO, final: bool = False) -> None:
        """Prints what is new; ``final``: also what is not settled yet (nothing more will come)."""
        self.messages = [
            m
            for m in self.slack.bot_messages(self.channel, self.thread_ts)
            if self.after is None or Decimal(m.ts) > self.after
        ]
        for number, message in enumerate(self.messages, 1):
            if message.markdown:
                text = render_markdown(settled(message.text, final or not message.streaming), self.style)
            else:
                text = render(message.text, self.style)
            shown = self.shown.get(message.ts)
            if text == shown:
                continue
            if not self.shown:
                self.progress.done()  # its line is cleared for the answer
            if shown is None or not text.startswith(shown):
                # When the message appears, even before it has text to show: the rule's time is its arrival.
                what = "reply in the thread" if number == 1 else f"message {number} in the thread"
                self._rule(out, what if shown is None else f"message {number}, rewritten")
                shown = ""
            new = text[len(shown) :]
            if new:
                out.write(new)
                self.line_open = not new.endswith("\n")
            if not message.markdown:
                self.notice = message.text
            self.shown[message.ts] = text
        if self.messages:
            self.stopped = self.messages[-1].stream == "stopped"
        out.flush()

    def finish(self, out: TextIO) -> None:
        self.refresh(out, final=True)
        if self.line_open:
            out.write("\n")
            out.flush()
            self.line_open = False

    def _rule(self, out: TextIO, what: str) -> None:
        seconds = time.monotonic() - self.sent
        out.write(("\n" if self.line_open else "") + self.style.dim(f"── {what} · {seconds:.1f} s") + "\n")
        self.line_open = False


def ask_in_thread(
    options: Options, style: Style, out: TextIO, err: TextIO, stage: playground.Stage | None = None
) -> ThreadView:
    """A mention or DM to the bot at ``options.url``, through the ``stage``'s fake Slack Web API,
    or else one served here on ``options.slack_port``; the view of its answer."""
    if stage is not None:
        return answer_in_thread(options, stage.slack, stage.calls, style, out, err)
    calls: queue.SimpleQueue[Call] = queue.SimpleQueue()
    try:
        slack = FakeSlackAPI(token=options.bot_token, port=options.slack_port, on_call=calls.put)
    except OSError as error:
        raise UsageError(
            f"cannot serve the fake Slack Web API on 127.0.0.1:{options.slack_port}: {error.strerror} "
            "(is another `make ask EVENT=...` still running?)"
        ) from None
    with slack:
        return answer_in_thread(options, slack, calls, style, out, err)


def answer_in_thread(
    options: Options,
    slack: FakeSlackAPI,
    calls: queue.SimpleQueue[Call],
    style: Style,
    out: TextIO,
    err: TextIO,
    thread_ts: str | None = None,
) -> ThreadView:
    """Posts the question in ``slack`` (in the thread ``thread_ts``, or as a new message), sends the
    bot its event and shows the answer until it ends; the view holds the answer's messages.
    ``Failure`` if the bot does not answer."""
    ts = slack_requests.new_ts()
    body, channel = event_body(options.event, options.question, ts, thread_ts)
    slack.add_event(body)  # in Slack the message is in the channel before the event is sent
    where = f"@{COMMAND[1:]}" if options.event == "mention" else "DM:"
    print(f"{where} {one_line(options.question)}  →  {options.url}", file=err)
    sent = time.monotonic()
    deliver(options.url, body, slack_requests.signed_headers(options.secret, body, content_type=slack_requests.JSON))
    warn_if_slow(time.monotonic() - sent, err)
    progress = Progress(err, "waiting for the bot", options.timeout)
    view = ThreadView(slack, channel, thread_ts or ts, sent, style, progress, after=ts)
    try:
        follow(slack, calls, view, options.timeout, out)
    finally:
        view.finish(out)
        progress.done()
    return view


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
            elif call.method == "agents.sessions.setStatus" and call.ok and call.params.get("status") == "processing":
                view.progress.relabel(f"{COMMAND[1:]} is thinking")  # Slack shows its own loading state
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
            raise Failure(f"the answer did not finish within {timeout:g} s", worker_log=True)
        if not view.shown:
            view.progress.tick()


# --- without keys: the playground --------------------------------------------------------------------------------


def in_playground(
    options: Options, model: playground.Model, environ: Mapping[str, str], out: TextIO, err: TextIO
) -> int:
    """Starts the playground, asks it ``options.question``, stops it; the exit status. When the bot
    did not answer, chalice local's log is kept and named (in ``Failure``'s message, or a line)."""
    with playground.started(model, environ, err) as stage:
        route = COMMAND_PATH if options.event == "command" else EVENTS_PATH
        asked = replace(options, secret=stage.secret, url=route_url(stage.url, route), bot_token=stage.bot_token)
        try:
            status = converse(asked, out, err, stage)
        except Failure as error:
            raise Failure(f"{error}; the bot's log: {stage.keep_log()}") from None
        if status != 0:
            print(f"the bot's log: {stage.keep_log()}", file=err)
        return status


def main(argv: list[str], environ: Mapping[str, str] = os.environ) -> int:
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")  # a terminal that cannot show ⏳ still shows the answer
    try:
        options = parse_options(argv, environ)
        if options.model is None:
            return converse(options, sys.stdout, sys.stderr)
        playground.stop_on_signals()  # SIGTERM too stops the bot it starts
        return in_playground(options, options.model, environ, sys.stdout, sys.stderr)
    except UsageError as error:
        if str(error).startswith("usage:"):
            print(error, file=sys.stderr)
            return 2
        return common.error(str(error), 2)
    except Failure as error:
        return common.error(f"{error}; {MAKE_RUN_LOG}" if error.worker_log else str(error))
    except common.ScriptError as error:  # the playground did not start
        return common.error(str(error))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
