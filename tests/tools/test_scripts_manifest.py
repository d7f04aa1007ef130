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
from typing import Any

import jsonschema
import pytest
import yaml

from chalicelib.settings import DEFAULT_SUGGESTED_PROMPTS
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
BOT_EVENTS = ["app_mention", "message.im", "assistant_thread_started", "app_home_opened", "agent_session_stopped"]
INTERACTIONS_URL = API_BASE + "slack/interactions"

# Slack's own app manifest schema, vendored (schemas/slack/README.md says from where).
MANIFEST_SCHEMA = json.loads((ROOT / "schemas" / "slack" / "manifest.schema.1.0.0.json").read_text())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """What `chalice url` and the script read, copied; no .chalice/deployed, no .venv."""
    copy = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "deployed", "deployments")
    for name in ("chalicelib", "slack", ".chalice", "schemas"):
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


def run_manifest(
    project: Path, *args: str, url: str | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("URL", "SUGGESTED_PROMPTS")}
    if url is not None:
        env["URL"] = url
    env.update(extra_env or {})
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
    assert manifest["settings"]["interactivity"] == {"is_enabled": True, "request_url": INTERACTIONS_URL}
    # Users can DM the bot: the Messages tab is on and writable.
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_read_only_enabled"] is False
    # The agent view, not the legacy assistant view; its prompts are SUGGESTED_PROMPTS' default.
    assert "assistant_view" not in manifest["features"]
    agent_view = manifest["features"]["agent_view"]
    assert "豆香" in agent_view["agent_description"]
    assert agent_view["suggested_prompts"] == [
        {"title": title, "message": message} for title, message in DEFAULT_SUGGESTED_PROMPTS
    ]
    # The template's comments (why each scope) survive; no placeholder is left.
    assert "# the /mameka slash command" in result.stdout
    assert "$" not in result.stdout
    assert COMMAND_URL in result.stderr
    assert EVENTS_URL in result.stderr and "Verify" in result.stderr
    assert INTERACTIONS_URL in result.stderr


@pytest.mark.parametrize(
    "override",
    [
        "https://bot.example.com",
        "https://bot.example.com/",
        "https://bot.example.com/slack/commands",
        "https://bot.example.com/slack/events/",
        "https://bot.example.com/slack/interactions",
    ],
)
def test_url_override_takes_a_base_or_a_route_url(project: Path, override: str) -> None:
    result = run_manifest(project, "prod", url=override)  # no deployment needed

    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(result.stdout)
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    assert manifest["features"]["slash_commands"][0]["url"] == "https://bot.example.com/slack/commands"
    assert manifest["settings"]["event_subscriptions"]["request_url"] == "https://bot.example.com/slack/events"
    assert manifest["settings"]["interactivity"]["request_url"] == "https://bot.example.com/slack/interactions"
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


def test_the_suggested_prompts_are_the_workers_setting(project: Path) -> None:
    prompts = [{"title": "挨拶", "message": 'こんにちは！ $HOME "quoted": #not-a-comment'}]
    result = run_manifest(
        project, "dev", url="https://bot.example.com/", extra_env={"SUGGESTED_PROMPTS": json.dumps(prompts)}
    )

    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(result.stdout)
    jsonschema.validate(manifest, MANIFEST_SCHEMA)
    assert manifest["features"]["agent_view"]["suggested_prompts"] == prompts


def test_the_stage_config_gives_the_prompts_when_the_environment_does_not(project: Path) -> None:
    config_path = project / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    prompts = [{"title": "One", "message": "only this one"}]
    worker = config["stages"]["prod"]["lambda_functions"]["worker"]
    worker["environment_variables"]["SUGGESTED_PROMPTS"] = json.dumps(prompts)
    config_path.write_text(json.dumps(config))

    result = run_manifest(project, "prod", url="https://bot.example.com/")

    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["features"]["agent_view"]["suggested_prompts"] == prompts


def test_a_bad_suggested_prompts_setting_is_one_line_and_no_manifest(project: Path) -> None:
    five = json.dumps([{"title": f"t{i}", "message": f"m{i}"} for i in range(5)])
    result = run_manifest(project, "dev", url="https://bot.example.com/", extra_env={"SUGGESTED_PROMPTS": five})

    assert result.returncode == 1
    assert result.stdout == ""
    assert "SUGGESTED_PROMPTS must be a JSON list of at most 4" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def filled_in_manifest() -> dict[str, Any]:
    script = import_script("manifest")
    manifest: dict[str, Any] = yaml.safe_load(script.render("dev", API_BASE))
    return manifest


@pytest.mark.parametrize(
    ("break_it", "where"),
    [
        (
            lambda m: m["features"]["agent_view"]["suggested_prompts"].append({"title": "5", "message": "5"}),
            "features.agent_view.suggested_prompts",
        ),
        (lambda m: m["features"]["agent_view"].update(agent_description="x" * 301), "features.agent_view"),
        (lambda m: m["settings"]["interactivity"].pop("is_enabled"), "settings.interactivity"),
        (
            lambda m: m["features"].update(agent_view={**m["features"]["agent_view"], "assistant_description": "x"}),
            "features.agent_view",
        ),
    ],
    ids=["five-prompts", "long-description", "interactivity-without-is_enabled", "unknown-field"],
)
def test_slacks_schema_refuses_what_slack_would(break_it: Any, where: str) -> None:
    """The vendored schema is no rubber stamp: each of these manifests Slack refuses."""
    manifest = filled_in_manifest()
    jsonschema.validate(manifest, MANIFEST_SCHEMA)  # the real one passes...
    break_it(manifest)
    with pytest.raises(jsonschema.ValidationError):  # ...and the broken one does not
        jsonschema.validate(manifest, MANIFEST_SCHEMA)
    script = import_script("manifest")
    with pytest.raises(script.ManifestError, match=f"schema refuses {where}"):
        script.check(yaml.safe_dump(manifest, allow_unicode=True))
