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


def defuse_broadcasts(text: str, previous: str = "") -> str:
    """``text`` (Markdown for ``markdown_text``) with a zero-width space (U+200B) between every
    ``<`` and ``!``, so that Slack cannot read a special mention in it (``<!channel>``,
    ``<!here>``, ``<!everyone>``, ``<!subteam^…>``, any ``<!…>``): the model's text is not ours to
    trust, and a prompt injection could otherwise ping a whole channel. ``previous`` is the text
    sent before ``text`` in the same message (a stream arrives in pieces): when it ends with
    ``<`` and ``text`` starts with ``!``, ``text`` starts with the zero-width space. Nothing else
    changes: ``<@U…>`` mentions and ``<#C…>`` channel links still work, and the space is invisible
    (code in which it lands, such as HTML's ``<!DOCTYPE html>``, reads the same but copies with it).

    Joining the results for the pieces of any text, each given what came before it (as sent or
    as written), gives that text with no ``<!`` in it; a result given again is returned as is.
    """
    zero_width_space = "\u200b"  # shows nothing; Slack's parser sees "<", then not "!"
    if text.startswith("!") and previous.endswith("<"):
        text = zero_width_space + text
    return text.replace("<!", "<" + zero_width_space + "!")
