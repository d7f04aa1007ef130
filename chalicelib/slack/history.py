"""A Slack thread as an OpenAI chat, trimmed to a token budget.

Contract, all pure:

- ``strip_mention(text, bot_user_id)`` removes the bot's mentions (``<@BOT>``, ``<@BOT|name>``)
  and trims the text.
- ``to_chat(thread, current, bot_user_id, system_prompt)`` is the system prompt, then the
  thread's messages older than ``current`` (oldest first), then ``current``: last, exactly once,
  even when the thread holds it too. The bot's messages are ``assistant`` turns as written;
  everyone else's are ``user`` turns prefixed with who wrote them (``<@U123>: ``), which is how
  the model tells the people in a channel thread apart without a ``users.info`` call each.
  Messages left empty (only a mention, only a file) are skipped, except the current one.
- ``estimate_tokens(text)`` is a cautious estimate of one chat message's tokens, without a
  tokenizer (none may be downloaded at run time).
- ``fit(messages, max_tokens)`` drops the oldest history turns until the estimate fits;
  ``halve_history(messages)`` drops the older half of them. Both keep the system prompt
  (first) and the current message (last), whatever the budget.
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
# Messages in a thread that nobody wrote: the root Slack makes for an assistant-pane thread.
NOT_SAID = frozenset({"assistant_app_thread"})


def strip_mention(text: str, bot_user_id: str) -> str:
    if bot_user_id:
        # With the spaces after it, so "hi <@B> there" reads "hi there".
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>[ \t]*", "", text)
    return text.strip()


def to_chat(
    thread: Sequence[Mapping[str, Any]], current: Mapping[str, Any], bot_user_id: str, system_prompt: str
) -> list[ChatMessage]:
    current_ts = _ts_key(current.get("ts"))
    if current_ts is None:
        raise ValueError(f"the current message has no valid ts: {current.get('ts')!r}")
    chat: list[ChatMessage] = [{"role": "system", "content": system_prompt}]
    for message in thread:
        ts = _ts_key(message.get("ts"))
        # Only what was said before the current message: a reply written while we read the
        # thread, or the current message itself, is not history.
        if ts is None or ts >= current_ts or message.get("subtype") in NOT_SAID:
            continue
        text = _plain(message.get("text"), bot_user_id)
        if not text:
            continue
        if bot_user_id and message.get("user") == bot_user_id:
            chat.append({"role": "assistant", "content": text})
        else:
            chat.append({"role": "user", "content": _author(message) + text})
    # The current message goes in even when empty (just a mention): the model then answers
    # the thread itself.
    text = _plain(current.get("text"), bot_user_id)
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
    """The messages without their oldest history turns, as few dropped as the budget allows. If
    even the system prompt and the current message exceed it, those two are returned: the model
    then refuses with context_length_exceeded, which the caller reports as too long."""
    if len(messages) <= 2:
        return list(messages)
    costs = [estimate_tokens(message["content"]) for message in messages]
    total = sum(costs)
    first_kept = 1
    while total > max_tokens and first_kept < len(messages) - 1:
        total -= costs[first_kept]
        first_kept += 1
    return [messages[0], *messages[first_kept:]]


def halve_history(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """System prompt, the newer half of the history (rounded down, so a single turn goes too),
    and the current message: for the one retry after the model said the context was too long."""
    if len(messages) <= 2:
        return list(messages)
    history = messages[1:-1]
    kept = history[len(history) - len(history) // 2 :]
    return [messages[0], *kept, messages[-1]]


def _plain(text: Any, bot_user_id: str) -> str:
    """The text as written: Slack escapes &, < and > in message text (mentions keep their brackets)."""
    return unescape(strip_mention(text if isinstance(text, str) else "", bot_user_id))


def _author(message: Mapping[str, Any]) -> str:
    user = message.get("user")
    if user:
        return f"<@{user}>: "
    # Another app's message can come without a user: name it as Slack shows it.
    name = message.get("username") or (message.get("bot_profile") or {}).get("name") or message.get("bot_id")
    return f"{name}: " if name else ""


def _ts_key(ts: Any) -> tuple[int, str] | None:
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
