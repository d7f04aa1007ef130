"""Dispatch: a boto3 Event invoke in Lambda, a worker thread everywhere else."""

from __future__ import annotations

import json
import time

import pytest

from chalicelib import dispatch
from chalicelib.dispatch import DispatchError
from chalicelib.jobs import SlashCommandJob
from chalicelib.settings import Settings
from devkit.http_fake import FakeServer, Reply
from tests.conftest import ROOT, response_path, wait_for_local_jobs

JOB = SlashCommandJob(
    id="job-1",
    asked_at=1700000000.0,
    text="hi",
    response_url="https://hooks.slack.com/x",
    user_id="U1",
    channel_id="C1",
    team_id="T1",
).to_payload()
LAMBDA_ENV = {"AWS_LAMBDA_FUNCTION_NAME": "mameka-dev"}


@pytest.fixture
def lambda_endpoint(lambda_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambda_server.url)
    return lambda_server


def test_in_lambda_the_worker_is_invoked_asynchronously(lambda_endpoint: FakeServer) -> None:
    dispatch.dispatch(JOB, Settings(worker_function_name="mameka-dev-worker", in_lambda=True), LAMBDA_ENV)
    [invoke] = lambda_endpoint.received
    assert invoke.path == "/2015-03-31/functions/mameka-dev-worker/invocations"
    assert invoke.headers["x-amz-invocation-type"] == "Event"
    assert invoke.json() == {
        "kind": "slash_command",
        "id": "job-1",
        "asked_at": 1700000000.0,
        "text": "hi",
        "response_url": "https://hooks.slack.com/x",
        "user_id": "U1",
        "channel_id": "C1",
        "team_id": "T1",
    }


def test_invokes_reuse_one_connection(lambda_endpoint: FakeServer) -> None:
    # Reading the empty Payload gives the connection back to the pool (performance notes).
    settings = Settings(worker_function_name="w", in_lambda=True)
    for _ in range(5):
        dispatch.dispatch(JOB, settings, LAMBDA_ENV)
    assert len(lambda_endpoint.received) == 5
    assert lambda_endpoint.connections == 1


def test_a_slow_invoke_is_not_retried(lambda_endpoint: FakeServer) -> None:
    # Lambda may have accepted it already: a retry could run the worker twice.
    lambda_endpoint.script = [Reply(202, b"", delay=4)]  # past the client's 2 s read timeout
    with pytest.raises(DispatchError, match="ReadTimeoutError"):
        dispatch.dispatch(JOB, Settings(worker_function_name="w", in_lambda=True), LAMBDA_ENV)
    assert len(lambda_endpoint.received) == 1


def test_in_lambda_without_a_worker_name_dispatch_fails_clearly(lambda_endpoint: FakeServer, caplog) -> None:
    with pytest.raises(DispatchError, match="WORKER_FUNCTION_NAME is not set"):
        dispatch.dispatch(JOB, Settings(in_lambda=True), LAMBDA_ENV)
    assert "WORKER_FUNCTION_NAME is not set" in caplog.text
    assert lambda_endpoint.received == []


def test_a_refused_invoke_is_a_dispatch_error(lambda_endpoint: FakeServer) -> None:
    lambda_endpoint.script = [
        Reply(404, {"Type": "User", "message": "Function not found"}, {"x-amzn-errortype": "ResourceNotFoundException"})
    ]
    with pytest.raises(DispatchError, match="ResourceNotFoundException"):
        dispatch.dispatch(JOB, Settings(worker_function_name="missing", in_lambda=True), LAMBDA_ENV)


def test_an_invoke_not_accepted_as_an_event_is_a_dispatch_error(lambda_endpoint: FakeServer) -> None:
    # Lambda accepts an Event invoke with 202; any other success (a 200 is a synchronous run's
    # answer) means the job was not queued as one: the user must hear that it did not start.
    lambda_endpoint.script = [Reply(200, b"")]
    with pytest.raises(DispatchError, match=r"^invoke answered 200$"):
        dispatch.dispatch(JOB, Settings(worker_function_name="w", in_lambda=True), LAMBDA_ENV)
    assert len(lambda_endpoint.received) == 1  # and not sent again


def test_outside_lambda_the_worker_runs_in_a_thread(bot_env: dict[str, str], slack_server: FakeServer) -> None:
    path = response_path()
    job = SlashCommandJob(
        id="job-2",
        asked_at=time.time(),
        text="hi",
        response_url=slack_server.url + path,
        user_id="U1",
        channel_id="C1",
        team_id="T1",
    )
    dispatch.dispatch(job.to_payload(), Settings(), dict(bot_env))
    wait_for_local_jobs()
    assert [r.json()["text"] for r in slack_server.requests_to(path)] == ["```hi```\n*Answer* to: hi"]


def test_local_deadline_is_the_workers_configured_timeout() -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert dispatch.local_worker_timeout() == config["lambda_functions"]["worker"]["lambda_timeout"]
