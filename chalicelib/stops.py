"""Slack's stop button: from the HTTP function that hears the stop to the answer it stops.

Contract:

- ``record(settings, channel_id, thread_ts, event_ts)`` marks the thread stopped at
  ``event_ts`` (when the user pressed stop). It never raises but ``StopNotRecorded``, when the
  mark could not be written (the gateway then answers 503 and Slack delivers the event again).
- ``watching(settings, channel_id, thread_ts, job_ts)`` is a context manager that gives a
  ``StopSignal`` for one answer, set once a mark in its thread applies to it, and forgets the
  answer on exit. A stop applies to the work it was pressed on: a mark whose ``event_ts`` is
  not before the job's own ``ts``. A later question in the same thread is not stopped.
- ``StopSignal``: ``is_set()``, ``wait(seconds)``; ``on_stop(callback)`` runs ``callback`` in
  the thread that sets the signal (at once if it is set already), and returns a function that
  unregisters it: the answer closes its LLM stream this way, from the signalling thread, so a
  read blocked on the socket returns at once. ``check_now()`` looks at the store itself (a
  consistent read in DynamoDB) before Slack's ``message_not_in_streaming_state`` is taken for
  an expired stream: the poll may not have seen the mark yet; ``check_within(seconds)`` goes on
  looking for up to ``seconds`` (Slack stops the streams before it sends the event, so an append
  can be refused a moment before the mark is written). Callbacks never raise out of it.

Which store, as ``chalicelib.claims`` chooses (its ``table_name``): ``DynamoStops`` on
``IDEMPOTENCY_TABLE`` in Lambda, else ``MemoryStops`` in this process. In memory (``chalice
local``, tests: the worker is a thread of the same process) ``record`` sets the running
answer's signal at once, in the request's thread; a mark recorded before the worker starts
(kept ``STOP_TTL_SECONDS``) stops it at its start. In DynamoDB the HTTP function writes an item
``stop#<channel>:<thread_ts>`` (``event_ts``, ``stopped_at``, TTL ``expires_at``) with one
conditional PutItem (a redelivered older stop never replaces a newer one), through
``aws.quick_client`` so that it fits in Slack's 3 seconds; the worker polls it with a consistent
GetItem every ``POLL_SECONDS``, in a daemon thread that runs only while an answer runs (started
by ``watching``, stopped on its exit; its first read is at once). A read that fails is logged
once per answer and tried again at the next poll. So the stop is seen within ``POLL_SECONDS`` plus
one read (at most 1.5 s) in Lambda, and at once locally.

Standard library only (boto3 lazily, in Lambda): the HTTP function imports it.
"""

from __future__ import annotations

import contextlib
import decimal
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from chalicelib import aws, claims, container
from chalicelib.settings import Settings

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # the worker's read of the stop mark, while an answer runs
READ_SECONDS = 1.5  # the longest one read or write takes (aws.quick_client)
RECHECK_SECONDS = 0.25  # check_within: how often the store is read again while it waits
# A mark outlives any job it may stop that has not started yet: Lambda keeps an async event at
# most 600 s (make deploy's MaximumEventAgeInSeconds), and the worker drops older ones.
STOP_TTL_SECONDS = 600.0
STOP_PREFIX = "stop#"
EVENT_TS_ATTRIBUTE = "event_ts"
_NEWER_THAN_MARK = (
    f"attribute_not_exists({claims.KEY_ATTRIBUTE}) OR {EVENT_TS_ATTRIBUTE} < :event_ts OR {claims.TTL_ATTRIBUTE} < :now"
)


class StopNotRecorded(Exception):
    """The stop mark could not be written; ``str(error)`` is AWS's error code, safe to log."""


def applies(event_ts: str, job_ts: str) -> bool:
    """Whether a stop pressed at ``event_ts`` stops the job asked at ``job_ts``: not a later question."""
    return _ts_value(event_ts) >= _ts_value(job_ts)


