"""Markdown pipe tables in the model's answer, and Slack's table block for them.

Contract:

- ``Splitter`` takes an answer's text deltas (``feed``) and gives back, in order, the text that
  is not a table (``str``) and each table (``Table``); ``end()`` gives what is left. Joined
  (a table as its ``source``), the pieces are exactly the input, however it was cut into
  deltas. Ordinary text passes through as it comes: only a line that might begin a table is
  held back, until the next line says whether it does (a header row, then a delimiter row such
  as ``|---|:--:|`` with as many cells); a table is held until its last row. So text that is no
  table is never more than one line behind the input.
- What counts as a table: a header row that begins with ``|`` (after at most 3 spaces, as LLMs
  write them; GFM's tables without a leading pipe stay text), a delimiter row with the same
  number of cells, then the rows that begin with ``|``; the first other line (a blank one
  included) ends it. Cells split at ``|``, but not at an escaped ``\\|`` (which becomes ``|``)
  nor inside an inline code span (GFM would split there; an LLM writing ``a|b`` in backticks
  means code). Rows are padded or cut to the header's width, as GFM does. Lines inside a
  fenced code block are never a table.
- ``table_block(table)`` is Slack's ``TableBlock`` for a table within Slack's limits
  (``MAX_ROWS`` rows with the header, ``MAX_CELLS`` cells a row, ``MAX_TABLE_CHARS`` characters
  of cell text), else None. A cell with inline code, bold, strike-through or a link is a
  ``rich_text`` cell; any other is ``raw_text``. ``attachment(block, table)`` carries it in a
  message's ``attachments``, where Slack documents it (one table per message).
- ``code_block(table)`` is the table as a fenced code block, its columns aligned (CJK
  characters count two columns): what a table beyond the limits becomes.
- ``table_markdown(block)`` reads a table block (as Slack gives it back, a dict) as a pipe
  table again: how a table the bot posted is history for the next question in the thread.
- ``TableRouter`` applies this to a streamed answer: text goes on to ``emit`` as it comes, a
  table that fits a block is kept for its own message (``tables``) with a short pointer in the
  text, one that does not is emitted as a code block. ``one_message(text)`` does the same for
  a whole answer that must fit one message (a slash command's reply): its first table that
  fits becomes the block, every other one a code block.

Pure: no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from slack_sdk.models.attachments import BlockAttachment
from slack_sdk.models.blocks import RichTextBlock, TableBlock
from slack_sdk.models.blocks.basic_components import RawTextObject, TableBlockColumnSettings
from slack_sdk.models.blocks.block_elements import RichTextElementParts, RichTextSectionElement

from chalicelib.slack import markdown

Align = Literal["left", "center", "right"]

MAX_ROWS = 100  # Slack's table block: at most 100 rows (the header is one), 20 cells a row
MAX_CELLS = 20
# No documented cap on a cell's text, but Slack refuses a message's blocks near 13,200
# characters (msg_blocks_too_long, bolt-js#2509): a table beyond this is sent as code instead.
MAX_TABLE_CHARS = 10_000
MAX_FALLBACK_CHARS = 200
POINTER = "_(table below)_"
POINTER_JA = "_（表は下にあります）_"

_DELIMITER_CELL = re.compile(r"[ \t]*(:?)-+(:?)[ \t]*")
_DELIMITER_CHARS = frozenset(" \t|:-\r")
_INLINE = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)|\*\*(.+?)\*\*|~~(.+?)~~|\[([^\]]+)\]\((https?://[^\s)]+)\)")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")


@dataclass(frozen=True)
class Table:
    """One pipe table: ``source`` as written (newlines included), its cells' Markdown."""

    source: str
    header: tuple[str, ...]
    align: tuple[Align | None, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass
class _Open:
    header: tuple[str, ...]
    align: tuple[Align | None, ...]
    source: str
    rows: list[tuple[str, ...]] = field(default_factory=list)

    def closed(self) -> Table:
        return Table(self.source, self.header, self.align, tuple(self.rows))

    def add(self, line: str) -> None:
        cells = split_cells(line) or []
        width = len(self.header)
        self.rows.append(tuple(cells[:width]) + ("",) * (width - len(cells)))
        self.source += line


class Splitter:
    """Splits a stream of text into text and tables; see the module docstring."""

    def __init__(self) -> None:
        self._buf = ""  # not yet given out: starts at a line's start unless _emitting
        self._emitting = False  # the current line is text: its characters go out as they come
        self._line = ""  # the current line's text so far, for the code-fence state
        self._fence: str | None = None  # the opening line of the code block we are in
        self._table: _Open | None = None

    @property
    def held(self) -> str:
        """The text held back, not yet given out (a line that may begin a table, or one)."""
        return (self._table.source if self._table else "") + ("" if self._emitting else self._buf)

    def feed(self, delta: str) -> list[str | Table]:
        self._buf += delta
        return self._run(eof=False)

    def end(self) -> list[str | Table]:
        """The rest: a last line without its newline counts as a line."""
        pieces = self._run(eof=True)
        if self._table is not None:
            pieces.append(self._table.closed())
            self._table = None
        return _merged(pieces)

    def _run(self, eof: bool) -> list[str | Table]:
        pieces: list[str | Table] = []
        while self._step(pieces, eof):
            pass
        return _merged(pieces)

    def _step(self, out: list[str | Table], eof: bool) -> bool:
        """Decide what it can about the start of ``_buf``; False when it must wait for more."""
        buf = self._buf
        if not buf:
            return False
        if self._emitting:
            newline = buf.find("\n")
            taken = buf if newline < 0 else buf[: newline + 1]
            out.append(taken)
            self._buf = buf[len(taken) :]
            self._line += taken
            if newline >= 0:
                self._end_line()
            return True
        start = _line_start_kind(buf, eof)
        if start is None:
            return False  # only a few spaces so far: they may indent a table's row
        if self._table is not None:
            if start != "|":
                out.append(self._table.closed())
                self._table = None
                return True
            end = _line_end(buf, 0, eof)
            if end < 0:
                return False
            self._table.add(buf[:end])
            self._buf = buf[end:]
            return True
        if self._fence is not None or start != "|":
            self._emitting = True
            return True
        # A line that begins with a pipe: a table's header if the next line is its delimiter row.
        header_end = _line_end(buf, 0, eof)
        if header_end < 0:
            return False
        header = split_cells(buf[:header_end])
        delimiter_end = _line_end(buf, header_end, eof)
        rest = buf[header_end : delimiter_end if delimiter_end >= 0 else len(buf)]
        if header and delimiter_end < 0 and not eof and set(rest) <= _DELIMITER_CHARS:
            return False  # it may still become the delimiter row
        align = _delimiter(buf[header_end:delimiter_end]) if header and delimiter_end >= 0 else None
        if header is None or align is None or len(align) != len(header):
            out.append(buf[:header_end])  # text after all (never a fence line: it begins with a pipe)
            self._buf = buf[header_end:]
            return True
        self._table = _Open(tuple(header), tuple(align), buf[:delimiter_end])
        self._buf = buf[delimiter_end:]
        return True

    def _end_line(self) -> None:
        self._fence = markdown.open_fence((self._fence + "\n" if self._fence else "") + self._line)
        self._line = ""
        self._emitting = False


def _line_start_kind(buf: str, eof: bool) -> str | None:
    """ "|" when the line at the start of ``buf`` may begin a table row, "" when it cannot, or
    None when it cannot tell yet (only up to 3 spaces so far)."""
    stripped = buf.lstrip(" ")
    indent = len(buf) - len(stripped)
    if indent > 3:
        return ""
    if not stripped:
        return "" if eof else None
    return "|" if stripped[0] == "|" else ""


def _line_end(buf: str, start: int, eof: bool) -> int:
    """The index just past the line that starts at ``start`` (its newline included), or -1."""
    newline = buf.find("\n", start)
    if newline >= 0:
        return newline + 1
    return len(buf) if eof and start < len(buf) else -1


def _merged(pieces: list[str | Table]) -> list[str | Table]:
    merged: list[str | Table] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        elif piece != "":
            merged.append(piece)
    return merged


def split_cells(line: str) -> list[str] | None:
    """A row's cells (stripped, ``\\|`` unescaped), or None when ``line`` is no pipe row."""
    text = line.strip(" \t\r\n")
    if not text.startswith("|"):
        return None
    cells: list[str] = []
    current: list[str] = []
    index, size = 1, len(text)
    while index < size:
        char = text[index]
        if char == "\\" and index + 1 < size and text[index + 1] == "|":
            current.append("|")
            index += 2
            continue
        if char == "`":
            run = _run_length(text, index)
            close = _closing_run(text, index + run, run)
            if close >= 0:
                current.append(text[index : close + run].replace("\\|", "|"))
                index = close + run
                continue
            current.append(text[index : index + run])
            index += run
            continue
        if char == "|":
            cells.append("".join(current).strip())
            current = []
            index += 1
            continue
        current.append(char)
        index += 1
    last = "".join(current).strip()
    if last or not text.endswith("|") or text.endswith("\\|"):
        cells.append(last)
    return cells or None


def _run_length(text: str, start: int) -> int:
    end = start
    while end < len(text) and text[end] == "`":
        end += 1
    return end - start


def _closing_run(text: str, start: int, run: int) -> int:
    """Where a backtick run of exactly ``run`` starts at or after ``start``, or -1."""
    index = text.find("`", start)
    while index >= 0:
        length = _run_length(text, index)
        if length == run:
            return index
        index = text.find("`", index + length)
    return -1


def _delimiter(line: str) -> list[Align | None] | None:
    """The columns' alignments if ``line`` is a delimiter row (``|---|:--:|``), else None."""
    text = line.strip(" \t\r\n")
    if "|" not in text:
        return None
    cells = text.strip("|").split("|") if text.strip("|") else []
    aligns: list[Align | None] = []
    for cell in cells:
        match = _DELIMITER_CELL.fullmatch(cell)
        if match is None:
            return None
        left, right = bool(match.group(1)), bool(match.group(2))
        aligns.append("center" if left and right else "right" if right else "left" if left else None)
    return aligns or None


# --- Slack's table block ---------------------------------------------------------------------------------------------


def table_block(table: Table) -> TableBlock | None:
    """The table as Slack's table block, or None when it is beyond Slack's limits."""
    rows = [table.header, *table.rows]
    if len(rows) > MAX_ROWS or len(table.header) > MAX_CELLS:
        return None
    if sum(len(cell) for row in rows for cell in row) > MAX_TABLE_CHARS:
        return None
    settings: list[TableBlockColumnSettings | None] = [
        TableBlockColumnSettings(align=align, is_wrapped=True) for align in table.align
    ]
    return TableBlock(
        rows=[[_cell(cell) for cell in row] for row in rows],
        column_settings=settings,
    )


def attachment(block: TableBlock, table: Table) -> BlockAttachment:
    """A message attachment carrying ``block``; its fallback names the columns."""
    fallback = "Table: " + " | ".join(table.header)
    if len(fallback) > MAX_FALLBACK_CHARS:
        fallback = fallback[: MAX_FALLBACK_CHARS - 1] + "…"
    return BlockAttachment(blocks=[block], fallback=fallback)


def _cell(text: str) -> RawTextObject | RichTextBlock:
    if not text:
        return RawTextObject(text=" ")  # raw_text needs a character (slack_sdk's validator)
    if _INLINE.search(text) is None:
        return RawTextObject(text=text)
    elements: list[RichTextElementParts.Text | RichTextElementParts.Link] = []
    position = 0
    for match in _INLINE.finditer(text):
        if match.start() > position:
            elements.append(RichTextElementParts.Text(text=text[position : match.start()]))
        code, bold, strike, label, url = match.group(2), match.group(3), match.group(4), match.group(5), match.group(6)
        if code is not None:
            elements.append(RichTextElementParts.Text(text=code, style=RichTextElementParts.TextStyle(code=True)))
        elif bold is not None:
            elements.append(RichTextElementParts.Text(text=bold, style=RichTextElementParts.TextStyle(bold=True)))
        elif strike is not None:
            elements.append(RichTextElementParts.Text(text=strike, style=RichTextElementParts.TextStyle(strike=True)))
        else:
            elements.append(RichTextElementParts.Link(url=url, text=label))
        position = match.end()
    if position < len(text):
        elements.append(RichTextElementParts.Text(text=text[position:]))
    return RichTextBlock(elements=[RichTextSectionElement(elements=elements)])


def table_markdown(block: Mapping[str, Any]) -> str:
    """A table block's rows as a Markdown pipe table ("" when it has none)."""
    rows = block.get("rows")
    if not isinstance(rows, list) or not rows:
        return ""
    lines = []
    for index, row in enumerate(rows):
        cells = [_cell_markdown(cell).replace("|", "\\|") for cell in row] if isinstance(row, list) else []
        lines.append("| " + " | ".join(cells) + " |")
        if index == 0:
            lines.append("|" + "---|" * len(cells))
    return "\n".join(lines)


def _cell_markdown(cell: Any) -> str:
    if not isinstance(cell, Mapping):
        return ""
    if cell.get("type") != "rich_text":
        return str(cell.get("text") or "").strip()
    parts = []
    for section in cell.get("elements") or []:
        for element in section.get("elements") or [] if isinstance(section, Mapping) else []:
            if not isinstance(element, Mapping):
                continue
            text, style = str(element.get("text") or ""), element.get("style") or {}
            if element.get("type") == "link":
                text = f"[{text or element.get('url')}]({element.get('url')})"
            elif style.get("code"):
                text = f"`{text}`"
            elif style.get("bold"):
                text = f"**{text}**"
            elif style.get("strike"):
                text = f"~~{text}~~"
            parts.append(text)
    return "".join(parts)


def code_block(table: Table) -> str:
    """The table as a fenced code block, its columns aligned; ends with a newline if ``source`` does."""
    # A pipe in a cell stays escaped, as the model wrote it: a bare one would read as a border.
    rows = [tuple(cell.replace("|", "\\|") for cell in row) for row in (table.header, *table.rows)]
    widths = [max(_width(row[column]) for row in rows) for column in range(len(table.header))]

    def line(cells: tuple[str, ...]) -> str:
        return (
            "| "
            + " | ".join(cell + " " * (width - _width(cell)) for cell, width in zip(cells, widths, strict=True))
            + " |"
        )

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    body = "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{body}\n{fence}" + ("\n" if table.source.endswith("\n") else "")


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in ("W", "F") else 1 for char in text)


