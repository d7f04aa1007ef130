"""Tables as Slack table blocks and progress as stream chunks, through worker.run against the fakes."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib import worker
from chalicelib.deadline import Deadline
from chalicelib.slack import events, tables
from devkit import slack_requests
from devkit.fake_openai import StreamReply, split_deltas
from devkit.fake_slack_api import FakeSlackAPI
from devkit.http_fake import FakeServer
from tests.conftest import response_path, slash_payload

pytestmark = pytest.mark.usefixtures("quick_retries")

CHANNEL = slack_requests.CHANNEL_ID
USER = slack_requests.USER_ID
TABLE = "| 場所 | 距離 |\n|:--|--:|\n| 鎌倉 | `5|6` km |\n| 江ノ島 | 8 km |\n"
WIDE = "| " + " | ".join(f"c{i}" for i in range(21)) + " |\n|" + "---|" * 21 + "\n"
ANSWER = f"おすすめはこちら:\n\n{TABLE}\nどちらも海が見えます。\n\n| a |\n|---|\n| 1 |\n\n{WIDE}"


def ask(body: bytes, env: dict[str, str], slack_api: FakeSlackAPI) -> None:
    slack_api.add_event(body)
    job, _ = events.parse(body)
    assert worker.run(job.to_payload(), Deadline.in_seconds(60), env) is None  # type: ignore[union-attr]


def table_rows(attachments: list[dict[str, Any]]) -> list[list[str]]:
    [attachment] = attachments
    [block] = attachment["blocks"]
    assert block["type"] == "table"
    cells = []
    for row in block["rows"]:
        texts = []
        for cell in row:
            if cell["type"] == "raw_text":
                texts.append(cell["text"])
            else:
                texts.append("".join(part["text"] for part in cell["elements"][0]["elements"]))
        cells.append(texts)
    return cells


def test_a_streamed_answers_tables_follow_it_as_table_messages_in_order(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    openai_server.script = [StreamReply(split_deltas(ANSWER, 23))]
    ts = slack_requests.new_ts()
    ask(slack_requests.mention_event("海の近くの散歩道は？", ts=ts), conversation_env, slack_api)

    answer, first, second = slack_api.bot_messages(CHANNEL, ts)
    # The stream never carried a table's lines; a pointer stands where each was, and a table
    # beyond Slack's 20 cells a row stays in the text as code.
    [wide] = [piece for piece in tables.Splitter().feed(WIDE + "\n") if isinstance(piece, tables.Table)]
    pointer = tables.POINTER_JA  # the answer is in Japanese
    expected = f"おすすめはこちら:\n\n{pointer}\n\nどちらも海が見えます。\n\n{pointer}\n\n{tables.code_block(wide)}"
    assert answer.text.rstrip("\n") == expected.rstrip("\n")
    assert answer.stream == "stopped" and first.ts > answer.ts
    assert table_rows(first.attachments or []) == [["場所", "距離"], ["鎌倉", "5|6 km"], ["江ノ島", "8 km"]]
    assert table_rows(second.attachments or []) == [["a"], ["1"]]
    assert (first.attachments or [{}])[0]["fallback"] == "Table: 場所 | 距離"
    posts = slack_api.calls_to("chat.postMessage")
    assert all(call.ok for call in posts) and len(posts) == 2
    assert slack_api.calls.index(posts[0]) > slack_api.calls.index(slack_api.calls_to("chat.stopStream")[-1])


def test_a_table_slack_refuses_is_posted_as_code_instead(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    openai_server.script = [StreamReply(split_deltas("Here:\n" + TABLE, 5))]
    slack_api.fail_next("chat.postMessage", "invalid_blocks")
    ts = slack_requests.new_ts()
    ask(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)
    answer, table = slack_api.bot_messages(CHANNEL, ts)
    assert answer.text == "Here:\n" + tables.POINTER_JA + "\n"
    assert table.text.startswith("```\n| 場所") and table.attachments is None


def test_a_slash_reply_carries_its_table_in_attachments(
    bot_env: dict[str, str], slack_server: FakeServer, openai_server: FakeServer, capsys
) -> None:
    openai_server.script = [StreamReply(split_deltas(f"Here:\n{TABLE}then\n{TABLE}", 7))]
    path = response_path()
    assert worker.run(slash_payload(slack_server.url + path, "table?"), Deadline.in_seconds(60), bot_env) is None
    [request] = slack_server.requests_to(path)
    assert '"delivered":true' in capsys.readouterr().out  # the fake response_url took it: one table, in attachments
    reply = request.json()
    assert table_rows(reply["attachments"]) == [["場所", "距離"], ["鎌倉", "5|6 km"], ["江ノ島", "8 km"]]
    text = reply["text"]
    assert "| 鎌倉 |" not in text.split("```")[2]  # the first table is out of the text ...
    assert tables.POINTER_JA in text and text.count("```") == 4  # ... the second one is code: one table a message


def test_a_retried_answer_shows_its_retry_as_a_task(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    openai_server.script = [StreamReply(["前半の答え。", "まだ"], break_after=1)]  # then the echo answer
    ts = slack_requests.new_ts()
    ask(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)

    first_stop = slack_api.calls_to("chat.stopStream")[0]
    [retrying] = first_stop.params["chunks"]  # the broken attempt's message says why a new one comes
    assert retrying == {
        "type": "task_update",
        "id": "retry-1",
        "title": "The model's connection dropped: asking again",
        "status": "in_progress",
    }
    [answer] = slack_api.bot_messages(CHANNEL, ts)  # the broken one was deleted
    assert answer.text == f"**Answer** to: <@{USER}>: hi"
    assert answer.task_display_mode == "timeline"
    assert [(c["id"], c["status"]) for c in answer.chunks if c["type"] == "task_update"] == [("retry-1", "complete")]


def test_a_retry_that_fails_too_is_marked_as_an_error(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    # The first attempt breaks after some text, the second before any, the third answers.
    openai_server.script = [StreamReply(["前半の答え。", "まだ"], break_after=1), StreamReply(["x"], break_after=0)]
    ts = slack_requests.new_ts()
    env = {**conversation_env, "TASK_DISPLAY_MODE": "plan"}
    ask(slack_requests.mention_event("hi", ts=ts), env, slack_api)
    [answer] = slack_api.bot_messages(CHANNEL, ts)
    assert answer.text == f"**Answer** to: <@{USER}>: hi"
    assert answer.task_display_mode == "plan"
    updates = [(c["id"], c["status"], c["title"]) for c in answer.chunks if c["type"] == "task_update"]
    # The answer's message shows the whole timeline, though the first retry's was on a message now deleted.
    assert updates == [
        ("retry-1", "error", "The model's connection dropped: asking again"),
        ("retry-2", "complete", "The model's connection dropped: asking again"),
    ]


def test_a_plain_answer_sends_no_chunks(conversation_env: dict[str, str], slack_api: FakeSlackAPI) -> None:
    ts = slack_requests.new_ts()
    ask(slack_requests.mention_event("hi", ts=ts), conversation_env, slack_api)
    for call in slack_api.calls:
        assert "chunks" not in call.params, call.method
    [start] = slack_api.calls_to("chat.startStream")
    assert start.params["task_display_mode"] == "timeline"


@pytest.mark.parametrize(("earlier", "shown"), [(21, True), (20, False)])
def test_a_long_thread_read_is_a_completed_task_on_the_first_stream_call(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, earlier: int, shown: bool
) -> None:
    root = slack_api.add_message(CHANNEL, "root")
    for index in range(earlier - 1):
        slack_api.add_message(CHANNEL, f"reply {index}", thread_ts=root)
    ask(slack_requests.mention_event("latest", thread_ts=root), conversation_env, slack_api)
    [start] = slack_api.calls_to("chat.startStream")
    expected = [
        {"type": "task_update", "id": "thread", "title": f"Read {earlier} earlier messages", "status": "complete"}
    ]
    assert start.params.get("chunks") == (expected if shown else None)


def test_a_posted_table_is_history_for_the_next_question(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    root = slack_api.add_message(CHANNEL, "海の近くの散歩道は？")
    openai_server.script = [StreamReply(split_deltas("こちら:\n" + TABLE, 4))]
    ask(slack_requests.mention_event("海の近くの散歩道は？", ts=root), conversation_env, slack_api)
    ask(slack_requests.mention_event("2行目は？", thread_ts=root), conversation_env, slack_api)
    chat = openai_server.requests_to("/v1/chat/completions")[1].json()["messages"]
    assistant = [message["content"] for message in chat if message["role"] == "assistant"]
    assert assistant == [
        f"こちら:\n{tables.POINTER_JA}",
        "| 場所 | 距離 |\n|---|---|\n| 鎌倉 | `5\\|6` km |\n| 江ノ島 | 8 km |",
    ]
