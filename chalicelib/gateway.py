"""The HTTP function's job: take a Slack request, hand its job to the worker, acknowledge at
once.

Contract: ``handle_slash_command(headers, body, environ, request_id)`` and
``handle_event(...)`` return ``(status, json_body)`` and never raise for any input. Both
check Slack's signature first: 401 ``{"error": reason}`` unless the request carries a valid,
fresh one, and nothing is dispatched.

Slash commands (``application/x-www-form-urlencoded``):

- 200 with an empty body for Slack's ``ssl_check=1``, before anything else is read;
- 400 ``{"error": reason}`` for a signed body that is not a slash command, or whose
  ``response_url`` ``RESPONSE_URL_HOSTS`` does not allow (see ``slack.command``);
- 200 with an ephemeral message in every other case: "not available" for an asker that
  ``ALLOWED_*_IDS`` leave out, a usage hint for empty text, "too long" above
  ``MAX_INPUT_CHARS``, "couldn't start" if dispatch fails, "not set up" if settings or the
  signing secret are unusable, "busy, please try again in a minute" if SSM could not be read
  for now (throttled, timed out, unreachable: outcome ``secrets_unavailable``), or else the
  acknowledgement (the job is dispatched only in this last case).

Events (``application/json``):

- 400 ``{"error": reason}`` for signed JSON that is not a usable envelope;
- 200 ``{"challenge": ...}`` for ``url_verification``;
- 200 ``{}`` for ``agent_session_stopped`` (the user pressed stop) once the stop is recorded
  (``chalicelib.stops``; outcome ``stop_recorded``); nothing is dispatched. 503 when the mark
  could not be written (``stop_failed``): Slack delivers the event again;
- 200 ``{}`` once a mention, DM message, opened assistant pane or opened Messages tab is
  dispatched, and for every event the bot ignores or an asker that ``ALLOWED_*_IDS`` leave out
  (nothing is said to them); a Slack retry (``X-Slack-Retry-Num``) is dispatched like the first delivery, and
  the worker's claims drop it if the first one got through;
- 200 ``{}`` without dispatching for a Messages tab that the same user opened within
  ``claims.CLAIM_TTL_SECONDS`` before, as far as this container saw (outcome
  ``recently_offered``; forgotten again when the dispatch fails): Slack sends
  ``app_home_opened`` on every open, and the prompts pinned then are still there. This memo
  is in memory, never AWS (Slack's 3 seconds); the worker's claim on
  ``prompts:<team>:<user>`` (``jobs.MessagesTabOpenedJob``), shared by every container, keeps
  an open that another container dispatched from reaching Slack again;
- 503 ``{"error": ...}`` when the job could not be handed to the worker: the one answer that
  makes Slack deliver the event again, which is then the user's only chance of an answer;
- 503 ``{"error": ...}`` when the signing secret could not be read from SSM for now
  (throttled, timed out, unreachable; outcome ``secrets_unavailable``): Slack delivers the
  event again, by when SSM may answer;
- 200 ``{}`` when settings or the signing secret are unusable (logged; a missing parameter,
  access denied): there is no one to tell, and a retry would fail the same way.

Interactions (``application/x-www-form-urlencoded``, ``payload`` holding JSON; see
``slack.interactions``), by ``handle_interaction(...)``:

- 400 ``{"error": reason}`` for a signed body that is not a readable payload, or a feedback
  vote whose ``response_url`` ``RESPONSE_URL_HOSTS`` does not allow;
- 200 ``{}`` once a feedback vote (``block_actions`` from the ``feedback_buttons``) is
  dispatched to the worker as a ``FeedbackJob`` (which stores the vote and thanks the user
  through ``response_url``: Slack ignores the body of this acknowledgement), and for every
  other interaction, which is ignored; also 200 ``{}`` for a voter ``ALLOWED_*_IDS`` leave out,
  for unusable settings (logged) and when the job could not be dispatched (outcome
  ``dispatch_failed``: Slack does not deliver an interaction again, so a non-200 would only
  show the user a warning icon for a lost vote);
- one log line: ``"event": "feedback"`` for a vote (answer ts, channel, user, model, vote,
  outcome), ``"event": "interaction"`` for anything else.

All three parse the settings the HTTP function uses from ``environ`` once per call
(``Settings.from_env(environ, "api")``) and hand the parsed ``Settings`` down: a bad value of a
worker-only setting never stops the signature check or the acknowledgement. ``environ`` itself
goes only to ``dispatch``, unread, as the environment a local worker thread gets.

It writes one JSON log line per request. It imports neither ``openai`` nor ``slack_sdk``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from chalicelib import claims, container, logs, secrets, stops
from chalicelib.dispatch import DispatchError, dispatch
from chalicelib.jobs import FeedbackJob, MessagesTabOpenedJob, SlashCommandJob, new_id
from chalicelib.kinds import GatewayOutcome
from chalicelib.settings import Settings, SettingsError
from chalicelib.slack import events, interactions, messages, signature
from chalicelib.slack.command import MalformedCommand, SlashCommand, parse, response_url_refusal

logger = logging.getLogger(__name__)

Result = tuple[int, dict[str, Any] | str]
_recent_opens = claims.MemoryClaims()  # "prompts-open:<team>:<user>": Messages tabs dispatched lately


@container.register
def _forget_recent_opens() -> None:
    global _recent_opens
    _recent_opens = claims.MemoryClaims()


Decided = tuple[int, dict[str, Any], GatewayOutcome]  # status, body, the log line's outcome


def handle_slash_command(
    headers: Mapping[str, str], body: bytes, environ: Mapping[str, str], request_id: str | None
) -> Result:
    started = time.perf_counter()
    if b"ssl_check=1" in body.split(b"&"):
        # Slack checks the certificate of a command's URL with an unsigned `ssl_check=1`; it
        # wants a 200 and nothing more. Nothing else in the body is read.
        logs.emit("command", request_id=request_id, outcome="ssl_check", status=200)
        return 200, ""
    command: SlashCommand | None = None
    settings: Settings | None = None
    try:
        settings = _verified(headers, body, Settings.from_env(environ, function="api"))
        command = parse(body)
        status, message, outcome = _answer(command, settings, environ)
    except SettingsError as error:
        logger.error("invalid setting: %s", error)
        status, message, outcome = 200, messages.not_configured(), "not_configured"
    except secrets.SecretUnavailable as error:
        if error.transient:  # SSM throttled or unreachable for now: nothing for the admin to fix
            status, message, outcome = 200, messages.busy(), "secrets_unavailable"
        else:
            status, message, outcome = 200, messages.not_configured(), "not_configured"
    except signature.InvalidSignature as error:
        status, message, outcome = 401, {"error": str(error)}, "invalid_signature"
    except MalformedCommand as error:
        status, message, outcome = 400, {"error": str(error)}, "malformed"
    fields: dict[str, Any] = {
        "request_id": request_id,
        "team_id": command and command.team_id,
        "channel_id": command and command.channel_id,
        "user_id": command and command.user_id,
        "outcome": outcome,
        "status": status,
        "ack_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    if command and settings and settings.log_message_text:
        fields["text"] = command.text
    logs.emit("command", **fields)
    return status, message


def _answer(command: SlashCommand, settings: Settings, environ: Mapping[str, str]) -> Decided:
    if not (command.team_id and command.channel_id and command.user_id):
        # Slack always sends all three. A job without one is refused by the worker's
        # from_payload: the asker would see "Thinking…" and never an answer.
        raise MalformedCommand("team_id, channel_id or user_id is missing")
    refusal = response_url_refusal(command.response_url, settings.response_url_hosts, settings.in_lambda)
    if refusal:  # the worker would carry the answer wherever the URL says
        return 400, {"error": refusal}, "response_url_refused"
    if not settings.allows(command.team_id, command.channel_id, command.user_id):
        return 200, messages.not_allowed(), "denied"
    if not command.text:
        return 200, messages.usage(command.command), "usage"
    if len(command.text) > settings.max_input_chars:
        return 200, messages.too_long(len(command.text), settings.max_input_chars), "too_long"
    job = SlashCommandJob(
        id=new_id(),
        asked_at=time.time(),
        text=command.text,
        response_url=command.response_url,
        user_id=command.user_id,
        channel_id=command.channel_id,
        team_id=command.team_id,
    )
    try:
        dispatch(job.to_payload(), settings, environ)
    except DispatchError:
        return 200, messages.could_not_start(), "dispatch_failed"
    return 200, messages.acknowledgement(command.text), "dispatched"


def handle_event(headers: Mapping[str, str], body: bytes, environ: Mapping[str, str], request_id: str | None) -> Result:
    started = time.perf_counter()
    info = events.EventInfo()
    try:
        settings = _verified(headers, body, Settings.from_env(environ, function="api"))
        decision, info = events.parse(body)
        status, message, outcome = _route_event(decision, settings, environ)
    except secrets.SecretUnavailable as error:
        if error.transient:  # Slack delivers a failed event again: SSM may answer by then
            status, message, outcome = 503, {"error": "secrets are unavailable for now"}, "secrets_unavailable"
        else:
            status, message, outcome = 200, {}, "not_configured"
    except SettingsError as error:
        logger.error("invalid setting: %s", error)
        status, message, outcome = 200, {}, "not_configured"
    except signature.InvalidSignature as error:
        status, message, outcome = 401, {"error": str(error)}, "invalid_signature"
    except events.MalformedEvent as error:
        status, message, outcome = 400, {"error": str(error)}, "malformed"
    logs.emit(
        "slack_event",
        request_id=request_id,
        event_type=info.type,
        event_id=info.event_id,
        team_id=info.team_id,
        channel_id=info.channel_id,
        user_id=info.user_id,
        retry_num=headers.get("x-slack-retry-num"),
        outcome=outcome,
        status=status,
        ack_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    return status, message


def _route_event(decision: events.Decision, settings: Settings, environ: Mapping[str, str]) -> Decided:
    if isinstance(decision, events.UrlVerification):
        return 200, {"challenge": decision.challenge}, "url_verification"
    if isinstance(decision, events.Ignored):
        return 200, {}, "ignored"
    if not settings.allows(decision.team_id, decision.channel_id, decision.user_id):
        return 200, {}, "denied"  # nothing at all: a bot that answers strangers invites them
    if isinstance(decision, events.StopRequest):
        try:
            stops.record(settings, decision.channel_id, decision.thread_ts, decision.event_ts)
        except stops.StopNotRecorded:
            return 503, {"error": "could not record the stop"}, "stop_failed"
        return 200, {}, "stop_recorded"
    memo = [f"prompts-open:{decision.team_id}:{decision.user_id}"] if isinstance(decision, MessagesTabOpenedJob) else []
    if memo and not _recent_opens.claim(memo):
        return 200, {}, "recently_offered"
    try:
        dispatch(decision.to_payload(), settings, environ)
    except DispatchError:
        _recent_opens.release(memo)  # Slack's redelivery must not find it "recently offered"
        return 503, {"error": "could not start working on this event"}, "dispatch_failed"
    return 200, {}, "dispatched"


def handle_interaction(
    headers: Mapping[str, str], body: bytes, environ: Mapping[str, str], request_id: str | None
) -> Result:
    started = time.perf_counter()
    decision: interactions.Decision | None = None
    try:
        settings = _verified(headers, body, Settings.from_env(environ, function="api"))
        decision = interactions.parse(body)
        status, message, outcome = _route_interaction(decision, settings, environ)
    except SettingsError as error:
        logger.error("invalid setting: %s", error)
        status, message, outcome = 200, {}, "not_configured"
    except secrets.SecretUnavailable as error:
        status, message, outcome = 200, {}, "secrets_unavailable" if error.transient else "not_configured"
    except signature.InvalidSignature as error:
        status, message, outcome = 401, {"error": str(error)}, "invalid_signature"
    except interactions.MalformedInteraction as error:
        status, message, outcome = 400, {"error": str(error)}, "malformed"
    fields: dict[str, Any] = {"request_id": request_id, "outcome": outcome, "status": status}
    if isinstance(decision, interactions.FeedbackVote):
        fields.update(
            team_id=decision.team_id,
            channel_id=decision.channel_id,
            user_id=decision.user_id,
            message_ts=decision.message_ts,
            model=decision.model,
            vote=decision.vote,
        )
    elif isinstance(decision, interactions.Ignored):
        fields["reason"] = decision.reason
    fields["ack_ms"] = round((time.perf_counter() - started) * 1000, 3)
    logs.emit("feedback" if isinstance(decision, interactions.FeedbackVote) else "interaction", **fields)
    return status, message


def _route_interaction(decision: interactions.Decision, settings: Settings, environ: Mapping[str, str]) -> Decided:
    if isinstance(decision, interactions.Ignored):
        return 200, {}, "ignored"
    if decision.response_url is not None:
        refusal = response_url_refusal(decision.response_url, settings.response_url_hosts, settings.in_lambda)
        if refusal:  # the worker would carry the thanks wherever the URL says
            return 400, {"error": refusal}, "response_url_refused"
    if not settings.allows(decision.team_id, decision.channel_id, decision.user_id):
        return 200, {}, "denied"
    job = FeedbackJob(
        id=new_id(),
        asked_at=time.time(),
        team_id=decision.team_id,
        channel_id=decision.channel_id,
        user_id=decision.user_id,
        message_ts=decision.message_ts,
        vote=decision.vote,
        model=decision.model,
        response_url=decision.response_url,
    )
    try:
        dispatch(job.to_payload(), settings, environ)
    except DispatchError:
        return 200, {}, "dispatch_failed"
    return 200, {}, "dispatched"


def _verified(headers: Mapping[str, str], body: bytes, settings: Settings) -> Settings:
    """The settings, once the request is proven to come from Slack; raises otherwise."""
    logs.configure(settings.log_level)

    def verify() -> None:
        signature.verify(
            secrets.slack_signing_secret(settings),
            headers.get("x-slack-request-timestamp"),
            headers.get("x-slack-signature"),
            body,
            time.time(),
        )

    try:
        verify()
    except signature.SignatureMismatch:
        # `make secrets` may have replaced the secret since this container read it.
        if not secrets.signing_secret_rejected(settings):
            raise
        verify()
    return settings
