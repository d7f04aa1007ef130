"""devkit.stand_in_model: the labelled, deterministic answers of `make demo`'s stand-in model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devkit import stand_in_model
from devkit.stand_in_model import LABEL, answer

SYSTEM = {"role": "system", "content": "美少女キャラとしてフレンドリーに話してください。"}


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": f"<@U2147483697>: {text}"}  # as chalicelib.slack.history writes a turn


def test_a_first_question_is_labelled_and_quoted_without_its_author() -> None:
    text = answer([SYSTEM, user("東京でおすすめの散歩道は？")])

    assert text.startswith(LABEL + "\n")
    assert "You asked: 「東京でおすすめの散歩道は？」 (13 characters)." in text
    assert "<@U2147483697>" not in text
    assert "remember" not in text  # nothing earlier to remember


def test_a_follow_up_counts_the_thread_and_quotes_its_first_question() -> None:
    chat = [
        SYSTEM,
        user("鎌倉でおすすめの散歩道は？"),
        {"role": "assistant", "content": LABEL + "\n\nYou asked: ..."},
        user("その近くでランチするならどこ？"),
    ]

    text = answer(chat)

    assert text.startswith(LABEL)
    assert "You asked: 「その近くでランチするならどこ？」" in text
    assert "I remember this thread: 2 earlier messages (1 from you, 1 from me)." in text
    assert "It began with 「鎌倉でおすすめの散歩道は？」." in text


def test_the_answer_depends_only_on_the_chat() -> None:
    chat = [SYSTEM, user("a"), {"role": "assistant", "content": "b"}, user("c")]

    assert answer(chat) == answer(json.loads(json.dumps(chat)))
    assert answer(chat) != answer([SYSTEM, user("c")])


@pytest.mark.parametrize(
    ("chat", "expected"),
    [
        ([SYSTEM], "You asked nothing in words"),
        ([SYSTEM, {"role": "user", "content": [{"type": "text", "text": "parts"}, {"type": "image_url"}]}], "「parts"),
        ([SYSTEM, {"role": "user", "content": "x" * 100}], "「" + "x" * 59 + "…」 (100 characters)"),
        ([SYSTEM, {"role": "user", "content": "two\nlines"}], "「two lines」"),
        ([SYSTEM, user("q"), {"role": "assistant", "content": "a"}], "I remember this thread: 2 earlier messages"),
        (["not a message", {"role": "tool", "content": "ignored"}, user("q")], "You asked: 「q」"),
    ],
)
def test_odd_chats_still_get_a_labelled_answer(chat: list[Any], expected: str) -> None:
    text = answer(chat)

    assert text.startswith(LABEL)
    assert expected in text


def received(body: object, path: str = "/v1/chat/completions") -> stand_in_model.Received:
    return stand_in_model.Received(path, {}, json.dumps(body).encode() if not isinstance(body, bytes) else body)


def test_a_streamed_request_gets_the_answer_in_paced_deltas() -> None:
    chat = [SYSTEM, user("東京でおすすめの散歩道は？")]

    reply = stand_in_model.respond(received({"model": "m", "messages": chat, "stream": True}))

    assert isinstance(reply, stand_in_model.StreamReply)
    assert "".join(reply.deltas) == answer(chat)
    assert len(reply.deltas) > 3  # the thread can show the text growing
    assert 0 < reply.delay * len(reply.deltas) <= 3  # paced, yet quick
    assert reply.model == stand_in_model.MODEL_NAME


def test_a_request_without_stream_gets_the_answer_whole() -> None:
    chat = [SYSTEM, user("q")]

    reply = stand_in_model.respond(received({"model": "m", "messages": chat}))

    assert isinstance(reply, stand_in_model.Reply)
    assert reply.status == 200
    assert isinstance(reply.body, dict)
    assert reply.body["choices"][0]["message"]["content"] == answer(chat)


@pytest.mark.parametrize(
    ("request_body", "path", "status"),
    [
        (b"not json", "/v1/chat/completions", 400),
        ({"model": "m"}, "/v1/chat/completions", 400),
        ({"model": "m", "messages": []}, "/v1/embeddings", 404),
    ],
)
def test_anything_else_gets_an_openai_style_error(request_body: object, path: str, status: int) -> None:
    reply = stand_in_model.respond(received(request_body, path))

    assert isinstance(reply, stand_in_model.Reply)
    assert reply.status == status
    assert isinstance(reply.body, dict) and reply.body["error"]["message"]


def test_a_failure_is_a_rate_limit_the_sdk_does_not_retry() -> None:
    reply = stand_in_model.failure()

    assert reply.status == 429
    assert isinstance(reply.body, dict) and reply.body["error"]["code"] == "rate_limit_exceeded"
    assert reply.headers == {"x-should-retry": "false"}
    assert stand_in_model.failure().headers is not reply.headers  # each failure is its own
