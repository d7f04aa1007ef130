"""A fake Slack ``response_url`` on 127.0.0.1: where a slash command's reply is POSTed.

Contract: ``fake_response_url()`` is a ``devkit.http_fake.FakeServer`` that answers as Slack's
response_url does (any path): HTTP 200 ``ok`` for a JSON object with a ``text``, ``blocks``
or ``attachments``; HTTP 400 ``invalid_payload`` for a body that is not a JSON object,
``no_text`` for one with none of them, and Slack's error for blocks it refuses
(``invalid_blocks``, ``msg_blocks_too_many``: ``devkit.slack_model.check_blocks``) and for
tables a message may not carry (``devkit.slack_model.table_refusal``: one table, in
``attachments``, within Slack's limits). Every request is recorded (``received``), so a test
reads there both a command's reply and the thanks for a vote. ``refusal(body)`` is that error
code, or None: what a client that reads the fake's requests (``scripts/ask.py``) reports.

Standard library only; never imports ``chalicelib``.
"""

from __future__ import annotations

import json

from devkit.http_fake import FakeServer, Received, Reply
from devkit.slack_model import Refusal, check_blocks, table_refusal


def refusal(body: bytes) -> str | None:
    try:
        message = json.loads(body)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        return "invalid_payload"
    if not message.get("text") and not message.get("blocks") and not message.get("attachments"):
        return "no_text"
    try:
        check_blocks(message.get("blocks"))
        table_refusal(message)
    except Refusal as error:
        return error.error
    return None


def as_slack_answers(received: Received) -> Reply:
    error = refusal(received.body)
    return Reply(400, error) if error else Reply(200, "ok")


def fake_response_url() -> FakeServer:
    return FakeServer(as_slack_answers)