def pointer(text: str) -> str:
    """The line that stands where a table was taken out: in Japanese if the answer (the text
    before the table, or the table) is."""
    return POINTER_JA if _CJK.search(text) else POINTER


# --- applying it ------------------------------------------------------------------------------------------------------


@dataclass
class Routed:
    """A table kept for a message of its own: the block and the table it shows."""

    block: TableBlock
    table: Table


class TableRouter:
    """A streamed answer's tables taken out of its text; see the module docstring."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._splitter = Splitter()
        self._seen = ""  # the text emitted so far, up to a few hundred characters: for the pointer's language
        self.tables: list[Routed] = []

    def push(self, delta: str) -> None:
        self._route(self._splitter.feed(delta))

    def end(self) -> list[Routed]:
        """Emit what was held back; the tables kept, in order."""
        self._route(self._splitter.end())
        return self.tables

    def reset(self) -> None:
        """Forget everything: a new attempt at the answer starts afresh."""
        self._splitter = Splitter()
        self._seen = ""
        self.tables = []

    def _route(self, pieces: list[str | Table]) -> None:
        for piece in pieces:
            if isinstance(piece, str):
                self._send(piece)
                continue
            block = table_block(piece)
            if block is None:
                self._send(code_block(piece))
                continue
            self.tables.append(Routed(block, piece))
            self._send(pointer(self._seen + piece.source) + ("\n" if piece.source.endswith("\n") else ""))

    def _send(self, text: str) -> None:
        if text:
            self._seen = (self._seen + text)[-500:]
            self._emit(text)


def one_message(text: str) -> tuple[str, Routed | None]:
    """A whole answer for one message: its text (the first table that fits taken out, with a
    pointer; every other table as a code block) and that table, if any."""
    out: list[str] = []
    splitter = Splitter()
    kept: Routed | None = None
    for piece in [*splitter.feed(text), *splitter.end()]:
        if isinstance(piece, str):
            out.append(piece)
            continue
        block = table_block(piece) if kept is None else None
        if block is None:
            out.append(code_block(piece))
            continue
        kept = Routed(block, piece)
        out.append(pointer("".join(out) + piece.source) + ("\n" if piece.source.endswith("\n") else ""))
    return "".join(out), kept
