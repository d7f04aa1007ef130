"""A thread answer's session: Slack's agent session, or the legacy assistant status where there is none.

Contract: ``Session(channel, thread_ts)`` is one answer's. ``open(client, title,
initiator_user_id)`` is the answer's first Slack call, the sign of life; it raises
``web.SlackError`` with the call's error (the caller decides whether the answer can go on).
``close(client, posted)`` ends it, never raises, and is made once, on every ending, whatever
the answer's outcome. ``path`` says which status the answer ran under (the log line's
``session``), ``calls`` how many Slack calls the session made.

- ``"agent"``: ``agents.sessions.setStatus(status="processing", channel_id, thread_ts,
  title=<the question, at most TITLE_CHARS>, initiator_user_id=<the asker>)``: Slack shows its
  loading state and its stop button. ``close`` sets ``status="active"`` once, when the open call
  went through or its fate is unknown (a timeout: it may have landed), so that no session stays
  "processing" after the answer ended.
- ``"assistant"``: when ``agents.sessions.setStatus`` answers ``feature_disabled`` (the
  workspace) or ``not_agent_app`` (an app installed without the agent view), ``open`` sets
  today's ``assistant.threads.setStatus("is thinking…")`` instead, in the same call, with an
  info log line only (nothing the user should hear about), and the container remembers it:
  later answers go straight to the assistant status (``container.reset()`` forgets it; a new
  container asks again). ``close`` clears the status when nothing was posted (Slack clears it
  itself when the bot posts).

Every other error of the agent session call is raised as it is, as the assistant status's
were: ``channel_not_found``, ``not_in_channel``, ``invalid_auth``... mean no answer can be
posted.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from chalicelib import container
from chalicelib.kinds import SessionPath
from chalicelib.slack import messages, web

logger = logging.getLogger(__name__)

TITLE_CHARS = 200  # Slack's limit on a session's title
# What agents.sessions.setStatus answers where agent sessions are not to be had.
UNAVAILABLE = frozenset({"feature_disabled", "not_agent_app"})

_lock = threading.Lock()
_unavailable: str | None = None  # the error code that showed agent sessions missing, in this container


@container.register
def _forget_unavailable() -> None:
    global _unavailable
    with _lock:
        _unavailable = None


def _remember_unavailable(code: str) -> None:
    global _unavailable
    with _lock:
        first = _unavailable is None
        _unavailable = code
    if first:
        logger.info("agent sessions are unavailable here (%s): using the assistant status", code)


def title_of(question: str) -> str | None:
    """A session's title for ``question``: its first line's words, at most ``TITLE_CHARS``; None if empty."""
    line = " ".join(question.split())
    if len(line) > TITLE_CHARS:
        line = line[: TITLE_CHARS - 1].rstrip() + "…"
    return line or None


class Session:
    """One answer's session; see the module docstring."""

    def __init__(self, channel: str, thread_ts: str) -> None:
        self.channel = channel
        self.thread_ts = thread_ts
        self.path: SessionPath = "assistant" if _unavailable else "agent"
        self.calls = 0
        self._opened = False  # the open call landed, or may have (a timeout)

    def open(self, client: Any, title: str | None, initiator_user_id: str) -> None:
        if self.path == "agent":
            try:
                self._call(
                    web.set_session_status,
                    client,
                    self.channel,
                    self.thread_ts,
                    "processing",
                    title=title,
                    initiator_user_id=initiator_user_id,
                )
                return
            except web.SlackError as error:
                if error.code not in UNAVAILABLE:
                    raise
                _remember_unavailable(error.code)
                self.path = "assistant"
        self._call(web.set_status, client, self.channel, self.thread_ts, messages.THINKING_STATUS)

    def close(self, client: Any, posted: bool) -> None:
        if not self._opened:
            return
        try:
            if self.path == "agent":
                self._call(web.set_session_status, client, self.channel, self.thread_ts, "active")
            elif not posted:
                self._call(web.set_status, client, self.channel, self.thread_ts, "")
        except web.SlackError as error:
            logger.warning("could not end the thread's %s status: %s", self.path, error.code)
        finally:
            self._opened = False  # once: a second close makes no call

    def _call(self, call: Any, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        try:
            call(*args, **kwargs)
        except web.SlackError as error:
            self._opened = error.code == "timeout"
            raise
        self._opened = True
