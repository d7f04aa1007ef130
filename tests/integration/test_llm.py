"""The LLM seam: the real openai SDK over real HTTP to a local OpenAI-compatible server."""

from __future__ import annotations

import email.utils
import math
import socket
import threading
import time

import httpx2
import openai
import pytest
from openai._models import FinalRequestOptions

from chalicelib import llm
from chalicelib.deadline import Deadline
from chalicelib.settings import Settings
from devkit.fake_openai import StreamReply, chat_completion, openai_error, split_deltas
from devkit.http_fake import FakeServer, Reply
from tests.conftest import OPENAI_KEY

FAST_RETRY = {"retry-after-ms": "10"}  # keeps the SDK's retries quick in tests

CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "散歩道は？"}]


def settings_for(server: FakeServer, **overrides: object) -> Settings:
    return Settings.from_env({"OPENAI_BASE_URL": server.url + "/v1", **{k: str(v) for k, v in overrides.items()}})


def open_stream(server: FakeServer, seconds: float = 20, **overrides: object) -> llm.ChatStream:
    return llm.stream(CHAT, settings_for(server, **overrides), OPENAI_KEY, Deadline.in_seconds(seconds))


def read_all(chat_stream: llm.ChatStream) -> tuple[list[str], str | None]:
    """The deltas that arrived, and the kind of the LLMError that ended the stream (None: it ended well)."""
    deltas: list[str] = []
    try:
        for delta in chat_stream:
            deltas.append(delta)
    except llm.LLMError as error:
        assert error.mid_stream  # the stream had begun: the SDK never retries it
        return deltas, error.kind
    return deltas, None


def refusal(server: FakeServer, seconds: float = 20, deadline: Deadline | None = None) -> str:
    """The kind of the LLMError that ``llm.stream`` raises: the request failed before its stream began."""
    with pytest.raises(llm.LLMError) as error:
        llm.stream(CHAT, settings_for(server), OPENAI_KEY, deadline or Deadline.in_seconds(seconds))
    assert not error.value.mid_stream
    return error.value.kind


# The request: the chat, the output cap and the options, over real HTTP from the real SDK.


def test_a_stream_yields_the_deltas_in_order_and_its_usage(openai_server: FakeServer) -> None:
    openai_server.script = [StreamReply(deltas=["**An", "swer**", " 散歩", "道", "は…"], usage=(21, 5))]
    chat_stream = open_stream(openai_server, OPENAI_MODEL="gpt-test", OPENAI_TEMPERATURE="0.3")
    assert read_all(chat_stream) == (["**An", "swer**", " 散歩", "道", "は…"], None)
    result = chat_stream.result
    assert (result.model, result.tokens_in, result.tokens_out, result.finish_reason) == ("fake-model", 21, 5, "stop")
    assert result.seconds > 0
    [sent] = openai_server.received
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    body = sent.json()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["model"], body["temperature"], body["messages"]) == ("gpt-test", 0.3, CHAT)


def test_a_stream_sends_the_whole_chat(openai_server: FakeServer) -> None:
    chat = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "<@U1>: hello"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "<@U1>: 散歩道は？"},
    ]
    chat_stream = llm.stream(chat, settings_for(openai_server), OPENAI_KEY, Deadline.in_seconds(20))
    deltas, kind = read_all(chat_stream)
    assert kind is None and "".join(deltas) == "**Answer** to: <@U1>: 散歩道は？"
    assert openai_server.received[0].json()["messages"] == chat


def test_the_fake_echoes_a_streamed_question_in_a_few_deltas(openai_server: FakeServer) -> None:
    deltas, kind = read_all(open_stream(openai_server))
    assert kind is None and len(deltas) > 1
    assert "".join(deltas) == "**Answer** to: 散歩道は？"
    assert split_deltas("**Answer** to: 散歩道は？") == deltas


@pytest.mark.parametrize(("setting", "sent"), [(None, 2048), ("300", 300)])
def test_every_request_caps_the_output_tokens(openai_server: FakeServer, setting: str | None, sent: int) -> None:
    overrides = {} if setting is None else {"MAX_OUTPUT_TOKENS": setting}
    assert read_all(open_stream(openai_server, **overrides))[1] is None
    [request] = openai_server.received
    assert request.json()["max_completion_tokens"] == sent
    assert "max_tokens" not in request.json()


