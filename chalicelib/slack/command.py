"""Parse a slash-command request body (``application/x-www-form-urlencoded``).

Contract: ``parse(body)`` returns a ``SlashCommand`` or raises ``MalformedCommand`` with a
short, client-safe reason. Text is returned as the user typed it: Slack escapes ``&``,
``<`` and ``>`` in slash-command text, and ``parse`` undoes exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit


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


def parse(body: bytes) -> SlashCommand:
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise MalformedCommand("body is not a form") from None

    def field(name: str) -> str:
        return fields.get(name, [""])[0]

    response_url = field("response_url")
    if not response_url:
        raise MalformedCommand("response_url is missing")
    url = urlsplit(response_url)
    if url.scheme not in ("http", "https") or not url.hostname:
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
