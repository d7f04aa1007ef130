"""A fake AWS Lambda Invoke API on 127.0.0.1, for boto3 (``AWS_ENDPOINT_URL_LAMBDA``).

Contract: ``fake_lambda()`` is a ``devkit.http_fake.FakeServer`` that accepts every request
as an ``InvocationType="Event"`` invoke is accepted: HTTP 202, an empty body, a fresh
``x-amzn-RequestId``. ``invoked_function(path)`` is the function an Invoke API path names
(``/2015-03-31/functions/<name>/invocations``), or None for any other path: what a test or
the benchmark counts invokes by.

Standard library only; never imports ``chalicelib``.
"""

from __future__ import annotations

import uuid
from urllib.parse import unquote, urlsplit

from devkit.http_fake import FakeServer, Received, Reply

INVOKE_PREFIX = "/2015-03-31/functions/"
INVOKE_SUFFIX = "/invocations"


def accepted(received: Received) -> Reply:
    return Reply(202, b"", {"x-amzn-RequestId": str(uuid.uuid4())}, content_type="application/json")


def fake_lambda() -> FakeServer:
    return FakeServer(accepted)


def invoked_function(path: str) -> str | None:
    path = urlsplit(path).path
    if not (path.startswith(INVOKE_PREFIX) and path.endswith(INVOKE_SUFFIX)):
        return None
    return unquote(path[len(INVOKE_PREFIX) : -len(INVOKE_SUFFIX)])
