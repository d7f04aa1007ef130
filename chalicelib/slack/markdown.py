"""Code fences in Markdown as an LLM writes it, and Slack's cap on Markdown text.

Contract: ``MAX_MARKDOWN_CHARS`` is the most ``markdown_text`` Slack takes in one call (or one
stream chunk). ``open_fence(text)`` is the opening line of a code fence left open at the end of
``text``, or None; ``closing_fence(opening)`` is the line that closes it (ValueError if
``opening`` is not a fence's opening line). A message cut inside a code block ends with the
closing line and the next one starts with the opening line again, so that each renders on its
own (``chalicelib.slack.stream`` does that cutting).

Fences are recognised as an LLM writes them: a line of three or more backticks or tildes, with
any indentation (they appear inside list items); a backtick fence's info string has no backtick
(```x``` is inline code); a fence is closed by a line of at least as many of the same character
and nothing else but whitespace. An unfinished last line counts as a line.
"""

from __future__ import annotations

import re

MAX_MARKDOWN_CHARS = 12_000  # Slack's cap on markdown_text in one call

_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})(.*)")


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
