"""POSTing to response_url: only where the rule allows, never a redirect, never a raise, never twice.

Retries come on a 5xx or a refused connection only, never on a 4xx or once the request may
have been sent; pooled connections are dropped after an idle gap (a frozen Lambda sandbox
misses the server's close). The fault rows of the README run through ``worker.run``.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import worker
from chalicelib.deadline import Deadline
from chalicelib.settings import Settings
from chalicelib.slack import response_url
from chalicelib.slack.response_url import IDLE_SECONDS, Connections, Delivery
from devkit.http_fake import FakeServer, Reply
from tests.conftest import OPENAI_KEY, SIGNING_SECRET, response_path, slash_payload

MESSAGE = {"response_type": "ephemeral", "text": "hello"}
LOCAL: dict[str, str] = {}  # outside Lambda: plain http to loopback is allowed
IN_LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "mameka-dev-worker"}


class RawServer:
    """A keep-alive HTTP/1.1 server on raw sockets, for what http.server cannot do.

    Every request is answered 200 ``ok`` unless ``mode`` says ``reset`` (the connection is
    reset once the request is read, unanswered) or ``stall`` (nothing is sent until the client
    hangs up). After an answer, ``after_answer`` says ``keep`` (keep-alive), ``close`` (close
    the connection: the client's kernel sees it) or ``forget`` (as a server whose close never
    reached a frozen client: the connection stays open, and the next request on it is reset
    unanswered). ``ended`` is set once a connection was closed or forgotten.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)  # lets the accept loop see the stop event
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.mode = "answer"
        self.after_answer = "keep"
        self.connections = 0
        self.received = 0
        self.answered = 0
        self.ended = threading.Event()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]

    def __enter__(self) -> RawServer:
        self._threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked reading
        for thread in list(self._threads):
            thread.join(10)
        self.listener.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            with self._lock:
                self.connections += 1
                self._sockets.append(conn)
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        # OSError: the server is stopping, and __exit__ shut the socket down.
        with conn, conn.makefile("rb") as stream, contextlib.suppress(OSError):
            self._answer(conn, stream)

    def _answer(self, conn: socket.socket, stream: Any) -> None:
        forgotten = False
        while self._read_request(stream):
            with self._lock:
                self.received += 1
            if forgotten or self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closing with a zero linger sends a reset
            if self.mode == "stall":
                return self._wait_for_hangup(conn)
            with self._lock:
                self.answered += 1  # counted before it is sent: the client may count as soon as it is
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
            if self.after_answer == "close":
                conn.shutdown(socket.SHUT_RDWR)
                self.ended.set()
                return
            if self.after_answer == "forget":
                forgotten = True
                self.ended.set()

    @staticmethod
    def _read_request(stream: Any) -> bool:
        if not stream.readline():
            return False
        length = 0
        while (line := stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        stream.read(length)
        return True

    def _wait_for_hangup(self, conn: socket.socket) -> None:
        while not self._stopping.is_set():
            readable, _, _ = select.select([conn], [], [], 0.05)
            if readable and not conn.recv(65536):
                return


@pytest.fixture
def raw_server() -> Iterator[RawServer]:
    with RawServer() as server:
        yield server


class FakeClock:
    """The (monotonic, wall) clocks of ``Connections``, moved by hand: a frozen sandbox in no time."""

    def __init__(self) -> None:
        self.monotonic = 1000.0
        self.wall = 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += seconds

    def __call__(self) -> tuple[float, float]:
        return self.monotonic, self.wall


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def connections(clock: FakeClock) -> Iterator[Connections]:
    pool = Connections(clock)
    yield pool
    pool.close()


def post(url: str, environ: dict[str, str] | None = None, connections: Connections | None = None) -> Delivery:
    # What the worker reaches a slash command's asker with, whatever other setting is bad.
    return response_url.post(
        url, MESSAGE, Settings.reach_from_env(LOCAL if environ is None else environ, "reply"), connections
    )


# --- posting and retrying ------------------------------------------------------------------------------------------


def test_posts_json(slack_server: FakeServer) -> None:
    path = response_path()
    assert post(slack_server.url + path) == Delivery(True, status=200)
    [received] = slack_server.requests_to(path)
    assert received.json() == MESSAGE
    assert received.headers["content-type"] == "application/json"


def test_one_server_error_is_retried(slack_server: FakeServer) -> None:
    path = response_path()
    slack_server.script = [Reply(500, "internal_error")]
    assert post(slack_server.url + path).delivered is True
    assert len(slack_server.requests_to(path)) == 2


def test_at_most_two_retries(slack_server: FakeServer) -> None:
    path = response_path()
    slack_server.script = [Reply(503, "<html>Service Unavailable</html>")] * 5
    assert post(slack_server.url + path) == Delivery(False, "http_503", 503)
    assert len(slack_server.requests_to(path)) == 3


def test_a_client_error_is_not_retried(slack_server: FakeServer) -> None:
    path = response_path()
    slack_server.script = [Reply(404, "expired_url")]
    delivery = post(slack_server.url + path)
    assert delivery == Delivery(False, "expired_url", 404) and not delivery
    assert len(slack_server.requests_to(path)) == 1


def test_connection_refused_returns_false_without_raising() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert post(f"http://127.0.0.1:{port}/x") == Delivery(False, "connection_refused")


def test_a_rate_limit_with_retry_after_is_not_retried(slack_server: FakeServer) -> None:
    path = response_path()
    slack_server.script = [Reply(429, "rate_limited", {"Retry-After": "0"})]
    assert post(slack_server.url + path) == Delivery(False, "rate_limited", 429)
    assert len(slack_server.requests_to(path)) == 1


# --- never a raise -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://a..b/x",  # urllib3's LocationParseError (a ValueError) got past requests
        "https://.a/x",
        "https://" + "a" * 64 + ".b/x",  # a label too long for IDNA
    ],
)
def test_a_url_requests_cannot_use_is_a_failure_not_a_raise(url: str) -> None:
    # The host is listed, so that the rule lets the URL through to requests.
    host = url.split("/")[2]
    assert post(url, {"RESPONSE_URL_HOSTS": host}) == Delivery(False, "invalid_url")


