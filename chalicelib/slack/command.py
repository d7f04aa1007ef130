"""Parse a slash-command request body (``application/x-www-form-urlencoded``).

Contract: ``parse(body)`` returns a ``SlashCommand`` or raises ``MalformedCommand`` with a
short, client-safe reason. Text is returned as the user typed it: Slack escapes ``&``,
``<`` and ``>`` in slash-command text, and ``parse`` undoes exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_plus, urlsplit


class MalformedCommand(ValueError):
    """The body is not a slash command. ``str(error)`` is safe to send back."""


@dataclass(frozen=True)
class SlashCommand:
    command: str
    text: str
    response_url: str
    user_id: str
    channel_id: str
    team_id: str


# The fields the bot uses; Slack sends thirteen.
FIELDS = frozenset({"command", "text", "response_url", "user_id", "channel_id", "team_id"})


def parse(body: bytes) -> SlashCommand:
    try:
        form = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedCommand("body is not a form") from None
    # As parse_qs(form, keep_blank_values=True, strict_parsing=True)[name][0], but only the
    # fields used are unquoted: unquoting all thirteen cost as much as the rest of parse.
    fields: dict[str, str] = {}
    for pair in form.split("&") if form else ():
        name, equals, value = pair.partition("=")
        if not equals:
            raise MalformedCommand("body is not a form")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if name in FIELDS and name not in fields:
            fields[name] = unquote_plus(value)

    def field(name: str) -> str:
        return fields.get(name, "")

    response_url = field("response_url")
    if not response_url:
        raise MalformedCommand("response_url is missing")
    try:
        url = urlsplit(response_url)
        usable = url.scheme in ("http", "https") and bool(url.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        usable = False
    if not usable:
        raise MalformedCommand("response_url is not an http(s) URL")
    return SlashCommand(
        command=field("command") or "/mameka",
        text=unescape(field("text")).strip(),
        response_url=response_url,
        user_id=field("user_id"),
        channel_id=field("channel_id"),
        team_id=field("team_id"),
    )


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
