"""chalicelib.slack.mrkdwn.to_mrkdwn: LLM Markdown into Slack mrkdwn, on exact output and on properties.

- Exact output: what survives (identifiers, CJK emphasis, URLs, code), what converts (headings,
  bold, italic, strike, links, lists, quotes), mentions kept and broadcasts shown as text. The
  cases marked "was:" failed with the converter this module replaces (messages.to_mrkdwn).
- A corpus, tests/data/llm_answers/: realistic answers (NAME.md) and their mrkdwn (NAME.mrkdwn,
  byte for byte: the zero-width spaces U+200B put next to emphasis marks are in the files).
- Properties over generated Markdown-ish text and over any text (deterministic: derandomize,
  no example database, no deadline): it never raises; no ``&``, ``<`` or ``>`` unescaped but in
  the Slack syntax it writes (links, ``<@U…>``, ``<#C…>``), never ``<!``; code (fenced blocks
  and spans) comes out byte for byte once unescaped; no visible character is lost or added;
  the conversion is local to blank-line-separated blocks (so a text converted whole or in
  blocks is the same: "idempotent-ish"); text with nothing to convert comes out as it went in;
  link and bare URLs come out whole.
- Time: pathological inputs (a long run of one construct that opens and never closes) of
  100,000 characters convert in well under a second each (quadratic would take minutes).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chalicelib.slack.markdown import open_fence
from chalicelib.slack.mrkdwn import ZWSP, to_mrkdwn
from tests.conftest import FAST_LANE, examples

CORPUS = Path(__file__).parent.parent / "data" / "llm_answers"
PROPERTIES = settings(
    deadline=None,
    derandomize=True,
    database=None,  # derandomized runs replay nothing; a database would only write .hypothesis/
    max_examples=examples(300),
    suppress_health_check=[HealthCheck.too_slow],
)
# The Slack syntax the converter may write: a link, a user mention, a channel link.
SLACK_SYNTAX = re.compile(r"<(?:@[UW][A-Z0-9]+|#C[A-Z0-9]+|(?:https?://|mailto:)[^\s<>|]+)(?:\|[^<>\n]*)?>")


def unescape(mrkdwn: str) -> str:
    """mrkdwn's three escapes undone, and the zero-width space that keeps ``` inside code literal."""
    return mrkdwn.replace("`" + ZWSP + "``", "```").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# --- exact output ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        # identifiers (was: "*init*")
        ("call __init__ first", "call __init__ first"),
        ("def __init__(self):", "def __init__(self):"),
        ("file __init__.py and __main__.py", "file __init__.py and __main__.py"),
        ("snake_case_names and my_var_name", "snake_case_names and my_var_name"),
        ("`__init__` and `a*b*c` and `x_y_z`", "`__init__` and `a*b*c` and `x_y_z`"),
        ("$x_1 + x_2$ and a_i * b_j", "$x_1 + x_2$ and a_i * b_j"),
        ("x**2 + y**2 and 2*3*4", "x**2 + y**2 and 2*3*4"),  # was: "x*2 + y*2 and 2_3_4"
        # CJK emphasis: paired next to letters, with a zero-width boundary for Slack (was: "*強調*です")
        ("*強調*です", f"_強調_{ZWSP}です"),
        ("これは**太字**です", f"これは{ZWSP}*太字*{ZWSP}です"),
        ("結論は**「早めの予約」**です", f"結論は{ZWSP}*「早めの予約」*{ZWSP}です"),
        ("**Status:**OK", f"*Status:*{ZWSP}OK"),
        # URLs with underscores, bare and in links (was: "*init*", "_a_", "~b~" inside them)
        ("see https://example.com/__init__/x", "see https://example.com/__init__/x"),
        (
            "https://example.com/*a*/b and https://example.com/a~~b~~c",
            "https://example.com/*a*/b and https://example.com/a~~b~~c",
        ),
        ("[doc](https://example.com/a_b/c_d_e)", "<https://example.com/a_b/c_d_e|doc>"),
        ("[my_link](https://example.com/__x__)", "<https://example.com/__x__|my_link>"),
        ("[Foo (bar)](https://en.wikipedia.org/wiki/Foo_(bar))", "<https://en.wikipedia.org/wiki/Foo_(bar)|Foo (bar)>"),
        ("**https://example.com/a_b**.", "*https://example.com/a_b*."),
        ("(see https://example.com/a_b).", "(see https://example.com/a_b)."),
        ("[a|b](https://x.com/?q=a|b&r=1)", "<https://x.com/?q=a%7Cb&amp;r=1|a|b>"),
        ("[**Docs** for `str.format`](https://d.py/s_f)", "<https://d.py/s_f|Docs for str.format>"),
        # code: fences of any kind become ```, content as written (was: tildes not code at all)
        ("~~~python\nx = a_b * c_d\n~~~", "```python\nx = a_b * c_d\n```"),
        ("````\n```js\nconst a_b = 1;\n```\n````", f"```\n`{ZWSP}``js\nconst a_b = 1;\n`{ZWSP}``\n```"),
        ("```sh\necho <!channel> && ls\n", "```sh\necho &lt;!channel&gt; &amp;&amp; ls\n```"),  # unclosed: closed
        ("``a`b`` and ``c``", "``a`b`` and `c`"),
        ("a `span\nacross` lines", "a `span\nacross` lines"),
        # conversions as the old converter meant them
        ("# Title\n## Sub **bold** ##", "*Title*\n*Sub bold*"),
        ("# C# in 2 weeks", "*C# in 2 weeks*"),  # was: "*C*" for "# C#"
        ("**bold**, *italic*, _also_, ***both***, ~~gone~~", "*bold*, _italic_, _also_, *_both_*, ~gone~"),
        ("**bold *italic* bold** and *_once_*", "*bold _italic_ bold* and _once_"),
        ("* a bullet\n- **b**\n  * nested *c*\n1. one", "* a bullet\n- *b*\n  * nested _c_\n1. one"),
        ("> quoted **text**\n> more", "&gt; quoted *text*\n&gt; more"),
        ("a * b * c, 5 * 3", "a * b * c, 5 * 3"),
        ("\\*args, \\_x and \\[x\\] \\frac{a}{b}", "*args, _x and \\[x\\] \\frac{a}{b}"),
        ("---\n| a | b |\n|---|---|", "---\n| a | b |\n|---|---|"),
        ("A & B < C > D &amp;", "A &amp; B &lt; C &gt; D &amp;amp;"),
    ],
)
def test_exact_output(markdown: str, expected: str) -> None:
    assert to_mrkdwn(markdown) == expected


