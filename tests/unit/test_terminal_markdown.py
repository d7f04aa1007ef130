"""scripts/ask.py's terminal view of the Markdown the bot streams: ``settled`` and ``render_markdown``.

What a thread's answer prints while it streams must never need taking back (a pipe cannot
unprint), and once it is whole it must read as Slack shows it: formatted, not raw Markdown.
"""

from __future__ import annotations

import pytest

from devkit import stand_in_model
from tests.conftest import import_script

ask = import_script("ask")
PLAIN, STYLED = ask.Style(False), ask.Style(True)
SAMPLES = (
    stand_in_model.answer([{"role": "user", "content": "東京でおすすめの散歩道は？"}]),
    "# 東京の散歩道\n\nこれは**太字**です。*斜体*と`code`、~~消し~~。\n\n"
    "1. **谷中**: 下町 :warning: see [the map](https://example.com/a_(b)) & <https://x.y>\n"
    "- snake_case and 2*3*4, x**2\n\n```python\nx = a*b  # `tick`\nprint('**no**')\n```\nafter `code` done\n",
)


def test_markdown_reads_as_slack_shows_it() -> None:
    rendered = ask.render_markdown(SAMPLES[1], PLAIN)

    assert rendered.startswith("東京の散歩道\n\nこれは太字です。斜体と`code`、消し。\n")
    assert "1. 谷中: 下町 ⚠️ see the map (https://example.com/a_(b)) & https://x.y\n" in rendered
    assert "- snake_case and 2*3*4, x**2\n" in rendered  # not emphasis
    assert "│ x = a*b  # `tick`\n│ print('**no**')\n" in rendered  # code as written
    assert "\u200b" not in rendered  # the zero-width spaces that tell Slack where words end


def test_styles_are_the_terminals_when_it_is_one() -> None:
    assert ask.render_markdown("a **b** *c* `d`", STYLED) == "a \033[1mb\033[0m \033[3mc\033[0m \033[36md\033[0m"


def test_the_stand_ins_answer_shows_no_markdown_markers() -> None:
    rendered = ask.render_markdown(SAMPLES[0], PLAIN)

    assert rendered.startswith(stand_in_model.LABEL + "\n")
    assert "- streamed: the text grows" in rendered
    assert "**" not in rendered


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain words, so far", "plain words, so far"),  # nothing can change: all of it, as it grows
        ("a whole line, **bold**\nthen **bo", "a whole line, **bold**\nthen "),  # complete lines whole
        ("a `code", "a "),
        ("see [the", "see "),
        ("a \\", "a "),  # an escape, whose next character decides
        ("so :warn", "so "),  # an emoji code
        ("#", ""),  # a heading
        ("", ""),
    ],
)
def test_a_growing_line_is_shown_up_to_what_may_still_become_formatting(text: str, shown: str) -> None:
    assert ask.settled(text) == shown
    assert ask.settled(text, final=True) == text


@pytest.mark.parametrize("style", [PLAIN, STYLED], ids=["plain", "styled"])
@pytest.mark.parametrize("text", SAMPLES, ids=["stand-in", "llm-like"])
def test_what_is_shown_while_it_streams_is_never_taken_back(text: str, style: object) -> None:
    whole = ask.render_markdown(text, style)
    before = ""
    for end in range(len(text) + 1):  # every point a stream could have reached
        shown = ask.render_markdown(ask.settled(text[:end]), style)
        assert whole.startswith(shown), (end, shown[-40:])
        assert len(shown) >= len(before), end
        before = shown
