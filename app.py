"""mameka: an LLM in Slack, as two Lambda functions.

- ``POST /slack/commands``, ``POST /slack/events`` and ``POST /slack/interactions`` (the HTTP
  function) verify Slack's signature, hand the job to the worker and acknowledge within
  Slack's 3 seconds.
- ``worker`` (invoked asynchronously) asks the LLM and answers: through ``response_url`` for
  a slash command, streamed into the thread for a mention or a DM.

The work lives in ``chalicelib``; this file only declares.
"""

from __future__ import annotations

import os
from typing import Any

from chalice import Chalice, Response

from chalicelib import chalice_local, gateway
from chalicelib.deadline import Deadline

app = Chalice(app_name="mameka")
chalice_local.widen_backlog(os.environ)  # `chalice local` only: take a burst of 200+ requests


@app.route("/slack/commands", methods=["POST"], content_types=["application/x-www-form-urlencoded"])
def slash_command() -> Response:
    request = app.current_request
    status, body = gateway.handle_slash_command(
        request.headers, request.raw_body, os.environ, request.context.get("requestId")
    )
    return Response(body=body, status_code=status)


@app.route("/slack/events", methods=["POST"], content_types=["application/json"])
def slack_event() -> Response:
    request = app.current_request
    status, body = gateway.handle_event(request.headers, request.raw_body, os.environ, request.context.get("requestId"))
    return Response(body=body, status_code=status)


@app.route("/slack/interactions", methods=["POST"], content_types=["application/x-www-form-urlencoded"])
def slack_interaction() -> Response:
    request = app.current_request
    status, body = gateway.handle_interaction(
        request.headers, request.raw_body, os.environ, request.context.get("requestId")
    )
    return Response(body=body, status_code=status)


@app.lambda_function(name="worker")
def worker(event: dict[str, Any], context: Any) -> None:
    # Imported here, not at the top: it loads slack_sdk and requests (and openai once a job asks the
    # LLM), which the HTTP function must not pay for.
    from chalicelib import worker as jobs

    jobs.run(event, Deadline.in_seconds(context.get_remaining_time_in_millis() / 1000), os.environ)
