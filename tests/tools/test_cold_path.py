"""The HTTP function's cold path, as Lambda runs it: a fresh process, one API Gateway event.

Slack's 3 seconds include a cold start, so the HTTP path must not import the LLM SDK or
slack_sdk (hundreds of milliseconds between them). Checked in a subprocess so that nothing
the test process imported hides an import.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from bench.events import app_mention_event, slash_command_event
from devkit.http_fake import FakeServer
from tests.conftest import ROOT, SIGNING_SECRET

HANDLE_ONE_EVENT = textwrap.dedent(
    """
    import json, sys
    from app import app

    class Context:
        function_name = "mameka-dev"
        aws_request_id = "req-1"
        memory_limit_in_mb = 256
        def get_remaining_time_in_millis(self):
            return 10_000

    response = app(json.loads(sys.stdin.read()), Context())
    heavy = sorted(m for m in ("openai", "slack_sdk", "httpx2", "requests") if m in sys.modules)
    print(json.dumps({"status": response["statusCode"], "body": response["body"], "heavy": heavy}))
    """
)


@pytest.mark.parametrize("make_event", [slash_command_event, app_mention_event], ids=["command", "mention"])
def test_http_path_leaves_openai_and_slack_sdk_unimported(lambda_server: FakeServer, make_event) -> None:
    event = make_event(SIGNING_SECRET, "hi")  # the benchmark's API Gateway event, as Lambda gets it
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_LAMBDA_FUNCTION_NAME": "mameka-dev",
        "WORKER_FUNCTION_NAME": "mameka-dev-worker",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "AWS_ENDPOINT_URL_LAMBDA": lambda_server.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    result = subprocess.run(
        [sys.executable, "-c", HANDLE_ONE_EVENT],
        input=json.dumps(event),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])
    body = json.loads(outcome["body"])
    assert outcome["status"] == 200 and (body == {} or "Thinking" in body["text"])
    assert len(lambda_server.received) == 1  # the job really was dispatched
    assert outcome["heavy"] == []


def test_a_cold_worker_can_show_a_sign_of_life_before_openai_is_imported() -> None:
    # openai is a quarter of a second of imports: the worker loads it after "is thinking…" is set.
    probe = "import sys, chalicelib.worker; print(sorted(m for m in ('openai', 'httpx2') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
