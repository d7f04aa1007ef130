"""The per-user rate limit: at most ``USER_RATE_LIMIT_PER_MINUTE`` questions per user per minute.

Contract: ``check(settings, team_id, user_id, now=None)`` counts one question for that user in
the current calendar minute (UTC) and returns None when it is within the limit (or the limit
is off, or the count could not be kept), else the whole seconds, at least 1, until the next
minute, when the user may ask again. Every call counts, refused ones too: call it once per
question, before the LLM call. It never raises.

Where the counts live: with the claims table in use (``chalicelib.claims.table_name``: in
Lambda, ``IDEMPOTENCY_TABLE`` set) one item per user and minute, ``rate#<team>#<user>#<YYYYmmddHHMM>``,
counted by an atomic ``UpdateItem ADD`` and deleted by TTL two minutes after its minute, so
every container sees the same count; otherwise in this process's memory (thread-safe, bounded
by ``MAX_MEMORY_COUNTERS``). A table that cannot be reached or throttles allows the question,
with one log line naming the error code: the limit guards cost, not correctness. A count that
botocore sent again after a lost response may count one question twice (rare, and it errs by
one question towards the limit).
"""

from __future__ import annotations

import logging
import math
import threading
import time

from chalicelib import aws, claims, container
from chalicelib.settings import Settings

logger = logging.getLogger(__name__)

RATE_PREFIX = "rate#"
# A counter is kept two minutes past its own minute (a clock a little behind may still count
# on it), then DynamoDB's TTL deletes it.
COUNTER_GRACE_SECONDS = 120
# Users counted in one process's minute at most; past it the oldest counter is forgotten (that
# user gets a fresh count), so a flood of users cannot grow the process without bound.
MAX_MEMORY_COUNTERS = 10_000


def check(settings: Settings, team_id: str, user_id: str, now: float | None = None) -> int | None:
    limit = settings.user_rate_limit_per_minute
    if limit is None:
        return None
    now = time.time() if now is None else now
    minute = math.floor(now / 60)
    table = claims.table_name(settings)
    count = _memory.add(team_id, user_id, minute) if table is None else _count_in_table(table, team_id, user_id, minute)
    if count is None or count <= limit:
        return None
    return max(1, math.ceil((minute + 1) * 60 - now))


def counter_key(team_id: str, user_id: str, minute: int) -> str:
    """The counter's item key; ``minute`` is whole minutes since the epoch."""
    return f"{RATE_PREFIX}{team_id}#{user_id}#{time.strftime('%Y%m%d%H%M', time.gmtime(minute * 60))}"


def _count_in_table(table: str, team_id: str, user_id: str, minute: int) -> int | None:
    try:
        response = aws.client("dynamodb").update_item(
            TableName=table,
            Key={claims.KEY_ATTRIBUTE: {"S": counter_key(team_id, user_id, minute)}},
            # COUNT is a reserved word in DynamoDB's expressions: it needs a placeholder.
            UpdateExpression=f"ADD #count :one SET {claims.TTL_ATTRIBUTE} = :expires",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":expires": {"N": str((minute + 1) * 60 + COUNTER_GRACE_SECONDS)},
            },
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["count"]["N"])
    except Exception as error:  # the question goes ahead: the limit guards cost, not correctness
        logger.warning("the rate-limit table could not be used (%s): the question is allowed", aws.error_code(error))
        return None


class MemoryCounts:
    """Questions per (team, user, minute) in this process, thread-safe; only the newest minute is kept."""

    def __init__(self, max_counters: int = MAX_MEMORY_COUNTERS) -> None:
        self._max = max_counters
        self._lock = threading.Lock()
        self._newest_minute: int | None = None
        self._counts: dict[tuple[str, str, int], int] = {}

    def add(self, team_id: str, user_id: str, minute: int) -> int:
        """Count one question; the user's count in that minute, this one included."""
        with self._lock:
            if self._newest_minute is None or minute > self._newest_minute:
                # A new minute: the older ones no longer limit anyone.
                self._newest_minute = minute
                self._counts = {key: count for key, count in self._counts.items() if key[2] >= minute}
            key = (team_id, user_id, minute)
            count = self._counts.get(key, 0) + 1
            if key not in self._counts and len(self._counts) >= self._max:
                del self._counts[next(iter(self._counts))]  # the oldest counter
            self._counts[key] = count
            return count

    def __len__(self) -> int:
        with self._lock:
            return len(self._counts)


_memory = MemoryCounts()


@container.register
def _forget_counts() -> None:
    global _memory
    _memory = MemoryCounts()
