"""Slack mrkdwn from the Markdown an LLM writes (the slash command's answer goes out as mrkdwn ``text``).

Contract: ``to_mrkdwn(markdown)`` takes any str, never raises, and returns mrkdwn in which

- code is left as written: a fenced block (backticks or tildes, any length, indented or not,
  as ``chalicelib.slack.markdown`` recognises fences) becomes a ```` ``` ```` block with its info
  string kept and its lines unchanged; a code span keeps its backticks and content (a span
  delimited by two backticks around content without one becomes a one-backtick span). Inside
  code only ``&``, ``<`` and ``>`` are escaped, and a ```` ``` ```` inside the content gets a
  zero-width space (U+200B) after its first backtick so that Slack does not end the block there.
  A block left open at the end is closed.
- ``# heading`` becomes a bold line, ``**bold**`` ``*bold*``, ``*italic*`` and ``_italic_``
  ``_italic_``, ``***both***`` ``*_both_*``, ``~~strike~~`` ``~strike~``; ``[label](url)`` (http,
  https or mailto) becomes ``<url|label>``, and so does a Slack link ``<url|label>`` or a Markdown
  autolink ``<url>`` (``<url>``); bullets, numbers, quotes (``>``, escaped, which Slack still
  shows as a quote) and tables stay as written. Emphasis is paired within a line only.
- identifiers and URLs survive: a run of underscores never pairs unless it is a single ``_``
  with no letter or digit outside it (``__init__``, ``snake_case``, ``$x_1$`` stay as written),
  ``*`` and ``~~`` between two ASCII letters or digits are literal (``x**2 + y**2``, ``2*3*4``),
  and a bare URL (``http://``, ``https://``, ``mailto:``, ASCII up to a space, less trailing
  punctuation) or a link's URL is never formatted. ``\\*``, ``\\_``, ``\\~``, ``\\```, ``\\#``
  show the character; other backslashes are kept (LaTeX such as ``\\[ x \\]`` reads as written).
- CJK emphasis works: ``*強調*です`` and ``これは**太字**です`` pair (letters outside a ``*`` are
  allowed, unlike ``_``), and a zero-width space is put between an emphasis mark and a letter
  or non-ASCII punctuation outside it, because Slack formats only between word boundaries.
- ``&``, ``<`` and ``>`` are escaped everywhere but in the Slack syntax it writes: links, user
  mentions ``<@U…>`` / ``<@U…|name>`` and channel links ``<#C…>`` / ``<#C…|name>``, which pass
  through (their labels escaped). The output never contains ``<!``: a special mention the model
  wrote (``<!channel>``, ``<!here>``, ``<!everyone>``, ``<!subteam^…>``) is shown as text.

Time is linear in the input but for sorting (bisect) over backtick runs.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Generator, Iterator

from chalicelib import container
from chalicelib.slack.markdown import closing_fence, open_fence
from chalicelib.slack.messages import escape

ZWSP = "\u200b"


class _Patterns:
    """The compiled patterns (plain classes here, not dataclasses or NamedTuples: importing
    those modules would cost the cold start more than this module itself)."""

    def __init__(self) -> None:
        url = r"(?:https?://|mailto:)"
        self.fence = re.compile(r"([ \t]*)(`{3,}|~{3,})(.*)")  # as chalicelib.slack.markdown's
        # Only the opening: a pattern for the optional closing #s backtracks quadratically on spaces.
        self.heading = re.compile(r" {0,3}#{1,6}(?:[ \t]|$)")
        self.backticks = re.compile(r"`+")
        # What can start something other than plain text; a URL only where a word does not go on.
        self.special = re.compile(r"[`\\\[<*_~\n]|(?<![0-9A-Za-z])" + url)
        # One level of parentheses in the URL (Wikipedia's Foo_(bar)); an optional "title".
        self.link = re.compile(
            r"\[((?:[^\[\]\\\n]|\\.)+)\]\([ \t]*("
            + url
            + r"(?:[^\s()<>`]|\([^\s()<>`]*\))+)(?:[ \t]+\"[^\"\n]*\")?[ \t]*\)"
        )
        self.entity = re.compile(r"<([@#])([A-Z0-9]+)(?:\|([^<>\n]*))?>")
        self.slack_link = re.compile(r"<(" + url + r"[^\s<>|`]+)(?:\|([^<>\n]*))?>")
        # Printable ASCII but < > and the backtick: Japanese right after a URL is not part of it.
        self.bare_url = re.compile(url + r"[!-;=?-_a-~]*")


@container.cached()
def _patterns() -> _Patterns:
    """Compiled on the first answer, not at import: the HTTP function imports chalicelib.slack
    but never converts Markdown, and compiling costs its cold start."""
    return _Patterns()


def to_mrkdwn(markdown: str) -> str:
    """Convert the Markdown an LLM writes into Slack mrkdwn, leaving code untouched (module contract)."""
    patterns = _patterns()
    out: list[str] = []
    paragraph: list[str] = []
    fence: str | None = None  # the run of ` or ~ that closes the code block we are in

    def flush() -> None:
        if paragraph:
            out.append(_inline("\n".join(paragraph), "normal"))
            paragraph.clear()

    for line in markdown.split("\n"):
        if fence is not None:
            if _closes(line, fence, patterns):
                out.append(_close_fence(line, patterns))
                fence = None
            else:
                out.append(_code(line))
        elif (opening := open_fence(line)) is not None:
            flush()
            fence = closing_fence(opening)
            out.append(_open_fence(line, patterns))
        elif not line.strip():
            flush()
            out.append(line)
        elif heading := _heading(line, patterns):
            flush()
            out.append("*" + _inline(heading, "heading") + "*")
        else:
            paragraph.append(line)
    flush()
    if fence is not None:  # unclosed: Markdown runs it to the end; Slack needs the fence
        if out[-1] == "":  # the text ended with a line break: close on that line
            out.pop()
        out.append("```")
    return "\n".join(out)


def _closes(line: str, fence: str, patterns: _Patterns) -> bool:
    """Whether ``line`` closes the block that ``fence`` (its ``closing_fence``) opened:
    chalicelib.slack.markdown's rule (one reading of fences for the whole bot, so that a block
    the stream or the length limit closed is one block here too), without its cost of reading
    the opening line again for every line of the block."""
    match = patterns.fence.fullmatch(line)
    return (
        match is not None
        and match.group(2)[0] == fence[0]
        and len(match.group(2)) >= len(fence)
        and not match.group(3).strip()
    )


def _heading(line: str, patterns: _Patterns) -> str:
    """An ATX heading's text ("" if ``line`` is none, or an empty one): after 1-6 #s and a space,
    less a closing run of #s that follows a space."""
    match = patterns.heading.match(line)
    if match is None:
        return ""
    text = line[match.end() :].strip(" \t")
    bare = text.rstrip("#")
    if bare != text and (not bare or bare[-1] in " \t"):
        text = bare.rstrip(" \t")
    return text


