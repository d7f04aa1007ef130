"""The one seam that POSTs a message to a slash command's ``response_url``.

Contract: ``post(url, message, settings)`` sends the message as JSON, within
``WORST_CASE_SECONDS``, and returns a ``Delivery``: ``delivered`` is True once Slack accepted
it; otherwise ``error`` names why, as a short code for the log line (the codes are listed at
``Delivery``). It never raises, whatever the URL. Its log lines name a failure by its kind,
never with the URL (anyone holding it may post to the channel), the message or a secret; but
urllib3's own WARNING before retrying a connection that could not be made names the URL's path.

- Only a URL that ``command.response_url_refusal`` allows is posted to (``settings``'
  ``response_url_hosts`` and ``in_lambda``; when another setting is bad, the worker's
  ``Settings.reach_from_env(environ, "reply")`` still has both): the HTTP function refused any
  other already, and this check keeps a job that names one from carrying the answer there.
- No redirect is followed: a 3xx is a failure. Following one would re-POST the answer to
  wherever its ``Location`` says.
- It retries at most twice, only on a 5xx answer or a connection that could not be made
  (Slack allows five uses of a URL). A 4xx, a timeout or a reset after the request was sent is
  not retried, so the user never sees a reply twice.
- One ``requests.Session`` per container keeps connections to Slack warm, but a post after
  ``IDLE_SECONDS`` without one starts on fresh connections: see ``Connections``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from chalicelib.settings import Settings
from chalicelib.slack.command import response_url_refusal

logger = logging.getLogger(__name__)

TIMEOUT = (3.05, 5.0)  # (connect, read) seconds for each attempt
# The longest a post can take: three attempts and urllib3's backoff between them (0 s, then 1 s).
WORST_CASE_SECONDS = 3 * sum(TIMEOUT) + 1.0
# Pooled connections are dropped after this long without a post. A server closes an idle
# keep-alive connection after its own timeout (Node's 5 s is the shortest common default;
# load balancers keep them for a minute or more); if that close arrives while the Lambda
# sandbox is frozen, it is lost, the connection looks alive, and the next request on it is
# reset after it was sent. A connection idle for less than this was not closed by such a server.
IDLE_SECONDS = 4.0

# Slack's error body is a short code such as "expired_url" or "used_url"; anything else is
# logged by its status only.
_SLACK_CODE = re.compile(rb"[a-z0-9_]{1,64}")


@dataclass(frozen=True)
class Delivery:
    """How a post ended.

    ``error`` (when not delivered): ``refused`` (the URL is not allowed; ``detail`` says why),
    ``invalid_url``, ``redirect``, Slack's code for a 4xx or 5xx (``expired_url``…) or else
    ``http_<status>``, ``timeout``, ``connection_refused``, ``connection_reset``,
    ``connection_error``, or ``error`` for anything else. ``status`` is the last HTTP status
    received, if any.
    """

    delivered: bool
    error: str | None = None
    status: int | None = None
    detail: str | None = None

    def __bool__(self) -> bool:
        # ``if post(...)`` keeps meaning "if it was delivered", as when post returned a bool.
        return self.delivered


Clock = Callable[[], tuple[float, float]]


def _clocks() -> tuple[float, float]:
    # Both clocks: whether a frozen sandbox's monotonic clock counts the freeze is up to the
    # hypervisor, while the wall clock is re-synced after it. The larger gap is the true one.
    return time.monotonic(), time.time()


class Connections:
    """The container's pooled connections, dropped once idle longer than ``IDLE_SECONDS``.

    Dropping happens before a request is sent and sends nothing, and the retry policy is the
    same on a fresh connection: a request that may have reached the server is still never
    sent again. So this cannot make a reply arrive twice; it only spares the first post after
    an idle gap a connection the server may have closed. ``clock`` is injectable for tests.
    """

    def __init__(self, clock: Clock = _clocks) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self._last_used = clock()

    def session(self) -> requests.Session:
        with self._lock:
            now = self._clock()
            idle = max(now[0] - self._last_used[0], now[1] - self._last_used[1])
            if self._session is not None and idle > IDLE_SECONDS:
                # Closes the idle pooled connections; one another thread is using closes
                # when that request ends (urllib3 closes a connection returned to a closed pool).
                self._session.close()
                self._session = None
            if self._session is None:
                self._session = _new_session()
            self._last_used = now
            return self._session

    def used(self) -> None:
        """Note that a request just ended: its connection went back to the pool now."""
        with self._lock:
            self._last_used = self._clock()

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None


def _new_session() -> requests.Session:
    retry = Retry(
        total=2,
        connect=2,
        read=0,
        # requests passes redirect=False to urllib3, which so never follows one whatever this
        # says; requests' own following is turned off by allow_redirects=False in post().
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


_connections = Connections()


def post(url: str, message: dict[str, Any], settings: Settings, connections: Connections | None = None) -> Delivery:
    refusal = response_url_refusal(url, settings.response_url_hosts, settings.in_lambda)
    if refusal:
        logger.error("not replying: %s", refusal)
        return Delivery(False, "refused", detail=refusal)
    pool = connections or _connections
    try:
        response = pool.session().post(url, json=message, timeout=TIMEOUT, allow_redirects=False)
    except Exception as error:  # never raise: urllib3's LocationParseError, a ValueError, gets past requests
        kind = _failure(error)
        logger.error("reply to response_url failed: %s (%s)", kind, type(error).__name__)
        return Delivery(False, kind)
    finally:
        pool.used()
    status = response.status_code
    if 300 <= status < 400:
        logger.error("reply to response_url answered %s, a redirect: not followed", status)
        return Delivery(False, "redirect", status)
    if status >= 400:
        body = response.content.strip()
        code = body.decode() if _SLACK_CODE.fullmatch(body) else f"http_{status}"
        logger.error("reply to response_url answered %s: %s", status, code)
        return Delivery(False, code, status)
    return Delivery(True, status=status)


def _failure(error: BaseException) -> str:
    """A short name for why a request raised, from the exceptions it wraps."""
    if isinstance(error, requests.Timeout):
        return "timeout"
    if isinstance(error, (requests.exceptions.InvalidURL, ValueError)):
        return "invalid_url"
    if not isinstance(error, requests.ConnectionError):
        return "error"
    # requests wraps urllib3's errors, which wrap the socket's: in args, .reason and causes.
    chain: list[BaseException] = []
    pending: list[object] = [error]
    while pending:
        item = pending.pop()
        if isinstance(item, BaseException) and not any(item is seen for seen in chain):
            chain.append(item)
            pending.extend([*item.args, getattr(item, "reason", None), item.__cause__, item.__context__])
    if any(isinstance(item, ConnectionRefusedError) for item in chain):
        return "connection_refused"
    if any(isinstance(item, ConnectionResetError) for item in chain):  # http.client's RemoteDisconnected is one
        return "connection_reset"
    # After the two above: urllib3's NewConnectionError (a refusal) is a ConnectTimeoutError.
    if any(isinstance(item, (TimeoutError, urllib3.exceptions.TimeoutError)) for item in chain):
        return "timeout"  # a read timeout too: read=0 makes it a MaxRetryError, so a ConnectionError
    return "connection_error"
