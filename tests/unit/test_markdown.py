"""chalicelib.slack.markdown: code fences as it reads them (the cutting itself is tested in
test_stream*), and ``defuse_broadcasts`` on exact output and on properties (deterministic:
derandomize, no example database, no deadline): for any text cut into any pieces, each defused
with what came before it (as written or as sent), the pieces join into the text with a
zero-width space after every ``<`` that a ``!`` follows, and nothing else changed; defusing
again changes nothing."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chalicelib.slack.markdown import closing_fence, defuse_broadcasts, open_fence
from tests.conftest import examples

ZWSP = "\u200b"


def test_open_fence() -> None:
    assert open_fence("text\n```python\nx = 1\n") == "```python"
    assert open_fence("```python\nx = 1\n```\n") is None
    assert open_fence("```python  \nx") == "```python"  # trailing spaces dropped
    assert open_fence("1. step\n   ```sh\n   ls\n") == "   ```sh"  # inside a list item
    assert open_fence("~~~\n```\nstill code\n") == "~~~"  # backticks do not close tildes
    assert open_fence("````\n```\n") == "````"  # a shorter fence does not close a longer one
    assert open_fence("```\n````\n") is None  # a longer one does
    assert open_fence("```\n``` not a close\n") == "```"
    assert open_fence("```\n```  \n") is None  # trailing whitespace still closes
    assert open_fence("inline ```x``` and ```y```\n") is None
    assert open_fence("```x```\n") is None  # a backtick info string may not hold backticks
    assert open_fence("~~~ `x`\n") == "~~~ `x`"  # a tilde fence's may
    assert open_fence("ends with an opening\n```js") == "```js"  # an unfinished last line counts
    assert open_fence("") is None


def test_closing_fence() -> None:
    assert closing_fence("```python") == "```"
    assert closing_fence("  ~~~~ yaml") == "~~~~"
    with pytest.raises(ValueError):
        closing_fence("python")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<!channel> <!here> <!everyone>", f"<{ZWSP}!channel> <{ZWSP}!here> <{ZWSP}!everyone>"),
        (
            "ping <!subteam^S0123|@team> and <!date^1392734382^{date}|x>",
            f"ping <{ZWSP}!subteam^S0123|@team> and <{ZWSP}!date^1392734382^{{date}}|x>",
        ),
        ("<<!here>>", f"<<{ZWSP}!here>>"),
        (
            "```html\n<!DOCTYPE html>\n```",
            f"```html\n<{ZWSP}!DOCTYPE html>\n```",
        ),  # code too: Slack's parser is not ours
        (
            "<@U123> and <@U123|taro> in <#C123|general>, <https://x.com|X>",
            "<@U123> and <@U123|taro> in <#C123|general>, <https://x.com|X>",
        ),
        ("a < b! and !<", "a < b! and !<"),
        ("", ""),
    ],
)
def test_defuse_broadcasts(text: str, expected: str) -> None:
    assert defuse_broadcasts(text) == expected


def test_a_broadcast_split_between_pieces_is_defused_too() -> None:
    assert defuse_broadcasts("!channel> now", previous="hey <") == f"{ZWSP}!channel> now"
    assert defuse_broadcasts("!channel>", previous="<") == f"{ZWSP}!channel>"
    assert defuse_broadcasts("!", previous="a <") == f"{ZWSP}!"
    assert defuse_broadcasts("!yes", previous="< ") == "!yes"  # not adjacent
    assert defuse_broadcasts("@U1>", previous="<") == "@U1>"


PROPERTIES = settings(deadline=None, derandomize=True, database=None, max_examples=examples(300))
texts = st.lists(
    st.sampled_from(["<", "!", "<!", "channel", ">", "@U1", "<@U1>", ZWSP, "x", "\n", "&lt;"]), max_size=40
).map("".join) | st.text(max_size=100)


@PROPERTIES
@given(text=texts, cuts=st.lists(st.integers(0, 200), max_size=12), as_sent=st.booleans())
@example(text="<!", cuts=[1], as_sent=False)
@example(text=f"<{ZWSP}!<!", cuts=[1, 3], as_sent=True)
def test_no_split_lets_a_broadcast_through(text: str, cuts: list[int], as_sent: bool) -> None:
    points = sorted({min(cut, len(text)) for cut in cuts})
    pieces = [text[start:end] for start, end in zip([0, *points], [*points, len(text)], strict=True)]
    sent = ""
    for index, piece in enumerate(pieces):
        previous = sent if as_sent else "".join(pieces[:index])
        defused = defuse_broadcasts(piece, previous)
        assert defuse_broadcasts(defused, previous) == defused
        sent += defused
    assert "<!" not in sent
    assert len(sent) == len(text) + text.count("<!")  # one zero-width space per "<!"
    assert sent.replace(ZWSP, "") == text.replace(ZWSP, "")  # and nothing else
