"""Secrets hygiene: no secret in any output, and the prod stage reads its secrets only from SSM.

- Every test's captured output is searched for the tests' secrets by a hook in
  ``tests/conftest.py`` (and chalice local's log by ``tests/chalice_local.py``). Here: that
  hook fails a test that prints or logs a secret, even one the test read away through
  ``capsys``, and passes a test that shows only a redacted secret or that is marked
  ``secrets_in_output``; and one test drives every path that handles a secret (a slash
  command, a mention, a DM, the assistant pane, a forged signature, a rejected OpenAI key, a
  rejected bot token), with all three secrets read from SSM (moto) and ``LOG_LEVEL=DEBUG``,
  and searches its whole output, every log record at DEBUG included.
- ``.chalice/config.json``: no secret variable reaches any function of the ``prod`` stage, by
  Chalice's own merge of the global, per-function, stage and per-stage-function settings;
  each function is given the SSM parameter names instead.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import boto3
import pytest
from chalice.config import Config
from chalice.test import Client
from moto import mock_aws

from app import app
from devkit import slack_requests
from devkit.fake_openai import openai_error
from devkit.fake_slack_api import FAKE_BOT_TOKEN, FakeSlackAPI
from devkit.http_fake import FakeServer
from tests.conftest import (
    OPENAI_KEY,
    ROOT,
    SECRET_VARIABLES,
    SIGNING_SECRET,
    TEST_SECRETS,
    command_form,
    response_path,
    secrets_in,
    signed_headers,
    wait_for_local_jobs,
)

# --- the check itself, in a pytest of its own -------------------------------------------------------------------------

INNER_CONFTEST = """
from tests.conftest import capsys, pytest_configure, pytest_runtest_makereport  # noqa: F401  (the check, alone)
"""
INNER_TESTS = f"""
import logging

import pytest

SECRET = {SIGNING_SECRET!r}


def test_prints_a_secret():
    print("the secret is", SECRET)


def test_logs_a_secret():
    logging.getLogger("leaky").warning("token=%s", SECRET)


def test_reads_its_own_output_away(capsys):
    print(SECRET)
    assert SECRET in capsys.readouterr().out  # no longer in the report: the check still sees it


def test_shows_a_secret_at_teardown(request):
    request.addfinalizer(lambda: print(SECRET))


def test_shows_a_secret_redacted():
    print("the secret is", SECRET.replace(SECRET, "***"), "and its length", len(SECRET))


@pytest.mark.secrets_in_output("this test is about showing it")
def test_marked():
    print(SECRET)


def test_fails_and_shows_a_secret():
    print(SECRET)
    assert False, "its own failure"
