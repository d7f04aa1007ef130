"""A fake Slack Web API: a real HTTP server on 127.0.0.1 that ``slack_sdk.WebClient`` talks to.

Contract:

- ``FakeSlackAPI(token, port, on_call, **settings)`` binds 127.0.0.1 (``port=0``: any free
  port) when made; ``start()`` / ``stop()`` or ``with FakeSlackAPI() as slack:`` serve it in a
  daemon thread (``devkit.http_fake.LoopbackServer``). ``slack.url`` (ends with ``/api/``) is
  the ``base_url`` for ``WebClient(token=FAKE_BOT_TOKEN, base_url=...)``.
- What it holds and what it refuses is ``devkit.slack_model``'s ``Workspace``
  (``slack.workspace``), whose settings it takes as its own (``bot_user_id``, ``bot_id``,
  ``stream_byte_limit``, ``page_size``, ``parent_on_every_page``, ``stream_max_age``,
  ``update_while_streaming``, ``streamed_as_blocks``, ``clock``, ``agent_sessions_error``:
  arguments and attributes), and whose seeding and observation it offers under its lock:
  ``add_message``, ``add_event``, ``expire_streams``, ``stop_session`` (the user's stop button:
  the thread's open streams stop, their ts returned for the ``agent_session_stopped`` event a
  test then delivers), ``thread``, ``messages``, ``text_of``, ``visible_text``,
  ``bot_messages``, ``status``, ``suggested_prompts``, ``session``.
- This module is the HTTP side. Methods are served at ``/api/<method>`` (``METHODS``), with
  arguments as slack_sdk sends them (a JSON body, a form body, a query string, or both of the
  last two; every method answers POST and GET). Any other method: HTTP 404
  ``unknown_method``. Read methods (``conversations.replies``, ``auth.test``) ignore a JSON
  body, as Slack's do; a JSON call's token is taken only from the Authorization header.
  Refusals are HTTP 200 ``{"ok": false, "error": ...}``: no token (``not_authed``), a wrong
  one (``invalid_auth``), a body that is neither JSON nor a form (``invalid_post_type``),
  JSON that is not an object (``invalid_json``), and the model's.
- Scripted trouble: ``fail_next(method, error, status, retry_after, count, after)`` lets the
  next ``after`` calls to ``method`` through untouched (whatever they answer: ``after=1`` on
  ``conversations.replies`` fails the second page), then makes the ``count`` calls after them
  fail without effect (``ratelimited`` answers HTTP 429 with ``Retry-After``; other errors
  HTTP 200 with ``ok: false``). Two errors leave the client unsure whether the call took
  effect: ``"disconnect"`` (``DISCONNECT``) applies the call and then closes the connection
  without an answer; ``"drop"`` (``DROP``) closes it without applying the call (the request
  never took effect). ``delay_next(method, seconds)`` applies the call and answers late.
  Scripts for one method queue up in the order they were made.
- Observation of the calls: ``calls`` / ``calls_to(method)`` (tokens never recorded; a dropped
  call has ``dropped=True``, and ``ok`` says whether it took effect: ``error`` is ``"drop"``
  when it did not), ``wait_for(method, count, timeout)`` and ``wait_until(predicate,
  timeout)`` (both wait on a Condition, never a fixed sleep; AssertionError on timeout);
  ``on_call(call)`` is called after every call.
- ``python -m devkit.fake_slack_api [--port 8790] [--token T]`` serves it and prints one line
  per call, until Ctrl-C or end of input.

Standard library only; never imports ``chalicelib``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from devkit.http_fake import LoopbackServer
from devkit.slack_model import METHODS, AgentSession, Message, Refusal, Workspace, text_length

FAKE_BOT_TOKEN = "xoxb-fake-bot-token"  # deliberately not shaped like a real token
LOCAL_PORT = 8790  # the fixed port `make run` / `make ask` use
DISCONNECT = "disconnect"  # fail_next: applied, then the connection closed without an answer
DROP = "drop"  # fail_next: the connection closed without an answer, the call not applied
# Slack reads only query and form arguments for these: a JSON body's arguments are not seen.
READ_METHODS = frozenset({"auth.test", "conversations.replies"})


@dataclass(frozen=True)
class Call:
    """One request, as answered. ``params`` never holds the token."""

    method: str
    params: dict[str, Any]
    ok: bool
    error: str | None
    at: float  # time.monotonic() when it was answered
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)
    # The connection was closed without an answer: fail_next(..., "disconnect") (``ok``: it took
    # effect) or fail_next(..., "drop") (not applied: ``ok`` False, ``error`` "drop").
    dropped: bool = False


@dataclass
class _Script:
    error: str | None
    status: int
    retry_after: int | None
    delay: float = 0.0


class _WorkspaceSetting:
    """A FakeSlackAPI attribute that is its workspace's: ``slack.stream_max_age = 1`` ages streams now."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, fake: FakeSlackAPI, owner: type | None = None) -> Any:
        return getattr(fake.workspace, self.name)

    def __set__(self, fake: FakeSlackAPI, value: Any) -> None:
        setattr(fake.workspace, self.name, value)


