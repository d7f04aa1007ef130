"""Lambda inputs for the benchmark: API Gateway proxy events of signed slash commands, and a context.

Contract:

- ``slash_command_event(secret, text, now)`` returns the event API Gateway's REST API (v1
  payload, edge-optimised endpoint, as Chalice deploys it) hands to the Lambda handler for
  a Slack slash command POSTed to ``/slack/commands`` at ``now``, signed with ``secret``
  (Slack's v0 scheme). ``isBase64Encoded`` is false: form bodies are text to API Gateway.
- ``worker_event(text, response_url)`` returns the job payload the HTTP function sends to
  the worker.
- ``LambdaContext(function_name, timeout_seconds)`` has the attributes and the one method
  (``get_remaining_time_in_millis``) of the Python runtime's context object.

Every value is fake: documentation IP ranges, made-up ids, a signing secret chosen by the
caller. Standard library only, so that importing it bends no import-time measurement.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any
from urllib.parse import urlencode

API_ID = "bench0api1"
HOST = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
TEXTS = (
    "東京でおすすめの散歩道は？",
    "How do I keep a Lambda function warm &amp; cheap? Answer in &lt;= 3 bullet points.",
    "今日の夕飯、何にしよう？ 冷蔵庫には卵と玉ねぎとトマトがある",
    "Explain the difference between SQS and SNS in one paragraph.",
)


def slash_form(text: str, response_url: str) -> bytes:
    """The form body Slack POSTs for ``/mameka <text>``, fields in Slack's order."""
    return urlencode(
        {
            "token": "fake-verification-token",
            "team_id": "T0BENCH01",
            "team_domain": "bench-example",
            "channel_id": "C0BENCH01",
            "channel_name": "general",
            "user_id": "U0BENCH01",
            "user_name": "bench-user",
            "command": "/mameka",
            "text": text,
            "api_app_id": "A0BENCH01",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": "1000000000.100000000.0123456789abcdef0123456789abcdef",
        }
    ).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


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


def worker_event(text: str, response_url: str) -> dict[str, str]:
    return {
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