"""


def test_the_check_fails_every_test_whose_output_shows_a_secret(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TESTS))
    junit = tmp_path / "junit.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={junit}", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    outcomes = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        problems = [(child.tag, child.get("message", "")) for child in case if child.tag in ("failure", "error")]
        outcomes[case.get("name")] = problems[0] if problems else ("passed", "")
    assert {name: outcome for name, (outcome, _) in outcomes.items()} == {
        "test_prints_a_secret": "failure",
        "test_logs_a_secret": "failure",
        "test_reads_its_own_output_away": "failure",
        "test_shows_a_secret_at_teardown": "error",
        "test_shows_a_secret_redacted": "passed",
        "test_marked": "passed",
        "test_fails_and_shows_a_secret": "failure",
    }, result.stdout
    masked = f"{SIGNING_SECRET[:4]}…({len(SIGNING_SECRET)} chars)"
    assert outcomes["test_prints_a_secret"][1] == f"secrets hygiene: this test's call output shows {masked}"
    assert "teardown output shows" in outcomes["test_shows_a_secret_at_teardown"][1]
    # A test that failed anyway keeps its own failure, and gets the finding as a report section.
    assert outcomes["test_fails_and_shows_a_secret"][1].startswith("AssertionError: its own failure")


# --- every path that handles a secret, at DEBUG -----------------------------------------------------------------------

PARAMETERS = {  # the dev stage's names (.chalice/config.json), which chalice.test.Client applies
    "/mameka/dev/slack-signing-secret": SIGNING_SECRET,
    "/mameka/dev/openai-api-key": OPENAI_KEY,
    "/mameka/dev/slack-bot-token": FAKE_BOT_TOKEN,
}


def post_event(client: Client, body: bytes) -> Any:
    headers = signed_headers(body, content_type=slack_requests.JSON)
    return client.http.post("/slack/events", headers=headers, body=body)


def test_every_path_at_debug_with_secrets_from_ssm_shows_no_secret(
    openai_server: FakeServer,
    slack_server: FakeServer,
    slack_api: FakeSlackAPI,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url + "/v1")
    monkeypatch.setenv("SLACK_API_URL", slack_api.url)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    assert not any(os.environ.get(name) for name in SECRET_VARIABLES)  # every secret comes from SSM
    with mock_aws(), Client(app, stage_name="dev", project_dir=str(ROOT)) as client:
        ssm = boto3.client("ssm")
        for name, value in PARAMETERS.items():
            ssm.put_parameter(Name=name, Value=value, Type="SecureString")

        # A slash command, answered; then one whose OpenAI key is rejected.
        paths = [response_path(), response_path()]
        for path in paths:
            body = command_form("秘密の質問", slack_server.url + path)
            assert client.http.post("/slack/commands", headers=signed_headers(body), body=body).status_code == 200
            wait_for_local_jobs()
            openai_server.script = [openai_error(401, "invalid_api_key")] * 3
        assert [len(slack_server.requests_to(path)) for path in paths] == [1, 1]
        assert "rejected" in slack_server.requests_to(paths[1])[0].json()["text"]

        # A forged signature: rejected, and the signing secret read again from SSM.
        body = command_form("hi", slack_server.url + response_path())
        forged = client.http.post("/slack/commands", headers=signed_headers(body, secret="forged"), body=body)
        assert forged.status_code == 401

        # A mention, a DM, the assistant pane; the first Slack call refused with invalid_auth.
        openai_server.script = []
        slack_api.fail_next("agents.sessions.setStatus", "invalid_auth")
        mention_ts, dm_ts = slack_requests.new_ts(), slack_requests.new_ts()
        for body in (
            slack_requests.mention_event("秘密", ts=mention_ts),
            slack_requests.dm_event("秘密", ts=dm_ts),
            slack_requests.assistant_thread_started_event(),
        ):
            slack_api.add_event(body)
            assert post_event(client, body).status_code == 200
            wait_for_local_jobs()
        assert len(slack_api.bot_messages(slack_requests.CHANNEL_ID, mention_ts)) == 1
        assert len(slack_api.bot_messages(slack_requests.DM_CHANNEL_ID, dm_ts)) == 1

    captured = capsys.readouterr()
    output = "\n".join([captured.out, captured.err, caplog.text])
    # The output is worth searching: every request and job logged...
    lines = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines].count("answer") == 5
    assert any(line.get("outcome") == "invalid_signature" for line in lines)
    # The bot set DEBUG itself (caplog's handler takes every level; no library that the bot
    # lets log at DEBUG had anything to say), and the capture saw its records: the re-reads.
    assert logging.getLogger().level == logging.DEBUG
    assert any("will be read again" in record.getMessage() for record in caplog.records)
    assert secrets_in(output, {*TEST_SECRETS, *PARAMETERS.values()}) == []


# --- the prod stage reads its secrets only from SSM -----------------------------------------------------------------


def secret_variables_set(config: dict[str, Any], stage: str) -> list[str]:
    """Where ``config`` sets one of ``SECRET_VARIABLES`` for ``stage``: in any function's
    environment by Chalice's own merge, or as any key outside the other stages (Chalice ignores
    a top-level ``lambda_functions.<name>.environment_variables``, but the value is still there
    in the file, and a later Chalice may read it)."""
    stages = config.get("stages", {})
    functions = {"api_handler", *config.get("lambda_functions", {}), *stages[stage].get("lambda_functions", {})}
    found = []
    for function in sorted(functions):
        environment = Config(chalice_stage=stage, function_name=function, config_from_disk=config)
        found += [f"{function}: {name}" for name in SECRET_VARIABLES if name in environment.environment_variables]
    in_file = {**{key: value for key, value in config.items() if key != "stages"}, "stages": {stage: stages[stage]}}
    return found + keys_named(in_file, SECRET_VARIABLES)


def keys_named(node: Any, names: tuple[str, ...], path: str = "") -> list[str]:
    """The paths of every key in ``names`` in a JSON document."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        where = f"{path}.{key}" if path else str(key)
        if key in names:
            found.append(where)
        found += keys_named(value, names, where)
    return found


def chalice_config() -> dict[str, Any]:
    return json.loads((ROOT / ".chalice" / "config.json").read_text())


def test_the_prod_stage_sets_no_secret_variable_and_names_ssm_parameters() -> None:
    config = chalice_config()
    assert secret_variables_set(config, "prod") == []
    for function in ("api_handler", "worker"):
        environment = Config(
            chalice_stage="prod", function_name=function, config_from_disk=config
        ).environment_variables
        for name in SECRET_VARIABLES:
            assert environment[f"{name}_PARAMETER"].startswith("/mameka/prod/")


@pytest.mark.parametrize(
    "where",
    [
        ("environment_variables",),  # global: every stage
        ("lambda_functions", "worker", "environment_variables"),  # global, one function
        ("stages", "prod", "environment_variables"),
        ("stages", "prod", "lambda_functions", "api_handler", "environment_variables"),
    ],
)
@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_a_secret_variable_anywhere_the_prod_stage_reads_is_found(where: tuple[str, ...], variable: str) -> None:
    config = chalice_config()
    section = config
    for key in where:
        section = section.setdefault(key, {})
    section[variable] = "not-a-real-secret"
    assert secret_variables_set(config, "prod") != []
