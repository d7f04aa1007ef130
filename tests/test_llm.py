"""The LLM seam: the real openai SDK over real HTTP to a local OpenAI-compatible server."""

from __future__ import annotations

import email.utils
import socket
import time

import pytest

from chalicelib import llm
from chalicelib.deadline import Deadline
from chalicelib.settings import Settings
from tests.conftest import OPENAI_KEY
from tests.fakes import FakeServer, Reply, chat_completion, openai_error

FAST_RETRY = {"retry-after-ms": "10"}  # keeps the SDK's retries quick in tests


def settings_for(server: FakeServer, **overrides: object) -> Settings:
    return Settings.from_env({"OPENAI_BASE_URL": server.url + "/v1", **{k: str(v) for k, v in overrides.items()}})


def ask(server: FakeServer, question: str = "hi", seconds: float = 20, **overrides: object) -> llm.Answer:
    return llm.ask(question, settings_for(server, **overrides), OPENAI_KEY, Deadline.in_seconds(seconds))


def kind_of_failure(server: FakeServer, seconds: float = 20, **overrides: object) -> str:
    with pytest.raises(llm.LLMError) as error:
        ask(server, seconds=seconds, **overrides)
    return error.value.kind


def test_answer_with_model_and_token_counts(openai_server: FakeServer) -> None:
    answer = ask(openai_server, "散歩道は？", OPENAI_MODEL="gpt-test", OPENAI_TEMPERATURE="0.3")
    assert answer.text == "**Answer** to: 散歩道は？"
    assert (answer.model, answer.tokens_in, answer.tokens_out) == ("fake-model", 11, 7)
    sent = openai_server.received[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    body = sent.json()
    assert body["model"] == "gpt-test" and body["temperature"] == 0.3
    assert body["messages"][0] == {"role": "system", "content": Settings().system_prompt}
    assert body["messages"][1] == {"role": "user", "content": "散歩道は？"}


def test_temperature_none_is_not_sent(openai_server: FakeServer) -> None:
    ask(openai_server, OPENAI_TEMPERATURE="none")
    assert "temperature" not in openai_server.received[0].json()


def test_a_server_error_is_retried_by_the_sdk(openai_server: FakeServer) -> None:
    openai_server.script = [Reply(500, {"error": {"message": "boom"}}, FAST_RETRY)]
    assert ask(openai_server).text == "**Answer** to: hi"
    assert len(openai_server.received) == 2


@pytest.mark.parametrize(
    ("reply", "kind", "attempts"),
    [
        (openai_error(429, "rate_limit_exceeded"), "rate_limited", 3),
        (openai_error(429, "insufficient_quota"), "quota_exhausted", 3),
        (openai_error(401, "invalid_api_key"), "invalid_key", 1),
        (openai_error(400, "context_length_exceeded"), "too_long", 1),
        (openai_error(400, "invalid_request_error"), "service_error", 1),
        (openai_error(404, "model_not_found"), "service_error", 1),
        (openai_error(500, "server_error"), "service_error", 3),
        (Reply(200, "<html>gateway says hi</html>"), "unreadable", 1),
        (Reply(200, {"object": "chat.completion"}), "unreadable", 1),
        (Reply(200, chat_completion("")), "unreadable", 1),
    ],
)
def test_failures_map_to_kinds(openai_server: FakeServer, reply: Reply, kind: str, attempts: int) -> None:
    reply.headers.update(FAST_RETRY)
    openai_server.script = [reply] * 3
    assert kind_of_failure(openai_server) == kind
    assert len(openai_server.received) == attempts


def test_a_slow_answer_times_out_at_the_deadline(openai_server: FakeServer) -> None:
    openai_server.script = [Reply(200, chat_completion("late"), delay=30)] * 3
    started = time.monotonic()
    assert kind_of_failure(openai_server, seconds=3) == "timeout"
    # Bounded well below the server's 30 s even on a busy machine; nothing retried past the deadline.
    assert time.monotonic() - started < 15
    assert len(openai_server.received) == 1


def test_retries_stay_inside_the_deadline(openai_server: FakeServer) -> None:
    openai_server.script = [Reply(500, {}, FAST_RETRY, delay=1.2)] * 10
    started = time.monotonic()
    assert kind_of_failure(openai_server, seconds=2.5) == "service_error"
    assert time.monotonic() - started < 10
    # The first attempt leaves ~1.3 s; a retry would need 1 s of its own: at most two attempts.
    assert len(openai_server.received) <= 2


def test_a_retry_after_beyond_the_deadline_is_not_waited_for(openai_server: FakeServer) -> None:
    openai_server.script = [Reply(429, {"error": {"code": "rate_limit_exceeded"}}, {"retry-after": "60"})] * 3
    started = time.monotonic()
    assert kind_of_failure(openai_server, seconds=10) == "rate_limited"
    assert time.monotonic() - started < 8
    assert len(openai_server.received) == 1


def test_a_retry_after_date_is_not_waited_for(openai_server: FakeServer) -> None:
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)  # the SDK would sleep until then
    openai_server.script = [Reply(429, {"error": {"code": "rate_limit_exceeded"}}, {"retry-after": soon})] * 3
    started = time.monotonic()
    assert kind_of_failure(openai_server, seconds=10) == "rate_limited"
    assert time.monotonic() - started < 8
    assert len(openai_server.received) == 1


def test_no_time_left_means_no_request(openai_server: FakeServer) -> None:
    assert kind_of_failure(openai_server, seconds=0.5) == "timeout"
    assert openai_server.received == []


def test_connection_refused_is_a_service_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before use: nothing listens there
    settings = Settings.from_env({"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"})
    with pytest.raises(llm.LLMError) as error:
        llm.ask("hi", settings, OPENAI_KEY, Deadline.in_seconds(10))
    assert error.value.kind == "service_error"
