"""boto3 clients, made once per container and shared by every request.

Contract: ``client(service)`` returns the same client on every call in a process. boto3 is
imported on first use, so code paths that never touch AWS (local runs, tests) never pay for
it. Timeouts and retries are short: the HTTP function has Slack's 3 seconds to spend, and
Lambda invokes are never retried.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    # botocore retries read timeouts too; a retried Event invoke that Lambda had already
    # accepted would run the worker twice and the user would get two answers.
    attempts = 1 if service == "lambda" else 2
    return boto3.client(
        service,
        config=Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": attempts}),
    )


def error_code(error: Exception) -> str:
    """What to log about a failed call: AWS's error code (ParameterNotFound, AccessDeniedException...)
    when there is one, else the exception's class name. Never the message, which may quote input."""
    response = getattr(error, "response", None)  # botocore's ClientError has a dict; some errors None
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code or type(error).__name__
