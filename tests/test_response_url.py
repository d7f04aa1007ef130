"""POSTing to response_url: retries on 5xx and refused connections only, never on 4xx."""

from __future__ import annotations

import socket

from chalicelib.slack import response_url
from tests.conftest import response_path
from tests.fakes import FakeServer, Reply

MESSAGE = {"response_type": "ephemeral", "text": "hello"}


def test_posts_json(slack_server: FakeServer) -> None:
    path = response_path()
    assert response_url.post(slack_server.url + path, MESSAGE) is True
    [received] = slack_server.requests_to(path)
    assert received.json() == MESSAGE
    assert received.headers["content-type"] == "application/json"


def test_one_server_error_is_retried(slack_server: FakeServer) -> None:
    path = response_path()
    slack_server.script = [Reply(500, "internal_error")]
    assert response_url.post(slack_server.url + path, MESSAGE) is True
    assert len(slack_server.requests_to(path)) == 2


def test_at_most_two_retries(slack_server: FakeServer) -> None:
    path = response_path()
    slack_server.script = [Reply(503, "service_unavailable")] * 5
    assert response_url.post(slack_server.url + path, MESSAGE) is False
    assert len(slack_server.requests_to(path)) == 3


def test_a_client_error_is_not_retried(slack_server: FakeServer) -> None:
    path = response_path()
    slack_server.script = [Reply(404, "expired_url")]
    assert response_url.post(slack_server.url + path, MESSAGE) is False
    assert len(slack_server.requests_to(path)) == 1


def test_connection_refused_returns_false_without_raising() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert response_url.post(f"http://127.0.0.1:{port}/x", MESSAGE) is False


def test_a_rate_limit_with_retry_after_is_not_retried(slack_server: FakeServer) -> None:
    path = response_path()
    slack_server.script = [Reply(429, "rate_limited", {"Retry-After": "0"})]
    assert response_url.post(slack_server.url + path, MESSAGE) is False
    assert len(slack_server.requests_to(path)) == 1