def test_the_old_converters_own_example_comes_out_the_same() -> None:
    markdown = (
        "# Title\n"
        "Some **bold**, *italic*, ~~gone~~ and a [link](https://example.com/a?b=1&c=2).\n"
        "* a bullet\n"
        "```python\nif a < b and x**2:\n    pass\n```\n"
        "Inline `x**2 < y` too."
    )
    assert to_mrkdwn(markdown) == (
        "*Title*\n"
        "Some *bold*, _italic_, ~gone~ and a <https://example.com/a?b=1&amp;c=2|link>.\n"
        "* a bullet\n"
        "```python\nif a &lt; b and x**2:\n    pass\n```\n"
        "Inline `x**2 &lt; y` too."
    )


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("<@U123> and <@W0AB|taro & co>", "<@U123> and <@W0AB|taro &amp; co>"),  # was: "&lt;@U123&gt; …"
        ("in <#C123> and <#C123|general>", "in <#C123> and <#C123|general>"),
        ("<!channel> <!here> <!everyone>", "&lt;!channel&gt; &lt;!here&gt; &lt;!everyone&gt;"),
        (
            "<!subteam^S0123|@team> <!date^1392734382^{date}|x>",
            "&lt;!subteam^S0123|@team&gt; &lt;!date^1392734382^{date}|x&gt;",
        ),
        (
            "[<!channel>](https://x.com) [<@U1>](https://y.com)",
            "<https://x.com|&lt;!channel&gt;> <https://y.com|&lt;@U1&gt;>",
        ),
        ("<https://x.com|<!here>>", "&lt;https://x.com|&lt;!here&gt;&gt;"),
        ("<@U1|<!channel>>", "&lt;@U1|&lt;!channel&gt;&gt;"),
        ("`<!channel>` and <@u1> <#c1> <@B1>", "`&lt;!channel&gt;` and &lt;@u1&gt; &lt;#c1&gt; &lt;@B1&gt;"),
        ("<https://example.com/a_b> <mailto:a@b.jp|mail me>", "<https://example.com/a_b> <mailto:a@b.jp|mail me>"),
    ],
)
def test_mentions_stay_and_broadcasts_are_text(markdown: str, expected: str) -> None:
    assert to_mrkdwn(markdown) == expected


