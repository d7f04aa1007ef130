"""devkit's fakes of OpenAI, Lambda and response_url, held to the real clients that talk to them.

The bot's own tests use most of the fake OpenAI's options through chalicelib; these cover
what they do not yet (tool calls, the benchmark's pace, the records behind ``/_stats``, the
process that ``devkit.serve`` runs), so that those options cannot rot unnoticed.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import boto3
import openai
import pytest

from devkit.fake_lambda import fake_lambda, invoked_function
from devkit.fake_openai import StreamReply, ToolCall, answer_text, paced_llm
from devkit.fake_response_url import fake_response_url
from devkit.http_fake import FakeServer, Received
from devkit.serve import Served

CHAT = [{"role": "user", "content": "What is the weather in Tokyo?"}]


pytestmark = pytest.mark.usefixtures("no_proxy")


def client(server: FakeServer) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test-fake-key-not-real", base_url=server.url + "/v1", max_retries=0, timeout=20)


def stream(server: FakeServer, **options: Any) -> list[Any]:
    """Every chunk of one streamed chat completion, through the real openai SDK."""
    with client(server).chat.completions.create(model="fake-model", messages=CHAT, stream=True, **options) as chunks:
        return list(chunks)


def test_a_tool_call_streams_as_openai_streams_it_and_the_sdk_assembles_it(openai_server: FakeServer) -> None:
    arguments = json.dumps({"city": "東京", "unit": "celsius"}, ensure_ascii=False)
    openai_server.script = [
        StreamReply(
            deltas=["Let me check."],
            tool_calls=[ToolCall("get_weather", arguments, pieces=4), ToolCall("get_time", '{"zone": "JST"}')],
            finish_reason="tool_calls",
        )
    ]

    chunks = stream(openai_server)

    calls: dict[int, dict[str, str]] = {}
    text = ""
    for chunk in chunks:
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for call in delta.tool_calls or []:
            seen = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            seen["id"] += call.id or ""
            seen["name"] += (call.function and call.function.name) or ""
            seen["arguments"] += (call.function and call.function.arguments) or ""
    assert text == "Let me check."
    assert calls == {
        0: {"id": "call_0", "name": "get_weather", "arguments": arguments},
        1: {"id": "call_1", "name": "get_time", "arguments": '{"zone": "JST"}'},
    }
    pieces = [
        call.function.arguments
        for chunk in chunks
        for call in (chunk.choices[0].delta.tool_calls or [] if chunk.choices else [])
        if call.index == 0 and call.function and call.function.arguments
    ]
    assert len(pieces) == 4  # the arguments as a model writes them, not whole
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


@pytest.mark.parametrize("asked", [True, False])
def test_usage_comes_as_its_own_last_chunk_only_when_asked(openai_server: FakeServer, asked: bool) -> None:
    openai_server.script = [StreamReply(deltas=["a", "b"], usage=(21, 5))]
    options = {"stream_options": {"include_usage": True}} if asked else {}

    chunks = stream(openai_server, **options)

    with_usage = [c for c in chunks if c.usage is not None]
    if asked:
        assert with_usage == [chunks[-1]] and chunks[-1].choices == []
        assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (21, 5)
    else:
        assert with_usage == []


def test_a_paced_stream_keeps_its_schedule_and_says_when_its_text_went_out(openai_server: FakeServer) -> None:
    reply = StreamReply(deltas=["one ", "two ", "three ", "four"], wait_before=0.3, delay=0.1, jitter=0.3, seed=7)
    openai_server.script = [reply]
    started = time.monotonic()
    arrivals: list[float] = []
    with client(openai_server).chat.completions.create(model="fake-model", messages=CHAT, stream=True) as chunks:
        for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic())

    assert reply.ended.wait(10) and reply.outcome == "done"
    assert reply.sent_text == "one two three four"
    assert reply.first_text_at is not None and reply.first_text_at - started >= 0.3
    # Three gaps of 0.1 s ± 30%, scheduled from the first piece: at least 0.21 s in all, however busy.
    assert len(arrivals) == 4 and arrivals[-1] - arrivals[0] >= 0.21


def test_the_benchmarks_answer_follows_its_tag(openai_server: FakeServer) -> None:
    request = {
        "model": "fake-model",
        "stream": True,
        "messages": [{"role": "user", "content": "[bench chars=500 seed=3 first=0 every=1 delta=8] hi"}],
    }
    reply = paced_llm(Received("/v1/chat/completions", {}, json.dumps(request).encode()))

    assert isinstance(reply, StreamReply)
    assert "".join(reply.deltas) == answer_text(500, 3) and len(answer_text(500, 3)) >= 500
    assert max(len(piece) for piece in reply.deltas) <= 15 and (reply.wait_before, reply.delay) == (0, 0.001)


def test_stats_records_each_answered_request_and_a_reset_forgets_them(openai_server: FakeServer) -> None:
    openai_server.script = [StreamReply(deltas=["x"])]
    stream(openai_server)
    client(openai_server).chat.completions.create(model="fake-model", messages=CHAT)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    with opener.open(openai_server.url + "/_stats?reset=1", timeout=10) as response:
        stats = json.loads(response.read())
    with opener.open(openai_server.url + "/_stats", timeout=10) as response:
        after = json.loads(response.read())

    streamed, whole = stats["requests"]
    assert streamed["path"] == whole["path"] == "/v1/chat/completions"
    assert streamed["text"] == "x" and streamed["outcome"] == "done" and "text" not in whole
    assert streamed["seconds"] > 0 and streamed["bytes"] > 0 and streamed["new_connection"]
    assert after["requests"] == [] and openai_server.received == []


def test_the_fake_response_url_answers_as_slack_does() -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def post(body: bytes) -> tuple[int, bytes]:
        try:
            with opener.open(urllib.request.Request(server.url + "/commands/1", data=body), timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    with fake_response_url() as server:
        assert post(b'{"text": "hello"}') == (200, b"ok")
        assert post(b'{"markdown_text": "hello"}') == (400, b"no_text")
        assert post(b"text=hello") == (400, b"invalid_payload")
        table = {"type": "table", "rows": [[{"type": "raw_text", "text": "x"}]]}
        assert post(json.dumps({"text": "t", "attachments": [{"blocks": [table]}]}).encode()) == (200, b"ok")
        two = [{"blocks": [table]}, {"blocks": [table]}]
        assert post(json.dumps({"text": "t", "attachments": two}).encode()) == (400, b"invalid_blocks")
        assert post(json.dumps({"text": "t", "blocks": [table]}).encode()) == (400, b"invalid_blocks")


def test_the_fake_lambda_accepts_an_event_invoke_and_names_the_function() -> None:
    with fake_lambda() as server:
        lam = boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1")
        answer = lam.invoke(FunctionName="mameka-dev-worker", InvocationType="Event", Payload=b"{}")

    assert answer["StatusCode"] == 202
    [request] = server.received
    assert invoked_function(request.path) == "mameka-dev-worker"
    assert invoked_function("/v1/chat/completions") is None


def test_served_fakes_run_in_their_own_process_and_report_what_they_served() -> None:
    with Served("openai-instant") as served:
        url = served.urls["openai-instant"]
        answer = openai.OpenAI(api_key="sk-test-fake-key-not-real", base_url=url + "/v1", max_retries=0, timeout=20)
        text = answer.chat.completions.create(model="fake-model", messages=CHAT).choices[0].message.content
        stats = served.stats("openai-instant", reset=True)
        process = served.process

    assert text == "x"
    assert [request["path"] for request in stats["requests"]] == ["/v1/chat/completions"]
    assert process.poll() == 0
