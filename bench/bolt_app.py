"""The same job written the way bolt-python's docs show for Chalice: a lazy listener.

Contract: a Chalice app whose ``POST /slack/commands`` is handled by
``slack_bolt.adapter.aws_lambda.chalice_handler.ChaliceSlackRequestHandler`` around a Bolt
``App(process_before_response=True)``. The ``/mameka`` command is acknowledged with an
ephemeral message by the ``ack`` listener, and its work is handed to a lazy listener, which
Bolt's ``ChaliceLazyListenerRunner`` starts by invoking this same function again through
``boto3`` (``InvocationType="Event"``, function name from the Lambda context).

Bolt needs an authorization; ``authorize`` returns a fixed result without any network call.
That is the cheapest authorization Bolt allows (a bot token would add an ``auth.test`` call
on the first request), so Bolt's numbers here are a lower bound. The lazy listener is
written out in full but never runs in the benchmark: the fake Lambda only accepts invokes.
"""

from __future__ import annotations

import os
from typing import Any

from chalice import Chalice, Response
from slack_bolt import Ack, App, Respond
from slack_bolt.adapter.aws_lambda.chalice_handler import ChaliceSlackRequestHandler
from slack_bolt.authorization import AuthorizeResult


def authorize(enterprise_id: str | None, team_id: str | None, user_id: str | None) -> AuthorizeResult:
    return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id)


bolt = App(process_before_response=True, signing_secret=os.environ["SLACK_SIGNING_SECRET"], authorize=authorize)


def acknowledge(ack: Ack, command: dict[str, Any]) -> None:
    ack(response_type="ephemeral", text=f"Thinking…\n```{command['text']}```")


def answer(command: dict[str, Any], respond: Respond) -> None:
    import openai  # here, so that only the lazy invocation pays for importing it

    completion = openai.OpenAI().chat.completions.create(
        model=os.environ.get("OPENAI_MODEL", "gpt-4.1-mini"),
        messages=[{"role": "user", "content": command["text"]}],
    )
    respond(text=completion.choices[0].message.content or "", response_type="ephemeral")


bolt.command("/mameka")(ack=acknowledge, lazy=[answer])

app = Chalice(app_name="bench-bolt")
slack_handler = ChaliceSlackRequestHandler(app=bolt, chalice=app)


@app.route("/slack/commands", methods=["POST"], content_types=["application/x-www-form-urlencoded"])
def slash_command() -> Response:
    return slack_handler.handle(app.current_request)