# --- where a reply may go ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "allowed"),
    [
        (LOCAL, True),  # make ask and the tests: loopback outside Lambda
        (IN_LAMBDA, False),  # in Lambda, loopback only when listed
        ({**IN_LAMBDA, "RESPONSE_URL_HOSTS": "hooks.slack.com, 127.0.0.1"}, True),
        ({**IN_LAMBDA, "RESPONSE_URL_HOSTS": "127.0.0.1", "OPENAI_TEMPERATURE": "hot"}, True),  # another bad setting
    ],
)
def test_a_url_is_posted_to_only_if_the_rule_allows(
    slack_server: FakeServer, environ: dict[str, str], allowed: bool
) -> None:
    path = response_path()
    delivery = post(slack_server.url + path, environ)
    if allowed:
        assert delivery.delivered and len(slack_server.requests_to(path)) == 1
    else:
        assert delivery == Delivery(
            False, "refused", detail="response_url's loopback host is not in RESPONSE_URL_HOSTS"
        )
        assert slack_server.received == []


def test_a_url_parsers_disagree_on_is_not_posted_to(slack_server: FakeServer) -> None:
    # urlsplit reads 127.0.0.1 here; urllib3 would connect to "localhost\".
    url = f"http://localhost\\@127.0.0.1:{slack_server.url.rsplit(':', 1)[1]}/x"
    assert post(url).error == "refused" and slack_server.received == []


def test_a_redirect_is_not_followed(slack_server: FakeServer) -> None:
    path, elsewhere = response_path(), response_path()
    slack_server.script = [Reply(307, "", {"Location": slack_server.url + elsewhere})]
    assert post(slack_server.url + path) == Delivery(False, "redirect", 307)
    assert len(slack_server.requests_to(path)) == 1
    assert slack_server.requests_to(elsewhere) == []  # requests used to re-POST the answer there


# --- pooled connections --------------------------------------------------------------------------------------------


def test_connections_are_reused_between_close_posts(
    raw_server: RawServer, clock: FakeClock, connections: Connections
) -> None:
    for _ in range(3):
        assert post(raw_server.url + "/x", connections=connections).delivered
        clock.advance(IDLE_SECONDS - 0.5)
    assert (raw_server.connections, raw_server.answered) == (1, 3)


def test_a_connection_the_client_saw_closed_is_not_reused(raw_server: RawServer, connections: Connections) -> None:
    raw_server.after_answer = "close"  # no idle gap here: urllib3 sees the close itself
    assert post(raw_server.url + "/a", connections=connections).delivered
    assert raw_server.ended.wait(10)
    assert post(raw_server.url + "/b", connections=connections).delivered
    assert (raw_server.connections, raw_server.answered) == (2, 2)


def test_a_connection_the_server_closed_while_the_sandbox_was_frozen_is_not_used(
    raw_server: RawServer, clock: FakeClock, connections: Connections
) -> None:
    # The server closed the idle connection while the sandbox was frozen; its close never
    # arrived, so the connection looks alive. Before the fix the next reply went out on it, was
    # reset, and was lost (read=0: a reset after sending is never retried).
    raw_server.after_answer = "forget"
    assert post(raw_server.url + "/a", connections=connections).delivered
    assert raw_server.ended.wait(10)
    clock.advance(IDLE_SECONDS + 0.5)  # the freeze
    assert post(raw_server.url + "/b", connections=connections) == Delivery(True, status=200)
    assert (raw_server.connections, raw_server.received, raw_server.answered) == (2, 2, 2)


def test_the_wall_clock_counts_a_freeze_the_monotonic_clock_missed(
    raw_server: RawServer, clock: FakeClock, connections: Connections
) -> None:
    raw_server.after_answer = "forget"
    assert post(raw_server.url + "/a", connections=connections).delivered
    assert raw_server.ended.wait(10)
    clock.wall += IDLE_SECONDS + 0.5  # only the wall clock moved
    assert post(raw_server.url + "/b", connections=connections).delivered
    assert raw_server.connections == 2