def test_temperature_none_is_not_sent(openai_server: FakeServer) -> None:
    assert read_all(open_stream(openai_server, OPENAI_TEMPERATURE="none"))[1] is None
    assert "temperature" not in openai_server.received[0].json()


# How a stream ends: well with any finish_reason, or with an LLMError's kind.


def test_a_length_finish_is_not_an_error(openai_server: FakeServer) -> None:
    openai_server.script = [StreamReply(deltas=["long", " answ"], finish_reason="length")]
    chat_stream = open_stream(openai_server)
    assert read_all(chat_stream) == (["long", " answ"], None)
    assert chat_stream.result.finish_reason == "length"


@pytest.mark.parametrize(
    ("deltas", "finish_reason"),
    [
        ([], "length"),  # the whole cap spent thinking: no text, and no error
        ([" \n"], "length"),
        ([], "content_filter"),
        (["partly ", "sa"], "content_filter"),
        (["an ", "answer"], "some_future_reason"),  # unknown: returned as it came
        ([], "some_future_reason"),
    ],
)
def test_a_stream_ends_well_with_any_finish_reason(
    openai_server: FakeServer, deltas: list[str], finish_reason: str
) -> None:
    openai_server.script = [StreamReply(deltas=deltas, finish_reason=finish_reason)]
    chat_stream = open_stream(openai_server)
    assert read_all(chat_stream) == (deltas, None)
    result = chat_stream.result
    assert (result.finish_reason, result.tokens_in, result.tokens_out) == (finish_reason, 11, 7)
    assert len(openai_server.received) == 1


@pytest.mark.parametrize(
    ("reply", "kind", "deltas"),
    [
        (StreamReply(deltas=["a", "b", "c"], break_after=2), "cut_off", ["a", "b"]),
        (StreamReply(deltas=["a", "b", "c"], break_after=0), "cut_off", []),
        (StreamReply(deltas=["a", "b", "c"], close_cleanly_after=2), "cut_off", ["a", "b"]),
        (StreamReply(deltas=["a", "b", "c"], finish_reason=None), "cut_off", ["a", "b", "c"]),  # [DONE] alone
        (StreamReply(deltas=["a", "b", "c"], garbage_after=1), "unreadable", ["a"]),
        (StreamReply(deltas=["a", "b", "c"], error_after=1), "service_error", ["a"]),
        # A 200 that is no stream at all: not JSON, JSON that is no chunk, a whole (unstreamed) answer.
        (Reply(200, "<html>gateway says hi</html>"), "unreadable", []),
        (Reply(200, {"object": "chat.completion"}), "unreadable", []),
        (Reply(200, chat_completion("a whole answer")), "unreadable", []),
    ],
)
def test_a_broken_stream_maps_to_a_kind(
    openai_server: FakeServer, reply: Reply | StreamReply, kind: str, deltas: list[str]
) -> None:
    openai_server.script = [reply]
    chat_stream = open_stream(openai_server)
    assert read_all(chat_stream) == (deltas, kind)
    assert chat_stream.result.finish_reason is None
    assert len(openai_server.received) == 1  # a stream is never re-sent


@pytest.mark.parametrize(
    ("reply", "kind", "attempts"),
    [
        (openai_error(429, "rate_limit_exceeded"), "rate_limited", 3),
        (openai_error(429, "insufficient_quota"), "quota_exhausted", 3),
        (openai_error(401, "invalid_api_key"), "invalid_key", 1),
        (openai_error(403, "unsupported_country_region_territory"), "permission_denied", 1),
        (openai_error(404, "model_not_found"), "model_not_found", 1),
        (openai_error(400, "context_length_exceeded"), "too_long", 1),
        (openai_error(400, "invalid_request_error"), "service_error", 1),
        (openai_error(500, "server_error"), "service_error", 3),
    ],
)
def test_a_stream_refused_before_it_starts_maps_to_a_kind(
    openai_server: FakeServer, reply: Reply, kind: str, attempts: int
) -> None:
    # 429 and 5xx are retried by the SDK (twice) before the error is ours; the others are not.
    reply.headers.update(FAST_RETRY)
    openai_server.script = [reply] * 3
    assert refusal(openai_server) == kind
    assert len(openai_server.received) == attempts


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_stream_request_is_retried_before_it_starts(openai_server: FakeServer, status: int) -> None:
    openai_server.script = [Reply(status, {"error": {"message": "busy"}}, FAST_RETRY), StreamReply(deltas=["ok"])]
    assert read_all(open_stream(openai_server)) == (["ok"], None)
    assert len(openai_server.received) == 2


