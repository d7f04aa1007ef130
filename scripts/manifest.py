"""Print the Slack app manifest for a deployed stage, with its Request URLs filled in. Not deployed.

    make manifest STAGE=prod                                  # after `make deploy STAGE=prod`
    URL=https://bot.example.com/ make manifest STAGE=prod     # a custom domain (base or full URL)

Paste the output at https://api.slack.com/apps → Create New App → From an app manifest.

Contract:

- stdout is the manifest and nothing else: ``slack/manifest.yml`` with its placeholders
  filled in and its comments kept. Messages go to stderr.
- The slash command's URL is the stage's REST API base URL, as ``chalice url --stage STAGE``
  prints it (``https://{id}.execute-api.{region}.amazonaws.com/api/``), plus
  ``slack/commands``; the Events API Request URL is the same base plus ``slack/events``, and
  the interactivity Request URL (``settings.interactivity``) the base plus
  ``slack/interactions``. ``URL=`` overrides the base: a URL whose path ends in one of those
  routes stands for all three (its query, if any, is kept on each); any other is taken as
  the base.
- ``features.agent_view.suggested_prompts`` are the worker's ``SUGGESTED_PROMPTS``: the value
  ``make manifest``'s environment gives, else the stage's worker environment in
  ``.chalice/config.json``, else the default; parsed as the worker parses it (a bad value is
  an error naming the variable, never a manifest Slack would refuse).
- The app is called ``mameka`` for the ``prod`` stage and ``mameka (STAGE)`` otherwise, so
  two installed stages can be told apart.
- Before printing, it checks the filled-in manifest for what Slack would refuse: the app
  name's length, a URL that is not http(s), and a bot event or feature without the bot scope
  it requires (``EVENT_SCOPES``, ``FEATURE_SCOPES``); and, when ``jsonschema`` is installed
  (the dev tools), Slack's own manifest schema, vendored in ``schemas/slack/`` (``SCHEMA``).
- Exit status: 0 printed; 1 the stage is not deployed (the message says to run
  ``make deploy STAGE=...``), ``chalice url`` failed, or the result is not a valid manifest;
  2 usage error or a stage that is not in ``.chalice/config.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from string import Template
from typing import Any, cast

# For common (which puts the repository on sys.path), also when a test imports this file by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import COMMAND_PATH, EVENTS_PATH, INTERACTIONS_PATH, ROOT, route_url

TEMPLATE = ROOT / "slack" / "manifest.yml"
# Slack's app manifest schema (github.com/slackapi/manifest-schema), vendored with its licence.
SCHEMA = ROOT / "schemas" / "slack" / "manifest.schema.1.0.0.json"
PROMPTS_VARIABLE = "SUGGESTED_PROMPTS"
# The bot scope Slack requires before it accepts a subscription to each bot event, or a feature
# (None: the event needs none of its own).
EVENT_SCOPES: dict[str, str | None] = {
    "app_mention": "app_mentions:read",
    "message.im": "im:history",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.mpim": "mpim:history",
    "assistant_thread_started": "assistant:write",
    "assistant_thread_context_changed": "assistant:write",
    "app_home_opened": None,
    "agent_session_stopped": None,  # the agent view's assistant:write covers agent sessions
}
FEATURE_SCOPES = {"slash_commands": "commands", "assistant_view": "assistant:write", "agent_view": "assistant:write"}
PRODUCTION_STAGE = "prod"
NOT_DEPLOYED_MARK = "Could not find a record of a Rest API"  # what `chalice url` says


class ManifestError(common.ScriptError):
    """The manifest cannot be printed; ``str(error)`` says why and what to do."""


def command_url(url: str) -> str:
    return route_url(url, COMMAND_PATH)


def events_url(url: str) -> str:
    return route_url(url, EVENTS_PATH)


def interactions_url(url: str) -> str:
    return route_url(url, INTERACTIONS_PATH)


def suggested_prompts(stage: str) -> list[dict[str, str]]:
    """The prompts the stage's worker offers, as the manifest lists them (see the contract)."""
    from chalicelib.settings import VARIABLES, SettingsError

    raw = os.environ.get(PROMPTS_VARIABLE)
    if raw is None:
        raw = common.function_environment(common.load_config(), stage, "worker").get(PROMPTS_VARIABLE)
    [variable] = [variable for variable in VARIABLES if variable.name == PROMPTS_VARIABLE]
    try:
        parsed = variable.default if raw is None else variable.parse(PROMPTS_VARIABLE, raw.strip())
    except SettingsError as error:
        raise ManifestError(str(error)) from None
    prompts = cast("tuple[tuple[str, str], ...]", parsed)
    return [{"title": title, "message": message} for title, message in prompts]


