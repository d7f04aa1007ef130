"""mameka: a Slack slash command answered by an LLM, as two Lambda functions.

- ``POST /slack/commands`` (the HTTP function) verifies Slack's signature, hands the job to
  the worker and acknowledges within Slack's 3 seconds.
- ``worker`` (invoked asynchronously) asks the LLM and replies through ``response_url``.

The work lives in ``chalicelib``; this file only declares.
"""

from __future__ import annotations

import os
from typing import Any

from chalice import Chalice, Response

from chalicelib import chalice_local, gateway
from chalicelib.deadline import Deadline

app = Chalice(app_name="mameka")
chalice_local.widen_backlog(os.environ)  # `chalice local` only: take 50+ simultaneous commands


@app.route("/slack/commands", methods=["POST"], content_types=["application/x-www-form-urlencoded"])
def slash_command() -> Response:
    request = app.current_request
    status, body = gateway.handle_slash_command(
        request.headers, request.raw_body, os.environ, request.context.get("requestId")
    )
    return Response(body=body, status_code=status)


@app.lambda_function(name="worker")
def worker(event: dict[str, Any], context: Any) -> None:
    # Imported here, not at the top: it loads openai, which the HTTP function must not pay for.
    from chalicelib import worker as jobs

    jobs.run(event, Deadline.in_seconds(context.get_remaining_time_in_millis() / 1000), os.environ)
