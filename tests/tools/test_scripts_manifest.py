"""scripts/manifest.py as `make manifest` runs it: a subprocess, in a throwaway copy of the project.

The copy has no ``.chalice/deployed``, as on a clone that was never deployed; a test that
needs a deployment writes the record ``chalice deploy`` would leave, so the real
``chalice url`` runs and its output is what the script reads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT, import_script

API_BASE = "https://abc123defg.execute-api.us-east-1.amazonaws.com/api/"
COMMAND_URL = API_BASE + "slack/commands"
EVENTS_URL = API_BASE + "slack/events"
BOT_SCOPES = [
    "commands",
    "app_mentions:read",
    "chat:write",
    "im:history",
    "channels:history",
    "groups:history",
    "mpim:history",
    "assistant:write",
]
BOT_EVENTS = ["app_mention", "message.im", "assistant_thread_started"]
STRING_LIST = {"type": "array", "items": {"type": "string", "maxLength": 50}, "maxItems": 100, "uniqueItems": True}

# The part of Slack's app manifest schema that this manifest uses, with its limits
# (github.com/slackapi/manifest-schema, schemas/manifest.schema.1.0.0.json).
MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["display_information"],
    "additionalProperties": False,
    "properties": {
        "_metadata": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"major_version": {"type": "integer"}, "minor_version": {"type": "integer"}},
        },
        "display_information": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 35},
                "description": {"type": "string", "minLength": 1, "maxLength": 140},
                "background_color": {"type": "string", "pattern": "^#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?$"},
            },
        },
        "features": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "app_home": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "home_tab_enabled": {"type": "boolean"},
                        "messages_tab_enabled": {"type": "boolean"},
                        "messages_tab_read_only_enabled": {"type": "boolean"},
                    },
                },
                "assistant_view": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["assistant_description"],
                    "properties": {
                        "assistant_description": {"type": "string"},
                        "suggested_prompts": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["title", "message"],
                                "properties": {"title": {"type": "string"}, "message": {"type": "string"}},
                            },
                        },
                    },
                },
                "bot_user": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["display_name"],
                    "properties": {
                        "display_name": {"type": "string", "minLength": 1, "maxLength": 80},
                        "always_online": {"type": "boolean"},
                    },
                },
                "slash_commands": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 50,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["command", "description"],
                        "properties": {
                            "command": {"type": "string", "minLength": 2, "maxLength": 32, "pattern": "^/"},
                            "url": {"type": "string", "pattern": "^https?://", "maxLength": 3000},
                            "description": {"type": "string", "minLength": 1, "maxLength": 2000},
                            "usage_hint": {"type": "string", "minLength": 1, "maxLength": 1000},
                            "should_escape": {"type": "boolean"},
                        },
                    },
                },
            },
        },
        "oauth_config": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "scopes": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"bot": {"type": "array", "items": {"type": "string", "maxLength": 50}}},
                }
            },
        },
        "settings": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "event_subscriptions": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "request_url": {"type": "string", "pattern": "^https?://", "maxLength": 3500},
                        "user_events": STRING_LIST,
                        "bot_events": STRING_LIST,
                    },
                },
                "org_deploy_enabled": {"type": "boolean"},
                "socket_mode_enabled": {"type": "boolean"},
                "token_rotation_enabled": {"type": "boolean"},
            },
        },
    },
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """What `chalice url` and the script read, copied; no .chalice/deployed, no .venv."""
    copy = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "deployed", "deployments")
    for name in ("chalicelib", "slack", ".chalice"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    (copy / "scripts").mkdir()
    for name in ("app.py", "requirements.txt", "scripts/manifest.py", "scripts/common.py"):
        shutil.copy2(ROOT / name, copy / name)
    assert not (copy / ".chalice" / "deployed").exists()
    return copy


def record_deployment(project: Path, stage: str, rest_api_url: str) -> None:
    """The record `chalice deploy` writes, reduced to what `chalice url` reads."""
    deployed = project / ".chalice" / "deployed"
    deployed.mkdir(exist_ok=True)
    record = {
        "schema_version": "2.0",
        "backend": "api",
        "resources": [
            {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": "abc123defg", "rest_api_url": rest_api_url}
        ],
    }
    (deployed / f"{stage}.json").write_text(json.dumps(record))


def run_manifest(project: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "URL"}
    if url is not None:
        env["URL"] = url
    return subprocess.run(
        [sys.executable, str(project / "scripts" / "manifest.py"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_manifest_for_a_deployed_stage_uses_chalice_url(project: Path) -> None:
    record_deployment(project, "dev", API_BASE)
    result = run_manifest(project, "dev")

    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(result.stdout)
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    assert manifest["_metadata"] == {"major_version": 1, "minor_version": 1}
    assert manifest["display_information"]["name"] == "mameka (dev)"
    assert manifest["features"]["bot_user"]["display_name"] == "mameka-dev"
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/mameka"
    assert command["url"] == COMMAND_URL
    assert command["should_escape"] is False
    assert command["description"] and command["usage_hint"]
    assert manifest["oauth_config"]["scopes"] == {"bot": BOT_SCOPES}
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert manifest["settings"]["token_rotation_enabled"] is False  # the worker cannot refresh a token
    assert manifest["settings"]["event_subscriptions"] == {"request_url": EVENTS_URL, "bot_events": BOT_EVENTS}
    # Users can DM the bot: the Messages tab is on and writable.
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_read_only_enabled"] is False
    assert "豆香" in manifest["features"]["assistant_view"]["assistant_description"]
    # The template's comments (why each scope) survive; no placeholder is left.
    assert "# the /mameka slash command" in result.stdout
    assert "$" not in result.stdout
    assert COMMAND_URL in result.stderr
    assert EVENTS_URL in result.stderr and "Verify" in result.stderr


@pytest.mark.parametrize(
    "override",
    [
        "https://bot.example.com",
        "https://bot.example.com/",
        "https://bot.example.com/slack/commands",
        "https://bot.example.com/slack/events/",
    ],
)
def test_url_override_takes_a_base_or_a_route_url(project: Path, override: str) -> None:
    result = run_manifest(project, "prod", url=override)  # no deployment needed

    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(result.stdout)
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    assert manifest["features"]["slash_commands"][0]["url"] == "https://bot.example.com/slack/commands"
    assert manifest["settings"]["event_subscriptions"]["request_url"] == "https://bot.example.com/slack/events"
    assert manifest["display_information"]["name"] == "mameka"
    assert manifest["features"]["bot_user"]["display_name"] == "mameka"
    assert "warning" not in result.stderr


def test_a_url_with_yaml_syntax_in_it_stays_one_string(project: Path) -> None:
    odd = "https://bot.example.com/slack/commands?note=a: b 'c\" #d"
    result = run_manifest(project, "dev", url=odd)

    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(result.stdout)
    assert manifest["features"]["slash_commands"][0]["url"] == odd
    assert manifest["settings"]["event_subscriptions"]["request_url"] == odd.replace("/commands?", "/events?")


def test_a_plain_http_url_is_printed_with_a_warning(project: Path) -> None:
    result = run_manifest(project, "dev", url="http://127.0.0.1:8000/")

    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(result.stdout)
    [command] = manifest["features"]["slash_commands"]
    assert command["url"] == "http://127.0.0.1:8000/slack/commands"
    assert manifest["settings"]["event_subscriptions"]["request_url"] == "http://127.0.0.1:8000/slack/events"
    assert "warning:" in result.stderr and "https" in result.stderr


def test_an_undeployed_stage_says_to_deploy_first(project: Path) -> None:
    result = run_manifest(project, "dev")

    assert result.returncode == 1
    assert result.stdout == ""
    assert "not deployed" in result.stderr
    assert "make deploy STAGE=dev" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_only_the_asked_stage_counts_as_deployed(project: Path) -> None:
    record_deployment(project, "dev", API_BASE)
    result = run_manifest(project, "prod")

    assert result.returncode == 1
    assert "make deploy STAGE=prod" in result.stderr


@pytest.mark.parametrize(("args", "message"), [(("staging",), "not in .chalice/config.json"), ((), "usage:")])
def test_unknown_stage_or_no_stage_is_a_usage_error(project: Path, args: tuple[str, ...], message: str) -> None:
    result = run_manifest(project, *args, url="https://bot.example.com/")

    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def scoped_manifest(scopes: list[str]) -> str:
    """The real template, filled in, with its bot scopes replaced."""
    script = import_script("manifest")
    manifest = yaml.safe_load(script.render("dev", API_BASE))
    manifest["oauth_config"]["scopes"]["bot"] = scopes
    return yaml.safe_dump(manifest, allow_unicode=True)


@pytest.mark.parametrize(
    ("missing", "needed_by"),
    [
        ("app_mentions:read", "app_mention event"),
        ("im:history", "message.im event"),
        ("assistant:write", "assistant_thread_started event"),
        ("commands", "features.slash_commands"),
    ],
)
def test_an_event_or_feature_without_its_scope_is_refused(missing: str, needed_by: str) -> None:
    """Slack refuses a manifest that subscribes to an event without the scope behind it."""
    script = import_script("manifest")
    with pytest.raises(script.ManifestError, match=f"{needed_by} needs the `{missing}` bot scope"):
        script.check(scoped_manifest([scope for scope in BOT_SCOPES if scope != missing]))


def test_the_template_passes_its_own_check() -> None:
    script = import_script("manifest")
    manifest = script.check(scoped_manifest(BOT_SCOPES))
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    # Every event and feature the template uses is one whose scope the check knows.
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) <= set(script.EVENT_SCOPES)
