"""The per-user rate limit: N questions a calendar minute, then the seconds to wait; in memory and on DynamoDB."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from chalicelib import claims, limits
from chalicelib.settings import Settings
from tests.conftest import new_container

TABLE = "mameka-test-claims"
REGION = "us-east-1"
IN_LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "mameka-test-worker", "IDEMPOTENCY_TABLE": TABLE}
MINUTE = 1_700_000_040.0  # 2023-11-14 22:14:00 UTC, the start of a minute


@pytest.fixture(autouse=True)
def fresh_memory() -> Iterator[None]:
    """Counts in memory start empty, as in a new container (and none is left for other tests)."""
    limits._memory = limits.MemoryCounts()
    yield
    limits._memory = limits.MemoryCounts()


@pytest.fixture
def table() -> Iterator[None]:
    with mock_aws():
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": claims.KEY_ATTRIBUTE, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": claims.KEY_ATTRIBUTE, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield


def settings(limit: str | None, **env: str) -> Settings:
    return Settings.from_env({**env, **({"USER_RATE_LIMIT_PER_MINUTE": limit} if limit else {})})


def limit_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == limits.__name__]


def test_the_limit_is_off_unless_set() -> None:
    off = settings(None)
    assert all(limits.check(off, "T1", "U1", now=MINUTE) is None for _ in range(1000))
    assert len(limits._memory) == 0  # nothing is counted either


@pytest.mark.parametrize("env", [{}, IN_LAMBDA], ids=["memory", "dynamodb"])
def test_the_question_over_the_limit_waits_for_the_next_minute(env: dict[str, str], request) -> None:
    if env:
        request.getfixturevalue("table")
    three = settings("3", **env)
    assert [limits.check(three, "T1", "U1", now=MINUTE + 10) for _ in range(3)] == [None, None, None]
    assert limits.check(three, "T1", "U1", now=MINUTE + 15.5) == 45  # 44.5 s to the next minute, rounded up
    assert limits.check(three, "T1", "U1", now=MINUTE + 59.9) == 1  # never "0 seconds"
    # Others are counted on their own: another user, the same user id in another workspace.
    assert limits.check(three, "T1", "U2", now=MINUTE + 20) is None
    assert limits.check(three, "T2", "U1", now=MINUTE + 20) is None
    # The next calendar minute starts afresh.
    assert [limits.check(three, "T1", "U1", now=MINUTE + 60 + i) for i in range(4)] == [None, None, None, 57]


def test_the_count_is_shared_by_containers_on_dynamodb(table) -> None:
    two = settings("2", **IN_LAMBDA)
    assert limits.check(two, "T1", "U1", now=MINUTE + 1) is None
    new_container()  # another container: its own boto3 client, and its own memory
    limits._memory = limits.MemoryCounts()
    assert limits.check(two, "T1", "U1", now=MINUTE + 2) is None
    new_container()
    limits._memory = limits.MemoryCounts()
    assert limits.check(two, "T1", "U1", now=MINUTE + 3) == 57
    assert len(limits._memory) == 0  # counted in the table only
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=TABLE, Key={claims.KEY_ATTRIBUTE: {"S": "rate#T1#U1#202311142214"}}
    )["Item"]
    # Deleted by TTL two minutes after its minute.
    assert (item["count"]["N"], item[claims.TTL_ATTRIBUTE]["N"]) == ("3", str(int(MINUTE) + 60 + 120))


def test_outside_lambda_the_table_is_not_used(table) -> None:
    one = settings("1", IDEMPOTENCY_TABLE=TABLE)  # chalice local with the stage's variables: memory
    assert limits.check(one, "T1", "U1", now=MINUTE) is None
    assert limits.check(one, "T1", "U1", now=MINUTE) == 60
    assert boto3.client("dynamodb", region_name=REGION).scan(TableName=TABLE)["Count"] == 0


def test_an_unreachable_table_allows_the_question_with_one_log_line(monkeypatch, caplog) -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{port}")
    assert limits.check(settings("1", **IN_LAMBDA), "T1", "U1", now=MINUTE) is None
    [line] = limit_logs(caplog)
    assert "(EndpointConnectionError)" in line and "U1" not in line


def test_a_missing_table_allows_the_question_with_one_log_line(table, caplog) -> None:
    nosuch = settings("1", AWS_LAMBDA_FUNCTION_NAME="f", IDEMPOTENCY_TABLE="mameka-nosuch-claims")
    caplog.set_level(logging.WARNING)
    assert limits.check(nosuch, "T1", "U1", now=MINUTE) is None
    [line] = limit_logs(caplog)
    assert "(ResourceNotFoundException)" in line


def test_threads_of_one_process_share_the_count() -> None:
    threads_count = 16
    limit = settings(str(threads_count // 2))
    start = threading.Barrier(threads_count)
    results: list[int | None] = []
    results_lock = threading.Lock()

    def ask() -> None:
        start.wait()
        wait = limits.check(limit, "T1", "U1", now=MINUTE + 30)
        with results_lock:
            results.append(wait)

    threads = [threading.Thread(target=ask) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results, key=lambda wait: wait or 0) == [None] * (threads_count // 2) + [30] * (threads_count // 2)


def test_memory_keeps_only_the_newest_minute_and_a_bounded_number_of_users() -> None:
    counts = limits.MemoryCounts(max_counters=100)
    minute = int(MINUTE // 60)
    for user in range(250):
        assert counts.add("T1", f"U{user}", minute) == 1
    assert len(counts) == 100  # the oldest users were forgotten
    assert counts.add("T1", "U249", minute) == 2  # the newest kept their count
    assert counts.add("T1", "U1", minute + 1) == 1
    assert len(counts) == 1  # a new minute: the old one limits no one
