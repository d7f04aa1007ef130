"""Pipe tables out of an answer's text, as they stream, and Slack's table block for them."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chalicelib.slack import tables
from chalicelib.slack.tables import Splitter, Table, TableRouter, code_block, one_message, split_cells, table_block
from tests.conftest import examples

TABLE = "| 名前 | 値 |\n|:--|--:|\n| a | 1 |\n| `x|y` | 2 \\| 3 |\n"


def split(text: str, cuts: list[int] | None = None) -> list[str | Table]:
    splitter = Splitter()
    points = sorted({min(cut, len(text)) for cut in (cuts if cuts is not None else range(len(text)))})
    pieces: list[str | Table] = []
    for start, end in zip([0, *points], [*points, len(text)], strict=True):
        pieces += splitter.feed(text[start:end])
    pieces += splitter.end()
    merged: list[str | Table] = []
    for piece in pieces:  # the splitter merges within one call only
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    return merged


def joined(pieces: list[str | Table]) -> str:
    return "".join(piece if isinstance(piece, str) else piece.source for piece in pieces)


def test_a_table_between_paragraphs_is_taken_out_whole() -> None:
    text = f"Here you go:\n\n{TABLE}\nThat is all.\n"
    pieces = split(text)
    assert pieces == ["Here you go:\n\n", pieces[1], "\nThat is all.\n"]
    table = pieces[1]
    assert isinstance(table, Table)
    assert table.source == TABLE
    assert table.header == ("名前", "値")
    assert table.align == ("left", "right")
    assert table.rows == (("a", "1"), ("`x|y`", "2 | 3"))  # a pipe in code or escaped is no cell border


@pytest.mark.parametrize(
    ("line", "cells"),
    [
        ("| a | b |", ["a", "b"]),
        ("|a|b", ["a", "b"]),
        ("| a | |", ["a", ""]),
        ("| `a|b` | c |", ["`a|b`", "c"]),
        ("| ``a`|b`` | c |", ["``a`|b``", "c"]),
        ("| `open | c |", ["`open", "c"]),  # an unclosed backtick is a backtick
        ("| a \\| b |", ["a | b"]),
        ("| a \\|", ["a |"]),
        ("not a row", None),
        ("|", None),
    ],
)
def test_split_cells(line: str, cells: list[str] | None) -> None:
    assert split_cells(line) == cells


@pytest.mark.parametrize(
    "text",
    [
        "| a | b |\n|---|\n| 1 | 2 |\n",  # the delimiter row has fewer cells than the header
        "| a | b |\n| 1 | 2 |\n",  # no delimiter row
        "| a |\n|-x-|\n",
        "    | a |\n    |---|\n",  # indented four spaces: code, not a table
        "a | b\n--|--\n",  # no leading pipe: left as text
        "```\n| a |\n|---|\n```\n",  # inside a code fence
        "~~~md\n| a |\n|---|\n",  # inside a fence never closed
        "| a |",  # a header at the very end, with no delimiter row
    ],
)
def test_what_is_not_a_table_stays_text(text: str) -> None:
    assert split(text) == [text]


def test_rows_are_fitted_to_the_header_and_the_table_ends_at_the_first_other_line() -> None:
    pieces = split("| a | b |\n| - | - |\n| 1 |\n| 1 | 2 | 3 |\n   | 4 | 5 |\nnext\n| 6 |\n")
    table = pieces[0]
    assert isinstance(table, Table)
    assert table.rows == (("1", ""), ("1", "2"), ("4", "5"))
    assert pieces[1:] == ["next\n| 6 |\n"]


def test_a_table_at_the_end_without_a_newline_is_a_table() -> None:
    pieces = split("x\n| a |\n|---|\n| 1 |")
    assert pieces[0] == "x\n"
    assert isinstance(pieces[1], Table) and pieces[1].rows == (("1",),)
    assert isinstance(split("| a |\n|---|")[0], Table)


def test_a_blank_line_ends_a_table() -> None:
    pieces = split("| a |\n|---|\n| 1 |\n\n| 2 |\n")
    assert isinstance(pieces[0], Table) and pieces[0].rows == (("1",),)
    assert pieces[1:] == ["\n| 2 |\n"]


def test_only_a_line_that_may_begin_a_table_is_held_back() -> None:
    splitter = Splitter()
    assert splitter.feed("Hello wor") == ["Hello wor"]
    assert splitter.feed("ld\n  ") == ["ld\n"]  # three spaces may still indent a table
    assert splitter.feed("x") == ["  x"]
    assert splitter.feed("\n| a |") == ["\n"]
    assert splitter.held == "| a |"
    assert splitter.feed("\nNo") == ["| a |\nNo"]  # "N" cannot begin a delimiter row
    assert splitter.held == ""


def test_a_header_is_let_go_as_soon_as_the_next_line_cannot_be_a_delimiter() -> None:
    splitter = Splitter()
    splitter.feed("| a |\n")
    assert splitter.held == "| a |\n"
    assert tables._merged(splitter.feed("|-x")) == ["| a |\n"]
    assert splitter.held == "|-x"  # which may itself be a header


# --- properties ------------------------------------------------------------------------------------------------------

PROPERTIES = settings(deadline=None, derandomize=True, database=None, max_examples=examples(400))
LINES = st.sampled_from(
    [
        "| a | b |",
        "|---|:-:|",
        "| 1 | `x|y` |",
        "| 2 \\| 3 | z |",
        "|---|",
        "| c |",
        "```",
        "~~~",
        "text | with pipe",
        "日本語の文です。",
        "",
        "   | d | e |",
        "    | f |",
        "- item",
        "|",
        "||",
    ]
)
answers = st.lists(LINES, max_size=14).map("\n".join) | st.text(alphabet="|-: `\n\\ab日", max_size=80)
cut_lists = st.lists(st.integers(0, 120), max_size=16)


@PROPERTIES
@given(text=answers, cuts=cut_lists)
@example(text="| a | b |\n|---|:-:|\n| 1 | `x|y` |", cuts=[3, 12, 13])
@example(text="```\n| a |\n|---|\n```\n| a |\n|---|\n", cuts=[1, 2, 3])
def test_text_and_tables_rejoin_to_the_input_however_it_was_cut(text: str, cuts: list[int]) -> None:
    pieces = split(text, cuts)
    assert joined(pieces) == text
    assert pieces == split(text, [])  # the same tables, the same text, whatever the deltas


@PROPERTIES
@given(text=answers, cuts=cut_lists)
def test_text_that_is_no_table_passes_through_at_most_one_line_behind(text: str, cuts: list[int]) -> None:
    if any(isinstance(piece, Table) for piece in split(text, [])):
        return  # the property is about text with no table
    splitter = Splitter()
    points = sorted({min(cut, len(text)) for cut in cuts})
    fed = given_out = ""
    for start, end in zip([0, *points], [*points, len(text)], strict=True):
        fed += text[start:end]
        for piece in splitter.feed(text[start:end]):
            assert isinstance(piece, str)
            given_out += piece
        assert fed.startswith(given_out)  # unchanged, in order
        held = fed[len(given_out) :]
        assert held == splitter.held
        assert held.count("\n") <= 1  # a header candidate and the start of the line after it, at most
        if held:
            first = held.split("\n")[0]
            assert first.lstrip(" ").startswith("|") or (not first.strip(" ") and len(first) <= 3)
    assert given_out + "".join(str(piece) for piece in splitter.end()) == text


@PROPERTIES
@given(body=st.lists(LINES, max_size=8).map("\n".join), fence=st.sampled_from(["```", "~~~", "````python"]))
def test_nothing_inside_a_code_fence_is_a_table(body: str, fence: str) -> None:
    if any(line.lstrip().startswith(fence[:3]) for line in body.split("\n")):
        return  # a fence line inside would end the block early
    text = f"{fence}\n{body}\n{fence[:4] if fence.startswith('````') else fence}\n"
    assert split(text, []) == [text]


# --- Slack's table block ---------------------------------------------------------------------------------------------


def table_of(columns: int, rows: int, cell: str = "x") -> Table:
    header = tuple(f"h{index}" for index in range(columns))
    return Table("", header, (None,) * columns, tuple((cell,) * columns for _ in range(rows)))


def test_a_table_block_has_raw_text_cells_and_rich_text_for_inline_markup() -> None:
    table = split(TABLE)[0]
    assert isinstance(table, Table)
    block = table_block(table)
    assert block is not None
    data = block.to_dict()
    assert data["type"] == "table"
    assert data["rows"][0] == [{"type": "raw_text", "text": "名前"}, {"type": "raw_text", "text": "値"}]
    code_cell = data["rows"][2][0]
    assert code_cell["type"] == "rich_text"
    assert code_cell["elements"][0]["elements"] == [{"type": "text", "text": "x|y", "style": {"code": True}}]
    assert [setting.get("align") for setting in data["column_settings"]] == ["left", "right"]


def test_rich_text_cells_carry_bold_strike_and_links() -> None:
    block = table_block(Table("", ("**b** and ~~s~~ [site](https://example.com/a)",), (None,), ()))
    assert block is not None
    elements = block.to_dict()["rows"][0][0]["elements"][0]["elements"]
    assert elements == [
        {"type": "text", "text": "b", "style": {"bold": True}},
        {"type": "text", "text": " and "},
        {"type": "text", "text": "s", "style": {"strike": True}},
        {"type": "text", "text": " "},
        {"type": "link", "url": "https://example.com/a", "text": "site"},
    ]


def test_an_empty_cell_is_a_valid_raw_text() -> None:
    block = table_block(Table("", ("a", ""), (None, None), ()))
    assert block is not None
    block.validate_json()
    assert block.to_dict()["rows"][0][1] == {"type": "raw_text", "text": " "}


@pytest.mark.parametrize(
    ("table", "fits"),
    [
        (table_of(20, 99), True),  # 100 rows with the header, 20 cells a row: Slack's limits
        (table_of(20, 100), False),
        (table_of(21, 1), False),
        (table_of(1, 1, "x" * (tables.MAX_TABLE_CHARS - 2)), True),
        (table_of(1, 1, "x" * (tables.MAX_TABLE_CHARS - 1)), False),
    ],
)
def test_a_table_beyond_slacks_limits_gets_no_block(table: Table, fits: bool) -> None:
    assert (table_block(table) is not None) is fits


def test_the_code_block_aligns_columns_with_wide_characters_counted_twice() -> None:
    table = split(TABLE)[0]
    assert isinstance(table, Table)
    assert code_block(table) == (
        "```\n| 名前   | 値     |\n|--------|--------|\n| a      | 1      |\n| `x\\|y` | 2 \\| 3 |\n```\n"
    )


def test_the_code_block_fence_is_longer_than_any_backtick_run_in_it() -> None:
    assert code_block(Table("", ("```",), (None,), ())).startswith("````\n")


def test_the_router_streams_text_with_a_pointer_and_keeps_tables_that_fit() -> None:
    emitted: list[str] = []
    router = TableRouter(emitted.append)
    big = "| h |\n|---|\n" + "| r |\n" * 100
    for piece in ["表です:\n", TABLE[:20], TABLE[20:], "\n", big, "end"]:
        router.push(piece)
    kept = router.end()
    assert [routed.table.source for routed in kept] == [TABLE]
    text = "".join(emitted)
    assert text.startswith("表です:\n" + tables.POINTER_JA + "\n\n```\n| h |")
    assert text.endswith("| r |\n```\nend")
    router.reset()
    assert router.tables == []


def test_one_message_keeps_the_first_table_that_fits_and_shows_the_others_as_code() -> None:
    text, kept = one_message(f"A\n{TABLE}B\n{TABLE}")
    assert kept is not None and kept.table.source == TABLE
    assert text.startswith("A\n" + tables.POINTER_JA + "\nB\n```\n")
    assert one_message("no tables | here\n") == ("no tables | here\n", None)
    english, _ = one_message("Look:\n| a |\n|---|\n")
    assert english == "Look:\n" + tables.POINTER + "\n"


def test_a_posted_table_reads_back_as_the_same_pipe_table() -> None:
    table = split(TABLE + "| **b** ~~s~~ [l](https://e.x/a) | |\n")[0]
    assert isinstance(table, Table)
    block = table_block(table)
    assert block is not None
    again = split(tables.table_markdown(block.to_dict()))[0]
    assert isinstance(again, Table)
    assert (again.header, again.rows) == (table.header, table.rows)
    assert tables.table_markdown({"type": "table", "rows": []}) == ""
