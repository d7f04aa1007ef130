"""Our standard-library signature check, held to slack_sdk's SignatureVerifier as an oracle."""

from __future__ import annotations

import random
import string

import pytest
from slack_sdk.signature import Clock, SignatureVerifier

from chalicelib.slack.signature import InvalidSignature, sign, verify

NOW = 1_531_420_618


class FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def ours_accepts(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float) -> bool:
    try:
        verify(secret, timestamp, signature, body, now)
    except InvalidSignature:
        return False
    return True


def test_slack_documentation_example() -> None:
    # https://api.slack.com/authentication/verifying-requests-from-slack
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    timestamp = "1531420618"
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert sign(secret, timestamp, body) == expected
    verify(secret, timestamp, expected, body, now=NOW)


def random_body(rng: random.Random) -> bytes:
    text = "".join(rng.choice(string.printable + "豆香東京") for _ in range(rng.randint(0, 300)))
    return text.encode()


def tampered(rng: random.Random, secret: str, timestamp: str, signature: str, body: bytes):
    """Yield (secret, timestamp, signature, body, now) variants, some valid and most not."""
    now = float(int(timestamp))
    yield secret, timestamp, signature, body, now
    yield secret, timestamp, signature, body, now + rng.choice([299, 300, 301, 3600, -299, -301])
    yield secret + "x", timestamp, signature, body, now
    yield secret, timestamp, signature, body + b"x", now
    yield secret, str(int(timestamp) + 1), signature, body, now
    yield secret, timestamp, signature[:-1] + ("0" if signature[-1] != "0" else "1"), body, now
    yield secret, timestamp, signature.upper(), body, now
    yield secret, timestamp, "v1=" + signature[3:], body, now
    yield secret, timestamp, "", body, now
    yield secret, timestamp, None, body, now
    yield secret, None, signature, body, now


def test_agrees_with_slack_sdk_on_generated_requests() -> None:
    rng = random.Random(20261125)
    cases = accepted = 0
    for _ in range(300):
        secret = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(32))
        timestamp = str(rng.randint(1_500_000_000, 2_000_000_000))
        body = random_body(rng)
        signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
        for case in tampered(rng, secret, timestamp, signature, body):
            s, ts, sig, b, now = case
            oracle = SignatureVerifier(s, clock=FixedClock(now)).is_valid(body=b, timestamp=ts, signature=sig)
            assert ours_accepts(s, ts, sig, b, now) == oracle, case
            cases += 1
            accepted += oracle
    assert 300 <= accepted < cases / 2  # both outcomes were exercised


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "reason"),
    [
        (None, "v0=ab", b"", "missing X-Slack-Request-Timestamp header"),
        ("", "v0=ab", b"", "missing X-Slack-Request-Timestamp header"),
        (str(NOW), None, b"", "missing X-Slack-Signature header"),
        ("12.5", "v0=ab", b"", "X-Slack-Request-Timestamp is not an integer"),
        ("-5", "v0=ab", b"", "X-Slack-Request-Timestamp is not an integer"),
        ("１２３", "v0=ab", b"", "X-Slack-Request-Timestamp is not an integer"),  # non-ASCII digits
        ("1_531_420_618", "v0=ab", b"", "X-Slack-Request-Timestamp is not an integer"),
        ("9" * 5000, "v0=ab", b"", "X-Slack-Request-Timestamp is not an integer"),  # int() would raise
        (str(NOW - 301), "v0=ab", b"", "request timestamp is more than 5 minutes from now"),
        (str(NOW), "v0=ab", b"\xff\xfe", "request body is not UTF-8"),
        (str(NOW), "v0=ab", b"text=hi", "signature does not match"),
        (str(NOW), "v0=豆香", b"text=hi", "signature does not match"),  # non-ASCII must not crash compare_digest
    ],
)
def test_rejections_give_a_reason(timestamp: str | None, signature: str | None, body: bytes, reason: str) -> None:
    with pytest.raises(InvalidSignature, match=f"^{reason}$"):
        verify("secret", timestamp, signature, body, now=NOW)
