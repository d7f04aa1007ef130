"""Splitting Markdown for Slack: examples on exact output, and properties over generated text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.slack import markdown
from chalicelib.slack.markdown import MAX_MARKDOWN_CHARS, closing_fence, open_fence, split


def assert_split_of(text: str, pieces: list[str]) -> None:
    """Each piece is ``[reopening line] + a run of text + [closing line]``: the runs, in order,
    make up ``text``, and the only additions are fence lines. A piece ends with a closing line
    exactly when the next starts with a reopening line, and that line is the fence left open by
    the piece as it renders (its own reopening line included).

    The pieces alone can be ambiguous (a closing line may also be text of the original), so the
    runs are matched against ``text``, trying both readings where a piece may end in a fence.
    """

    # A search over (piece index, position in text, fence carried into the piece); a stack, not
    # recursion, as a split with a small limit has thousands of pieces.
    stack: list[tuple[int, int, str | None]] = [(0, 0, None)]
    seen: set[tuple[int, int, str | None]] = set()
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        seen.add(state)
        i, position, carried = state
        if i == len(pieces):
            if position == len(text) and carried is None:
                return
            continue
        prefix = "" if carried is None else carried + "\n"
        if not pieces[i].startswith(prefix):
            continue
        remainder = pieces[i][len(prefix) :]
        readings: list[tuple[str, str | None]] = [(remainder, None)]  # no closing line added
        last_line = remainder.rsplit("\n", 1)[-1]
        if i < len(pieces) - 1 and last_line and remainder != last_line:
            with_newline = remainder[: -len(last_line)]  # the closing line after a run ending in "\n"
            runs = [with_newline]
            if not with_newline[:-1].endswith("\n"):  # or "\n" + the closing line after a run without one
                runs.append(with_newline[:-1])
            for run in runs:
                fence = open_fence(prefix + run)
                if run and fence is not None and closing_fence(fence) == last_line:
                    readings.append((run, fence))
        for run, fence in readings:
            if run and text.startswith(run, position):
                stack.append((i + 1, position + len(run), fence))
    raise AssertionError(f"not a split of the text: {pieces!r}")


def check(text: str, max_chars: int, max_bytes: int | None = None) -> list[str]:
    pieces = split(text, max_chars, max_bytes)
    assert all(pieces), "an empty piece"
    assert all(len(piece) <= max_chars for piece in pieces)
    if max_bytes is not None:
        assert all(len(piece.encode()) <= max_bytes for piece in pieces)
    assert_split_of(text, pieces)
    return pieces


# --- examples ---


def test_short_text_is_one_piece_and_empty_text_none() -> None:
    assert split("hello", 10) == ["hello"]
    assert split("", 10) == []
    assert split("a" * 10, 10) == ["a" * 10]


def test_cuts_at_a_paragraph_before_a_newline_before_a_space() -> None:
    text = "one two\nthree four\n\nfive six seven"
    assert check(text, 24) == ["one two\nthree four\n\n", "five six seven"]
    text = "one two three\nfour five six"
    assert check(text, 20) == ["one two three\n", "four five six"]
    assert check("one two three four five", 10) == ["one two ", "three ", "four five"]
    assert check("abcdefghijklmnopqrstuvwxy", 10) == ["abcdefghij", "klmnopqrst", "uvwxy"]


def test_a_break_is_not_taken_if_it_leaves_the_piece_under_half_full() -> None:
    text = "ab\n\n" + "c" * 30
    assert check(text, 20) == ["ab\n\n" + "c" * 16, "c" * 14]


def test_japanese_text_without_spaces_is_cut_after_a_sentence_and_kept_whole() -> None:
    sentence = "今日は代々木公園を散歩しましょう。"  # 17 characters, 51 UTF-8 bytes
    text = sentence * 2000
    pieces = check(text, MAX_MARKDOWN_CHARS, 9000)
    assert [len(piece) for piece in pieces[:-1]] == [176 * len(sentence)] * 11
    assert all(piece.endswith("。") for piece in pieces)
    assert "".join(pieces) == text
    # No punctuation at all: cut exactly at the byte budget (3 bytes a character).
    assert [len(p) for p in check("あ" * 7000, MAX_MARKDOWN_CHARS, 9000)] == [3000, 3000, 1000]


def test_a_long_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "".join(f"print({i})\n" for i in range(3000))
    text = f"Here is the script:\n\n```python\n{code}```\n\nRun it with `python x.py`."
    pieces = check(text, MAX_MARKDOWN_CHARS)
    assert len(pieces) == 3
    assert pieces[0].startswith("Here is the script:\n\n```python\nprint(0)\n")
    assert pieces[0].endswith("\nprint(1088)\n```")
    assert pieces[1].startswith("```python\nprint(1089)\n")
    assert pieces[1].endswith("\nprint(2086)\n```")
    assert pieces[2] == "```python\n" + "".join(f"print({i})\n" for i in range(2087, 3000)) + (
        "```\n\nRun it with `python x.py`."
    )
    assert all(open_fence(piece) is None for piece in pieces)  # each renders with its fences closed


def test_a_code_line_longer_than_a_piece_is_cut_mid_line_and_still_reopened() -> None:
    text = "~~~js\n" + "x" * 50 + "\n~~~"
    pieces = check(text, 30)
    assert pieces[0] == "~~~js\n" + "x" * 20 + "\n~~~"
    assert all(piece.startswith("~~~js\n") for piece in pieces)
    assert all(open_fence(piece) is None for piece in pieces)


def test_a_code_block_that_fits_in_the_next_piece_is_not_cut() -> None:
    text = "A paragraph.\n" + "b" * 40 + "\n\n```sh\nls -l\ncd /tmp\n```\n\nEnd."
    assert check(text, 70) == ["A paragraph.\n" + "b" * 40 + "\n\n", "```sh\nls -l\ncd /tmp\n```\n\nEnd."]


def test_a_table_is_cut_only_when_nothing_better_is_in_reach() -> None:
    intro = "An introduction, long enough.\n"
    table = "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n"
    assert check(intro + table + "after", 60) == [intro, table + "after"]


def test_limits_count_the_added_fence_lines() -> None:
    text = "```python\n" + "\n".join("y = 1" for _ in range(100)) + "\n```"
    for limit in (20, 21, 33, 100):
        pieces = check(text, limit)
        assert all(piece.startswith("```python\n") for piece in pieces)
        assert max(len(piece) for piece in pieces) <= limit


def test_longer_fences_and_tildes_close_with_their_own_marker() -> None:
    text = "````md\n```python\nx = 1\n```\n" + "z\n" * 40 + "````"
    pieces = check(text, 40)
    assert pieces[0].endswith("\n````")
    assert pieces[1].startswith("````md\n")


def test_a_fence_line_too_long_to_repeat_is_left_open_and_nothing_is_lost() -> None:
    opening = "```" + "x" * 30
    text = opening + "\n" + "code\n" * 20 + "```"
    pieces = check(text, 35)
    assert pieces[0].startswith(opening)
    assert not pieces[1].startswith("```")


def test_a_30000_character_answer_comes_back_whole_in_pieces_slack_accepts() -> None:
    paragraph = (
        "豆香です。東京の散歩道を紹介します。代々木公園は広くて、朝の光がきれいです。"
        "Walking there early is **quiet** and the [park](https://example.com/park) opens at 5:00.\n\n"
    )
    code = "```python\n" + "".join(f"route_{i} = walk('代々木', minutes={i})\n" for i in range(60)) + "```\n\n"
    items = "".join(f"- 散歩道 {i}: 約{i}分\n" for i in range(30)) + "\n"
    text = ""
    while len(text) < 30_000:
        text += paragraph * 5 + code + items
    text = text[:30_000]
    assert len(text) == 30_000
    for max_bytes in (None, 9000):
        pieces = check(text, MAX_MARKDOWN_CHARS, max_bytes)
        assert len(pieces) >= (3 if max_bytes is None else -(-len(text.encode()) // max_bytes))
        for piece in pieces[:-1]:  # each ends at a block boundary, or closes the fence it cut
            assert piece.endswith(("\n\n", "```\n", "\n```")), piece[-40:]
        assert all(open_fence(piece) is None for piece in pieces[:-1])


def test_open_fence() -> None:
    assert open_fence("text\n```python\nx = 1\n") == "```python"
    assert open_fence("```python\nx = 1\n```\n") is None
    assert open_fence("```python  \nx") == "```python"  # trailing spaces dropped
    assert open_fence("1. step\n   ```sh\n   ls\n") == "   ```sh"  # inside a list item
    assert open_fence("~~~\n```\nstill code\n") == "~~~"  # backticks do not close tildes
    assert open_fence("````\n```\n") == "````"  # a shorter fence does not close a longer one
    assert open_fence("```\n````\n") is None  # a longer one does
    assert open_fence("```\n``` not a close\n") == "```"
    assert open_fence("inline ```x``` and ```y```\n") is None
    assert open_fence("```x```\n") is None  # a backtick info string may not hold backticks
    assert open_fence("ends with an opening\n```js") == "```js"  # an unfinished last line counts
    assert open_fence("") is None
    assert closing_fence("```python") == "```"
    assert closing_fence("  ~~~~ yaml") == "~~~~"
    with pytest.raises(ValueError):
        closing_fence("python")


def test_limits_too_small_for_one_character_are_refused() -> None:
    with pytest.raises(ValueError):
        split("abc", 0)
    with pytest.raises(ValueError):
        split("abc", 10, 3)
    assert check("😀😀", 10, 4) == ["😀", "😀"]


# --- properties ---

# Text that exercises the fences: whole fence lines of every kind mixed with short runs of
# characters that matter (newlines, spaces, backticks, tildes, sentence marks, 1-4 byte
# characters), so that fence lines are cut, split across pieces and nested.
fence_lines = st.sampled_from(
    ["```", "```python", "````", "````md", "~~~", "~~~ js", "  ```sh", "```x```", "```  ", "\r"]
)
fragments = st.text(alphabet="ab `~\n\n。é日😀|-", max_size=30)
markdown_texts = st.lists(st.one_of(fence_lines, fragments), max_size=40).map("\n".join)


@settings(max_examples=300, deadline=None)
@given(text=markdown_texts, max_chars=st.integers(1, 120), max_bytes=st.none() | st.integers(4, 300))
def test_property_pieces_keep_to_the_limits_and_give_the_text_back(
    text: str, max_chars: int, max_bytes: int | None
) -> None:
    check(text, max_chars, max_bytes)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=400), max_chars=st.integers(1, 80), max_bytes=st.none() | st.integers(4, 200))
def test_property_any_unicode_text(text: str, max_chars: int, max_bytes: int | None) -> None:
    check(text, max_chars, max_bytes)


@settings(max_examples=100, deadline=None)
@given(text=markdown_texts, max_chars=st.integers(40, 200))
def test_property_with_room_for_the_fences_every_piece_but_the_last_renders_closed(text: str, max_chars: int) -> None:
    # The fence lines above are at most 9 characters, so every fence can be carried over.
    pieces = check(text, max_chars)
    assert all(open_fence(piece) is None for piece in pieces[:-1])


def test_text_that_fits_is_returned_as_is() -> None:
    text = "```python\nunclosed"
    assert split(text, len(text)) == [text]
    assert markdown.split(text, 100, 100) == [text]
