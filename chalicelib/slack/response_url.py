"""The one seam that POSTs a message to a slash command's ``response_url``.

Contract: ``post(url, message)`` sends the message as JSON and returns ``True`` if Slack
accepted it, within ``WORST_CASE_SECONDS``. It never raises. It retries at most twice, only on
a 5xx answer or a connection that could not be made (Slack allows five uses of a URL); a 4xx,
or a timeout after the request was sent, is not retried, so the user never sees a reply twice.
One ``requests.Session`` per container keeps connections to Slack warm.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

logger = logging.getLogger(__name__)

TIMEOUT = (3.05, 5.0)  # (connect, read) seconds for each attempt
# The longest a post can take: three attempts and urllib3's backoff between them (0 s, then 1 s).
WORST_CASE_SECONDS = 3 * sum(TIMEOUT) + 1.0


@functools.cache
def _session() -> requests.Session:
    retry = Retry(
        total=2,
        connect=2,
        read=0,
        redirect=0,
        other=0,
        status=2,
        status_forcelist=range(500, 600),
        allowed_methods=frozenset({"POST"}),
        backoff_factor=0.5,
        # Otherwise urllib3 also retries a 413 or 429 that carries Retry-After: 4xx are final.
        respect_retry_after_header=False,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=64)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def post(url: str, message: dict[str, Any]) -> bool:
    try:
        response = _session().post(url, json=message, timeout=TIMEOUT)
    except requests.RequestException as error:
        logger.error("reply to response_url failed: %s", type(error).__name__)
        return False
    if response.status_code >= 300:
        # Slack's body is a short code such as "expired_url" or "no_text", never a secret.
        logger.error("reply to response_url answered %s: %.200s", response.status_code, response.text)
        return False
    return True