def test_a_refused_stream_connection_is_a_service_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before use: nothing listens there
    settings = Settings.from_env({"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"})
    with pytest.raises(llm.LLMError) as error:
        llm.stream(CHAT, settings, OPENAI_KEY, Deadline.in_seconds(10))
    assert (error.value.kind, error.value.mid_stream) == ("service_error", False)


# The deadline: each attempt cut to the time left, and no retry whose wait would pass it.


def test_no_time_left_means_no_request(openai_server: FakeServer) -> None:
    assert refusal(openai_server, seconds=0.5) == "timeout"
    assert openai_server.received == []


def test_a_stream_that_never_starts_times_out_at_the_deadline(openai_server: FakeServer) -> None:
    openai_server.script = [Reply(200, "{}", delay=30)] * 3
    deadline = Deadline.in_seconds(2)
    assert refusal(openai_server, deadline=deadline) == "timeout"
    # The attempt times out at the deadline and the SDK's retry, after its backoff (≤ 0.5 s), is
    # refused: done by 0.5 s past it, checked with 2 s to spare. Unhooked, the SDK would retry twice.
    assert time.monotonic() - deadline.expires_at < 2.5
    assert len(openai_server.received) == 1


def test_retries_stay_inside_the_deadline(openai_server: FakeServer) -> None:
    # A wait that fits is waited for; the next, which would not, is refused. The SDK sleeps the
    # Retry-After's 3 s, so the second answer arrives with at most 3.5 s left, short of the 3 + 1 s
    # a retry needs however fast the machine; the first has 2.5 s to spare however slow it is.
    openai_server.script = [Reply(500, {"error": {"message": "busy"}}, {"retry-after": "3"})] * 3
    started = time.monotonic()
    deadline = Deadline.in_seconds(6.5)
    assert refusal(openai_server, deadline=deadline) == "service_error"
    assert len(openai_server.received) == 2
    assert time.monotonic() - started >= 3  # the first Retry-After was honoured
    assert time.monotonic() < deadline.expires_at  # done about 3 s early


def test_a_server_error_without_retry_after_is_retried_after_the_sdks_backoff(openai_server: FakeServer) -> None:
    # The common 5xx case: no Retry-After, so the wait checked against the deadline is the SDK's
    # own backoff (0.5 s, then 1 s): plenty of time here, so both retries happen.
    openai_server.script = [Reply(500, {"error": {"message": "boom"}}), Reply(503, {"error": {"message": "busy"}})]
    deltas, kind = read_all(open_stream(openai_server))
    assert kind is None and "".join(deltas) == "**Answer** to: 散歩道は？"
    assert [r.headers["x-stainless-retry-count"] for r in openai_server.received] == ["0", "1", "2"]


def asked_to_retry(status: int, retry_after: str) -> Reply:
    reply = openai_error(status, "invalid_request_error")
    reply.headers.update({"x-should-retry": "true", "retry-after": retry_after})
    return reply


@pytest.mark.parametrize("status", [400, 404, 422])
def test_any_status_the_server_asks_to_retry_is_kept_inside_the_deadline(
    openai_server: FakeServer, status: int
) -> None:
    # The SDK retries any status carrying x-should-retry: true, after a Retry-After of up to 120 s:
    # here it would sleep 8 s of a 5 s deadline, then time out. The answer's own error is reported now.
    openai_server.script = [asked_to_retry(status, "8")] * 3
    started = time.monotonic()
    assert refusal(openai_server, seconds=5) == ("model_not_found" if status == 404 else "service_error")
    assert time.monotonic() - started < 3  # no sleep at all, checked with 2 s to spare
    assert len(openai_server.received) == 1


def test_a_retry_the_server_asks_for_is_made_when_it_fits(openai_server: FakeServer) -> None:
    openai_server.script = [asked_to_retry(400, "0.01")] * 2
    deltas, kind = read_all(open_stream(openai_server))
    assert kind is None and "".join(deltas) == "**Answer** to: 散歩道は？"
    assert len(openai_server.received) == 3


