"""A streamed answer's health: stalls after the first chunk, chunks that do not parse, and what a
stream that ended (well or not) says it cost. The real openai SDK over real HTTP to the fake."""

from __future__ import annotations

import threading
import time

import pytest

from chalicelib import llm
from chalicelib.deadline import Deadline
from chalicelib.settings import Settings
from devkit.fake_openai import StreamReply
from devkit.http_fake import FakeServer
from tests.conftest import OPENAI_KEY
from tests.integration.test_llm import CHAT, read_all, settings_for

STALL = "0.3"  # STREAM_STALL_SECONDS in these tests: the default (5 s) scaled down
SILENCE = 8.0  # the silence the notes call a stall by default; the fake ends it early when we hang up


def open_stream(server: FakeServer, seconds: float = 20, **overrides: object) -> llm.ChatStream:
    settings = settings_for(server, **{"STREAM_STALL_SECONDS": STALL, **overrides})
    return llm.stream(CHAT, settings, OPENAI_KEY, Deadline.in_seconds(seconds))


def test_by_default_an_8_second_silence_is_longer_than_a_stall() -> None:
    # The tests below use a shorter limit; this is what makes an 8-second silence a stall in production.
    assert Settings.from_env({}).stream_stall_seconds == 5.0 < SILENCE


def test_a_silence_in_the_middle_of_an_answer_is_a_stall(openai_server: FakeServer) -> None:
    reply = StreamReply(deltas=["a", "b", "c"], pause_after=2, pause_seconds=SILENCE)
    openai_server.script = [reply]
    chat_stream = open_stream(openai_server, seconds=60)
    started = time.monotonic()
    assert read_all(chat_stream) == (["a", "b"], "stalled")
    assert time.monotonic() - started < SILENCE / 2  # cut about 0.3 s into the silence, not waited out
    result = chat_stream.result
    assert (result.finish_reason, result.tokens_in, result.tokens_out) == (None, None, None)
    assert 0 < result.seconds < SILENCE / 2
    assert reply.ended.wait(10) and reply.outcome == "client_gone"  # the connection was let go


def test_the_stall_clock_starts_at_the_role_only_chunk(openai_server: FakeServer) -> None:
    reply = StreamReply(deltas=["a", "b"], pause_after=0, pause_seconds=SILENCE)
    openai_server.script = [reply]
    assert read_all(open_stream(openai_server, seconds=60)) == ([], "stalled")
    assert reply.ended.wait(10) and reply.outcome == "client_gone"


def test_before_the_first_chunk_only_the_deadline_bounds_the_wait(openai_server: FakeServer) -> None:
    # A reasoning model may think for a minute before its first chunk: a long silence then is no stall.
    openai_server.script = [StreamReply(deltas=["a", "b"], wait_before=1.0)]
    started = time.monotonic()
    chat_stream = open_stream(openai_server)
    assert next(chat_stream) == "a"
    assert time.monotonic() - started >= 1.0  # the silence lasted, longer than the stall limit
    assert read_all(chat_stream) == (["b"], None)
    assert chat_stream.result.seconds >= 1.0


def test_a_silence_before_the_first_chunk_times_out_at_the_deadline(openai_server: FakeServer) -> None:
    reply = StreamReply(deltas=["a"], wait_before=SILENCE)
    openai_server.script = [reply]
    deadline = Deadline.in_seconds(2.5)
    chat_stream = llm.stream(CHAT, settings_for(openai_server, STREAM_STALL_SECONDS=STALL), OPENAI_KEY, deadline)
    assert read_all(chat_stream) == ([], "timeout")
    assert time.monotonic() - deadline.expires_at < 2
    assert reply.ended.wait(10) and reply.outcome == "client_gone"


def test_the_deadline_wins_when_it_comes_before_the_stall_limit(openai_server: FakeServer) -> None:
    # The stall limit (5 s by default) is bounded by what is left of the deadline: that passing is a timeout.
    openai_server.script = [StreamReply(deltas=["a", "b"], pause_after=1, pause_seconds=SILENCE)]
    deadline = Deadline.in_seconds(2.5)
    chat_stream = llm.stream(CHAT, settings_for(openai_server), OPENAI_KEY, deadline)
    assert read_all(chat_stream) == (["a"], "timeout")
    assert time.monotonic() - deadline.expires_at < 2


def test_the_stall_clock_starts_again_at_every_chunk(openai_server: FakeServer) -> None:
    # 8 deltas 0.25 s apart: 2 s in all, far past a 1 s limit, but no single silence reaches it.
    deltas = list("abcdefgh")
    openai_server.script = [StreamReply(deltas=deltas, delay=0.25)]
    chat_stream = open_stream(openai_server, STREAM_STALL_SECONDS="1")
    assert read_all(chat_stream) == (deltas, None)
    assert chat_stream.result.seconds > 1.5


def test_a_consumer_slower_than_the_stall_limit_is_not_a_stall(openai_server: FakeServer) -> None:
    # The clock runs while we wait on the server, not while the consumer holds a delta: here the
    # server sends the rest (1 s of it) while the consumer is busy, and the rest is all there.
    reply = StreamReply(deltas=["a", "b", "c", "d", "e"], delay=0.25)
    openai_server.script = [reply]
    chat_stream = open_stream(openai_server)
    assert next(chat_stream) == "a"
    assert reply.ended.wait(10) and reply.outcome == "done"  # the consumer is busy for over a second
    assert read_all(chat_stream) == (["b", "c", "d", "e"], None)
    assert chat_stream.result.finish_reason == "stop"