def _ts_value(ts: str) -> decimal.Decimal:
    try:
        return decimal.Decimal(ts)
    except decimal.InvalidOperation:
        return decimal.Decimal(0)


class StopSignal:
    """One answer's stop; see the module docstring. Thread-safe."""

    def __init__(self, check: Callable[[], bool] | None = None) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next_id = 0
        self._check = check

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking at once when stopped; whether it is stopped."""
        return self._event.wait(max(seconds, 0.0))

    def set(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks = list(self._callbacks.values())
        for callback in callbacks:
            _call_quietly(callback)

    def on_stop(self, callback: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            if not self._event.is_set():
                key = self._next_id
                self._next_id += 1
                self._callbacks[key] = callback

                def unregister() -> None:
                    with self._lock:
                        self._callbacks.pop(key, None)

                return unregister
        _call_quietly(callback)
        return lambda: None

    def check_now(self) -> bool:
        if not self._event.is_set() and self._check is not None and self._check():
            self.set()
        return self._event.is_set()

    def check_within(self, seconds: float) -> bool:
        """``check_now``, again every ``RECHECK_SECONDS`` (and at once when set) for up to ``seconds``."""
        deadline = time.monotonic() + seconds
        while not self.check_now():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._event.wait(min(left, RECHECK_SECONDS))
        return True


def _call_quietly(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # the signalling thread is the gateway's request, or the poll: it must go on
        logger.exception("a stop callback failed")


class StopStore(Protocol):
    def record(self, channel_id: str, thread_ts: str, event_ts: str) -> None: ...

    def watching(
        self, channel_id: str, thread_ts: str, job_ts: str
    ) -> contextlib.AbstractContextManager[StopSignal]: ...


class MemoryStops:
    """Stop marks in this process; ``record`` sets the signals of the answers it applies to."""

    def __init__(self, ttl_seconds: float = STOP_TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._marks: dict[tuple[str, str], tuple[str, float]] = {}  # thread -> (newest event_ts, expiry)
        self._watchers: dict[tuple[str, str], list[tuple[str, StopSignal]]] = {}  # thread -> (job ts, signal)

    def record(self, channel_id: str, thread_ts: str, event_ts: str) -> None:
        key = (channel_id, thread_ts)
        with self._lock:
            now = self._clock()
            self._purge(now)
            known = self._marks.get(key)
            if known is None or _ts_value(known[0]) < _ts_value(event_ts):
                self._marks[key] = (event_ts, now + self._ttl)
            stopped = [signal for job_ts, signal in self._watchers.get(key, []) if applies(event_ts, job_ts)]
        for signal in stopped:
            signal.set()

    @contextlib.contextmanager
    def watching(self, channel_id: str, thread_ts: str, job_ts: str) -> Iterator[StopSignal]:
        key = (channel_id, thread_ts)
        signal = StopSignal()
        entry = (job_ts, signal)
        with self._lock:
            self._purge(self._clock())
            mark = self._marks.get(key)
            self._watchers.setdefault(key, []).append(entry)
        if mark is not None and applies(mark[0], job_ts):
            signal.set()  # pressed before the worker started
        try:
            yield signal
        finally:
            with self._lock:
                watchers = self._watchers.get(key, [])
                if entry in watchers:
                    watchers.remove(entry)
                if not watchers:
                    self._watchers.pop(key, None)

    def _purge(self, now: float) -> None:
        for key in [key for key, (_, expires) in self._marks.items() if expires <= now]:
            del self._marks[key]


class DynamoStops:
    """Stop marks in the claims table, shared by the HTTP function and every worker container."""

    def __init__(
        self,
        table_name: str,
        client: Any = None,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = POLL_SECONDS,
        ttl_seconds: float = STOP_TTL_SECONDS,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self._clock = clock
        self.poll_seconds = poll_seconds
        self._ttl = ttl_seconds

    def _dynamodb(self) -> Any:
        return self._client if self._client is not None else aws.quick_client("dynamodb")

    def record(self, channel_id: str, thread_ts: str, event_ts: str) -> None:
        now = self._clock()
        try:
            self._dynamodb().put_item(
                TableName=self.table_name,
                Item={
                    claims.KEY_ATTRIBUTE: {"S": _key(channel_id, thread_ts)},
                    EVENT_TS_ATTRIBUTE: {"N": event_ts},
                    "stopped_at": {"N": str(math.floor(now))},
                    claims.TTL_ATTRIBUTE: {"N": str(math.ceil(now + self._ttl))},
                },
                ConditionExpression=_NEWER_THAN_MARK,
                ExpressionAttributeValues={":event_ts": {"N": event_ts}, ":now": {"N": str(math.floor(now))}},
            )
        except Exception as error:
            code = aws.error_code(error)
            if code == "ConditionalCheckFailedException":
                return  # a newer stop is marked already: it covers everything this one would
            logger.error("could not record a stop in the claims table: %s", code)
            raise StopNotRecorded(code) from None

    def stopped(self, channel_id: str, thread_ts: str, job_ts: str) -> bool:
        """One consistent read: is there a mark that stops the job asked at ``job_ts``? Raises on failure."""
        item = (
            self._dynamodb()
            .get_item(
                TableName=self.table_name,
                Key={claims.KEY_ATTRIBUTE: {"S": _key(channel_id, thread_ts)}},
                ConsistentRead=True,  # eventually consistent could miss a mark written a moment ago
            )
            .get("Item")
        )
        if not item:
            return False
        expires = float(item.get(claims.TTL_ATTRIBUTE, {}).get("N", "inf"))
        event_ts = item.get(EVENT_TS_ATTRIBUTE, {}).get("N", "0")
        return expires >= self._clock() and applies(event_ts, job_ts)

    @contextlib.contextmanager
    def watching(self, channel_id: str, thread_ts: str, job_ts: str) -> Iterator[StopSignal]:
        warned = threading.Event()

        def check() -> bool:
            try:
                return self.stopped(channel_id, thread_ts, job_ts)
            except Exception as error:  # the answer goes on; the next poll tries again
                if not warned.is_set():
                    warned.set()
                    logger.warning("could not read the stop mark: %s", aws.error_code(error))
                return False

        signal = StopSignal(check)
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                if signal.check_now():
                    return
                done.wait(self.poll_seconds)

        poller = threading.Thread(target=poll, name="mameka-stop-poll", daemon=True)
        poller.start()
        try:
            yield signal
        finally:
            done.set()
            # At most one read in flight (1.5 s at worst): Lambda freezes the sandbox once the
            # handler returns, and a thread frozen mid-read would wake in the next invocation.
            poller.join(timeout=READ_SECONDS)


def _key(channel_id: str, thread_ts: str) -> str:
    return f"{STOP_PREFIX}{channel_id}:{thread_ts}"


_store: StopStore | None = None
_store_lock = threading.Lock()


@container.register
def _forget_store() -> None:
    global _store
    with _store_lock:
        _store = None


def store(settings: Settings | None) -> StopStore:
    """The process-wide stop store, chosen as the claims' is (``claims.table_name``)."""
    global _store
    table = claims.table_name(settings)
    with _store_lock:
        if table is None:
            if not isinstance(_store, MemoryStops):
                _store = MemoryStops()
        elif not (isinstance(_store, DynamoStops) and _store.table_name == table):
            _store = DynamoStops(table)
        return _store


def record(settings: Settings, channel_id: str, thread_ts: str, event_ts: str) -> None:
    store(settings).record(channel_id, thread_ts, event_ts)


def watching(
    settings: Settings, channel_id: str, thread_ts: str, job_ts: str
) -> contextlib.AbstractContextManager[StopSignal]:
    return store(settings).watching(channel_id, thread_ts, job_ts)