def deployed_base_url(stage: str) -> str:
    command = [common.chalice_command(), "url", "--stage", stage]
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ManifestError(f"could not run `chalice url --stage {stage}`: {error}") from None
    if result.returncode != 0:
        if NOT_DEPLOYED_MARK in result.stderr:
            raise ManifestError(
                f"stage {stage!r} is not deployed (chalice has no record of its REST API). "
                f"Run `make deploy STAGE={stage}` first, or set URL= to the bot's URL."
            )
        last_line = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ManifestError(f"`chalice url --stage {stage}` failed (exit {result.returncode}): {last_line}")
    lines = result.stdout.strip().splitlines()
    if not lines or not lines[-1].startswith(("https://", "http://")):
        raise ManifestError(f"`chalice url --stage {stage}` printed no URL")
    return lines[-1].strip()


def display_name(stage: str) -> str:
    return "mameka" if stage == PRODUCTION_STAGE else f"mameka ({stage})"


def bot_name(stage: str) -> str:
    return "mameka" if stage == PRODUCTION_STAGE else f"mameka-{stage}"


def render(stage: str, url: str) -> str:
    """The manifest for ``stage``, whose routes are at ``url`` (the base URL or a route's URL)."""
    # Values go in as JSON strings, which YAML reads as double-quoted scalars: any URL is safe.
    return Template(TEMPLATE.read_text()).substitute(
        app_name=json.dumps(display_name(stage)),
        bot_name=json.dumps(bot_name(stage)),
        command_url=json.dumps(command_url(url)),
        events_url=json.dumps(events_url(url)),
        interactions_url=json.dumps(interactions_url(url)),
        # JSON is YAML's flow style: the prompts go in as one line, whatever their text.
        suggested_prompts=json.dumps(suggested_prompts(stage), ensure_ascii=False),
    )


def check(manifest_text: str) -> dict[str, Any]:
    """Raise ``ManifestError`` unless the text is a manifest Slack's schema would take for this bot."""
    try:
        import yaml
    except ImportError:  # PyYAML comes with the dev tools (moto, cfn-lint); without it, trust the template
        return {}
    try:
        manifest = yaml.safe_load(manifest_text)
    except yaml.YAMLError as error:
        raise ManifestError(f"slack/manifest.yml is not valid YAML after filling it in: {error}") from None
    try:
        name = manifest["display_information"]["name"]
        features = manifest["features"]
        commands = features["slash_commands"]
        scopes = manifest["oauth_config"]["scopes"]["bot"]
        events = manifest["settings"]["event_subscriptions"]
        request_url = events["request_url"]
        bot_events = events["bot_events"]
    except (KeyError, TypeError) as missing:
        raise ManifestError(f"slack/manifest.yml lacks {missing}") from None
    # Limits from Slack's manifest schema (github.com/slackapi/manifest-schema, v1).
    if not 1 <= len(name) <= 35:
        raise ManifestError(f"the app name {name!r} must be 1 to 35 characters")
    for command in commands:
        if not str(command.get("url", "")).startswith(("https://", "http://")):
            raise ManifestError(f"{command.get('command')} has no http(s) url")
    if not str(request_url).startswith(("https://", "http://")):
        raise ManifestError("the event subscriptions have no http(s) request_url")
    if "assistant_view" in features and not (features["assistant_view"] or {}).get("assistant_description"):
        raise ManifestError("the assistant view needs an assistant_description")
    if "agent_view" in features and not (features["agent_view"] or {}).get("agent_description"):
        raise ManifestError("the agent view needs an agent_description")
    needed = [(f"the {event} event", EVENT_SCOPES.get(event)) for event in bot_events]
    needed += [(f"features.{feature}", scope) for feature, scope in FEATURE_SCOPES.items() if feature in features]
    for what, scope in needed:
        if scope and scope not in scopes:
            raise ManifestError(f"{what} needs the `{scope}` bot scope")
    schema_problem(manifest)
    return manifest


def schema_problem(manifest: Any) -> None:
    """Raise ``ManifestError`` naming the first place where Slack's schema refuses ``manifest``."""
    try:
        import jsonschema
    except ImportError:  # the dev tools bring it; without them, the checks above stand alone
        return
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    error = jsonschema.exceptions.best_match(validator.iter_errors(manifest))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "the manifest"
        raise ManifestError(f"Slack's manifest schema refuses {where}: {error.message[:200]}")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: manifest.py STAGE   (or: make manifest STAGE=...; URL= overrides the URL)", file=sys.stderr)
        return 2
    stage = argv[0]
    try:
        common.stage_config(stage)
    except common.UnknownStage as unknown:
        return common.error(str(unknown), 2)
    try:
        override = os.environ.get("URL", "").strip()
        url = override or deployed_base_url(stage)
        if not url.startswith("https://"):
            print(f"warning: {url} is not https://; Slack expects a TLS Request URL.", file=sys.stderr)
        manifest_text = render(stage, url)
        check(manifest_text)
    except common.ScriptError as problem:  # a ManifestError, or chalice missing
        return common.error(str(problem))
    sys.stdout.write(manifest_text)
    print(f"Slash command /mameka → {command_url(url)}", file=sys.stderr)
    print(
        f"Events Request URL → {events_url(url)}: after saving the manifest, click Verify on the app's "
        "App Manifest page (Slack sends it a challenge; the deployed stage answers it).",
        file=sys.stderr,
    )
    print(f"Interactivity Request URL → {interactions_url(url)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
