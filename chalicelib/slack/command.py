"""Parse a slash-command request body (``application/x-www-form-urlencoded``).

Contract: ``parse(body)`` returns a ``SlashCommand`` or raises ``MalformedCommand`` with a
short, client-safe reason. Text is returned as the user typed it: Slack escapes ``&``,
``<`` and ``>`` in slash-command text, and ``parse`` undoes exactly that.

``response_url_refusal(url, hosts, in_lambda)`` is the one rule for where a reply may be
POSTed, used by the HTTP function (400, nothing dispatched) and again by the worker before it
posts: it returns None for an allowed URL, else a short, client-safe reason (never the URL).
Allowed: https to a host in ``hosts`` (``RESPONSE_URL_HOSTS``; any port); plain http to a
loopback host (127.0.0.1, localhost, ::1) when that host is in ``hosts``, or always outside
Lambda (``in_lambda``: ``settings.in_lambda``; ``make ask``, tests). Pure and stdlib-only,
so the HTTP function imports it for free.

Both run on every slash command, so the common case is kept short: a value is unquoted by
``codecs.escape_decode`` (C) instead of ``unquote_plus`` (a Python loop per ``%XX``: 15 µs for a
13-character Japanese question), and a URL of the shape Slack sends (``https://`` a lower-case
host name, then ``/`` and plain characters) is read by one regular expression instead of
``urlsplit`` (10 µs). Anything else takes the general path; tests hold both paths to agree.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
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
            fields[name] = _unquote_plus(value)

    def field(name: str) -> str:
        return fields.get(name, "")

    response_url = field("response_url")
    if not response_url:
        raise MalformedCommand("response_url is missing")
    if not (_SLACK_SHAPED.fullmatch(response_url) or _is_http_url(response_url)):
        raise MalformedCommand("response_url is not an http(s) URL")
    return SlashCommand(
        command=field("command") or "/mameka",
        text=unescape(field("text")).strip(),
        response_url=response_url,
        user_id=field("user_id"),
        channel_id=field("channel_id"),
        team_id=field("team_id"),
    )


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False


# Only in CPython's codecs (pickle uses it), hence the fallback; it is in every version we run.
_escape_decode: Callable[[str], tuple[bytes, int]] | None = getattr(codecs, "escape_decode", None)


def _unquote_plus(value: str) -> str:
    """``unquote_plus(value)``, the same for every input, at C speed for what Slack sends."""
    if "%" not in value:
        return value.replace("+", " ")
    if value.isascii() and _escape_decode is not None:
        # Once every backslash is doubled, the only escapes left are the \xXX made of each %XX.
        escaped = value.replace("+", " ").replace("\\", "\\\\").replace("%", "\\x")
        try:
            return _escape_decode(escaped)[0].decode("utf-8", "replace")
        except ValueError:  # a "%" without two hex digits after it, which unquote_plus leaves as it is
            pass
    return unquote_plus(value)


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# A host name or a bracketed IPv6 address, then an optional port: nothing else. urlsplit and
# urllib3 (which makes the connection) read other authorities differently: for
# "https://evil.example\@hooks.slack.com/" urlsplit names hooks.slack.com, urllib3 connects to
# evil.example. For an authority this plain, both read the same host.
_AUTHORITY = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
# Printable ASCII but space and backslash: urlsplit silently drops tabs and newlines, which
# urllib3 would keep, and a backslash ends the host for some parsers and not others.
_PLAIN = re.compile(r"[!-\[\]-~]+")
# What Slack sends: https, a lower-case host name and no port, then a path of _PLAIN characters.
# urlsplit reads such a URL's netloc as exactly the group (it ends at the first "/"), its hostname
# as the same, lower-cased already, and its port as None; _AUTHORITY matches it.
_SLACK_SHAPED = re.compile(r"https://([a-z0-9.-]+)/[!-\[\]-~]*")


def response_url_refusal(url: str, hosts: frozenset[str], in_lambda: bool) -> str | None:
    """None if a reply may be POSTed to ``url``, else why not. ``hosts`` are lower-case names."""
    slack_shaped = _SLACK_SHAPED.fullmatch(url)
    if slack_shaped:  # what the general rule below says for it, without urlsplit
        return None if slack_shaped[1] in hosts else "response_url's host is not in RESPONSE_URL_HOSTS"
    return _refusal(url, hosts, in_lambda)


def _refusal(url: str, hosts: frozenset[str], in_lambda: bool) -> str | None:
    """``response_url_refusal`` for any URL at all."""
    if not _PLAIN.fullmatch(url):
        return "response_url is not a plain URL"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
    except ValueError:
        return "response_url is not a plain URL"
    host = parts.hostname  # lower-cased by urlsplit
    if not host or not _AUTHORITY.fullmatch(parts.netloc):
        return "response_url is not a plain URL"
    if parts.scheme == "https":
        return None if host in hosts else "response_url's host is not in RESPONSE_URL_HOSTS"
    if parts.scheme != "http":
        return "response_url is not an http(s) URL"
    if host not in LOOPBACK_HOSTS:
        return "response_url must be https (plain http only to a loopback host)"
    if host in hosts or not in_lambda:
        return None
    return "response_url's loopback host is not in RESPONSE_URL_HOSTS"