class FakeSlackAPI(LoopbackServer):
    """The fake Slack Web API; see the module docstring."""

    bot_user_id = _WorkspaceSetting()
    bot_id = _WorkspaceSetting()
    stream_byte_limit = _WorkspaceSetting()
    page_size = _WorkspaceSetting()
    parent_on_every_page = _WorkspaceSetting()
    stream_max_age = _WorkspaceSetting()
    update_while_streaming = _WorkspaceSetting()
    streamed_as_blocks = _WorkspaceSetting()
    clock = _WorkspaceSetting()
    agent_sessions_error = _WorkspaceSetting()  # "feature_disabled", "not_agent_app": no agent sessions

    def __init__(
        self,
        token: str = FAKE_BOT_TOKEN,
        port: int = 0,
        on_call: Callable[[Call], None] | None = None,
        **settings: Any,
    ) -> None:
        """``settings``: the ``Workspace``'s (``bot_user_id``, ``stream_max_age``, ``clock``...)."""
        self.workspace = Workspace(**settings)
        self.token = token
        self.on_call = on_call
        self.calls: list[Call] = []
        self._lock = threading.Condition(threading.RLock())
        self._scripts: dict[str, deque[_Script]] = {}
        super().__init__(type("SlackHandler", (_Handler,), {"fake": self}), port)
        self.url = f"{self.origin}/api/"

    def __enter__(self) -> FakeSlackAPI:
        self.start()
        return self

    # --- scripting ----------------------------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        status: int | None = None,
        retry_after: int | None = None,
        count: int = 1,
        after: int = 0,
    ) -> None:
        """After ``after`` more calls to ``method`` (let through untouched, whatever they answer),
        the ``count`` calls that follow fail with ``error`` and change nothing.

        ``ratelimited`` answers HTTP 429 with ``Retry-After: retry_after`` (default 1);
        other errors HTTP 200 (or ``status``). ``error="disconnect"`` instead applies the
        call, then closes the connection without answering; ``error="drop"`` closes it
        without applying the call.
        """
        if after < 0 or count < 0:
            raise ValueError("after and count cannot be negative")
        if status is None:
            status = 429 if error == "ratelimited" else 200
        if error == "ratelimited" and retry_after is None:
            retry_after = 1
        with self._lock:
            queue = self._scripts.setdefault(method, deque())
            queue.extend(_Script(None, 200, None) for _ in range(after))  # a script that changes nothing
            queue.extend(_Script(error, status, retry_after) for _ in range(count))

    def delay_next(self, method: str, seconds: float, count: int = 1) -> None:
        """The next ``count`` calls to ``method`` take effect at once but are answered ``seconds`` later."""
        with self._lock:
            queue = self._scripts.setdefault(method, deque())
            queue.extend(_Script(None, 200, None, delay=seconds) for _ in range(count))

    # --- the calls ----------------------------------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 60.0) -> list[Call]:
        """Wait until ``count`` calls to ``method`` have been handled; returns them all.

        A call is recorded once it has taken effect, just before its answer is sent.
        """
        self.wait_until(lambda: len(self.calls_to(method)) >= count, timeout, f"{count} call(s) to {method}")
        return self.calls_to(method)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 60.0, what: str = "the condition") -> None:
        """Wait until ``predicate()`` (checked after every call and change) is true."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {what} within {timeout}s; calls: {[c.method for c in self.calls]}")
                self._lock.wait(left)

    # --- the workspace, under the lock --------------------------------------------------------------------------------

    def add_message(self, channel: str, text: str, **fields: Any) -> str:
        """Seed a message (``Workspace.add_message``: a user's, or with ``bot=True`` the bot's); returns its ts."""
        with self._lock:
            ts = self.workspace.add_message(channel, text, **fields)
            self._lock.notify_all()
            return ts

    def add_event(self, body: bytes | str | dict[str, Any]) -> str | None:
        """Seed the message an Events API body is about (``Workspace.add_event``); returns its ts."""
        with self._lock:
            ts = self.workspace.add_event(body)
            self._lock.notify_all()
            return ts

    def expire_streams(self) -> None:
        """Every open stream ends as Slack's do after a few minutes: append/stop are refused from now on."""
        with self._lock:
            self.workspace.expire_streams()
            self._lock.notify_all()

    def stop_session(self, channel: str, thread_ts: str) -> list[str]:
        """The user pressed stop (``Workspace.stop_session``): the thread's open streams stop; their ts."""
        with self._lock:
            stopped = self.workspace.stop_session(channel, thread_ts)
            self._lock.notify_all()
            return stopped

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        with self._lock:
            return self.workspace.thread(channel, thread_ts)

    def messages(self, channel: str) -> list[Message]:
        with self._lock:
            return self.workspace.messages(channel)

    def text_of(self, channel: str, ts: str) -> str | None:
        with self._lock:
            return self.workspace.text_of(channel, ts)

    def visible_text(self, channel: str, thread_ts: str) -> list[str]:
        with self._lock:
            return self.workspace.visible_text(channel, thread_ts)

    def bot_messages(self, channel: str, thread_ts: str) -> list[Message]:
        with self._lock:
            return self.workspace.bot_messages(channel, thread_ts)

    def status(self, channel: str, thread_ts: str) -> str:
        with self._lock:
            return self.workspace.status(channel, thread_ts)

    def suggested_prompts(self, channel: str, thread_ts: str | None = None) -> list[dict[str, str]]:
        with self._lock:
            return self.workspace.suggested_prompts(channel, thread_ts)

    def session(self, channel: str, thread_ts: str) -> AgentSession | None:
        with self._lock:
            return self.workspace.session(channel, thread_ts)

    # --- HTTP ---------------------------------------------------------------------------------------------------------

    def _answer(self, method: str, token: str | None, params: dict[str, Any]) -> tuple[Call, _Script | None]:
        """Process one call under the lock; returns its record and the script that shaped it, if any."""
        script: _Script | None = None
        status = 200
        with self._lock:
            self.workspace.end_old_streams()
            try:
                if method not in METHODS:
                    status = 404
                    raise Refusal("unknown_method")
                if not token:
                    raise Refusal("not_authed")
                if token != self.token:
                    raise Refusal("invalid_auth")
                queue = self._scripts.get(method)
                script = queue.popleft() if queue else None
                if script is not None and script.error == DROP:
                    response: dict[str, Any] = {}  # never sent: the client sees the connection close
                    error = DROP  # not applied: the call's record says so
                else:
                    if script is not None and script.error not in (None, DISCONNECT):
                        status = script.status
                        raise Refusal(script.error)
                    response = {"ok": True, **self.workspace.call(method, params)}
                    error = None
            except Refusal as refusal:
                error = refusal.error
                response = {"ok": False, "error": error}
                if refusal.detail:
                    response["response_metadata"] = {"messages": [f"[ERROR] {refusal.detail}"]}
            dropped = script is not None and script.error in (DISCONNECT, DROP)
            call = Call(method, params, error is None, error, time.monotonic(), status, response, dropped)
            self.calls.append(call)
            self._lock.notify_all()
        return call, script

    def _record(self, call: Call) -> Call:
        with self._lock:
            if not call.response:
                call = replace(call, response={"ok": call.ok, "error": call.error})
            self.calls.append(call)
            self._lock.notify_all()
        return call


