"""boto3 clients, made once per container and shared by every request.

Contract: ``client(service)`` returns the same client on every call in a process. boto3 is
imported on first use, so code paths that never touch AWS (local runs, tests) never pay for
it. Timeouts and retries are short: the HTTP function has Slack's 3 seconds to spend.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        config=Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2}),
    )