@pytest.mark.parametrize("answer", sorted(CORPUS.glob("*.md")), ids=lambda path: path.stem)
def test_corpus(answer: Path) -> None:
    assert to_mrkdwn(answer.read_text(encoding="utf-8")) == answer.with_suffix(".mrkdwn").read_text(encoding="utf-8")


def test_the_corpus_is_there() -> None:
    assert len(list(CORPUS.glob("*.md"))) >= 20
    assert all(path.with_suffix(".mrkdwn").exists() for path in CORPUS.glob("*.md"))


# --- properties -----------------------------------------------------------------------------------------------------

PIECES = (
    "word",
    "東京",
    "です。",
    "snake_case",
    "__init__",
    "x**2",
    "*",
    "**",
    "***",
    "_",
    "__",
    "~",
    "~~",
    "`",
    "``",
    "```",
    "~~~",
    "[",
    "]",
    "(",
    ")",
    "](",
    "[label](https://example.com/a_b)",
    "https://example.com/a_b?c=1&d=2",
    "mailto:",
    "<",
    ">",
    "&",
    "&amp;",
    "<@U123>",
    "<@U1|name>",
    "<#C1>",
    "<!channel>",
    "<!",
    "<https://x.com|X>",
    "#",
    "# ",
    "\\",
    "|",
    " ",
    "\t",
    "\n",
    "\n\n",
    "\n```\n",
    "\n~~~py\n",
    "\n# ",
    "\n> ",
    "\n* ",
    "\n- ",
    ZWSP,
    "😀",
)
markdownish = st.lists(st.sampled_from(PIECES), max_size=60).map("".join)
any_text = st.one_of(markdownish, st.text(max_size=300))


@PROPERTIES
@given(markdown=any_text)
@example(markdown="<<!channel>>")
@example(markdown="[<](https://x)<!")
def test_output_is_safe_mrkdwn(markdown: str) -> None:
    """Never raises; ``<`` and ``>`` only in the Slack syntax it writes, never ``<!``; ``&`` only in escapes."""
    out = to_mrkdwn(markdown)
    assert "<!" not in out
    outside = SLACK_SYNTAX.sub("", out)
    assert "<" not in outside and ">" not in outside
    assert "&" not in re.sub(r"&(?:amp|lt|gt);", "", out)


code_line = st.text(st.characters(exclude_characters="\n\u200b", exclude_categories=["Cs"]), max_size=40)
# No backtick or tilde: no code span and no fence.
prose = st.lists(st.sampled_from([p for p in PIECES if "`" not in p and "~" not in p]), max_size=20).map("".join)


@PROPERTIES
@given(
    before=prose,
    after=prose,
    indent=st.sampled_from(["", "  "]),
    marker=st.sampled_from(["```", "````", "~~~", "~~~~"]),
    info=st.sampled_from(["", "python", "日本語", " js", "c++ x"]),
    lines=st.lists(code_line, max_size=8),
)
def test_a_code_block_comes_out_as_written(
    before: str, after: str, indent: str, marker: str, info: str, lines: list[str]
) -> None:
    opening = indent + marker + info
    lines = [line for line in lines if open_fence(f"{opening}\n{line}") is not None]  # none closes it
    body = "".join(line + "\n" for line in lines)
    out = to_mrkdwn(f"{before}\n\n{opening}\n{body}{indent}{marker}\n\n{after}")
    start = out.index("\n", out.index("```")) + 1  # prose has no backticks: the first ``` opens it
    end = out.rindex("```")
    assert unescape(out[start:end]) == body + indent