def _code(text: str) -> str:
    return escape(text).replace("```", "`" + ZWSP + "``")


def _open_fence(line: str, patterns: _Patterns) -> str:
    # Slack knows only ```: a ~~~ or ```` fence becomes one, indentation and info string kept.
    match = patterns.fence.fullmatch(line)
    assert match is not None  # open_fence accepted the line
    return match.group(1) + "```" + escape(match.group(3).rstrip())


def _close_fence(line: str, patterns: _Patterns) -> str:
    match = patterns.fence.fullmatch(line)
    assert match is not None  # it closed the fence
    return match.group(1) + "```"


# --- inline ---------------------------------------------------------------------------------------------------------


class _Delim:
    """A run of ``*``, ``_`` or ``~``; ``mark`` is set when it pairs with another."""

    __slots__ = ("after", "before", "can_close", "can_open", "char", "length", "mark", "opens", "partner")

    def __init__(
        self, char: str, length: int, before: str | None, after: str | None, can_open: bool, can_close: bool
    ) -> None:
        self.char, self.length = char, length
        self.before, self.after = before, after  # the characters outside it on its line (None: an edge)
        self.can_open, self.can_close = can_open, can_close
        self.opens = False
        self.mark: str | None = None  # set when paired (by _pair), then to what is written (by _render)
        self.partner: _Delim | None = None  # a closer's opener


