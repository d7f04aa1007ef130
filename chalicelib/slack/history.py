"""A Slack thread as an OpenAI chat, trimmed to a token budget.

Contract, all pure:

- ``strip_mention(text, bot_user_id)`` removes the bot's mentions (``<@BOT>``, ``<@BOT|name>``)
  and trims the text.
- ``message_text(message)`` is a Slack message's text as written (Slack's ``&``, ``<``, ``>``
  escapes undone): from ``text``, or from its blocks (``markdown``, ``rich_text`` and
  ``section`` text) when they hold more. Slack may store a streamed answer in a markdown block
  with only a truncated fallback in ``text``; the bot's earlier answers are read back whole.
- ``to_chat(thread, current, bot_user_id, system_prompt)`` is the system prompt, then the
  thread's messages older than ``current`` (oldest first), then ``current``: last, exactly once,
  even when the thread holds it too. The bot's messages are ``assistant`` turns as written;
  everyone else's are ``user`` turns prefixed with who wrote them (``<@U123>: ``), which is how
  the model tells the people in a channel thread apart without a ``users.info`` call each.
  Messages left empty (only a mention, only a file) are skipped, except the current one, and
  so are messages nobody said (an assistant pane's root, a deleted root's tombstone). The
  thread is given root first (as ``web.thread_messages`` returns it), so the first history
  turn is the root: or, when the root says nothing, the earliest message said in the thread.
- ``estimate_tokens(text)`` is a cautious estimate of one chat message's tokens, without a
  tokenizer (none may be downloaded at run time).
- ``fit(messages, max_tokens)`` drops history turns, oldest first, until the estimate fits,
  but keeps the first history turn (the thread's root, which usually states the task) unless it
  cannot fit beside the system prompt and the current message even alone;
  ``halve_history(messages)`` keeps the first history turn and the newer half (rounded down)
  of the turns after it, or drops that first turn when no other is left (a retry must be
  smaller). Both keep the system prompt (first) and the current message (last), whatever the
  budget.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from chalicelib.slack.command import unescape

ChatMessage = dict[str, str]

# Tokens a chat message costs besides its text (role, separators), as OpenAI's guide counts them.
MESSAGE_OVERHEAD_TOKENS = 4
# English runs about 4 characters a token; 3 leaves room for code, numbers and identifiers.
ASCII_CHARS_PER_TOKEN = 3
# Messages in a thread that nobody wrote: the root Slack makes for an assistant-pane thread, and
# what Slack leaves of a deleted root that has replies ("This message was deleted.").
NOT_SAID = frozenset({"assistant_app_thread", "tombstone"})


def strip_mention(text: str, bot_user_id: str) -> str:
    if bot_user_id:
        # With the spaces after it, so "hi <@B> there" reads "hi there".
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>[ \t]*", "", text)
    return text.strip()


def to_chat(
    thread: Sequence[Mapping[str, Any]], current: Mapping[str, Any], bot_user_id: str, system_prompt: str
) -> list[ChatMessage]:
    current_ts = ts_key(current.get("ts"))
    if current_ts is None:
        raise ValueError(f"the current message has no valid ts: {current.get('ts')!r}")
    chat: list[ChatMessage] = [{"role": "system", "content": system_prompt}]
    for message in thread:
        ts = ts_key(message.get("ts"))
        # Only what was said before the current message: a reply written while we read the
        # thread, or the current message itself, is not history.
        if ts is None or ts >= current_ts or message.get("subtype") in NOT_SAID:
            continue
        text = _plain(message, bot_user_id)
        if not text:
            continue
        if bot_user_id and message.get("user") == bot_user_id:
            chat.append({"role": "assistant", "content": text})
        else:
            chat.append({"role": "user", "content": _author(message) + text})
    # The current message goes in even when empty (just a mention): the model then answers
    # the thread itself.
    text = _plain(current, bot_user_id)
    chat.append({"role": "user", "content": _author(current) + text})
    return chat


def estimate_tokens(text: str) -> int:
    """At least the tokens of a chat message holding ``text``, in practice: each non-ASCII
    character counts as a whole token (a Japanese character can be one), ASCII text as one token
    per 3 characters, plus the message's own overhead."""
    ascii_chars = len(text.encode("ascii", "ignore"))  # fast, and exact: only ASCII survives
    non_ascii_chars = len(text) - ascii_chars
    return non_ascii_chars + -(-ascii_chars // ASCII_CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS


def fit(messages: Sequence[ChatMessage], max_tokens: int) -> list[ChatMessage]:
    """The messages without as many history turns as the budget needs dropped, oldest first but
    the first history turn (the thread's root) kept: it goes only when it cannot fit beside the
    system prompt and the current message, and then the newest turns that fit stay. If even the
    system prompt and the current message exceed the budget, those two are returned: the model
    then refuses with context_length_exceeded, which the caller reports as too long."""
    if len(messages) <= 2:
        return list(messages)
    costs = [estimate_tokens(message["content"]) for message in messages]
    # The root usually states the task: the turns after it go first, oldest first.
    keep_root = costs[0] + costs[1] + costs[-1] <= max_tokens
    total = sum(costs) - (0 if keep_root else costs[1])
    first_kept = 2
    while total > max_tokens and first_kept < len(messages) - 1:
        total -= costs[first_kept]
        first_kept += 1
    root = [messages[1]] if keep_root else []
    return [messages[0], *root, *messages[first_kept:]]


def halve_history(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """System prompt, the first history turn (the thread's root), the newer half of the turns
    after it (rounded down, so a single one goes too), and the current message: for the one
    retry after the model said the context was too long. With no turn after the root, the root
    goes: a retry must be smaller."""
    if len(messages) <= 2:
        return list(messages)
    root, later = messages[1], messages[2:-1]
    if not later:
        return [messages[0], messages[-1]]
    kept = later[len(later) - len(later) // 2 :]
    return [messages[0], root, *kept, messages[-1]]


def message_text(message: Mapping[str, Any]) -> str:
    """The message's text as written: ``text`` unescaped, or its blocks' text when longer; then
    any table blocks in its attachments (the bot's tables), as Markdown pipe tables.

    Slack may keep a streamed (or markdown_text) answer whole in a ``markdown`` block with only
    a truncated fallback in ``text``; other apps put their detail in ``section`` blocks. The
    longer reading wins, so a message whose blocks only repeat its text reads as its text.
    """
    raw = message.get("text")
    text = unescape(raw) if isinstance(raw, str) else ""
    blocks = message.get("blocks")
    from_blocks = _blocks_text(blocks) if isinstance(blocks, list) else ""
    text = from_blocks if len(from_blocks) > len(text) else text
    tables = _attached_tables(message.get("attachments"))
    return "\n\n".join(part for part in (text, tables) if part) if tables else text


def _attached_tables(attachments: Any) -> str:
    """The table blocks in a message's attachments (where the bot posts its tables), as pipe tables."""
    if not isinstance(attachments, list):
        return ""
    from chalicelib.slack.tables import table_markdown  # worker side only, with slack_sdk's models

    found = [
        table_markdown(block)
        for attachment in attachments
        if isinstance(attachment, Mapping)
        for block in (attachment.get("blocks") or [])
        if isinstance(block, Mapping) and block.get("type") == "table"
    ]
    return "\n\n".join(table for table in found if table)


def _blocks_text(blocks: list[Any]) -> str:
    """The text of the blocks that carry some, one block a paragraph."""
    parts: list[str] = []
    for block in blocks:
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "markdown":
            parts.append(_str(block.get("text")))  # the Markdown as sent: no escapes to undo
        elif kind == "section":
            parts.append(_text_object(block.get("text")))
            fields = block.get("fields")
            if isinstance(fields, list):
                parts.extend(_text_object(item) for item in fields)
        elif kind == "rich_text":
            parts.append(_rich_text(block.get("elements")))
    return "\n".join(part for part in parts if part)


def _text_object(item: Any) -> str:
    """A Block Kit text object: mrkdwn carries Slack's escapes, plain_text does not."""
    if not isinstance(item, Mapping):
        return ""
    text = _str(item.get("text"))
    return unescape(text) if item.get("type") == "mrkdwn" else text


def _rich_text(elements: Any) -> str:
    """A rich_text block's text: sections as they run, lists, code and quotes on their own lines."""
    if not isinstance(elements, list):
        return ""
    out: list[str] = []
    for element in elements:
        if not isinstance(element, Mapping):
            continue
        kind = element.get("type")
        inline = _inline(element.get("elements"))
        if kind == "rich_text_section":
            out.append(inline)
        elif kind == "rich_text_preformatted":
            out.append(_own_line(out) + "```\n" + inline.rstrip("\n") + "\n```\n")
        elif kind == "rich_text_quote":
            quoted = "\n".join("> " + line for line in inline.rstrip("\n").split("\n"))
            out.append(_own_line(out) + quoted + "\n")
        elif kind == "rich_text_list":
            listed = element.get("elements")
            items = listed if isinstance(listed, list) else []
            ordered = element.get("style") == "ordered"
            indent = "  " * _int(element.get("indent"))
            lines = [
                f"{indent}{f'{n}.' if ordered else '-'} {_inline(item.get('elements')).rstrip()}"
                for n, item in enumerate((i for i in items if isinstance(i, Mapping)), start=1)
            ]
            out.append(_own_line(out) + "\n".join(lines) + "\n")
    return "".join(out).strip("\n")


def _own_line(out: list[str]) -> str:
    """A line break, if what comes before does not end with one."""
    return "\n" if out and out[-1] and not out[-1].endswith("\n") else ""


def _inline(elements: Any) -> str:
    """Inline rich-text elements as message text would spell them (mentions as ``<@U123>``)."""
    if not isinstance(elements, list):
        return ""
    pieces: list[str] = []
    for element in elements:
        if not isinstance(element, Mapping):
            continue
        kind = element.get("type")
        if kind == "text":
            pieces.append(_str(element.get("text")))
        elif kind == "link":
            url, label = _str(element.get("url")), _str(element.get("text"))
            pieces.append(f"{label} ({url})" if label and label != url else url)
        elif kind == "user":
            pieces.append(f"<@{_str(element.get('user_id'))}>")
        elif kind == "usergroup":
            pieces.append(f"<!subteam^{_str(element.get('usergroup_id'))}>")
        elif kind == "channel":
            pieces.append(f"<#{_str(element.get('channel_id'))}>")
        elif kind == "emoji":
            pieces.append(f":{_str(element.get('name'))}:")
        elif kind == "broadcast":
            pieces.append(f"<!{_str(element.get('range'))}>")
        elif kind == "date":
            pieces.append(_str(element.get("fallback")))
    return "".join(pieces)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10 else 0


def _plain(message: Mapping[str, Any], bot_user_id: str) -> str:
    """The message's text as written (see ``message_text``), without the bot's mentions."""
    return strip_mention(message_text(message), bot_user_id)


def _author(message: Mapping[str, Any]) -> str:
    user = message.get("user")
    if user:
        return f"<@{user}>: "
    # Another app's message can come without a user: name it as Slack shows it.
    name = message.get("username") or (message.get("bot_profile") or {}).get("name") or message.get("bot_id")
    return f"{name}: " if name else ""


def ts_key(ts: Any) -> tuple[int, str] | None:
    """A Slack ts ("1700000000.000100") as a key that orders like the decimal it is, or None.

    Seconds as an int, then the fraction's digits without trailing zeros: digit strings compare
    like the fractions they spell once the zeros that add nothing are gone ("0001" < "1",
    "1" < "12", "10" == "1"). A float is exact here only to about 0.2 µs, by luck of the magnitude.
    """
    if not isinstance(ts, str):
        return None
    seconds, _, fraction = ts.partition(".")
    if not _digits(seconds) or (fraction and not _digits(fraction)):
        return None
    return int(seconds), fraction.rstrip("0")


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # isdigit alone takes "١٢" and "²"