@PROPERTIES
@given(parts=st.lists(st.tuples(prose, code_line.filter(lambda s: "`" not in s and s.strip())), max_size=6))
def test_code_spans_come_out_as_written(parts: list[tuple[str, str]]) -> None:
    markdown = "".join(f"{text} `{code}` " for text, code in parts)
    spans = re.findall(r"`([^`]*)`", to_mrkdwn(markdown))
    assert [unescape(span) for span in spans] == [code for _, code in parts]


def visible(text: str) -> str:
    """What a reader sees of ``text``, less the characters that are markup in Markdown or mrkdwn."""
    return re.sub(r"[\s*_~#`\\\u200b]", "", text)


@PROPERTIES
@given(markdown=st.one_of(markdownish, st.text(max_size=300)).filter(lambda s: "[" not in s))
def test_nothing_visible_is_lost_or_added(markdown: str) -> None:
    """(Links are left out: a link's URL comes before its label in mrkdwn.)"""
    assert visible(unescape(to_mrkdwn(markdown))) == visible(markdown)


@PROPERTIES
@given(first=any_text, second=any_text)
def test_blocks_convert_on_their_own(first: str, second: str) -> None:
    """Converting two blank-line-separated texts together or apart is the same (unless the first
    leaves a code block open: then the second is code)."""
    if open_fence(first) is None:
        assert to_mrkdwn(f"{first}\n\n{second}") == to_mrkdwn(first) + "\n\n" + to_mrkdwn(second)


@PROPERTIES
@given(text=st.text(st.characters(exclude_characters="*_~`[]<>&\\#:\r", exclude_categories=["Cs"]), max_size=200))
def test_text_with_nothing_to_convert_comes_out_as_it_went_in(text: str) -> None:
    assert to_mrkdwn(text) == text
    assert to_mrkdwn(to_mrkdwn(text)) == text


url_path = st.text("abcxyz019_*~-./#?=&%", max_size=30).map(lambda path: "https://example.com/" + path + "z")


@PROPERTIES
@given(url=url_path, label=st.sampled_from(["docs", "snake_case", "東京の地図", "a & b"]))
def test_urls_come_out_whole(url: str, label: str) -> None:
    linked = to_mrkdwn(f"See [{label}]({url}) or {url} now.")
    escaped = url.replace("&", "&amp;")
    assert linked == f"See <{escaped}|{label.replace('&', '&amp;')}> or {escaped} now."


# --- time -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "unit",
    [
        "*a",
        "**a ",
        "_a ",
        "~~a",
        "`a",
        "``a`",
        "[a](",
        "[a](https://x",
        "[",
        "<",
        "<@U1|x",
        "<https://x",
        "https://x.",
        "\\",
        "a\n",
        "```\n",
        "# a ",
        "# a\n",
        " ",
        "*強調*です",
    ],
)
def test_long_pathological_input_takes_linear_time(unit: str) -> None:
    # The fast lane times a quarter of the length: linear is then a quarter as long, quadratic still
    # well past the limit.
    text = unit * ((25_000 if FAST_LANE else 100_000) // len(unit))
    # This thread's CPU time, not the clock's: a busy machine (other processes, test workers) does
    # not slow it down much, and this is pure computation.
    started = time.thread_time()
    to_mrkdwn(text)
    to_mrkdwn("# " + text)  # a heading's line, and a fence's opening line, are read once
    to_mrkdwn("```" + text.replace("\n", " ") + "\n" + "a\n" * 25_000)
    assert time.thread_time() - started < 3.0  # at most 0.5 s here; quadratic would be minutes