def test_a_request_reset_after_it_was_sent_is_not_sent_again(raw_server: RawServer, connections: Connections) -> None:
    # Within the idle gap a forgotten connection is still used: the reset comes after the
    # request went out, when the server may have acted on it, so it is never retried.
    raw_server.after_answer = "forget"
    assert post(raw_server.url + "/a", connections=connections).delivered
    assert raw_server.ended.wait(10)
    assert post(raw_server.url + "/b", connections=connections) == Delivery(False, "connection_reset")
    assert (raw_server.connections, raw_server.received, raw_server.answered) == (1, 2, 1)


# --- the README's fault rows, through the worker ---------------------------------------------------------------------

QUESTION = "秘密の質問 about the fault table"


def run_command(url: str, env: dict[str, str], capsys: pytest.CaptureFixture[str], caplog: Any) -> dict[str, Any]:
    """Run one slash job to its end and return its one log line; the worker must not raise."""
    assert worker.run(slash_payload(url, QUESTION), Deadline.in_seconds(60), env) is None
    captured = capsys.readouterr()
    output = captured.out + captured.err + caplog.text
    [line] = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert line["event"] == "answer" and line["outcome"] == "answered"
    assert "Traceback" not in output
    for secret in (OPENAI_KEY, SIGNING_SECRET, QUESTION, "Answer"):  # no secret, no message text
        assert secret not in output
    return line


def test_fault_expired_url(bot_env, slack_server: FakeServer, capsys, caplog) -> None:
    path = response_path()
    slack_server.script = [Reply(404, "expired_url")]
    line = run_command(slack_server.url + path, bot_env, capsys, caplog)
    assert (line["delivered"], line["reply_error"], line["reply_status"]) == (False, "expired_url", 404)
    assert len(slack_server.requests_to(path)) == 1


def test_fault_server_error(bot_env, slack_server: FakeServer, capsys, caplog) -> None:
    path = response_path()
    slack_server.script = [Reply(500, "<html>Internal Server Error</html>")] * 3
    line = run_command(slack_server.url + path, bot_env, capsys, caplog)
    assert (line["delivered"], line["reply_error"], line["reply_status"]) == (False, "http_500", 500)
    assert len(slack_server.requests_to(path)) == 3  # one try and two retries


def test_fault_timeout(bot_env, raw_server: RawServer, capsys, caplog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(response_url, "TIMEOUT", (response_url.TIMEOUT[0], 1.0))  # its read timeout, 5 s, cut to 1
    raw_server.mode = "stall"  # takes the read timeout
    line = run_command(raw_server.url + response_path(), bot_env, capsys, caplog)
    assert (line["delivered"], line["reply_error"]) == (False, "timeout")
    assert raw_server.received == 1  # sent, so not sent again
    assert line["reply_ms"] < response_url.WORST_CASE_SECONDS * 1000


def test_fault_connection_reset(bot_env, raw_server: RawServer, capsys, caplog) -> None:
    raw_server.mode = "reset"
    line = run_command(raw_server.url + response_path(), bot_env, capsys, caplog)
    assert (line["delivered"], line["reply_error"]) == (False, "connection_reset")
    assert raw_server.received == 1


def test_fault_redirect(bot_env, slack_server: FakeServer, capsys, caplog) -> None:
    path, elsewhere = response_path(), response_path()
    slack_server.script = [Reply(307, "", {"Location": slack_server.url + elsewhere})]
    line = run_command(slack_server.url + path, bot_env, capsys, caplog)
    assert (line["delivered"], line["reply_error"], line["reply_status"]) == (False, "redirect", 307)
    assert slack_server.requests_to(elsewhere) == []


def test_fault_refused_url_in_lambda(bot_env, slack_server: FakeServer, capsys, caplog) -> None:
    line = run_command(slack_server.url + response_path(), {**bot_env, **IN_LAMBDA}, capsys, caplog)
    assert (line["delivered"], line["reply_error"]) == (False, "refused")
    assert line["reply_detail"] == "response_url's loopback host is not in RESPONSE_URL_HOSTS"
    assert slack_server.received == []


def test_fault_url_requests_cannot_use(bot_env, capsys, caplog) -> None:
    line = run_command("https://a..b/x", {**bot_env, "RESPONSE_URL_HOSTS": "a..b"}, capsys, caplog)
    assert (line["delivered"], line["reply_error"]) == (False, "invalid_url")


def test_a_listed_loopback_host_is_answered_in_lambda(bot_env, slack_server: FakeServer, capsys, caplog) -> None:
    path = response_path()
    env = {**bot_env, **IN_LAMBDA, "RESPONSE_URL_HOSTS": "127.0.0.1"}
    line = run_command(slack_server.url + path, env, capsys, caplog)
    assert line["delivered"] is True and "reply_error" not in line
    assert len(slack_server.requests_to(path)) == 1
