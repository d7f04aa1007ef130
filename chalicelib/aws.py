"""boto3 clients, made once per container and shared by every request.

Contract: ``client(service)`` returns the same client on every call in a process (until
``container.reset()``); ``quick_client(service)`` likewise, with one attempt and at most 1.5 s
per call. boto3 is
imported on first use, so code paths that never touch AWS (local runs, tests) never pay for
it. Timeouts and retries are short: the HTTP function has Slack's 3 seconds to spend, and
Lambda invokes are never retried. ``error_code(error)`` names a failed call's error for a log
line; ``is_transient(error)`` says whether it may work if tried again shortly.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from chalicelib import container

Service = Literal["lambda", "ssm", "dynamodb"]  # what the bot calls (policies/*.json allow no more)
# boto3's default session is not safe to make clients from in two threads at once (the worker's
# stop poll makes its client while the job's thread may be making another).
_making = threading.Lock()


@container.cached()
def client(service: Service) -> Any:
    # botocore retries read timeouts too; a retried Event invoke that Lambda had already
    # accepted would run the worker twice and the user would get two answers.
    attempts = 1 if service == "lambda" else 2
    return _make(service, connect_timeout=1.0, read_timeout=2.0, attempts=attempts)


@container.cached()
def quick_client(service: Service) -> Any:
    """A client for a call that must fit in a small part of Slack's 3 seconds, or that is made
    again a second later anyway (the stop mark and its poll, ``chalicelib.stops``): one attempt,
    0.5 s to connect and 1 s to read, so at most 1.5 s."""
    return _make(service, connect_timeout=0.5, read_timeout=1.0, attempts=1)


def _make(service: Service, connect_timeout: float, read_timeout: float, attempts: int) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": attempts},
    )
    with _making:
        return boto3.client(service, config=config)


def error_code(error: Exception) -> str:
    """What to log about a failed call: AWS's error code (ParameterNotFound, AccessDeniedException...)
    when there is one, else the exception's class name. Never the message, which may quote input."""
    response = getattr(error, "response", None)  # botocore's ClientError has a dict; some errors None
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code or type(error).__name__


# Codes that say "not now" rather than "not ever", as botocore's standard retry mode names
# them (botocore.retries.standard), plus the 5xx codes that SSM and other JSON services send.
_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "TooManyUpdates",
        "RequestLimitExceeded",
        "LimitExceededException",
        "BandwidthLimitExceeded",
        "SlowDown",
        "PriorRequestNotComplete",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalServerError",
        "InternalServerErrorException",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)
# botocore's timeouts and connection failures, by class name so that this module need not
# import botocore: ConnectTimeoutError and EndpointConnectionError are ConnectionErrors,
# ReadTimeoutError and ConnectionClosedError HTTPClientErrors (the classes botocore retries).
_TRANSIENT_CLASSES = frozenset({"ConnectionError", "HTTPClientError", "TimeoutError"})


def is_transient(error: Exception) -> bool:
    """Whether a failed call may well work if tried again shortly: throttling, a timeout, a
    connection that failed, or a 5xx. Not ParameterNotFound, AccessDenied(Exception) or
    NoCredentialsError: those stay until someone changes something."""
    if error_code(error) in _TRANSIENT_CODES:
        return True
    response = getattr(error, "response", None)
    metadata = response.get("ResponseMetadata", {}) if isinstance(response, dict) else {}
    status = metadata.get("HTTPStatusCode") if isinstance(metadata, dict) else None
    if isinstance(status, int) and status >= 500:
        return True
    return any(cls.__name__ in _TRANSIENT_CLASSES for cls in type(error).__mro__)