def test_a_silence_after_the_finish_reason_keeps_the_answer(openai_server: FakeServer) -> None:
    # The text is complete; only the usage is lost, and the silence is not waited out.
    reply = StreamReply(deltas=["a", "b"], pause_after=3, pause_seconds=SILENCE)
    openai_server.script = [reply]
    started = time.monotonic()
    chat_stream = open_stream(openai_server, seconds=60)
    assert read_all(chat_stream) == (["a", "b"], None)
    assert time.monotonic() - started < SILENCE / 2
    result = chat_stream.result
    assert (result.finish_reason, result.tokens_in, result.tokens_out) == ("stop", None, None)


def test_close_from_another_thread_during_a_silence_ends_quietly(openai_server: FakeServer) -> None:
    reply = StreamReply(deltas=["a", "b"], pause_after=1, pause_seconds=SILENCE)
    openai_server.script = [reply]
    chat_stream = open_stream(openai_server, seconds=60, STREAM_STALL_SECONDS="30")
    assert next(chat_stream) == "a"
    outcome: list[object] = []
    reader = threading.Thread(target=lambda: outcome.append(read_all(chat_stream)))
    reader.start()
    assert reply.ended.wait(0) is False
    chat_stream.close()
    reader.join(10)
    assert not reader.is_alive() and outcome == [([], None)]
    assert reply.ended.wait(10) and reply.outcome == "client_gone"


# A chunk that does not parse ends that attempt at once: it is never skipped to read on.


@pytest.mark.parametrize(
    "garbage",
    [
        b"<html>502 Bad Gateway</html>",  # not JSON
        b"\xff\xfe",  # not UTF-8
        b"null",
        b"42",
        b'"a string"',
        b"[]",
        b'{"id": "chatcmpl-x", "object": "chat.completion.chunk"}',  # no choices
        b'{"choices": {"0": {}}}',
        b'{"choices": [42]}',
        b'{"choices": [{"index": 0, "delta": {"content": 42}}]}',
    ],
    ids=repr,
)
def test_a_chunk_that_does_not_parse_ends_the_attempt_at_once(openai_server: FakeServer, garbage: bytes) -> None:
    # After the garbage the fake sends "b", then goes silent: reading on would yield "b", then wait.
    reply = StreamReply(deltas=["a", "b", "c"], garbage_after=1, garbage=garbage, stall_after=2)
    openai_server.script = [reply]
    started = time.monotonic()
    chat_stream = open_stream(openai_server, seconds=10, STREAM_STALL_SECONDS="30")
    assert read_all(chat_stream) == (["a"], "unreadable")
    assert time.monotonic() - started < 5
    result = chat_stream.result
    assert (result.finish_reason, result.tokens_in, result.tokens_out) == (None, None, None)
    assert reply.ended.wait(10) and reply.outcome == "client_gone"
    assert len(openai_server.received) == 1  # a stream is never re-sent


def test_a_usage_chunk_with_null_choices_is_read(openai_server: FakeServer) -> None:
    # Some compatible servers send the usage chunk with "choices": null rather than [].
    usage = b'{"choices": null, "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}'
    openai_server.script = [StreamReply(deltas=["a", "b"], garbage_after=1, garbage=usage)]
    chat_stream = open_stream(openai_server)
    assert read_all(chat_stream) == (["a", "b"], None)
    assert (chat_stream.result.tokens_in, chat_stream.result.tokens_out) == (11, 7)  # the last one counts


# What a stream says it cost, however it ended: the caller counts a cut attempt's cost from it (its
# tokens, or when they are unknown an estimate from the text it yielded) and its time.


@pytest.mark.parametrize(
    ("reply", "kind", "tokens"),
    [
        (StreamReply(deltas=["散歩", "道は", "…"]), None, (11, 7)),
        (StreamReply(deltas=["散歩", "道は", "…"], finish_reason="length"), None, (11, 7)),
        (StreamReply(deltas=["散歩", "道は", "…"], break_after=2), "cut_off", (None, None)),
        (StreamReply(deltas=["散歩", "道は", "…"], close_cleanly_after=2), "cut_off", (None, None)),
        (StreamReply(deltas=["散歩", "道は", "…"], error_after=2), "service_error", (None, None)),
        (StreamReply(deltas=["散歩", "道は", "…"], garbage_after=2), "unreadable", (None, None)),
        (StreamReply(deltas=["散歩", "道は", "…"], pause_after=2, pause_seconds=SILENCE), "stalled", (None, None)),
    ],
)
def test_a_stream_reports_its_tokens_and_time_however_it_ended(
    openai_server: FakeServer, reply: StreamReply, kind: str | None, tokens: tuple[int | None, int | None]
) -> None:
    openai_server.script = [reply]
    chat_stream = open_stream(openai_server, seconds=60)
    deltas, ended = read_all(chat_stream)
    assert ended == kind
    assert "".join(deltas) == ("散歩道は…" if kind is None else "散歩道は")  # all the text yielded before the end
    result = chat_stream.result
    assert (result.tokens_in, result.tokens_out) == tokens
    assert result.seconds > 0


def test_a_stream_closed_part_way_leaves_its_tokens_unknown(openai_server: FakeServer) -> None:
    openai_server.script = [StreamReply(deltas=["散歩", "道は", "…"], stall_after=2)]
    with open_stream(openai_server, seconds=60, STREAM_STALL_SECONDS="30") as chat_stream:
        assert next(chat_stream) == "散歩"
    result = chat_stream.result
    assert (result.tokens_in, result.tokens_out, result.finish_reason) == (None, None, None)
    assert result.seconds > 0