# A token is a delimiter run or (kind, mrkdwn, source): kind "text" (its mrkdwn is its source,
# escaped when rendered), "code" (a code span), "link" (a link, mention or channel link: plain
# text in a link's label, where Slack syntax cannot nest), or "newline".
_Token = tuple[str, str, str] | _Delim

# The mrkdwn marks a run of (char, length) writes when it opens and when it closes.
_MARKS = {
    ("*", 1): ("_", "_"),
    ("*", 2): ("*", "*"),
    ("*", 3): ("*_", "_*"),
    ("_", 1): ("_", "_"),
    ("~", 2): ("~", "~"),
}


def _inline(text: str, mode: str) -> str:
    """``text`` (lines of one paragraph, or a heading's text) as mrkdwn; mode "heading" drops
    bold (the line is bold already)."""
    spans = _code_spans(text)
    tokens = list(_tokens(text, 0, len(text), spans))
    _pair(tokens)
    return _render(tokens, mode)


class _Spans:
    """The code spans of a paragraph: start -> end, and the starts in order."""

    __slots__ = ("ends", "starts")

    def __init__(self, ends: dict[int, int]) -> None:
        self.ends = ends
        self.starts = list(ends)  # inserted in order of start

    def crosses(self, start: int, end: int) -> bool:
        """Whether a span that starts inside (start, end) ends after ``end``. Spans do not
        overlap, so only the last one starting before ``end`` can."""
        index = bisect.bisect_left(self.starts, end) - 1
        return index >= 0 and self.starts[index] > start and self.ends[self.starts[index]] > end


def _code_spans(text: str) -> _Spans:
    """Every code span: a backtick run closed by the next run of the same length (CommonMark's
    rule; a span may cross the lines of its paragraph, and a backslash escapes nothing in it).
    Sorted look-ups keep it O(n log n) however many unmatched runs there are."""
    runs = [(m.start(), m.end()) for m in _patterns().backticks.finditer(text)]
    by_length: dict[int, list[int]] = {}
    for index, (start, end) in enumerate(runs):
        by_length.setdefault(end - start, []).append(index)
    ends: dict[int, int] = {}
    index = 0
    while index < len(runs):
        start, end = runs[index]
        if start and text[start - 1] == "\\":  # \` is a backtick, not a span's start (but may end one)
            index += 1
            continue
        same = by_length[end - start]
        found = bisect.bisect_right(same, index)
        if found < len(same):
            ends[start] = runs[same[found]][1]
            index = same[found] + 1
        else:
            index += 1
    return _Spans(ends)


