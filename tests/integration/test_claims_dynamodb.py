"""Claims shared by containers, on DynamoDB (moto): one winner per job, expiry in the condition, fault rows.

Two "containers" are two ``DynamoClaims`` instances with boto3 clients of their own on the
same moto table. moto's DynamoDB handles concurrent requests without a lock (a transaction
copies the table, checks, writes, and on failure puts its copy back, over the other
request's write), which real DynamoDB never does: ``dynamo`` serves one DynamoDB request at a
time, so that a race between our two containers tests our code, not moto's.

Faults moto cannot produce (throttling, a transaction conflict, access denied) come from
botocore's ``Stubber``, with the error shapes DynamoDB sends.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.dynamodb.responses import DynamoHandler

from chalicelib import aws, claims, worker
from chalicelib.deadline import Deadline
from chalicelib.settings import Settings
from chalicelib.slack import events
from devkit import slack_requests
from devkit.fake_slack_api import FakeSlackAPI
from devkit.http_fake import FakeServer
from tests.conftest import closed_port, new_container

TABLE = "mameka-test-claims"
REGION = "us-east-1"
IN_LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "mameka-test-worker", "IDEMPOTENCY_TABLE": TABLE}
EVENT, MESSAGE = "Ev0001", "C1:1700000000.000100"


class Clock:
    """Epoch seconds that the test moves by hand: expiry is checked without sleeping."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def create_table(client: Any, name: str = TABLE) -> None:
    """The table as `make deploy` creates it: partition key ``pk`` (S), on-demand, TTL on ``expires_at``."""
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": claims.KEY_ATTRIBUTE, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": claims.KEY_ATTRIBUTE, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": claims.TTL_ATTRIBUTE}
    )


@pytest.fixture
def dynamo(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Any]]:
    """moto's DynamoDB with the table, serving one request at a time; yields a maker of fresh clients."""
    lock = threading.RLock()
    call_action = DynamoHandler.call_action

    def one_at_a_time(self: DynamoHandler) -> Any:
        with lock:
            return call_action(self)

    monkeypatch.setattr(DynamoHandler, "call_action", one_at_a_time)
    with mock_aws():

        def new_client() -> Any:
            return boto3.client("dynamodb", region_name=REGION)

        create_table(new_client())
        yield new_client


def claim_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == claims.__name__]


def stored_expiry(client: Any, key: str) -> int | None:
    item = client.get_item(TableName=TABLE, Key={claims.KEY_ATTRIBUTE: {"S": claims.CLAIM_PREFIX + key}}).get("Item")
    return None if item is None else int(item[claims.TTL_ATTRIBUTE]["N"])


# --- which store ------------------------------------------------------------------------------------------------------


def test_the_table_is_used_only_in_lambda_and_only_when_named() -> None:
    assert isinstance(claims.store(Settings.from_env({"IDEMPOTENCY_TABLE": TABLE})), claims.MemoryClaims)
    assert isinstance(claims.store(Settings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "f"})), claims.MemoryClaims)
    assert isinstance(claims.store(None), claims.MemoryClaims)  # settings that could not be read
    assert claims.store() is claims.store(None)
    in_lambda = claims.store(Settings.from_env(IN_LAMBDA))
    assert isinstance(in_lambda, claims.DynamoClaims) and in_lambda.table_name == TABLE
    assert claims.store(Settings.from_env(IN_LAMBDA)) is in_lambda  # one per container


