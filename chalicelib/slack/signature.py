"""Slack request signatures (v0), checked with the standard library.

Contract: ``verify(secret, timestamp, signature, body, now)`` returns ``None`` when the
request is signed by Slack within the replay window, and raises ``InvalidSignature`` with a
short, client-safe reason otherwise (``SignatureMismatch``, a subclass, when only the
signature itself is wrong). It never raises anything else, whatever the input.

Why not ``slack_sdk.signature``: importing it loads slack_sdk's whole ``WebClient`` and
asyncio, 40-90 ms of cold start in the HTTP function. Tests hold this check to the SDK's
``SignatureVerifier`` as an oracle.
"""

from __future__ import annotations

import hashlib
import hmac

MAX_AGE_SECONDS = 60 * 5


class InvalidSignature(ValueError):
    """The request is not proven to come from Slack. ``str(error)`` is safe to send back."""


class SignatureMismatch(InvalidSignature):
    """Well-formed and fresh, but signed with another secret: ours may have been rotated."""


def verify(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
    if not timestamp:
        raise InvalidSignature("missing X-Slack-Request-Timestamp header")
    if not signature:
        raise InvalidSignature("missing X-Slack-Signature header")
    # The length cap keeps int() cheap and in range whatever a caller sends.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 15:
        raise InvalidSignature("X-Slack-Request-Timestamp is not an integer")
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        raise InvalidSignature("request timestamp is more than 5 minutes from now")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSignature("request body is not UTF-8") from None
    expected = sign(secret, timestamp, body)
    # Bytes, because compare_digest refuses str with non-ASCII characters.
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise SignatureMismatch("signature does not match")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` value Slack would send for this timestamp and body."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
