"""`make deploy`'s preflight (scripts/deployment.py preflight): the configuration each function would
be deployed with, every setting and the time limits, refused in one line per problem before anything
is built.

The script runs as a subprocess in a copy of the project whose ``.chalice/config.json`` a test edits,
with fake AWS credentials and an endpoint on a closed loopback port (preflight makes no AWS call).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.tools.test_deploy import (
    BIN,
    NO_SERVER,
    copy_make_project,
    own_lines,
    run,
    subprocess_env,
    without_aws_setup,
)

LIMITS_TOO_LOW = (
    "the worker's lambda_timeout (120 s in .chalice/config.json) must be above ANSWER_TIMEOUT_SECONDS (300 s), "
    "or Lambda stops the worker before an answer's own deadline; raise it (at most 900) or lower "
    "ANSWER_TIMEOUT_SECONDS"
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_make_project(tmp_path)


def edit_config(project: Path, edit: Any) -> None:
    path = project / ".chalice" / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config, indent=2))


def preflight(project: Path, env: dict[str, str], stage: str = "dev"):
    return run([BIN / "python", project / "scripts" / "deployment.py", "preflight", stage], project, env)


def test_the_shipped_configuration_passes(project: Path, tmp_path: Path) -> None:
    result = preflight(project, subprocess_env(NO_SERVER, tmp_path), "prod")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_each_problem_of_the_deployed_configuration_is_one_line(project: Path, tmp_path: Path) -> None:
    """Before, preflight looked at AWS only: a worker that Lambda would stop mid-answer, or one that
    refuses every job ("not set up"), was deployed without a word."""

    def break_it(config: dict[str, Any]) -> None:
        config["lambda_functions"]["worker"]["lambda_timeout"] = 120
        stage = config["stages"]["dev"]
        stage["environment_variables"].update(OPENAI_TEMPERATURE="warm", OPENAI_TIMEOUT_SECONDS="400")
        stage["lambda_functions"]["worker"]["environment_variables"]["SUGGESTED_PROMPTS"] = "["
        stage["lambda_functions"]["api_handler"]["environment_variables"]["LOG_LEVEL"] = "LOUD"

    edit_config(project, break_it)
    result = preflight(project, subprocess_env(NO_SERVER, tmp_path))

    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        # the HTTP function's environment: the stage's variables and its own
        "error: OPENAI_TEMPERATURE must be a number, got 'warm'",
        "error: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
        # the worker's: the stage's (said once) and its own, then its time limits
        "error: SUGGESTED_PROMPTS must be a JSON list of at most 4 {title, message} objects; it is not JSON",
        f"error: {LIMITS_TOO_LOW}",
        "error: OPENAI_TIMEOUT_SECONDS (400 s, one LLM step) must not exceed ANSWER_TIMEOUT_SECONDS "
        "(300 s, the whole answer)",
    ]


@pytest.mark.parametrize(
    ("where", "timeout", "fits"),
    [
        ("stage function", 300, False),  # equal is not above: nothing is left for the error reply
        ("stage function", 301, True),
        ("stage", 901, False),  # Lambda's limit
        ("stage", 900, True),
    ],
)
def test_the_workers_lambda_timeout_is_found_where_chalice_finds_it(
    project: Path, tmp_path: Path, where: str, timeout: int, fits: bool
) -> None:
    def set_timeout(config: dict[str, Any]) -> None:
        stage = config["stages"]["dev"]
        target = stage["lambda_functions"]["worker"] if where == "stage function" else stage
        # Both win over the top-level lambda_functions.worker value (360), in Chalice's order.
        target["lambda_timeout"] = timeout

    edit_config(project, set_timeout)
    result = preflight(project, subprocess_env(NO_SERVER, tmp_path))

    if fits:
        assert (result.returncode, result.stderr) == (0, "")
    else:
        assert result.returncode == 1
        [line] = result.stderr.splitlines()
        assert line.startswith(f"error: the worker's lambda_timeout ({timeout} s in .chalice/config.json) must be")


def test_the_shells_own_settings_are_not_deployed_so_not_checked(project: Path, tmp_path: Path) -> None:
    """`chalice deploy` gives the functions config.json's variables only: a value exported for
    `make run` neither breaks nor saves a deployment."""
    env = {**subprocess_env(NO_SERVER, tmp_path), "OPENAI_TEMPERATURE": "warm", "ANSWER_TIMEOUT_SECONDS": "900"}
    assert preflight(project, env).returncode == 0

    edit_config(project, lambda config: config["lambda_functions"]["worker"].update(lambda_timeout=120))
    result = preflight(project, env)  # the deployed ANSWER_TIMEOUT_SECONDS is the default, 300
    assert result.stderr.splitlines() == [f"error: {LIMITS_TOO_LOW}"]


def test_no_aws_and_a_bad_configuration_are_both_said(project: Path, tmp_path: Path) -> None:
    edit_config(project, lambda config: config["lambda_functions"]["worker"].update(lambda_timeout=120))
    result = preflight(project, without_aws_setup(subprocess_env(NO_SERVER, tmp_path)))

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {LIMITS_TOO_LOW}"
    assert lines[1].startswith("error: cannot use AWS: no AWS credentials and no region found")
    assert len(lines) == 2


def test_make_deploy_with_a_bad_configuration_builds_nothing(project: Path, tmp_path: Path) -> None:
    edit_config(project, lambda config: config["lambda_functions"]["worker"].update(lambda_timeout=120))
    result = run(["make", "deploy", "STAGE=dev"], project, subprocess_env(NO_SERVER, tmp_path))

    assert result.returncode != 0
    assert own_lines(result.stderr) == [f"error: {LIMITS_TOO_LOW}"]
    assert result.stdout == ""  # not one command was echoed: none ran
    assert not (project / "out").exists()
    assert not (project / ".chalice" / "deployments").exists()
