"""chalicelib.slack.web against the fake Slack Web API (and two raw sockets), with the real slack_sdk.

The retry rules: a rate limit is waited out only within the deadline; a write is never sent
twice after the connection dropped; a read, or a request that never left, is retried.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chalicelib.deadline import Deadline
from chalicelib.slack import web
from devkit.fake_slack_api import FAKE_BOT_TOKEN, FakeSlackAPI

CHANNEL = "C0123456"


@pytest.fixture
def fake() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI() as server:
        yield server


def make_client(fake: FakeSlackAPI, seconds: float = 30.0) -> web.WebClient:
    return web.client(FAKE_BOT_TOKEN, fake.url, Deadline.in_seconds(seconds))


class RawServer:
    """A TCP port on 127.0.0.1 that refuses connections until ``listen()``, then answers each
    request with ``answer`` (or, with ``drop=True``, reads it and closes without answering)."""

    def __init__(self, answer: bytes = b"", drop: bool = False) -> None:
        self.answer = answer
        self.drop = drop
        self.requests: list[bytes] = []
        self.got_request = threading.Condition()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))  # bound, not listening: connecting is refused
        self.port = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/api/"
        self._thread: threading.Thread | None = None

    def listen(self) -> None:
        if self._thread is None:
            self._socket.listen(8)
            self._thread = threading.Thread(target=self._serve, daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._socket.close()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return  # closed
            with connection:
                request = _read_request(connection)
                with self.got_request:
                    self.requests.append(request)
                    self.got_request.notify_all()
                if not self.drop:
                    connection.sendall(self.answer)


def _read_request(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def http_answer(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


# --- rate limits ------------------------------------------------------------------------------------------------------


def test_rate_limit_that_fits_the_deadline_is_waited_out(fake: FakeSlackAPI) -> None:
    root = fake.add_message(CHANNEL, "question")
    fake.fail_next("chat.postMessage", "ratelimited", retry_after=1)
    started = time.monotonic()
    ts = web.post(make_client(fake), CHANNEL, root, markdown_text="**hi**")
    assert time.monotonic() - started >= 1.0  # it waited as Slack said
    calls = fake.calls_to("chat.postMessage")
    assert [(call.status, call.error) for call in calls] == [(429, "ratelimited"), (200, None)]
    assert [m.text for m in fake.bot_messages(CHANNEL, root)] == ["**hi**"]
    assert fake.bot_messages(CHANNEL, root)[0].ts == ts


def test_rate_limit_is_retried_at_most_twice(fake: FakeSlackAPI) -> None:
    fake.fail_next("chat.postMessage", "ratelimited", retry_after=0, count=3)
    with pytest.raises(web.SlackError) as caught:
        web.post(make_client(fake), CHANNEL, None, text="hi")
    assert caught.value.code == "ratelimited"
    assert len(fake.calls_to("chat.postMessage")) == 1 + web.MAX_RETRIES


def test_rate_limit_that_does_not_fit_fails_at_once(fake: FakeSlackAPI) -> None:
    fake.fail_next("chat.postMessage", "ratelimited", retry_after=30)
    started = time.monotonic()
    with pytest.raises(web.SlackError) as caught:
        web.post(make_client(fake, seconds=20), CHANNEL, None, text="hi")
    assert caught.value.code == "ratelimited"
    assert time.monotonic() - started < 2  # no sleeping towards (or past) the deadline
    assert len(fake.calls_to("chat.postMessage")) == 1


# --- connection errors ------------------------------------------------------------------------------------------------


def test_a_write_is_not_sent_again_after_the_connection_dropped(fake: FakeSlackAPI) -> None:
    root = fake.add_message(CHANNEL, "question")
    fake.fail_next("chat.postMessage", "disconnect")  # applied, then closed without an answer
    with pytest.raises(web.SlackError) as caught:
        web.post(make_client(fake), CHANNEL, root, markdown_text="once")
    assert caught.value.code == "connection"
    assert len(fake.calls_to("chat.postMessage")) == 1
    assert [m.text for m in fake.bot_messages(CHANNEL, root)] == ["once"]


def test_a_write_is_not_sent_again_after_a_raw_server_read_it_and_hung_up() -> None:
    server = RawServer(drop=True)
    server.listen()
    try:
        client = web.client(FAKE_BOT_TOKEN, server.url, Deadline.in_seconds(30))
        with pytest.raises(web.SlackError) as caught:
            web.append_stream(client, CHANNEL, "1700000000.000100", "text")
        assert caught.value.code == "connection"
        assert len(server.requests) == 1
        assert b"/api/chat.appendStream" in server.requests[0]
    finally:
        server.close()


def test_a_read_is_retried_after_the_connection_dropped(fake: FakeSlackAPI) -> None:
    root = fake.add_message(CHANNEL, "question")
    fake.add_message(CHANNEL, "more", thread_ts=root)
    fake.fail_next("conversations.replies", "disconnect")
    messages, error = web.thread_messages(make_client(fake), CHANNEL, root, 50)
    assert [m["text"] for m in messages] == ["question", "more"]
    assert error is None
    assert len(fake.calls_to("conversations.replies")) == 2


def test_a_refused_connection_is_retried_even_for_a_write() -> None:
    answer = json.dumps({"ok": True, "channel": CHANNEL, "ts": "1700000000.000200"}).encode()
    server = RawServer(http_answer("200 OK", answer))

    class ListenOnFailure(logging.Handler):
        """Starts the server when slack_sdk reports the first refused attempt: an event, not a sleep."""

        def emit(self, record: logging.LogRecord) -> None:
            if "Failed to send a request" in record.getMessage():
                server.listen()

    sdk_logger = logging.getLogger("slack_sdk.web.base_client")
    handler = ListenOnFailure()
    sdk_logger.addHandler(handler)
    try:
        client = web.client(FAKE_BOT_TOKEN, server.url, Deadline.in_seconds(30))
        assert web.post(client, CHANNEL, None, text="hi") == "1700000000.000200"
        assert len(server.requests) == 1  # the refused attempt never reached anyone
    finally:
        sdk_logger.removeHandler(handler)
        server.close()


def test_a_connection_that_stays_refused_gives_up_after_two_retries(caplog: pytest.LogCaptureFixture) -> None:
    server = RawServer()  # never listens
    try:
        client = web.client(FAKE_BOT_TOKEN, server.url, Deadline.in_seconds(30))
        with caplog.at_level(logging.ERROR, logger="slack_sdk"), pytest.raises(web.SlackError) as caught:
            web.post(client, CHANNEL, None, text="hi")
        assert caught.value.code == "connection"
        attempts = [r for r in caplog.records if "Failed to send a request" in r.getMessage()]
        assert len(attempts) == 1 + web.MAX_RETRIES
    finally:
        server.close()


def test_a_slow_answer_is_a_timeout_and_a_write_is_not_sent_again(fake: FakeSlackAPI) -> None:
    fake.delay_next("chat.postMessage", 30)
    started = time.monotonic()
    with pytest.raises(web.SlackError) as caught:
        web.post(make_client(fake, seconds=1.5), CHANNEL, None, text="hi")
    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 3
    assert len(fake.calls_to("chat.postMessage")) == 1


def test_no_call_is_started_without_time_for_it(fake: FakeSlackAPI) -> None:
    with pytest.raises(web.SlackError) as caught:
        web.post(make_client(fake, seconds=web.MIN_ATTEMPT_SECONDS / 2), CHANNEL, None, text="hi")
    assert caught.value.code == "timeout"
    assert fake.calls == []


# --- errors -----------------------------------------------------------------------------------------------------------


def test_slack_error_codes_come_through(fake: FakeSlackAPI) -> None:
    with pytest.raises(web.SlackError) as caught:
        web.update(make_client(fake), CHANNEL, "1700000000.000300", markdown_text="x")
    assert (caught.value.code, caught.value.method) == ("message_not_found", "chat.update")
    bad = web.client("xoxb-wrong", fake.url, Deadline.in_seconds(30))
    with pytest.raises(web.SlackError) as caught:
        web.set_status(bad, CHANNEL, "1700000000.000300", "is thinking…")
    assert caught.value.code == "invalid_auth"
    assert "xoxb" not in str(caught.value)


def test_calls_made_on_the_client_itself_raise_slack_errors_too(fake: FakeSlackAPI) -> None:
    with pytest.raises(web.SlackError) as caught:
        make_client(fake).chat_update(channel=CHANNEL, ts="1700000000.000300", markdown_text="x")
    assert caught.value.code == "message_not_found"


def test_an_answer_that_is_not_slack_json_has_an_http_code() -> None:
    server = RawServer(http_answer("502 Bad Gateway", b"<html>bad gateway</html>", "text/html"))
    server.listen()
    try:
        client = web.client(FAKE_BOT_TOKEN, server.url, Deadline.in_seconds(30))
        with pytest.raises(web.SlackError) as caught:
            web.post(client, CHANNEL, None, text="hi")
        assert caught.value.code == "http_502"
        assert len(server.requests) == 1
    finally:
        server.close()


# --- helpers ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("parent_on_every_page", [False, True])
def test_thread_messages_keeps_the_root_and_the_newest_replies(parent_on_every_page: bool) -> None:
    with FakeSlackAPI(page_size=7, parent_on_every_page=parent_on_every_page) as fake:
        root = fake.add_message(CHANNEL, "root")
        for n in range(30):
            fake.add_message(CHANNEL, f"reply {n}", thread_ts=root, bot=n % 2 == 1)
        messages, error = web.thread_messages(make_client(fake), CHANNEL, root, 10)
        assert [m["text"] for m in messages] == ["root"] + [f"reply {n}" for n in range(21, 30)]
        assert error is None
        assert messages[1]["bot_id"] == fake.bot_id  # the bot's own answers come back as Slack shows them
        assert len(fake.calls_to("conversations.replies")) >= 5  # every page was read

        only_root, error = web.thread_messages(make_client(fake), CHANNEL, root, 1)
        assert [m["text"] for m in only_root] == ["root"] and error is None


def test_thread_messages_of_a_thread_with_no_replies(fake: FakeSlackAPI) -> None:
    root = fake.add_message(CHANNEL, "alone")
    messages, error = web.thread_messages(make_client(fake), CHANNEL, root, 50)
    assert [m["text"] for m in messages] == ["alone"] and error is None


def test_status_and_suggested_prompts(fake: FakeSlackAPI) -> None:
    client = make_client(fake)
    root = fake.add_message("D0123456", "hi")
    web.set_status(client, "D0123456", root, "is thinking…")
    assert fake.status("D0123456", root) == "is thinking…"
    prompts = (("散歩", "東京でおすすめの散歩道は？"), ("夕飯", "今日の夕飯は？"))
    web.set_suggested_prompts(client, "D0123456", None, prompts)
    assert fake.suggested_prompts("D0123456") == [
        {"title": "散歩", "message": "東京でおすすめの散歩道は？"},
        {"title": "夕飯", "message": "今日の夕飯は？"},
    ]
    with pytest.raises(web.SlackError) as caught:
        web.set_suggested_prompts(client, "D0123456", None, prompts * 3)
    assert caught.value.code == "invalid_arguments"


def test_post_update_and_a_stream(fake: FakeSlackAPI) -> None:
    client = make_client(fake)
    root = fake.add_message(CHANNEL, "question", user="U0001")
    ts = web.post(client, CHANNEL, root, markdown_text="draft")
    web.update(client, CHANNEL, ts, markdown_text="final")
    stream_ts = web.start_stream(client, CHANNEL, root, "a", recipient_user_id="U0001", recipient_team_id="T0001")
    web.append_stream(client, CHANNEL, stream_ts, "b")
    web.stop_stream(client, CHANNEL, stream_ts, "c")
    assert [(m.text, m.stream) for m in fake.bot_messages(CHANNEL, root)] == [("final", None), ("abc", "stopped")]


# --- faults around the stream: idempotent writes, partial reads, a lost chat.startStream answer -----------------------


@pytest.mark.parametrize("fault", ["disconnect", "drop"])
def test_update_is_sent_again_after_a_dropped_connection(fake: FakeSlackAPI, fault: str) -> None:
    # "disconnect": the first update landed, the second sets the same whole text; "drop": only the second lands.
    client = make_client(fake)
    root = fake.add_message(CHANNEL, "question")
    ts = web.post(client, CHANNEL, root, markdown_text="draft")
    fake.fail_next("chat.update", fault)
    web.update(client, CHANNEL, ts, markdown_text="the whole answer")
    calls = fake.calls_to("chat.update")
    assert [(call.dropped, call.ok) for call in calls] == [(True, fault == "disconnect"), (False, True)]
    assert fake.text_of(CHANNEL, ts) == "the whole answer"


@pytest.mark.parametrize("fault", ["disconnect", "drop"])
def test_delete_is_sent_again_after_a_dropped_connection(fake: FakeSlackAPI, fault: str) -> None:
    client = make_client(fake)
    root = fake.add_message(CHANNEL, "question")
    ts = web.post(client, CHANNEL, root, markdown_text="wrong place")
    fake.fail_next("chat.delete", fault)
    web.delete(client, CHANNEL, ts)  # after "disconnect" the second finds nothing: deleted all the same
    assert [call.error for call in fake.calls_to("chat.delete")] == [
        None if fault == "disconnect" else "drop",
        "message_not_found" if fault == "disconnect" else None,
    ]
    assert fake.text_of(CHANNEL, ts) is None
    assert fake.visible_text(CHANNEL, root) == ["question"]


def test_delete_counts_a_missing_message_as_deleted_and_refuses_others(fake: FakeSlackAPI) -> None:
    client = make_client(fake)
    root = fake.add_message(CHANNEL, "question")
    web.delete(client, CHANNEL, "1700000000.000300")  # never there: nothing to do
    with pytest.raises(web.SlackError) as caught:
        web.delete(client, CHANNEL, root)  # the user's message
    assert (caught.value.code, caught.value.method) == ("cant_delete_message", "chat.delete")
    assert fake.visible_text(CHANNEL, root) == ["question"]


def test_a_delete_that_does_not_fit_the_deadline_is_not_sent_again(fake: FakeSlackAPI) -> None:
    fake.fail_next("chat.delete", "ratelimited", retry_after=30)
    root = fake.add_message(CHANNEL, "question")
    ts = web.post(make_client(fake), CHANNEL, root, text="x")
    with pytest.raises(web.SlackError) as caught:
        web.delete(make_client(fake, seconds=10), CHANNEL, ts)
    assert caught.value.code == "ratelimited"
    assert len(fake.calls_to("chat.delete")) == 1


@pytest.mark.parametrize("method", ["chat.postMessage", "chat.startStream", "chat.appendStream"])
@pytest.mark.parametrize("fault", ["disconnect", "drop"])
def test_posts_and_stream_writes_are_never_sent_blindly_again(fake: FakeSlackAPI, method: str, fault: str) -> None:
    # Whether the request landed is unknown to the client: a second post or append could show twice.
    client = make_client(fake)
    root = fake.add_message("D0123456", "question")
    stream_ts = web.start_stream(client, "D0123456", root, "a")
    fake.fail_next(method, fault)
    with pytest.raises(web.SlackError) as caught:
        if method == "chat.postMessage":
            web.post(client, "D0123456", root, markdown_text="b")
        elif method == "chat.startStream":
            web.start_stream(client, "D0123456", root, "b")
        else:
            web.append_stream(client, "D0123456", stream_ts, "b")
    assert caught.value.code == "connection"
    assert len([call for call in fake.calls_to(method) if call.dropped or not call.ok]) == 1
    assert fake.calls_to(method)[-1].dropped  # the dropped one was the last: not sent again


def replies_thread(fake: FakeSlackAPI, replies: int = 12) -> str:
    root = fake.add_message(CHANNEL, "root")
    for n in range(replies):
        fake.add_message(CHANNEL, f"reply {n}", thread_ts=root, bot=n % 3 == 2)
    return root


def test_thread_messages_keeps_the_pages_read_before_a_failure() -> None:
    with FakeSlackAPI(page_size=5) as fake:
        root = replies_thread(fake)
        fake.fail_next("conversations.replies", "internal_error", after=1)  # the second page
        messages, error = web.thread_messages(make_client(fake), CHANNEL, root, 50)
        assert [m["text"] for m in messages] == ["root"] + [f"reply {n}" for n in range(4)]
        assert error is not None and (error.code, error.method) == ("internal_error", "conversations.replies")

        # The newest of what was read, when that is more than max_messages.
        fake.fail_next("conversations.replies", "internal_error", after=2)  # the third page
        messages, error = web.thread_messages(make_client(fake), CHANNEL, root, 4)
        assert [m["text"] for m in messages] == ["root", "reply 6", "reply 7", "reply 8"]
        assert error is not None and error.code == "internal_error"


def test_thread_messages_first_page_failure_gives_nothing_and_the_error(fake: FakeSlackAPI) -> None:
    root = replies_thread(fake)
    fake.fail_next("conversations.replies", "channel_not_found")
    messages, error = web.thread_messages(make_client(fake), CHANNEL, root, 50)
    assert messages == [] and error is not None and error.code == "channel_not_found"
    bad = web.client("xoxb-wrong", fake.url, Deadline.in_seconds(30))
    messages, error = web.thread_messages(bad, CHANNEL, root, 50)
    assert messages == [] and error is not None and error.code == "invalid_auth"


def test_thread_messages_waits_out_a_rate_limit_on_a_later_page() -> None:
    with FakeSlackAPI(page_size=5) as fake:
        root = replies_thread(fake)
        fake.fail_next("conversations.replies", "ratelimited", retry_after=1, after=1)
        started = time.monotonic()
        messages, error = web.thread_messages(make_client(fake), CHANNEL, root, 50)
        assert time.monotonic() - started >= 1.0  # Retry-After was honoured
        assert error is None
        assert [m["text"] for m in messages] == ["root"] + [f"reply {n}" for n in range(12)]
        calls = fake.calls_to("conversations.replies")
        assert [(call.status, call.error) for call in calls] == [(200, None), (429, "ratelimited"), (200, None)] + [
            (200, None)
        ] * (len(calls) - 3)
        assert calls[1].params.get("cursor") == calls[2].params.get("cursor")  # the same page asked again


def test_thread_messages_gives_up_on_a_rate_limit_longer_than_the_deadline() -> None:
    with FakeSlackAPI(page_size=5) as fake:
        root = replies_thread(fake)
        fake.fail_next("conversations.replies", "ratelimited", retry_after=30, after=1)
        started = time.monotonic()
        messages, error = web.thread_messages(make_client(fake, seconds=10), CHANNEL, root, 50)
        assert time.monotonic() - started < 2
        assert error is not None and error.code == "ratelimited"
        assert [m["text"] for m in messages] == ["root"] + [f"reply {n}" for n in range(4)]


def test_find_own_message_finds_a_stream_whose_start_answer_was_lost() -> None:
    with FakeSlackAPI(page_size=3) as fake:
        client = make_client(fake)
        root = fake.add_message(CHANNEL, "<@UBOT0001> question", user="U0001")
        fake.add_message(CHANNEL, "an earlier answer", thread_ts=root, bot=True)
        for n in range(6):
            fake.add_message(CHANNEL, f"chat {n}", thread_ts=root, user="U0002")
        job_ts = fake.add_message(CHANNEL, "<@UBOT0001> follow-up", thread_ts=root, user="U0001")
        fake.add_message(CHANNEL, "from someone else, later", thread_ts=root, user="U0002")
        assert web.find_own_message(client, CHANNEL, root, fake.bot_user_id, job_ts, "lost ") is None

        fake.fail_next("chat.startStream", "disconnect")  # the stream started; its ts never came back
        with pytest.raises(web.SlackError) as caught:
            web.start_stream(client, CHANNEL, root, "lost ", recipient_user_id="U0001", recipient_team_id="T0001")
        assert caught.value.code == "connection"
        fake.add_message(CHANNEL, "and a user after it", thread_ts=root, user="U0002")
        calls_before = len(fake.calls_to("conversations.replies"))

        # Another job's answer in the same thread, newer than ours: never taken for ours.
        fake.add_message(CHANNEL, "another job's answer", thread_ts=root, bot=True)
        found = web.find_own_message(client, CHANNEL, root, fake.bot_user_id, job_ts, "lost ")
        [streamed] = [m for m in fake.bot_messages(CHANNEL, root) if m.streaming]
        assert found == streamed.ts
        # Only the replies after the job were asked for: the root and 3 replies are 2 pages of 3,
        # where the whole thread (12 messages) is 4.
        reads = fake.calls_to("conversations.replies")[calls_before:]
        assert len(reads) == 2 and all(read.params["oldest"] == job_ts for read in reads)

        # Recovery as the notes say: stop the stream (safe to repeat), then set its whole text.
        web.stop_stream(client, CHANNEL, found)
        web.update(client, CHANNEL, found, markdown_text="the whole answer")
        assert fake.visible_text(CHANNEL, root)[-3:] == [
            "the whole answer",
            "and a user after it",
            "another job's answer",
        ]


def test_find_own_message_after_a_start_that_never_took_effect(fake: FakeSlackAPI) -> None:
    client = make_client(fake)
    root = fake.add_message("D0123456", "question")
    fake.fail_next("chat.startStream", "drop")
    with pytest.raises(web.SlackError):
        web.start_stream(client, "D0123456", root, "never shown")
    assert web.find_own_message(client, "D0123456", root, fake.bot_user_id, root, "never shown") is None
    first = web.post(client, "D0123456", root, text="one")
    second = web.post(client, "D0123456", root, text="one more")
    # The whole text must match (a first token is no evidence), and the oldest match wins: a
    # newer message that says the same is another job's.
    assert web.find_own_message(client, "D0123456", root, fake.bot_user_id, root, "one") == first
    assert web.find_own_message(client, "D0123456", root, fake.bot_user_id, root, " one more\n") == second
    web.post(client, "D0123456", root, text="one")
    assert web.find_own_message(client, "D0123456", root, fake.bot_user_id, root, "one") == first
    assert web.find_own_message(client, "D0123456", root, fake.bot_user_id, root, "two") is None
    assert web.find_own_message(client, "D0123456", root, fake.bot_user_id, second, "one more") is None
    assert web.find_own_message(client, "D0123456", root, "UOTHER", root, "one") is None
    assert first != second
    calls = len(fake.calls)
    with pytest.raises(web.SlackError) as caught:  # a SlackError, as every failure in web.py
        web.find_own_message(client, "D0123456", root, fake.bot_user_id, "Ev0FUZZ", "one")
    assert caught.value.code == "invalid_arguments" and len(fake.calls) == calls  # nothing was sent
    with pytest.raises(web.SlackError) as caught:
        web.find_own_message(client, "D0123456", "1700000000.000999", fake.bot_user_id, root, "one")
    assert caught.value.code == "thread_not_found"


class _UnknownCharset(BaseHTTPRequestHandler):
    """Answers like a proxy in front of Slack might: JSON in a charset Python has no codec for."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=klingon")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_an_answer_in_an_unknown_charset_is_a_slack_error_not_a_lookup_error() -> None:
    # Before the fix slack_sdk's LookupError escaped web.py, whose contract is SlackError only.
    server = ThreadingHTTPServer(("127.0.0.1", 0), _UnknownCharset)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        client = web.client(
            FAKE_BOT_TOKEN, f"http://127.0.0.1:{server.server_address[1]}/api/", Deadline.in_seconds(10)
        )
        with pytest.raises(web.SlackError) as raised:
            web.set_status(client, "C1", "1700000000.000100", "is thinking…")
        assert raised.value.code == "unreadable"
    finally:
        server.shutdown()
        server.server_close()