def _tokens(text: str, start: int, end: int, spans: _Spans) -> Iterator[_Token]:
    """The tokens of ``text[start:end]``, left to right; plain text between the characters that
    may start something else is one token."""
    patterns = _patterns()
    pos = start
    while pos < end:
        match = patterns.special.search(text, pos, end)
        if match is None:
            yield ("text", text[pos:end], text[pos:end])
            return
        at = match.start()
        if at > pos:
            yield ("text", text[pos:at], text[pos:at])
        char = text[at]
        if char == "`":
            if spans.ends.get(at, end + 1) <= end:
                source = text[at : spans.ends[at]]
                yield ("code", _code_span(source), source)
                pos = spans.ends[at]
            else:  # no closing run: the backticks are text
                run = patterns.backticks.match(text, at, end)
                pos = run.end() if run is not None else at + 1
                yield ("text", text[at:pos], text[at:pos])
        elif char == "\\":
            pos = at + 2
            following = text[at + 1 : pos] if at + 1 < end else ""
            if following in ("*", "_", "~", "`", "#"):  # Markdown's escape: show the character
                yield ("text", following, following)
            elif following and following.isascii() and not following.isalnum() and not following.isspace():
                yield ("text", text[at:pos], text[at:pos])  # kept, and the character starts nothing
            else:
                pos = at + 1
                yield ("text", "\\", "\\")
        elif char == "[":
            pos = yield from _link(text, at, end, spans)
        elif char == "<":
            pos = yield from _angle(text, at, end)
        elif char in "*_~":
            pos = at
            while pos < end and text[pos] == char:
                pos += 1
            yield _delim(text, at, pos, start, end)
        elif char == "\n":
            pos = at + 1
            yield ("newline", "\n", "\n")
        else:  # a bare URL: text, but no mark inside it is one
            url = _trim_url(patterns.bare_url.match(text, at, end))
            pos = at + len(url)
            yield ("text", url, url)


def _code_span(span: str) -> str:
    ticks = len(span) - len(span.lstrip("`"))
    content = span[ticks:-ticks]
    if ticks == 2 and "`" not in content:  # Slack has one-backtick spans only
        ticks = 1
    return "`" * ticks + _code(content) + "`" * ticks


def _link(text: str, at: int, end: int, spans: _Spans) -> Generator[_Token, None, int]:
    """A Markdown link at ``at`` as one token (else "[" as text); returns where scanning goes on."""
    match = _patterns().link.match(text, at, end)
    # A code span that starts in the label must end there, or the brackets are not a link's.
    if match is None or spans.crosses(at, match.end(1)):
        yield ("text", "[", "[")
        return at + 1
    tokens = list(_tokens(text, match.start(1), match.end(1), spans))
    _pair(tokens)
    yield ("link", _slack_link(match.group(2), _render(tokens, "plain").strip()), match.group())
    return match.end()


def _angle(text: str, at: int, end: int) -> Generator[_Token, None, int]:
    """``<`` at ``at``: a user mention or channel link, a link, or text."""
    patterns = _patterns()
    entity = patterns.entity.match(text, at, end)
    if entity is not None and (entity.group(1), entity.group(2)[0]) in (("@", "U"), ("@", "W"), ("#", "C")):
        sigil, ident, label = entity.groups()
        mrkdwn = f"<{sigil}{ident}" + ("" if label is None else "|" + escape(label)) + ">"
        yield ("link", mrkdwn, entity.group())
        return entity.end()
    link = patterns.slack_link.match(text, at, end)
    if link is not None:
        yield ("link", _slack_link(link.group(1), escape(link.group(2) or "")), link.group())
        return link.end()
    yield ("text", "<", "<")  # escaped when rendered: <!channel> and friends end here
    return at + 1


