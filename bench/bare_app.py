"""The least code that does the gateway's job: the baseline ``ours`` is measured against.

Contract: a Chalice app whose ``POST /slack/commands`` answers 401 unless the request carries
a valid Slack v0 signature no more than 5 minutes old (standard library ``hmac``/``hashlib``),
and otherwise makes one ``lambda.invoke(InvocationType="Event")`` of ``WORKER_FUNCTION_NAME``
with the fields the worker needs, reads the (empty) returned ``Payload`` so the connection
goes back to the pool, and answers 200 with an ephemeral acknowledgement.

Deliberately without settings, logging, limits or error handling: it is the floor, not a
design. It reads the secret from ``SLACK_SIGNING_SECRET`` on each request, as ours does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from typing import Any
from urllib.parse import parse_qs

import boto3
from chalice import Chalice, Response

app = Chalice(app_name="bench-bare")
_clients: dict[str, Any] = {}  # one client per container, as any Lambda should keep it


@app.route("/slack/commands", methods=["POST"], content_types=["application/x-www-form-urlencoded"])
def slash_command() -> Response:
    request = app.current_request
    body: bytes = request.raw_body
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
        return Response(body={"error": "stale or missing timestamp"}, status_code=401)
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(os.environ["SLACK_SIGNING_SECRET"].encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return Response(body={"error": "bad signature"}, status_code=401)
    form = parse_qs(body.decode())
    job = {name: form.get(name, [""])[0] for name in ("text", "response_url", "user_id", "channel_id", "team_id")}
    if "lambda" not in _clients:
        _clients["lambda"] = boto3.client("lambda")
    response = _clients["lambda"].invoke(
        FunctionName=os.environ["WORKER_FUNCTION_NAME"], InvocationType="Event", Payload=json.dumps(job).encode()
    )
    response["Payload"].read()
    return Response(body={"response_type": "ephemeral", "text": "Thinking…"}, status_code=200)
