"""Structured logs: one JSON line per command (HTTP function) and per answer (worker).

Contract: ``emit(event, **fields)`` writes one JSON object on one line to stdout, which
Lambda sends to CloudWatch Logs, where Logs Insights discovers its fields. It is a direct
write, not a ``logging`` record: about 6 µs against 24 µs, on a handler of about 600 µs.
Callers pass ids, timings and outcomes; message text only when ``LOG_MESSAGE_TEXT`` is on.
``configure(level)`` sets the level of ordinary ``logging`` records (``LOG_LEVEL``); even at
DEBUG, the HTTP libraries stay at INFO so that no request or response body reaches the logs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from chalicelib import container

_configured_level: str | None = None
# At DEBUG these log whole HTTP exchanges, and an SSM response body holds a decrypted secret.
# slack_sdk's hold message text and whole threads (conversations.replies).
_QUIET_LIBRARIES = ("botocore", "boto3", "urllib3", "openai", "httpx2", "httpcore2", "slack_sdk")


# Made once: json.dumps with any option but the defaults builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def emit(event: str, **fields: Any) -> None:
    line = _ENCODER.encode({"event": event, **fields})
    if not line.isascii():
        # A lone surrogate (a model name an LLM server sent as "\ud83d") cannot be written as UTF-8.
        line = line.encode("utf-8", "replace").decode("utf-8")
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def ms_since(started: float) -> int:
    """Whole milliseconds since ``started`` (a ``time.perf_counter()`` reading), for a log field."""
    return round((time.perf_counter() - started) * 1000)


def configure(level: str) -> None:
    global _configured_level
    if level == _configured_level:
        return
    root = logging.getLogger()
    if not root.handlers:  # Lambda's runtime installs a handler; elsewhere, print to stderr
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    root.setLevel(level)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLevelName(level)))
    # Its retry warnings quote the URL, and a response_url's path is a capability to post as the bot.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    _configured_level = level


@container.register
def _forget_level() -> None:
    """A new container's logging is configured afresh on its first request."""
    global _configured_level
    _configured_level = None
