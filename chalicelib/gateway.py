"""The HTTP function's job: take a slash command, hand it to the worker, acknowledge at once.

Contract: ``handle_slash_command(headers, body, environ, request_id)`` returns
``(status, json_body)`` and never raises for any input:

- 401 ``{"error": reason}`` unless the request carries a valid, fresh Slack signature;
- 400 ``{"error": reason}`` for a signed body that is not a slash command;
- 200 with an ephemeral message in every other case: a usage hint for empty text, "too
  long" above ``MAX_INPUT_CHARS``, "couldn't start" if dispatch fails, "not set up" if
  settings or the signing secret are unusable, or else the acknowledgement (the job is
  dispatched only in this last case).

It writes one JSON log line per request. It imports neither ``openai`` nor ``slack_sdk``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from chalicelib import logs, secrets
from chalicelib.dispatch import DispatchError, Job, dispatch
from chalicelib.settings import Settings, SettingsError
from chalicelib.slack import messages, signature
from chalicelib.slack.command import MalformedCommand, SlashCommand, parse

logger = logging.getLogger(__name__)

Result = tuple[int, dict[str, Any]]


def handle_slash_command(
    headers: Mapping[str, str], body: bytes, environ: Mapping[str, str], request_id: str | None
) -> Result:
    started = time.perf_counter()
    command: SlashCommand | None = None
    settings: Settings | None = None
    try:
        settings = Settings.from_env(environ)
        logs.configure(settings.log_level)
        signature.verify(
            secrets.slack_signing_secret(settings),
            headers.get("x-slack-request-timestamp"),
            headers.get("x-slack-signature"),
            body,
            time.time(),
        )
        command = parse(body)
        status, message, outcome = _answer(command, settings, environ)
    except SettingsError as error:
        logger.error("invalid setting: %s", error)
        status, message, outcome = 200, messages.not_configured(), "not_configured"
    except secrets.SecretUnavailable:
        status, message, outcome = 200, messages.not_configured(), "not_configured"
    except signature.InvalidSignature as error:
        status, message, outcome = 401, {"error": str(error)}, "invalid_signature"
    except MalformedCommand as error:
        status, message, outcome = 400, {"error": str(error)}, "malformed"
    fields: dict[str, Any] = {
        "request_id": request_id,
        "team_id": command and command.team_id,
        "channel_id": command and command.channel_id,
        "user_id": command and command.user_id,
        "outcome": outcome,
        "status": status,
        "ack_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    if command and settings and settings.log_message_text:
        fields["text"] = command.text
    logs.emit("command", **fields)
    return status, message


def _answer(command: SlashCommand, settings: Settings, environ: Mapping[str, str]) -> tuple[int, dict[str, Any], str]:
    if not command.text:
        return 200, messages.usage(command.command), "usage"
    if len(command.text) > settings.max_input_chars:
        return 200, messages.too_long(len(command.text), settings.max_input_chars), "too_long"
    job = Job(
        text=command.text,
        response_url=command.response_url,
        user_id=command.user_id,
        channel_id=command.channel_id,
        team_id=command.team_id,
    )
    try:
        dispatch(job, settings, environ)
    except DispatchError:
        return 200, messages.could_not_start(), "dispatch_failed"
    return 200, messages.acknowledgement(command.text), "dispatched"
