"""Message formatting: pure functions, checked on exact output."""

from __future__ import annotations

import subprocess
import sys

from chalicelib.slack import messages
from tests.conftest import ROOT


def test_answer_is_question_in_code_block_then_answer() -> None:
    message = messages.answer("散歩道は？", "**代々木公園**がおすすめだよ！", "in_channel")
    assert message == {"response_type": "in_channel", "text": "```散歩道は？```\n*代々木公園*\u200bがおすすめだよ！"}


def test_user_text_is_escaped_and_cannot_close_the_code_block() -> None:
    assert messages.code_block("a < b && ```x```") == "```a &lt; b &amp;&amp; `\u200b``x`\u200b`````"


def test_long_answers_are_cut_below_slacks_limit() -> None:
    text = messages.answer("q", "あ" * 50_000, "ephemeral")["text"]
    assert len(text) <= messages.MAX_TEXT_CHARS
    assert text.endswith(messages.TRUNCATED)


def test_every_error_kind_has_plain_words_and_unknown_kinds_fall_back() -> None:
    for kind, text in messages.ERROR_TEXTS.items():
        message = messages.error(kind)
        assert message == {"response_type": "ephemeral", "text": ":warning: " + text}
        assert "Error" not in text and "Traceback" not in text
    assert messages.error("no-such-kind") == messages.error("service_error")


def test_ack_usage_and_too_long_are_ephemeral() -> None:
    assert messages.acknowledgement("hi")["text"].endswith("```hi```")
    assert messages.usage("/ask")["text"].endswith("`/ask 東京でおすすめの散歩道は？`")
    assert messages.too_long(4001, 4000)["text"].startswith(
        "Your question is 4,001 characters long; the limit is 4,000."
    )
    for message in (messages.acknowledgement("hi"), messages.usage("/ask"), messages.too_long(2, 1)):
        assert message["response_type"] == "ephemeral"


def test_a_long_question_is_echoed_in_part_so_the_answer_fits() -> None:
    text = messages.answer("&" * 7000, "the answer", "ephemeral")["text"]
    assert text.endswith("\nthe answer")
    assert text.startswith("```" + "&amp;" * messages.MAX_ECHOED_QUESTION_CHARS + "…```")


def test_an_answer_cut_at_the_length_limit_ends_with_one_line_saying_so() -> None:
    message = messages.answer("散歩道は？", "**代々木公園**がおすす", "in_channel", "length")
    assert message == {
        "response_type": "in_channel",
        "text": "```散歩道は？```\n*代々木公園*\u200bがおすす\n…(the answer reached the length limit and was cut here)",
    }
    for finish_reason in ("stop", None, "a_reason_from_2027"):
        assert messages.answer("q", "a", "ephemeral", finish_reason)["text"] == "```q```\na"
    # The content filter's stop is never shown as a complete answer.
    filtered = messages.answer("q", "a", "ephemeral", "content_filter")["text"]
    assert filtered.startswith("```q```\na\n…") and "content filter" in filtered


def test_an_answer_cut_inside_a_code_block_has_the_block_closed_before_the_line() -> None:
    text = messages.answer("q", "Try:\n```python\nif a < b:\n    pri", "ephemeral", "length")["text"]
    assert text == "```q```\nTry:\n```python\nif a &lt; b:\n    pri\n```" + messages.LENGTH_LIMITED


def test_an_answer_cut_at_the_length_limit_and_too_long_for_slack_gets_one_line() -> None:
    text = messages.answer("q", "あ" * 50_000, "ephemeral", "length")["text"]
    assert len(text) <= messages.MAX_TEXT_CHARS
    assert text.endswith(messages.TRUNCATED) and "length limit" not in text


def test_the_http_function_imports_no_markdown_reader() -> None:
    # It uses this module for acknowledgements only: the Markdown readers are the answer's.
    code = (
        "import sys, chalicelib.gateway; "
        "print(sorted(m for m in ('chalicelib.slack.markdown', 'chalicelib.slack.mrkdwn') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"