# --- two containers, one table ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("new_event_id", [False, True], ids=["same_event", "same_message_new_event_id"])
def test_two_containers_given_the_same_job_at_once_claim_it_once(dynamo, new_event_id: bool) -> None:
    containers = [claims.DynamoClaims(TABLE, client=dynamo()), claims.DynamoClaims(TABLE, client=dynamo())]

    def work(i: int, keys: list[str], start: threading.Barrier, results: dict[int, bool]) -> None:
        start.wait()  # both containers call claim() at the same moment
        results[i] = containers[i].claim(keys)

    for round_ in range(20):  # many rounds: each one a fresh race
        message = f"C1:1700000000.{round_:06d}"
        start = threading.Barrier(2)
        results: dict[int, bool] = {}
        threads = [
            threading.Thread(
                target=work,
                args=(i, [f"Ev{round_}-{i}" if new_event_id else f"Ev{round_}", message], start, results),
            )
            for i in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(results.values()) == [False, True], f"round {round_}: {results}"
        assert stored_expiry(dynamo(), message) is not None  # the winner's claim stands
        if new_event_id:  # the loser claimed nothing: its own event_id is still free
            loser = min(results, key=lambda i: results[i])
            assert containers[loser].claim([f"Ev{round_}-{loser}"]) is True


def test_a_claim_held_by_one_container_refuses_the_other_until_it_expires(dynamo) -> None:
    clock = Clock()
    first = claims.DynamoClaims(TABLE, client=dynamo(), clock=clock)
    second = claims.DynamoClaims(TABLE, client=dynamo(), clock=clock)
    assert first.claim([EVENT, MESSAGE]) is True
    assert stored_expiry(dynamo(), EVENT) == clock.now + claims.CLAIM_TTL_SECONDS
    clock.now += 10 * 60  # Slack's last retry, and more
    assert second.claim([EVENT, MESSAGE]) is False
    clock.now += claims.CLAIM_TTL_SECONDS - 10 * 60
    assert second.claim([EVENT]) is False  # at its expiry second: still held
    clock.now += 1
    # moto never deletes expired items (DynamoDB's TTL only eventually): the condition saw the expiry.
    assert stored_expiry(dynamo(), MESSAGE) is not None
    # A genuinely new message that reuses a key (a channel:ts, or an id) is claimed, for a full TTL.
    assert second.claim(["Ev-new", MESSAGE]) is True
    assert stored_expiry(dynamo(), MESSAGE) == clock.now + claims.CLAIM_TTL_SECONDS
    assert first.claim([MESSAGE]) is False


def test_the_message_key_alone_refuses_a_new_event_id_and_claims_nothing(dynamo) -> None:
    store = claims.DynamoClaims(TABLE, client=dynamo())
    assert store.claim([EVENT, MESSAGE]) is True
    assert claims.DynamoClaims(TABLE, client=dynamo()).claim(["Ev0002", MESSAGE]) is False
    assert stored_expiry(dynamo(), "Ev0002") is None  # all-or-nothing: the refused call wrote nothing
    assert store.claim(["Ev0002"]) is True
    assert store.claim([]) is True  # nothing to claim: nothing to refuse either
    assert store.claim(["Ev0003", "Ev0003"]) is True  # one key given twice is one item


def test_the_process_store_on_the_table_is_the_containers_one_client(dynamo) -> None:
    settings = Settings.from_env(IN_LAMBDA)
    assert claims.store(settings).claim([EVENT, MESSAGE]) is True
    new_container()  # a new Lambda container: a new store and a new boto3 client
    assert claims.store(settings).claim(["Ev0002", MESSAGE]) is False
    assert claims.store(settings).claim(["Ev0002"]) is True


# --- fault rows -------------------------------------------------------------------------------------------------------


def test_a_conditional_check_failure_is_a_claim_held_elsewhere(dynamo, caplog) -> None:
    assert claims.DynamoClaims(TABLE, client=dynamo()).claim([EVENT]) is True
    caplog.set_level(logging.INFO)
    assert claims.DynamoClaims(TABLE, client=dynamo()).claim([MESSAGE, EVENT]) is False
    assert claim_logs(caplog) == []  # the worker logs the duplicate; no fault here


def test_a_missing_table_lets_the_job_go_ahead_with_one_log_line(dynamo, caplog) -> None:
    assert claims.DynamoClaims("mameka-nosuch-claims", client=dynamo()).claim([EVENT, MESSAGE]) is True
    [line] = claim_logs(caplog)
    assert "ResourceNotFoundException" in line and EVENT not in line and MESSAGE not in line


def test_an_unreachable_table_lets_the_job_go_ahead_quickly_with_one_log_line(monkeypatch, caplog) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{closed_port()}")
    store = claims.store(Settings.from_env(IN_LAMBDA))  # the container's own client, from chalicelib.aws
    aws.client("dynamodb")  # made first: the limit is on the claim, not on importing boto3 on a busy machine
    started = time.monotonic()
    assert store.claim([EVENT, MESSAGE]) is True
    assert time.monotonic() - started < 3  # two refused connections, 25 ms of backoff between
    [line] = claim_logs(caplog)
    assert "EndpointConnectionError" in line


def stubbed(*errors: dict[str, Any]) -> tuple[claims.DynamoClaims, Stubber]:
    """A store whose client answers each call with the next of ``errors`` (``{}``: success)."""
    client = boto3.client("dynamodb", region_name=REGION)
    stubber = Stubber(client)
    for error in errors:
        if error:
            stubber.add_client_error("transact_write_items", **{"http_status_code": 400, **error})
        else:
            stubber.add_response("transact_write_items", {})
    stubber.activate()
    return claims.DynamoClaims(TABLE, client=client), stubber


def cancelled(*codes: str) -> dict[str, Any]:
    """A TransactionCanceledException as DynamoDB sends it: one reason per item, "None" where it was fine."""
    return {
        "service_error_code": "TransactionCanceledException",
        "service_message": "Transaction cancelled, please refer cancellation reasons for specific reasons",
        "modeled_fields": {"CancellationReasons": [{"Code": code} for code in codes]},
    }


@pytest.mark.parametrize(
    ("error", "logged"),
    [
        ({"service_error_code": "ThrottlingException"}, "ThrottlingException"),
        ({"service_error_code": "ProvisionedThroughputExceededException"}, "ProvisionedThroughputExceededException"),
        ({"service_error_code": "RequestLimitExceeded"}, "RequestLimitExceeded"),
        (cancelled("None", "ThrottlingError"), "TransactionCanceledException:ThrottlingError"),
        ({"service_error_code": "AccessDeniedException"}, "AccessDeniedException"),
        ({"service_error_code": "InternalServerError", "http_status_code": 500}, "InternalServerError"),
    ],
    ids=["throttled", "provisioned_throughput", "request_limit", "throttled_in_transaction", "access_denied", "500"],
)
def test_a_throttled_or_refused_table_lets_the_job_go_ahead_with_one_log_line(
    caplog, error: dict[str, Any], logged: str
) -> None:
    store, stubber = stubbed(error)
    assert store.claim([EVENT, MESSAGE]) is True
    stubber.assert_no_pending_responses()
    [line] = claim_logs(caplog)
    assert f"({logged})" in line and EVENT not in line


def test_a_transaction_conflict_is_tried_again_and_then_finds_the_winners_claim(caplog) -> None:
    store, stubber = stubbed(cancelled("None", "TransactionConflict"), cancelled("None", "ConditionalCheckFailed"))
    assert store.claim([EVENT, MESSAGE]) is False
    stubber.assert_no_pending_responses()
    assert claim_logs(caplog) == []


def test_a_transaction_conflict_is_tried_again_and_may_win(caplog) -> None:
    store, stubber = stubbed(cancelled("TransactionConflict", "None"), {})
    assert store.claim([EVENT, MESSAGE]) is True
    stubber.assert_no_pending_responses()
    assert claim_logs(caplog) == []


def test_a_conflict_that_lasts_lets_the_job_go_ahead_with_one_log_line(caplog) -> None:
    store, stubber = stubbed(*[cancelled("TransactionConflict", "None")] * claims.CONFLICT_ATTEMPTS)
    assert store.claim([EVENT, MESSAGE]) is True
    stubber.assert_no_pending_responses()
    [line] = claim_logs(caplog)
    assert "(TransactionCanceledException:TransactionConflict)" in line


# --- end to end: the worker on the Lambda path, with the table --------------------------------------------------------


def test_a_redelivery_to_new_containers_is_answered_once(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, dynamo, capsys
) -> None:
    env = {**conversation_env, **IN_LAMBDA}
    ts = slack_requests.new_ts()
    first = slack_requests.mention_event("hi", ts=ts, event_id="Ev1")
    again = slack_requests.mention_event("hi", ts=ts, event_id="Ev2")  # the same message under a new event_id
    slack_api.add_event(first)
    for body in (first, first, again):
        new_container()  # each delivery lands in a container of its own: nothing in memory is shared
        job, _ = events.parse(body)
        assert worker.run(job.to_payload(), Deadline.in_seconds(60), env) is None  # type: ignore[union-attr]
    assert len(openai_server.requests_to("/v1/chat/completions")) == 1
    assert len(slack_api.bot_messages(slack_requests.CHANNEL_ID, ts)) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["outcome"] for line in lines if line["event"] == "answer"] == ["answered", "duplicate", "duplicate"]
    assert stored_expiry(dynamo(), f"{slack_requests.CHANNEL_ID}:{ts}") is not None  # claimed in the table