def test_a_retry_after_beyond_the_deadline_is_not_waited_for(openai_server: FakeServer) -> None:
    openai_server.script = [Reply(429, {"error": {"code": "rate_limit_exceeded"}}, {"retry-after": "60"})] * 3
    started = time.monotonic()
    assert refusal(openai_server, seconds=10) == "rate_limited"
    assert time.monotonic() - started < 8
    assert len(openai_server.received) == 1


def test_a_retry_after_date_is_not_waited_for(openai_server: FakeServer) -> None:
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)  # the SDK would sleep until then
    openai_server.script = [Reply(429, {"error": {"code": "rate_limit_exceeded"}}, {"retry-after": soon})] * 3
    started = time.monotonic()
    assert refusal(openai_server, seconds=10) == "rate_limited"
    assert time.monotonic() - started < 8
    assert len(openai_server.received) == 1


# Once the stream has begun: a complete text survives a late cut, the watchdog keeps the stream to the
# deadline, and close() ends it quietly.


@pytest.mark.parametrize("cut", ["break_after", "stall_after"])
def test_a_failure_after_the_finish_reason_keeps_the_answer(
    openai_server: FakeServer, cut: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The text is complete; only the usage chunk is lost. A stall is waited for briefly (USAGE_GRACE_SECONDS,
    # 2 s; 0.5 s here), not until the deadline.
    monkeypatch.setattr(llm, "USAGE_GRACE_SECONDS", 0.5)
    openai_server.script = [StreamReply(deltas=["a", "b"], **{cut: 3})]
    started = time.monotonic()
    chat_stream = open_stream(openai_server, seconds=60)
    assert read_all(chat_stream) == (["a", "b"], None)
    assert time.monotonic() - started < llm.USAGE_GRACE_SECONDS + 5
    result = chat_stream.result
    assert (result.finish_reason, result.tokens_in, result.tokens_out) == ("stop", None, None)


def test_a_stall_ends_at_the_deadline(openai_server: FakeServer) -> None:
    reply = StreamReply(deltas=["a", "b", "c"], stall_after=2)
    openai_server.script = [reply]
    deadline = Deadline.in_seconds(2)
    chat_stream = llm.stream(CHAT, settings_for(openai_server), OPENAI_KEY, deadline)
    assert read_all(chat_stream) == (["a", "b"], "timeout")
    assert time.monotonic() - deadline.expires_at < 3
    assert reply.ended.wait(10) and reply.outcome == "client_gone"  # the connection was let go


def test_a_stall_that_starts_late_still_ends_at_the_deadline(openai_server: FakeServer) -> None:
    # The read timeout is fixed when the body starts (the time left then, 4 s), so the stall that
    # starts 3.5 s in would last until 7.5 s without the stream's watchdog.
    openai_server.script = [StreamReply(deltas=["."] * 8, delay=0.5, stall_after=8)]
    deadline = Deadline.in_seconds(4)
    chat_stream = llm.stream(CHAT, settings_for(openai_server), OPENAI_KEY, deadline)
    deltas, kind = read_all(chat_stream)
    assert kind == "timeout" and len(deltas) >= 5
    assert time.monotonic() - deadline.expires_at < 2


def test_a_trickle_past_the_deadline_times_out(openai_server: FakeServer) -> None:
    openai_server.script = [StreamReply(deltas=["."] * 100, delay=0.2)]  # 20 s of answer
    deadline = Deadline.in_seconds(2)
    chat_stream = llm.stream(CHAT, settings_for(openai_server), OPENAI_KEY, deadline)
    deltas, kind = read_all(chat_stream)
    assert kind == "timeout" and 0 < len(deltas) < 100
    assert time.monotonic() - deadline.expires_at < 3


def test_close_from_another_thread_wakes_a_stalled_reader(openai_server: FakeServer) -> None:
    reply = StreamReply(deltas=["a", "b"], stall_after=1)
    openai_server.script = [reply]
    chat_stream = open_stream(openai_server, seconds=60)
    first = threading.Event()
    outcome: list[object] = []

    def reader() -> None:
        try:
            for delta in chat_stream:
                outcome.append(delta)
                first.set()
        except BaseException as error:  # recorded for the assertion below
            outcome.append(error)

    thread = threading.Thread(target=reader)
    thread.start()
    assert first.wait(10)
    started = time.monotonic()
    chat_stream.close()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert outcome == ["a"]  # ended quietly: the consumer gave up, nothing to report
    assert chat_stream.result.finish_reason is None
    assert reply.ended.wait(10) and reply.outcome == "client_gone"


def test_close_after_reading_part_of_the_stream(openai_server: FakeServer) -> None:
    reply = StreamReply(deltas=["a", "b", "c"], stall_after=2)
    openai_server.script = [reply]
    with open_stream(openai_server, seconds=60) as chat_stream:
        assert next(chat_stream) == "a"
    assert list(chat_stream) == []
    chat_stream.close()  # a second close does nothing
    assert reply.ended.wait(10) and reply.outcome == "client_gone"


def test_close_after_the_end_does_nothing(openai_server: FakeServer) -> None:
    chat_stream = open_stream(openai_server)
    _, kind = read_all(chat_stream)
    chat_stream.close()
    assert kind is None and chat_stream.result.finish_reason == "stop"
    assert list(chat_stream) == []


# The deadline hook's reading of the SDK's wait, checked against the installed SDK's own code: an
# SDK upgrade that changes how it waits fails here, not in production.

SDK = openai.OpenAI(api_key="sk-unused", base_url="http://127.0.0.1:9/v1", max_retries=llm.MAX_RETRIES)
SDK_OPTIONS = FinalRequestOptions.construct(method="post", url="/chat/completions")
RETRY_AFTERS = [
    {},
    {"retry-after": "3"},
    {"retry-after": "2.5"},
    {"retry-after": "200"},  # beyond the SDK's 120 s: it does not retry at all
    {"retry-after": "0"},
    {"retry-after": "-4"},
    {"retry-after": "nan"},
    {"retry-after": "soon"},
    {"retry-after-ms": "1500"},
    {"retry-after-ms": "0", "retry-after": "60"},  # the first number wins, even a zero
    {"retry-after-ms": "later", "retry-after": "2"},
    {"retry-after": "<an HTTP date 30 s from now>"},
    {"retry-after": "<an HTTP date 30 s ago>"},
]
# A date is made when the test runs, not when it is collected: the test ids stay the same in every
# process (pytest-xdist's workers must collect the same tests), and "now" is the test's own.
HTTP_DATES = {"<an HTTP date 30 s from now>": 30, "<an HTTP date 30 s ago>": -30}


def with_dates(headers: dict[str, str]) -> httpx2.Headers:
    return httpx2.Headers(
        {
            name: email.utils.formatdate(time.time() + HTTP_DATES[value], usegmt=True) if value in HTTP_DATES else value
            for name, value in headers.items()
        }
    )


@pytest.mark.parametrize("headers", RETRY_AFTERS, ids=repr)
def test_retry_after_is_read_as_the_sdk_reads_it(headers: dict[str, str]) -> None:
    response_headers = with_dates(headers)
    ours, sdks = llm._retry_after(response_headers), SDK._parse_retry_after_header(response_headers)
    if ours is None or sdks is None or math.isnan(sdks):
        assert repr(ours) == repr(sdks)
    else:
        assert ours == pytest.approx(sdks, abs=1)  # a date counts from now: a second may tick in between


@pytest.mark.parametrize("retries_taken", range(6))
@pytest.mark.parametrize("headers", RETRY_AFTERS, ids=repr)
def test_the_wait_checked_is_never_shorter_than_the_sdks(headers: dict[str, str], retries_taken: int) -> None:
    response_headers = with_dates(headers)
    ours = llm._retry_wait(response_headers, httpx2.Headers({"x-stainless-retry-count": str(retries_taken)}))
    remaining_retries = SDK.max_retries - retries_taken  # as the SDK counts when it sleeps
    sdk_waits = [SDK._calculate_retry_timeout(remaining_retries, SDK_OPTIONS, response_headers) for _ in range(20)]
    assert max(sdk_waits) <= ours + 0.01  # its backoff has random jitter that only shortens it


@pytest.mark.parametrize(("retries_taken", "wait"), [("0", 0.5), ("1", 1.0), ("2", 2.0), ("4", 8.0), ("30", 8.0)])
def test_without_retry_after_the_wait_is_the_sdks_backoff(retries_taken: str, wait: float) -> None:
    # The common 5xx case: no Retry-After, so the wait grows with the retries already taken.
    assert llm._retry_wait(httpx2.Headers(), httpx2.Headers({"x-stainless-retry-count": retries_taken})) == wait
    assert llm._retry_wait(httpx2.Headers(), httpx2.Headers()) == 0.5  # no count sent: a first try
