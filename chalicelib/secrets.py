"""Secrets: from an environment variable if set, else from SSM Parameter Store.

Contract: ``slack_signing_secret(settings)``, ``openai_api_key(settings)`` and
``slack_bot_token(settings)`` return the secret, or raise ``SecretUnavailable`` with a
message that names the variable or parameter but never contains a secret. A set variable
always wins over a parameter name. A parameter is read once per container (SecureString,
decrypted) and cached; failures are not cached, so the next request tries again.
"""

from __future__ import annotations

import logging
import threading

from chalicelib import aws
from chalicelib.settings import Settings

logger = logging.getLogger(__name__)

_cache: dict[str, str] = {}
_lock = threading.Lock()


class SecretUnavailable(RuntimeError):
    """The secret is neither in the environment nor readable from SSM."""


def slack_signing_secret(settings: Settings) -> str:
    return settings.slack_signing_secret or _parameter(settings.slack_signing_secret_parameter)


def openai_api_key(settings: Settings) -> str:
    return settings.openai_api_key or _parameter(settings.openai_api_key_parameter)


def slack_bot_token(settings: Settings) -> str:
    return settings.slack_bot_token or _parameter(settings.slack_bot_token_parameter)


def _parameter(name: str) -> str:
    if name in _cache:
        return _cache[name]
    with _lock:  # one SSM call per parameter, even when many local jobs start at once
        if name not in _cache:
            _cache[name] = _fetch(name)
    return _cache[name]


def _fetch(name: str) -> str:
    try:
        response = aws.client("ssm").get_parameter(Name=name, WithDecryption=True)
        # Stripped like a variable's value: a pasted trailing newline would fail every request.
        value = response["Parameter"]["Value"].strip()
    except Exception as error:  # botocore's errors, no credentials, no network: all mean the same here
        reason = aws.error_code(error)
        logger.error("could not read SSM parameter %s: %s", name, reason)
        raise SecretUnavailable(f"SSM parameter {name} could not be read ({reason})") from None
    if not value:
        logger.error("SSM parameter %s is empty", name)
        raise SecretUnavailable(f"SSM parameter {name} is empty")
    return value
