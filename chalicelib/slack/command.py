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
"""

from __future__ import annotations

import re
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


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# A host name or a bracketed IPv6 address, then an optional port: nothing else. urlsplit and
# urllib3 (which makes the connection) read other authorities differently: for
# "https://evil.example\@hooks.slack.com/" urlsplit names hooks.slack.com, urllib3 connects to
# evil.example. For an authority this plain, both read the same host.
_AUTHORITY = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
# Printable ASCII but space and backslash: urlsplit silently drops tabs and newlines, which
# urllib3 would keep, and a backslash ends the host for some parsers and not others.
_PLAIN = re.compile(r"[!-\[\]-~]+")


def response_url_refusal(url: str, hosts: frozenset[str], in_lambda: bool) -> str | None:
    """None if a reply may be POSTed to ``url``, else why not. ``hosts`` are lower-case names."""
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
