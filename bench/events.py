"""Lambda inputs for the benchmark: API Gateway proxy events of signed Slack requests, job payloads, a context.

Contract:

- ``slash_command_event(secret, text, now)`` returns the event API Gateway's REST API (v1
  payload, edge-optimised endpoint, as Chalice deploys it) hands to the Lambda handler for
  a Slack slash command POSTed to ``/slack/commands`` at ``now``, signed with ``secret``
  (Slack's v0 scheme). ``isBase64Encoded`` is false: form bodies are text to API Gateway.
- ``app_mention_event(secret, text, now)`` is the same kind of event for an ``app_mention``
  Events API envelope POSTed as JSON to ``/slack/events`` (``devkit``'s ``mention_event``,
  with a fresh ``event_id`` and message ``ts`` each time), signed the same way.
- ``worker_event(text, response_url)`` returns the slash command's job payload, as the HTTP
  function sends it to the worker: ``kind`` ``slash_command`` and a fresh uuid4 ``id`` each
  time (the worker drops a job id it has already claimed).
- ``LambdaContext(function_name, timeout_seconds)`` has the attributes and the one method
  (``get_remaining_time_in_millis``) of the Python runtime's context object.

Every value is fake: documentation IP ranges, made-up ids, a signing secret chosen by the
caller. Standard library only, so that importing it bends no import-time measurement. The
form and the signature come from ``devkit/slack_requests.py`` (standard library only too),
loaded by its path: the benchmark runs with ``bench/`` or an app's directory first on
``sys.path``, and putting the repository root there as well would let its ``app`` and
``chalicelib`` stand in for the app under test.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import uuid
from types import ModuleType
from typing import Any

API_ID = "bench0api1"
HOST = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
TEXTS = (
    "東京でおすすめの散歩道は？",
    "How do I keep a Lambda function warm &amp; cheap? Answer in &lt;= 3 bullet points.",
    "今日の夕飯、何にしよう？ 冷蔵庫には卵と玉ねぎとトマトがある",
    "Explain the difference between SQS and SNS in one paragraph.",
)


def _load_slack_requests() -> ModuleType:
    name = "_mameka_devkit_slack_requests"
    if name not in sys.modules:
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "devkit", "slack_requests.py")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


slack_requests = _load_slack_requests()
sign = slack_requests.sign


def slash_form(text: str, response_url: str) -> bytes:
    """The form body Slack POSTs for ``/mameka <text>``, fields in Slack's order."""
    return slack_requests.command_form(
        text,
        response_url,
        token="fake-verification-token",
        team_id="T0BENCH01",
        team_domain="bench-example",
        channel_id="C0BENCH01",
        channel_name="general",
        user_id="U0BENCH01",
        user_name="bench-user",
        api_app_id="A0BENCH01",
        trigger_id="1000000000.100000000.0123456789abcdef0123456789abcdef",
    )


def slash_command_event(secret: str, text: str, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    timestamp = str(int(now))
    request_id = str(uuid.uuid4())
    response_url = f"https://hooks.slack.com/commands/T0BENCH01/1000000000/{uuid.uuid4().hex[:24]}"
    body = slash_form(text, response_url)
    headers = {
        "Accept": "application/json,*/*",
        "Accept-Encoding": "gzip,deflate",
        "CloudFront-Forwarded-Proto": "https",
        "CloudFront-Is-Desktop-Viewer": "true",
        "CloudFront-Is-Mobile-Viewer": "false",
        "CloudFront-Is-SmartTV-Viewer": "false",
        "CloudFront-Is-Tablet-Viewer": "false",
        "CloudFront-Viewer-ASN": "64496",
        "CloudFront-Viewer-Country": "US",
        "Content-Type": "application/x-www-form-urlencoded",
        "Host": HOST,
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        "Via": "1.1 0123456789abcdef0123456789abcdef.cloudfront.net (CloudFront)",
        "X-Amz-Cf-Id": "BENCH-fake-cf-id-" + uuid.uuid4().hex,
        "X-Amzn-Trace-Id": f"Root=1-{int(now):08x}-{uuid.uuid4().hex[:24]}",
        "X-Forwarded-For": "192.0.2.10, 198.51.100.20",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": sign(secret, timestamp, body),
    }
    return {
        "resource": "/slack/commands",
        "path": "/slack/commands",
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "bench1",
            "resourcePath": "/slack/commands",
            "httpMethod": "POST",
            "extendedRequestId": "BenchFakeExtId=",
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": "/api/slack/commands",
            "accountId": "000000000000",
            "protocol": "HTTP/1.1",
            "stage": "api",
            "domainPrefix": API_ID,
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": "192.0.2.10",
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": "Slackbot 1.0 (+https://api.slack.com/robots)",
                "user": None,
            },
            "domainName": HOST,
            "deploymentId": "bench2",
            "apiId": API_ID,
        },
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def worker_event(text: str, response_url: str) -> dict[str, Any]:
    return {
        "kind": "slash_command",
        "id": str(uuid.uuid4()),  # unique per job, as the HTTP function makes it: the worker drops repeats
        "asked_at": time.time(),  # fresh: an old job is answered "too busy" without the LLM
        "text": text,
        "response_url": response_url,
        "user_id": "U0BENCH01",
        "channel_id": "C0BENCH01",
        "team_id": "T0BENCH01",
    }


class LambdaContext:
    """The runtime's context object, as far as Chalice, Bolt and the app read it."""

    def __init__(self, function_name: str, timeout_seconds: float = 10.0, memory_mb: int = 256) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}"
        self.memory_limit_in_mb = str(memory_mb)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2025/01/01/[$LATEST]00000000000000000000000000000000"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# --- the Events API route -----------------------------------------------------------------------------------------

BOT_USER_ID = "UBOT0BENCH"


def app_mention_event(secret: str, text: str, now: float | None = None) -> dict[str, Any]:
    """A signed ``app_mention`` envelope POSTed as JSON to ``/slack/events``, as API Gateway hands it over.

    Built on ``slash_command_event``'s event (the same API Gateway request around a different
    route): only the path, the body, its content type and its signature differ. The body is
    UTF-8 JSON text, as Slack sends it (``isBase64Encoded`` stays false).
    """
    now = time.time() if now is None else now
    timestamp = str(int(now))
    event = slash_command_event(secret, text, now)
    body = slack_requests.mention_event(
        text, channel="C0BENCH01", user="U0BENCH01", team_id="T0BENCH01", bot_user_id=BOT_USER_ID
    )
    headers = {
        **event["headers"],
        "Content-Type": slack_requests.JSON,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": sign(secret, timestamp, body),
    }
    path = "/slack/events"
    return {
        **event,
        "resource": path,
        "path": path,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": {**event["requestContext"], "resourcePath": path, "path": "/api" + path},
        "body": body.decode(),
    }
