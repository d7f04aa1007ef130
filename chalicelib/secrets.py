"""Secrets: from an environment variable if set, else from SSM Parameter Store.

Contract: ``slack_signing_secret(settings)``, ``openai_api_key(settings)`` and
``slack_bot_token(settings)`` return the secret, or raise ``SecretUnavailable`` with a
message that names the variable or parameter but never contains a secret; its ``transient``
says whether trying again shortly may work (SSM throttled, timed out, unreachable, a 5xx) or
not (a missing parameter, access denied, an empty value, no credentials). A set variable
always wins over a parameter name, and is never read again. With ``OPENAI_BASE_URL`` on
loopback and no ``OPENAI_API_KEY``, the key is a placeholder: a local server needs none.

A parameter (SecureString, decrypted) is cached per container for at most
``SECRETS_TTL_SECONDS``, so that ``make secrets`` reaches warm containers. When the TTL has
passed and reading it again fails, the value already held is served (stale-while-error: one
WARNING line per failed read, never the value), and SSM is not asked again before a backoff
(``BACKOFF_FIRST_SECONDS``, doubling up to ``BACKOFF_MAX_SECONDS``); the first read that
works starts a fresh TTL. With no value held (a cold container, or one forgotten), a failure
raises and is not cached, so the next request tries again. When a secret is rejected (a
signature that does not match, a 401 from the LLM, ``invalid_auth`` from Slack),
``signing_secret_rejected(settings)`` and its two siblings forget that one parameter, value
included (a rejected value is no value to fall back on), so that it is read afresh at once,
at most once per ``REREAD_INTERVAL_SECONDS`` per parameter (a flood of forged requests must
not become a flood of SSM calls); they return whether it was forgotten.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib import aws, container
from chalicelib.settings import Settings

logger = logging.getLogger(__name__)

REREAD_INTERVAL_SECONDS = 60.0
# After a failed refresh of a value still held: SSM is asked again after 1 s, 2 s, 4 s... at
# most a minute apart, so that an SSM outage or throttling is not made worse by every request.
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
LOCAL_SERVER_KEY = "no-key-needed-for-a-local-server"


class SecretUnavailable(RuntimeError):
    """The secret is neither in the environment nor readable from SSM.

    ``transient`` is True when SSM may well answer if asked again shortly (throttling, a
    timeout, a connection that failed, a 5xx): the caller can say "busy, try again" rather
    than "not set up".
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def slack_signing_secret(settings: Settings) -> str:
    return settings.slack_signing_secret or _cache.get(settings.slack_signing_secret_parameter, settings)


def openai_api_key(settings: Settings) -> str:
    if settings.openai_api_key:
        return settings.openai_api_key
    if settings.llm_is_local:  # a local server asks for no key, but the SDK insists on one
        return LOCAL_SERVER_KEY
    return _cache.get(settings.openai_api_key_parameter, settings)


def slack_bot_token(settings: Settings) -> str:
    return settings.slack_bot_token or _cache.get(settings.slack_bot_token_parameter, settings)


def reread_openai_api_key(settings: Settings) -> str | None:
    """After a 401 from the LLM: the key read afresh from SSM, or None when there is no new
    one to try (it came from the environment, was re-read within the minute, or is unreadable)."""
    if not openai_api_key_rejected(settings):
        return None
    try:
        return openai_api_key(settings)
    except SecretUnavailable:
        return None


def signing_secret_rejected(settings: Settings) -> bool:
    return settings.slack_signing_secret is None and _cache.forget(settings.slack_signing_secret_parameter)


def openai_api_key_rejected(settings: Settings) -> bool:
    return settings.openai_api_key is None and _cache.forget(settings.openai_api_key_parameter)


def slack_bot_token_rejected(settings: Settings) -> bool:
    return settings.slack_bot_token is None and _cache.forget(settings.slack_bot_token_parameter)


@dataclass
class _Entry:
    value: str
    read_at: float  # when SSM last gave this value: the TTL counts from here
    failures: int = 0  # failed refreshes in a row since then
    retry_at: float = 0.0  # no SSM call before this, after a failed refresh


class ParameterCache:
    """SSM parameters by name, each kept for a time; ``clock`` is injectable so tests need no sleeping."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._forgotten_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, name: str, settings: Settings) -> str:
        # One SSM call per parameter, even when many local jobs start at once.
        with self._lock:
            now = self._clock()
            entry = self._entries.get(name)
            if entry is not None and (now - entry.read_at < settings.secrets_ttl_seconds or now < entry.retry_at):
                return entry.value
            held, delay = "", 0.0  # what the log line adds when a held value is served instead
            if entry is not None:
                delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2**entry.failures)
                held = f"; serving the value read {now - entry.read_at:.0f} s ago, trying again in {delay:g} s"
            try:
                value = _fetch(name, held)
            except SecretUnavailable:
                if entry is None:  # nothing to fall back on
                    raise
                # The value a moment ago is still the best guess: the TTL exists so that `make secrets`
                # reaches warm containers, not because a value goes bad with age.
                entry.failures += 1
                entry.retry_at = now + delay
                return entry.value
            self._entries[name] = _Entry(value, now)
            return value

    def forget(self, name: str) -> bool:
        with self._lock:
            now = self._clock()
            last = self._forgotten_at.get(name)
            if last is not None and now - last < REREAD_INTERVAL_SECONDS:
                return False
            self._forgotten_at[name] = now
            self._entries.pop(name, None)
            logger.warning("SSM parameter %s was rejected; it will be read again", name)
            return True


_cache = ParameterCache()


@container.register
def _forget_parameters() -> None:
    global _cache
    _cache = ParameterCache()


def _fetch(name: str, held: str = "") -> str:
    """The parameter's value, or ``SecretUnavailable``. A failure is logged once, never with a
    value: an ERROR, or a WARNING ending with ``held`` when a value held will be served instead."""
    level = logging.WARNING if held else logging.ERROR
    try:
        response = aws.client("ssm").get_parameter(Name=name, WithDecryption=True)
        # Stripped like a variable's value: a pasted trailing newline would fail every request.
        value: str = response["Parameter"]["Value"].strip()
    except Exception as error:  # botocore's errors, no credentials, no network: all mean the same here
        reason = aws.error_code(error)
        logger.log(level, "could not read SSM parameter %s: %s%s", name, reason, held)
        raise SecretUnavailable(
            f"SSM parameter {name} could not be read ({reason})", transient=aws.is_transient(error)
        ) from None
    if not value:
        logger.log(level, "SSM parameter %s is empty%s", name, held)
        raise SecretUnavailable(f"SSM parameter {name} is empty")
    return value