class _Handler(BaseHTTPRequestHandler):
    """One connection: parses a call as Slack does, has the fake answer it, sends (or drops) the answer."""

    fake: ClassVar[FakeSlackAPI]  # set on the per-server subclass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        url = urlsplit(self.path)
        method = url.path.removeprefix("/api/") if url.path.startswith("/api/") else url.path
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        params: dict[str, Any] = dict(parse_qsl(url.query, keep_blank_values=True))
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        header_token = None
        authorization = self.headers.get("Authorization") or ""
        if authorization.startswith("Bearer "):
            header_token = authorization.removeprefix("Bearer ").strip()
        problem = None
        if body and content_type == "application/json":
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                problem = "invalid_json"
            elif method not in READ_METHODS:
                data.pop("token", None)  # Slack takes a JSON call's token only from the header
                params.update(data)
        elif body and content_type == "application/x-www-form-urlencoded":
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            params.update({name: _form_value(name, value) for name, value in form.items()})
        elif body:
            problem = "invalid_post_type"
        token = header_token or params.pop("token", None)
        params.pop("token", None)
        if problem is not None:
            call, script = self.fake._record(Call(method, params, False, problem, time.monotonic())), None
        else:
            call, script = self.fake._answer(method, token, params)
        if self.fake.on_call is not None:
            try:
                self.fake.on_call(call)
            except Exception as error:  # a display hook must not take the fake down
                print(f"fake Slack API: on_call failed: {error!r}", file=sys.stderr)
        if call.dropped:
            self.close_connection = True
            return  # nothing is sent: the client sees the connection close
        if script is not None and script.delay:
            self.fake.stopping.wait(script.delay)  # a stop releases it
        self._send(call, script)

    def _send(self, call: Call, script: _Script | None) -> None:
        payload = json.dumps(call.response).encode()
        try:
            self.send_response(call.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            if script is not None and script.retry_after is not None:
                self.send_header("Retry-After", str(script.retry_after))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (its timeout, under test)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _form_value(name: str, value: str) -> Any:
    """A form field as Slack reads it: arrays and objects arrive as JSON text."""
    if name in ("blocks", "attachments", "chunks", "prompts", "loading_messages", "metadata") and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


# --- command line -----------------------------------------------------------------------------------------------------


def describe(call: Call) -> str:
    """One short line for a call: time, method, outcome, where, how much text."""
    where = call.params.get("channel") or call.params.get("channel_id") or ""
    ts = call.response.get("ts") or call.params.get("ts") or call.params.get("thread_ts")
    if ts:
        where = f"{where}/{ts}"
    outcome = "ok" if call.ok else (call.error or "error")
    if call.dropped:
        outcome += " (dropped)"
    length = text_length(call.params)
    size = f" {length} chars" if length else ""
    return f"{time.strftime('%H:%M:%S')} {call.method:<38} {outcome:<32} {where}{size}"


def _stdin_is_devnull() -> bool:
    try:
        return os.path.samestat(os.fstat(sys.stdin.fileno()), os.stat(os.devnull))
    except (OSError, ValueError, AttributeError):
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devkit.fake_slack_api",
        description="Serve a fake Slack Web API on 127.0.0.1 and print each call; Ctrl-C or end of input stops it.",
    )
    parser.add_argument("--port", type=int, default=LOCAL_PORT, help=f"port (default {LOCAL_PORT}; 0: any free one)")
    parser.add_argument("--token", default=FAKE_BOT_TOKEN, help="the bot token it accepts (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        fake = FakeSlackAPI(token=args.token, port=args.port, on_call=lambda call: print(describe(call), flush=True))
    except OSError as error:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {error.strerror}", file=sys.stderr)
        return 2
    done = threading.Event()
    if not _stdin_is_devnull():  # under `&` or nohup stdin is /dev/null: only a signal ends it then
        threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    with fake:
        print(f"fake Slack Web API on {fake.url} (SLACK_API_URL), bot token {args.token}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
