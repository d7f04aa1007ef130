"""Claims on jobs, so that a job delivered twice is worked on once, in one container or many.

Contract: ``store(settings).claim(keys)`` is all-or-nothing. It returns True when none of
``keys`` is held (and then holds them all for ``CLAIM_TTL_SECONDS``), and False when any of
them is already held and not expired (and then claims nothing). ``MemoryClaims.release(keys)``
forgets claims whose work could not start (the HTTP function's memo of opened Messages tabs).
The keys of one job are its id and, for a message, ``channel:ts``: Slack redelivers an event
under the same ``event_id`` and has sent one message under two, and either must find the claim.

Which store: ``DynamoClaims`` on the table ``IDEMPOTENCY_TABLE`` names, shared by every
container, when that is set and the code runs in Lambda (``settings.in_lambda``);
otherwise ``MemoryClaims``, in this process (``chalice local``, the tests, a single container),
so that nothing but Lambda ever calls AWS. Either way one store per process
(``store(settings)``), shared by its threads, until ``container.reset()``.

``DynamoClaims`` writes every key in one ``TransactWriteItems`` (item ``claim#<key>``, TTL
attribute ``expires_at``), each on the condition "absent or expired": DynamoDB's TTL deletes
expired items only eventually (and moto never), so expiry is part of the condition. A key
held by another claim gives False; a transaction DynamoDB cancelled for a concurrent one on
the same key is tried again (``CONFLICT_ATTEMPTS`` in all), and then finds that claim. A table
that cannot be reached, is missing, refuses access or throttles (after botocore's one retry,
``chalicelib.aws``) gives True, with one log line naming the error code: a duplicate answer is
better than silence. It never raises.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from chalicelib import aws, container
from chalicelib.settings import Settings

logger = logging.getLogger(__name__)

# Slack's last retry of an event comes about 5 minutes after the first delivery, and a Lambda
# async invoke can sit a while in its queue: 15 minutes outlives both.
CLAIM_TTL_SECONDS = 900.0
# The table's schema (one table for claims and per-user counts: chalicelib.limits): a string
# partition key and no sort key; TTL on ``expires_at``, in epoch seconds.
KEY_ATTRIBUTE = "pk"
TTL_ATTRIBUTE = "expires_at"
CLAIM_PREFIX = "claim#"
# Two containers claiming one message at the same moment: DynamoDB may cancel one transaction
# for the other's sake (TransactionConflict) before either has committed. Trying again then
# finds the winner's claim (False) or, if that one was cancelled too, takes it (True).
CONFLICT_ATTEMPTS = 3
CONFLICT_BACKOFF_SECONDS = 0.025
_ABSENT_OR_EXPIRED = f"attribute_not_exists({KEY_ATTRIBUTE}) OR {TTL_ATTRIBUTE} < :now"


class ClaimStore(Protocol):
    def claim(self, keys: Sequence[str]) -> bool:
        """True: all keys were free and are now claimed. False: some key is already claimed
        (not expired), and nothing was claimed."""
        ...


class MemoryClaims:
    """A thread-safe ``ClaimStore`` in this process's memory, each claim expiring ``ttl_seconds``
    after it was made (by ``clock``, which must not go backwards)."""

    def __init__(self, ttl_seconds: float = CLAIM_TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # key -> expiry time. Every claim gets the same TTL from a clock that only moves on, so
        # insertion order is expiry order: the expired keys are always at the front, and
        # purging them costs only as much as there is to purge.
        self._expiries: dict[str, float] = {}

    def claim(self, keys: Sequence[str]) -> bool:
        with self._lock:
            now = self._clock()
            self._purge(now)
            if any(key in self._expiries for key in keys):  # after the purge, held means not expired
                return False
            expires_at = now + self._ttl
            for key in keys:
                self._expiries[key] = expires_at
            return True

    def release(self, keys: Sequence[str]) -> None:
        """Forget the claims on ``keys``: the work they stood for could not start, and a later
        try must be able to claim them."""
        with self._lock:
            for key in keys:
                self._expiries.pop(key, None)  # removing keeps the others in expiry order

    def __len__(self) -> int:
        """How many keys are held, counting expired ones not purged yet (for tests and logs)."""
        with self._lock:
            return len(self._expiries)

    def _purge(self, now: float) -> None:
        expiries = self._expiries
        while expiries:
            key = next(iter(expiries))
            if expiries[key] > now:
                break
            del expiries[key]


class DynamoClaims:
    """A ``ClaimStore`` on a DynamoDB table, shared by every container that names it.

    ``client`` is a boto3 DynamoDB client (default: the container's, ``aws.client``, made on the
    first claim); ``clock`` gives epoch seconds (it is compared with other containers' claims).
    """

    def __init__(
        self,
        table_name: str,
        client: Any = None,
        clock: Callable[[], float] = time.time,
        ttl_seconds: float = CLAIM_TTL_SECONDS,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.table_name = table_name
        self._client = client
        self._clock = clock
        self._ttl = ttl_seconds

    def claim(self, keys: Sequence[str]) -> bool:
        unique = list(dict.fromkeys(keys))  # one transaction may not touch an item twice
        if not unique:
            return True
        attempt = 1
        while True:
            now = self._clock()
            try:
                client = self._client if self._client is not None else aws.client("dynamodb")
                # botocore gives the call a ClientRequestToken and keeps it for its own retry, so
                # a retry after a lost response finds its own write done, not a foreign claim.
                client.transact_write_items(TransactItems=[self._put(key, now) for key in unique])
                return True
            except Exception as error:  # whatever it is, the job must not be lost for it
                reasons = _cancellation_reasons(error)
                if "ConditionalCheckFailed" in reasons:
                    return False
                if "TransactionConflict" in reasons and attempt < CONFLICT_ATTEMPTS:
                    time.sleep(CONFLICT_BACKOFF_SECONDS * attempt)
                    attempt += 1
                    continue
                code = aws.error_code(error)
                if reasons:  # TransactionCanceledException: say why (ThrottlingError...)
                    code += ":" + ",".join(sorted(set(reasons)))
                logger.warning("the claims table could not be used (%s): the job goes ahead unclaimed", code)
                return True

    def _put(self, key: str, now: float) -> dict[str, Any]:
        # Whole seconds, rounded so that a claim holds at least the TTL: expired only once the
        # clock has passed its expiry.
        return {
            "Put": {
                "TableName": self.table_name,
                "Item": {
                    KEY_ATTRIBUTE: {"S": CLAIM_PREFIX + key},
                    TTL_ATTRIBUTE: {"N": str(math.ceil(now + self._ttl))},
                },
                "ConditionExpression": _ABSENT_OR_EXPIRED,
                "ExpressionAttributeValues": {":now": {"N": str(math.floor(now))}},
            }
        }


def _cancellation_reasons(error: Exception) -> list[str]:
    """The per-item codes of a cancelled transaction (``"None"`` for an item that was fine left out)."""
    response = getattr(error, "response", None)
    reasons = response.get("CancellationReasons") if isinstance(response, dict) else None
    if not isinstance(reasons, list):
        return []
    codes = (reason.get("Code") for reason in reasons if isinstance(reason, dict))
    return [code for code in codes if isinstance(code, str) and code != "None"]


def table_name(settings: Settings | None) -> str | None:
    """The DynamoDB table for claims and per-user counts, or None for this process's memory.

    Only in Lambda: ``chalice local`` and the tests never call AWS, whatever their settings say.
    """
    if settings is None or not settings.in_lambda:
        return None
    return settings.idempotency_table


_store: ClaimStore | None = None
_store_lock = threading.Lock()


@container.register
def _forget_store() -> None:
    global _store
    with _store_lock:
        _store = None


def store(settings: Settings | None = None) -> ClaimStore:
    """The process-wide claim store: one per Lambda container, shared by its worker threads.

    ``settings`` choose it (``table_name``); None (settings that could not be read) means memory.
    """
    global _store
    table = table_name(settings)
    with _store_lock:  # two local jobs starting at once must not each get a store of their own
        if table is None:
            if not isinstance(_store, MemoryClaims):
                _store = MemoryClaims()
        elif not (isinstance(_store, DynamoClaims) and _store.table_name == table):
            _store = DynamoClaims(table)
        return _store
