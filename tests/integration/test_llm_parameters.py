"""Parameters a model or an OpenAI-compatible server refuses: left out, asked again once, remembered.

The fake refuses as OpenAI does (``unsupported_parameter``, ``unsupported_value``, naming the
parameter in ``error.param``) or as some compatible servers do ("Unrecognized request argument
supplied: <name>"); see ``devkit.fake_openai.rejecting``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chalicelib import llm
from chalicelib.deadline import Deadline
from devkit.fake_openai import REJECTION_STYLES, StreamReply, echo_llm, rejecting
from devkit.http_fake import FakeServer, Received, Reply
from tests.conftest import OPENAI_KEY
from tests.integration.test_llm import CHAT, read_all, settings_for

ANSWER = "**Answer** to: 散歩道は？"  # what the echo says to CHAT
Handler = Callable[[Received], Reply | StreamReply]


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], FakeServer]]:
    """Start a fake OpenAI whose default handler is the one given."""
    servers: list[FakeServer] = []

    def start(handler: Handler) -> FakeServer:
        server = FakeServer(handler).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def answer(server: FakeServer, seconds: float = 20, **overrides: object) -> tuple[str, llm.StreamResult]:
    """Stream CHAT and read it all; the text and the StreamResult. An LLMError propagates."""
    settings = settings_for(server, **overrides)
    chat_stream = llm.stream(CHAT, settings, OPENAI_KEY, Deadline.in_seconds(seconds))
    deltas, kind = read_all(chat_stream)
    assert kind is None
    return "".join(deltas), chat_stream.result


def failure(server: FakeServer, **overrides: object) -> str:
    """The kind of the LLMError that ``llm.stream`` raises: refused before the stream began."""
    with pytest.raises(llm.LLMError) as error:
        answer(server, **overrides)
    assert not error.value.mid_stream
    return error.value.kind


def bodies(server: FakeServer) -> list[dict[str, Any]]:
    return [received.json() for received in server.received]


def refused(code: str | None, param: str | None, message: str = "refused") -> Reply:
    return Reply(400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}})


def warnings_naming(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "chalicelib.llm" and r.levelno == logging.WARNING and name in r.getMessage()
    ]


@pytest.mark.parametrize("style", REJECTION_STYLES)
def test_a_refused_temperature_is_left_out_asked_again_and_remembered(
    serve: Callable[[Handler], FakeServer], caplog: pytest.LogCaptureFixture, style: str
) -> None:
    server = serve(rejecting("temperature", style))
    assert answer(server)[0] == ANSWER
    first, second = bodies(server)
    assert first["temperature"] == 0.9 and "temperature" not in second
    assert {k: v for k, v in first.items() if k != "temperature"} == second  # nothing else changed
    # One WARNING names it, without the request's body (the question is not in it).
    assert len(warnings_naming(caplog, "temperature")) == 1
    assert "散歩道" not in caplog.text and "be brief" not in caplog.text
    # The container remembers: the next request leaves it out at once, and says nothing more.
    assert answer(server)[0] == ANSWER
    assert len(server.received) == 3 and "temperature" not in bodies(server)[2]
    assert len(warnings_naming(caplog, "temperature")) == 1


@pytest.mark.parametrize("style", REJECTION_STYLES)
def test_a_refused_max_completion_tokens_is_sent_as_max_tokens(
    serve: Callable[[Handler], FakeServer], caplog: pytest.LogCaptureFixture, style: str
) -> None:
    server = serve(rejecting("max_completion_tokens", style))
    assert answer(server, MAX_OUTPUT_TOKENS="300")[0] == ANSWER
    assert answer(server, MAX_OUTPUT_TOKENS="300")[0] == ANSWER
    first, second, third = bodies(server)
    assert first["max_completion_tokens"] == 300 and "max_tokens" not in first
    for later in (second, third):  # the cap holds, under its older name
        assert later["max_tokens"] == 300 and "max_completion_tokens" not in later
        assert later["temperature"] == 0.9
    assert len(warnings_naming(caplog, "max_completion_tokens")) == 1


@pytest.mark.parametrize("style", REJECTION_STYLES)
def test_a_refused_stream_options_leaves_the_usage_unknown(
    serve: Callable[[Handler], FakeServer], caplog: pytest.LogCaptureFixture, style: str
) -> None:
    server = serve(rejecting("stream_options", style))
    text, result = answer(server)
    assert text == ANSWER and result.finish_reason == "stop"
    assert (result.tokens_in, result.tokens_out) == (None, None)
    first, second = bodies(server)
    assert first["stream_options"] == {"include_usage": True}
    assert "stream_options" not in second and second["stream"] is True
    assert len(warnings_naming(caplog, "stream_options")) == 1


def test_a_parameter_named_inside_another_drops_the_outer_one(serve: Callable[[Handler], FakeServer]) -> None:
    server = serve(echo_llm)
    server.script = [refused("unsupported_parameter", "stream_options.include_usage")]
    text, result = answer(server)
    assert text == ANSWER and result.tokens_in is None
    assert "stream_options" not in bodies(server)[1]


def test_several_unrecognized_arguments_are_left_out_together(serve: Callable[[Handler], FakeServer]) -> None:
    server = serve(echo_llm)
    server.script = [refused(None, None, "Unrecognized request arguments supplied: stream_options, temperature")]
    assert answer(server)[0] == ANSWER
    second = bodies(server)[1]
    assert "stream_options" not in second and "temperature" not in second and second["max_completion_tokens"] == 2048


def test_both_caps_refused_is_an_error_never_a_request_without_a_cap(serve: Callable[[Handler], FakeServer]) -> None:
    server = serve(rejecting("max_completion_tokens", otherwise=rejecting("max_tokens")))
    assert failure(server) == "service_error"
    assert failure(server) == "service_error"  # max_tokens at once, refused, not dropped
    assert [("max_completion_tokens" in b, "max_tokens" in b) for b in bodies(server)] == [
        (True, False),
        (False, True),
        (False, True),
    ]


@pytest.mark.parametrize("param", ["model", "messages", "stream"])
@pytest.mark.parametrize("style", REJECTION_STYLES)
def test_the_model_the_messages_and_stream_are_never_dropped(
    serve: Callable[[Handler], FakeServer], param: str, style: str
) -> None:
    server = serve(rejecting(param, style))
    assert failure(server) == "service_error"
    assert len(server.received) == 1


@pytest.mark.parametrize(
    "reply",
    [
        refused("unsupported_parameter", "top_p"),  # not a parameter we sent
        refused("unsupported_value", None),  # names nothing
        refused("invalid_request_error", "temperature"),  # a bad request, but no refusal of a parameter
        refused(None, None, "Unrecognized request argument supplied: top_p"),
    ],
    ids=["unsent", "unnamed", "other_code", "unsent_unrecognized"],
)
def test_a_400_that_refuses_nothing_we_sent_is_an_error(serve: Callable[[Handler], FakeServer], reply: Reply) -> None:
    server = serve(echo_llm)
    server.script = [reply]
    assert failure(server) == "service_error"
    assert len(server.received) == 1
    assert answer(server)[0] == ANSWER and bodies(server)[1] == bodies(server)[0]  # nothing was learnt


@pytest.mark.parametrize("second", ["max_completion_tokens", "stream_options"])
def test_a_request_is_asked_again_only_once(serve: Callable[[Handler], FakeServer], second: str) -> None:
    # Refused twice, for two parameters: no third request now, but the next answer needs one request.
    server = serve(rejecting("temperature", otherwise=rejecting(second, "unsupported_value")))
    assert failure(server) == "service_error"
    assert len(server.received) == 2
    assert answer(server)[0] == ANSWER
    assert len(server.received) == 3
    assert "temperature" not in bodies(server)[2] and second not in bodies(server)[2]


def test_the_second_ask_keeps_to_the_deadline(serve: Callable[[Handler], FakeServer]) -> None:
    # The refusal comes 1.5 s into a 2.2 s deadline: too little is left to ask again.
    server = serve(echo_llm)
    late_refusal = refused("unsupported_value", "temperature")
    late_refusal.delay = 1.5
    server.script = [late_refusal]
    deadline = Deadline.in_seconds(2.2)
    with pytest.raises(llm.LLMError) as error:
        llm.stream(CHAT, settings_for(server), OPENAI_KEY, deadline)
    assert (error.value.kind, error.value.mid_stream) == ("timeout", False)
    assert len(server.received) == 1 and time.monotonic() < deadline.expires_at
    assert answer(server)[0] == ANSWER  # learnt all the same: the next request leaves it out
    assert "temperature" not in bodies(server)[1]


def test_refusals_are_remembered_per_base_url_and_model(serve: Callable[[Handler], FakeServer]) -> None:
    refusing = serve(rejecting("temperature", "unsupported_value"))
    other_server = serve(echo_llm)
    answer(refusing, OPENAI_MODEL="gpt-reasoning")
    answer(refusing, OPENAI_MODEL="gpt-chat")  # another model: sent, refused, learnt for it too
    answer(other_server, OPENAI_MODEL="gpt-reasoning")  # another endpoint: sent, taken
    assert ["temperature" in b for b in bodies(refusing)] == [True, False, True, False]
    assert bodies(other_server)[0]["temperature"] == 0.9


def test_reset_forgets_the_refusals(serve: Callable[[Handler], FakeServer]) -> None:
    server = serve(rejecting("temperature", "unsupported_value"))
    answer(server)
    llm.reset_rejected_parameters()  # a new container
    answer(server)
    assert ["temperature" in b for b in bodies(server)] == [True, False, True, False]


def test_many_answers_at_once_learn_a_refusal_once(
    serve: Callable[[Handler], FakeServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(rejecting("temperature", "unsupported_value"))
    texts: list[str] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        texts.append(answer(server)[0])

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert texts == [ANSWER] * 8
    assert 9 <= len(server.received) <= 16  # each asks at most twice
    assert len(warnings_naming(caplog, "temperature")) == 1
    answer(server)
    assert "temperature" not in bodies(server)[-1]
