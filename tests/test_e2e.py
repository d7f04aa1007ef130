"""End to end over HTTP against ``chalice local`` (a real subprocess), as Slack would drive it.

- Without ``AWS_LAMBDA_FUNCTION_NAME`` the worker runs in a thread of the local server.
- With it set, the HTTP function makes a real boto3 Event invoke; a fake Lambda endpoint
  captures it and runs the worker function on the payload, as Lambda would.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from chalice.local import LambdaContext

from app import app
from tests import chalice_local
from tests.conftest import OPENAI_KEY, SIGNING_SECRET, command_form, response_path, signed_headers
from tests.fakes import FakeServer, Received, Reply


@dataclass
class LocalServer:
    url: str
    log: Path

    def log_lines(self) -> list[dict]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith('{"event"')]

    def wait_for_log(self, event: str, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.log_lines() if line["event"] == event]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} {event!r} log lines; log:\n{self.log.read_text()}")

    def command(self, text: str, response_url: str, **sign: object) -> requests.Response:
        body = command_form(text, response_url)
        return requests.post(self.url + "/slack/commands", data=body, headers=signed_headers(body, **sign), timeout=30)


def start_chalice_local(tmp_path: Path, extra_env: dict[str, str]) -> Iterator[LocalServer]:
    log = tmp_path / "chalice-local.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_"))}
    env.update(
        {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "OPENAI_API_KEY": OPENAI_KEY, "PYTHONUNBUFFERED": "1", **extra_env}
    )
    with chalice_local.running(env, log) as url:
        yield LocalServer(url, log)


@pytest.fixture
def local_server(tmp_path: Path, openai_server: FakeServer) -> Iterator[LocalServer]:
    yield from start_chalice_local(
        tmp_path, {"OPENAI_BASE_URL": openai_server.url + "/v1", "OPENAI_TIMEOUT_SECONDS": "5"}
    )


def test_command_is_acknowledged_and_answered_exactly_once(
    local_server: LocalServer, slack_server: FakeServer, openai_server: FakeServer
) -> None:
    path = response_path()
    response = local_server.command("東京でおすすめの散歩道は？", slack_server.url + path)
    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral"
    assert "東京でおすすめの散歩道は？" in response.json()["text"]

    [reply] = slack_server.wait_for(path)
    assert reply.json()["text"] == "```東京でおすすめの散歩道は？```\n*Answer* to: 東京でおすすめの散歩道は？"
    [answer_log] = local_server.wait_for_log("answer", 1)  # the worker has finished
    assert answer_log["outcome"] == "answered"
    assert len(slack_server.requests_to(path)) == 1
    [command_log] = local_server.wait_for_log("command", 1)
    assert command_log["outcome"] == "dispatched" and command_log["user_id"] == "U2147483697"
    assert "東京" not in local_server.log.read_text()  # no message text in logs by default


def test_llm_failure_ends_in_one_plain_reply(
    local_server: LocalServer, slack_server: FakeServer, openai_server: FakeServer
) -> None:
    openai_server.script = [Reply(401, {"error": {"code": "invalid_api_key", "message": "Incorrect API key"}})]
    path = response_path()
    assert local_server.command("hi", slack_server.url + path).status_code == 200
    [reply] = slack_server.wait_for(path)
    assert reply.json() == {
        "response_type": "ephemeral",
        "text": ":warning: The bot's OpenAI API key was rejected. Please tell the bot's admin.",
    }
    local_server.wait_for_log("answer", 1)
    assert len(slack_server.requests_to(path)) == 1
    assert OPENAI_KEY not in local_server.log.read_text()


def test_bad_signature_and_bad_input_over_http(local_server: LocalServer, slack_server: FakeServer) -> None:
    assert local_server.command("hi", slack_server.url + "/x", secret="wrong").status_code == 401
    old = int(time.time()) - 600
    assert local_server.command("hi", slack_server.url + "/x", timestamp=old).status_code == 401
    form = requests.post(
        local_server.url + "/slack/commands",
        data=b"text=hi",
        timeout=30,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 401 and form.json() == {"error": "missing X-Slack-Request-Timestamp header"}
    as_json = requests.post(local_server.url + "/slack/commands", json={"text": "hi"}, timeout=30)
    assert as_json.status_code == 415
    assert slack_server.received == []


def test_fifty_commands_at_once(local_server: LocalServer, slack_server: FakeServer, openai_server: FakeServer) -> None:
    paths = [response_path() for _ in range(50)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(
            pool.map(lambda i: local_server.command(f"q{i}", slack_server.url + paths[i]).status_code, range(50))
        )
    assert statuses == [200] * 50
    for i, path in enumerate(paths):
        assert slack_server.wait_for(path)[0].json()["text"].endswith(f"to: q{i}")
    local_server.wait_for_log("answer", 50)
    assert all(len(slack_server.requests_to(path)) == 1 for path in paths)


@pytest.fixture
def lambda_runs_worker(openai_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeServer, list]]:
    """A Lambda Invoke endpoint that runs the worker function on each Event payload, then answers 202."""
    results: list[dict] = []
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url + "/v1")

    def invoke(received: Received) -> Reply:
        payload = received.json()
        app.handler_map["worker"](payload, LambdaContext("worker", memory_size=512, max_runtime_ms=120_000))
        results.append(
            {"function": received.path, "type": received.headers.get("x-amz-invocation-type"), "payload": payload}
        )
        return Reply(202, b"")

    with FakeServer(invoke) as server:
        yield server, results


def test_in_lambda_mode_the_worker_is_invoked_and_replies_before_returning(
    tmp_path: Path, lambda_runs_worker: tuple[FakeServer, list], slack_server: FakeServer
) -> None:
    lambda_server, results = lambda_runs_worker
    env = {"AWS_LAMBDA_FUNCTION_NAME": "mameka-dev", "AWS_ENDPOINT_URL_LAMBDA": lambda_server.url}
    for server in start_chalice_local(tmp_path, env):
        path = response_path()
        response = server.command("hi", slack_server.url + path)
        assert response.status_code == 200 and "Thinking" in response.json()["text"]
        # The endpoint answered only after the worker returned, and the reply was already in.
        lambda_server.wait_for("/2015-03-31/functions/mameka-dev-worker/invocations")
        [result] = results
        assert result["type"] == "Event"
        assert result["payload"] == {
            "kind": "slash_command",
            "id": result["payload"]["id"],
            "text": "hi",
            "response_url": slack_server.url + path,
            "user_id": "U2147483697",
            "channel_id": "C2147483705",
            "team_id": "T0001",
        }
        assert [r.json()["text"] for r in slack_server.requests_to(path)] == ["```hi```\n*Answer* to: hi"]
        assert server.wait_for_log("command", 1)[0]["outcome"] == "dispatched"