def _slack_link(url: str, label: str) -> str:
    """``label`` is mrkdwn already (escaped)."""
    # "|" would end the URL and "<", ">" the link; "&" is escaped as everywhere in mrkdwn.
    url = escape(url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E"))
    return f"<{url}|{label}>" if label else f"<{url}>"


def _trim_url(match: re.Match[str] | None) -> str:
    """The URL less the punctuation that ends the sentence around it (an index walks back: no copies)."""
    assert match is not None  # the special pattern matched a scheme here
    url = match.group()
    end = len(url)
    unbalanced = url.count(")") - url.count("(")
    while end > 1 and url[end - 1] in ".,;:!?*_~'\")]}":
        if url[end - 1] == ")":
            if unbalanced <= 0:
                break  # a balanced ")" is the URL's (Wikipedia's Foo_(bar))
            unbalanced -= 1
        end -= 1
    return url[:end]


def _delim(text: str, start: int, end: int, lo: int, hi: int) -> _Delim:
    char, length = text[start], end - start
    before = text[start - 1] if start > lo and text[start - 1] != "\n" else None
    after = text[end] if end < hi and text[end] != "\n" else None
    if (char, length) not in _MARKS:  # ___, __, ****, a lone ~: never emphasis
        return _Delim(char, length, before, after, False, False)
    inner_after = after is not None and not after.isspace()
    inner_before = before is not None and not before.isspace()
    if char == "_":  # intraword underscores are identifiers, in any script
        return _Delim(
            char,
            length,
            before,
            after,
            inner_after and not (before is not None and before.isalnum()),
            inner_before and not (after is not None and after.isalnum()),
        )
    # * and ~~ may touch letters (Japanese has no spaces) but not sit between two ASCII ones (x**2).
    between = before is not None and after is not None and _ascii_alnum(before) and _ascii_alnum(after)
    return _Delim(char, length, before, after, inner_after and not between, inner_before and not between)


def _ascii_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _pair(tokens: list[_Token]) -> None:
    """Pair delimiter runs: a closer takes the nearest opener of its kind (same character and
    length) on its line, and openers left between them stay text. Amortised O(n)."""
    stack: list[_Delim] = []
    by_kind: dict[tuple[str, int], list[_Delim]] = {}
    for token in tokens:
        if isinstance(token, tuple):
            if token[0] == "newline":
                stack.clear()
                by_kind.clear()
            continue
        kind = (token.char, token.length)
        openers = by_kind.get(kind)
        if token.can_close and openers:
            opener = openers[-1]
            while stack[-1] is not opener:  # each is the last of its own kind's list
                dropped = stack.pop()
                by_kind[(dropped.char, dropped.length)].pop()
            stack.pop()
            openers.pop()
            opener.opens, opener.mark = True, _MARKS[kind][0]
            token.mark, token.partner = _MARKS[kind][1], opener
        elif token.can_open:
            stack.append(token)
            by_kind.setdefault(kind, []).append(token)


def _render(tokens: list[_Token], mode: str) -> str:
    """Mode "plain" (a link's label): no marks, code spans' content only, Slack syntax as text."""
    parts: list[str] = []
    active: set[str] = set()  # marks open around the current token
    for token in tokens:
        if isinstance(token, tuple):
            kind, mrkdwn, source = token
            if kind == "text" or (kind == "link" and mode == "plain"):
                parts.append(escape(source if kind == "link" else mrkdwn))
            elif kind == "code" and mode == "plain":
                parts.append(_code(source.strip("`")))
            else:
                parts.append(mrkdwn)
        elif token.mark is None:
            parts.append(token.char * token.length)
        else:
            mark = _emitted(token, mode, active)
            if not mark:
                continue
            # Slack formats only at word boundaries: a letter (or CJK punctuation) outside the
            # mark would leave it literal, and a zero-width space is a boundary that shows nothing.
            if token.opens and _needs_gap(token.before):
                parts.append(ZWSP)
            parts.append(mark)
            if not token.opens and _needs_gap(token.after):
                parts.append(ZWSP)
    return "".join(parts)


def _emitted(token: _Delim, mode: str, active: set[str]) -> str:
    """The marks a paired run writes: none in a link's label, no bold in a heading (bold
    already), and none that is open around it already (``*_x_*`` inside ``_…_``: Slack would
    end the outer one at the inner's end). A closer writes what its opener wrote."""
    if token.opens:
        assert token.mark is not None
        mark = "" if mode == "plain" else token.mark
        if mode == "heading":
            mark = mark.replace("*", "")
        token.mark = "".join(c for c in mark if c not in active)
        active.update(token.mark)
        return token.mark
    assert token.partner is not None and token.partner.mark is not None
    token.mark = token.partner.mark[::-1]
    active.difference_update(token.mark)
    return token.mark


def _needs_gap(char: str | None) -> bool:
    """Whether a mark next to ``char`` needs a boundary: a letter or digit in any script, or
    punctuation outside ASCII (「」。：); not a space, an edge or ASCII punctuation ("(", ":")."""
    return char is not None and not char.isspace() and not (char.isascii() and not char.isalnum())
