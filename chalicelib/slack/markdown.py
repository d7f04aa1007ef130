"""Splitting long Markdown into pieces Slack accepts, without breaking code blocks.

Contract: ``split(text, max_chars, max_bytes=None)`` returns non-empty pieces, each at most
``max_chars`` characters and, if given, ``max_bytes`` UTF-8 bytes, counting what is added to it.
A piece is cut, in order of preference, at a block boundary (a blank line, or just before or
after a code fence), at a newline, at a space or a Japanese sentence mark, or anywhere; a
preferred cut is taken only if it keeps the piece at least half full. When a cut falls inside a
code fence, the piece ends with a line closing it and the next piece starts with the fence's
opening line again (``` plus its info string, e.g. ```python), so each message renders on its
own. Those added lines are the only change: remove them, join the pieces, and the text is back.

A fence whose opening line is too long to repeat within the limits is not carried over (the
pieces still keep to the limits and lose nothing); with Slack's limits that needs an opening
line thousands of characters long.

``open_fence(text)`` is the opening line of a code fence left open at the end of ``text``, or
None; ``closing_fence(opening)`` is the line that closes it. Fences are recognised as an LLM
writes them: a line of three or more backticks or tildes, with any indentation (they appear
inside list items); a backtick fence's info string has no backtick (```x``` is inline code).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from itertools import accumulate

MAX_MARKDOWN_CHARS = 12_000  # Slack's cap on markdown_text in one call

_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})(.*)")
# Where a cut reads naturally when there is no line break to cut at: after a space, or after
# the marks that end Japanese sentences and clauses (Japanese has no spaces).
_SOFT_BREAKS = frozenset(" \t。、！？")
_MAX_UTF8 = 4  # bytes one character may take


def open_fence(text: str) -> str | None:
    """The opening line (trailing whitespace removed) of the code fence still open at the end
    of ``text``, or None. An unfinished last line counts as a line."""
    opening: str | None = None
    for line in text.split("\n"):
        if opening is None:
            if _is_opening(line):
                opening = line.rstrip()
        elif _closes(line, opening):
            opening = None
    return opening


def closing_fence(opening: str) -> str:
    """The line that closes the fence opened by ``opening`` (e.g. "```python" -> "```")."""
    match = _FENCE.match(opening)
    if match is None:
        raise ValueError(f"not a fence opening line: {opening!r}")
    return match.group(1)


def split(text: str, max_chars: int, max_bytes: int | None = None) -> list[str]:
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    if max_bytes is not None and max_bytes < _MAX_UTF8:
        raise ValueError(f"max_bytes must be at least {_MAX_UTF8}, the size of one character")
    if len(text) <= max_chars and (max_bytes is None or _utf8_len(text) <= max_bytes):
        return [text] if text else []
    return _Splitter(text, max_chars, max_bytes).pieces()


def _is_opening(line: str) -> bool:
    match = _FENCE.fullmatch(line)
    return match is not None and not (match.group(1)[0] == "`" and "`" in match.group(2))


def _closes(line: str, opening: str) -> bool:
    fence = closing_fence(opening)
    match = _FENCE.fullmatch(line)
    return (
        match is not None
        and match.group(1)[0] == fence[0]
        and len(match.group(1)) >= len(fence)
        and not match.group(2).strip()
    )


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class _Splitter:
    """One split: the text's cut candidates, found once, then the pieces cut greedily."""

    def __init__(self, text: str, max_chars: int, max_bytes: int | None) -> None:
        self.text = text
        self.max_chars = max_chars
        self.max_bytes = max_bytes
        # UTF-8 size of text[:i], to find the longest piece within max_bytes by bisection.
        self.byte_offsets = (
            list(accumulate((_char_bytes(ch) for ch in text), initial=0)) if max_bytes is not None else []
        )
        self.tiers, self.fence_lines = _candidates(text)

    def pieces(self) -> list[str]:
        text, start, prefix = self.text, 0, ""
        pieces: list[str] = []
        while start < len(text):
            if self._fits(prefix, start, len(text), ""):
                pieces.append(prefix + text[start:])
                break
            end = self._longest(prefix, start, "")
            while True:
                cut = self._best_cut(start, end)
                body = text[start:cut]
                suffix, next_prefix = "", ""
                fence = open_fence(prefix + body)  # as this piece will render, prefix included
                if fence is not None and self._can_carry(fence):
                    closing = closing_fence(fence)
                    suffix = closing if body.endswith("\n") else "\n" + closing
                    next_prefix = fence + "\n"
                if self._fits(prefix, start, cut, suffix):
                    break
                # The closing line did not fit: cut earlier. The cut just after ``start`` always
                # fits (one character cannot open or close a fence, and _can_carry checked the
                # carried fence has room for it), so this ends.
                end = max(start + 1, min(cut - 1, self._longest(prefix, start, suffix)))
            pieces.append(prefix + body + suffix)
            start, prefix = cut, next_prefix
        return pieces

    def _fits(self, prefix: str, start: int, end: int, suffix: str) -> bool:
        if len(prefix) + (end - start) + len(suffix) > self.max_chars:
            return False
        if self.max_bytes is None:
            return True
        size = _utf8_len(prefix) + self.byte_offsets[end] - self.byte_offsets[start] + _utf8_len(suffix)
        return size <= self.max_bytes

    def _longest(self, prefix: str, start: int, suffix: str) -> int:
        """The furthest end for a piece from ``start`` with this prefix and suffix (may be ≤ start)."""
        end = min(len(self.text), start + self.max_chars - len(prefix) - len(suffix))
        if self.max_bytes is not None:
            budget = self.byte_offsets[start] + self.max_bytes - _utf8_len(prefix) - _utf8_len(suffix)
            end = min(end, bisect.bisect_right(self.byte_offsets, budget) - 1)
        return end

    def _can_carry(self, fence: str) -> bool:
        """Whether a piece starting with ``fence`` reopened has room for one character and the
        fence's closing line: if not, the fence is left open rather than carried over."""
        overhead = fence + "\n" + "\n" + closing_fence(fence)
        if len(overhead) + 1 > self.max_chars:
            return False
        return self.max_bytes is None or _utf8_len(overhead) + _MAX_UTF8 <= self.max_bytes

    def _best_cut(self, start: int, end: int) -> int:
        if end <= start + 1:
            return start + 1
        lowest = start + max(1, (end - start) // 2)  # a cut before this leaves the piece under half full
        for tier in self.tiers:
            i = bisect.bisect_right(tier, end) - 1
            if i >= 0 and tier[i] >= lowest:
                return tier[i]
        return self._hard_cut(start, end)

    def _hard_cut(self, start: int, end: int) -> int:
        cut = end
        # Never inside a fence line, nor right after one without its newline: half a fence line
        # renders as text (or worse, as a fence), and the reopened piece would misread it.
        line = _fence_line_around(self.fence_lines, cut)
        if line is not None and line[0] > start:
            cut = line[0]
        if self.text[cut - 1 : cut + 1] == "\r\n" and cut - 1 > start:
            cut -= 1
        return cut


def _char_bytes(ch: str) -> int:
    code = ord(ch)
    return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4


def _lines(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, line) for each line; ``end`` is the index of its newline, or len(text)."""
    start = 0
    while start <= len(text):
        end = text.find("\n", start)
        if end < 0:
            end = len(text)
        yield start, end, text[start:end]
        start = end + 1


def _candidates(text: str) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """The cut positions by tier of preference (each sorted), and the (start, end) of every line
    that looks like a fence, inside a fence or not.

    A cut position is an index: the piece ends just before it. Tiers: block boundaries outside
    code; other newlines outside code and tables; newlines inside code (they cost a closing and
    a reopening line); newlines between table rows (the rest of a table cut in two loses its
    header and renders as text); then spaces and sentence marks.
    """
    blocks: list[int] = []
    newlines: list[int] = []
    code: list[int] = []
    table: list[int] = []
    fence_lines: list[tuple[int, int]] = []
    lines = list(_lines(text))
    opening: str | None = None
    for index, (start, end, line) in enumerate(lines):
        has_newline = end < len(text)
        after = end + 1  # a cut after this line's newline
        if _FENCE.fullmatch(line):
            fence_lines.append((start, end))
        if opening is None:
            if _is_opening(line):
                opening = line.rstrip()
                if start > 0:
                    blocks.append(start)  # just before a code block
            elif has_newline:
                if not line.strip():
                    blocks.append(after)  # after a blank line: a paragraph boundary
                elif line.lstrip().startswith("|") and lines[index + 1][2].lstrip().startswith("|"):
                    table.append(after)
                else:
                    newlines.append(after)
        elif _closes(line, opening):
            opening = None
            if has_newline:
                blocks.append(after)  # just after a code block
        elif has_newline and not _closes(lines[index + 1][2], opening):
            # Not before the closing line: the next piece would be an empty code block.
            code.append(after)
    soft = [i + 1 for i, ch in enumerate(text) if ch in _SOFT_BREAKS]
    if fence_lines:
        soft = [cut for cut in soft if _fence_line_around(fence_lines, cut) is None]
    return [sorted(blocks), newlines, code, table, soft], fence_lines


def _fence_line_around(fence_lines: list[tuple[int, int]], cut: int) -> tuple[int, int] | None:
    """The fence line that a cut at ``cut`` would split, or leave without its newline."""
    i = bisect.bisect_right(fence_lines, (cut, cut)) - 1
    if i >= 0 and fence_lines[i][0] < cut <= fence_lines[i][1]:
        return fence_lines[i]
    return None
