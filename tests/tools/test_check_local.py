"""scripts/check_local.py, and `make run`, which runs it before `chalice local`.

The script runs as a subprocess with a controlled environment: no AWS credentials, region or
files unless a test gives them (then fake ones, and an endpoint on a closed loopback port: the
script never calls AWS, it only asks boto3's chain). `make run` runs in a project copy, as in
tests/tools/test_deploy.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from chalicelib.settings import ENV_NAMES, Settings, SettingsError
from tests import chalice_local
from tests.chalice_local import free_port
from tests.conftest import ROOT, import_script
from tests.tools.test_deploy import copy_make_project, own_lines

SCRIPT = ROOT / "scripts" / "check_local.py"
SIGNING_SECRET = "local-signing-secret-not-real-5d1"
OPENAI_KEY = "sk-local-fake-key-not-real-77aa"
BOT_TOKEN = "xoxb-local-fake-token-not-real-31c"
ALL_SECRETS = {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "OPENAI_API_KEY": OPENAI_KEY, "SLACK_BOT_TOKEN": BOT_TOKEN}
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
NO_SSM = "no AWS credentials or region"


def base_env(**extra: str) -> dict[str, str]:
    """This environment without any AWS, OpenAI, Slack or bot setting, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "OPENAI_", "SLACK_")) and name not in ENV_NAMES
    }
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",  # a closed port: a call to AWS would fail, not leave the machine
    )
    env.update(extra)
    return env


def run_check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def assert_no_secret(*outputs: str) -> None:
    for output in outputs:
        for value in ALL_SECRETS.values():
            assert value not in output


def test_nothing_set_stops_with_one_line_per_missing_secret() -> None:
    result = run_check(base_env())

    assert result.returncode == 1
    assert result.stdout == ""
    signing, openai, bot = result.stderr.splitlines()
    assert signing.startswith(
        f"error: SLACK_SIGNING_SECRET is not set (and SSM parameter /mameka/dev/slack-signing-secret cannot be "
        f"read: {NO_SSM}): no request can be verified."
    )
    assert openai.startswith("warning: OPENAI_API_KEY is not set (and SSM parameter /mameka/dev/openai-api-key")
    assert 'questions get "the bot is not set up correctly"; export your OpenAI API key' in openai
    assert bot.startswith("warning: SLACK_BOT_TOKEN is not set (and SSM parameter /mameka/dev/slack-bot-token")
    assert "mentions, DMs and the assistant pane cannot be answered (slash commands do not need it)" in bot


def test_everything_set_says_nothing() -> None:
    result = run_check(base_env(**ALL_SECRETS))

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_only_the_signing_secret_is_fatal() -> None:
    """Without the OpenAI key and the bot token some requests can still be answered: warn, and start."""
    result = run_check(base_env(SLACK_SIGNING_SECRET=SIGNING_SECRET))

    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == ["warning", "warning"]
    assert lines[0].startswith("warning: OPENAI_API_KEY is not set")
    assert lines[1].startswith("warning: SLACK_BOT_TOKEN is not set")
    assert_no_secret(result.stdout, result.stderr)


def test_slash_commands_only_need_no_bot_token() -> None:
    result = run_check(base_env(SLACK_SIGNING_SECRET=SIGNING_SECRET, OPENAI_API_KEY=OPENAI_KEY))

    assert result.returncode == 0
    [line] = result.stderr.splitlines()
    assert line.startswith("warning: SLACK_BOT_TOKEN is not set") and "slash commands do not need it" in line


def test_the_stage_decides_the_parameter_names_as_chalice_local_does() -> None:
    """The stage's config variables are laid over the process's, so its parameter names win."""
    result = run_check(base_env(SLACK_SIGNING_SECRET_PARAMETER="/from/the/shell"), "prod")

    assert "SSM parameter /mameka/prod/slack-signing-secret cannot be read" in result.stderr
    assert "/from/the/shell" not in result.stderr


def test_with_aws_credentials_missing_secrets_come_from_ssm() -> None:
    """boto3 finds (fake) credentials and a region: each secret is a note, and the run goes on."""
    result = run_check(base_env(**FAKE_AWS))

    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "note: SLACK_SIGNING_SECRET is not set: it will be read from SSM parameter /mameka/dev/slack-signing-secret",
        "note: OPENAI_API_KEY is not set: it will be read from SSM parameter /mameka/dev/openai-api-key",
        "note: SLACK_BOT_TOKEN is not set: it will be read from SSM parameter /mameka/dev/slack-bot-token",
    ]


def test_credentials_without_a_region_cannot_read_ssm() -> None:
    env = base_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    result = run_check(env)

    assert result.returncode == 1
    assert result.stderr.startswith("error: SLACK_SIGNING_SECRET is not set")


def test_each_unusable_setting_is_an_error_in_settings_own_words() -> None:
    bad = {"OPENAI_TEMPERATURE": "warm", "LOG_LEVEL": "chatty", "MAX_INPUT_CHARS": "0"}
    result = run_check(base_env(**ALL_SECRETS, **bad))

    assert result.returncode == 1
    expected = []
    for name, value in bad.items():
        with pytest.raises(SettingsError) as error:
            Settings.from_env({name: value})
        assert name in str(error.value)
        expected.append(f"error: {error.value}")
    assert sorted(result.stderr.splitlines()) == sorted(expected)
    assert_no_secret(result.stdout, result.stderr)


def test_time_limits_that_do_not_fit_stop_the_run_one_line_each() -> None:
    """Before, `make run` started, and a worker whose answers outlast its lambda_timeout was killed mid-answer."""
    limits = {"ANSWER_TIMEOUT_SECONDS": "400", "OPENAI_TIMEOUT_SECONDS": "500"}  # config.json's worker: 360 s
    result = run_check(base_env(**ALL_SECRETS, **limits))

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: the worker's lambda_timeout (360 s in .chalice/config.json) must be above ANSWER_TIMEOUT_SECONDS "
        "(400 s), or Lambda stops the worker before an answer's own deadline; raise it (at most 900) or lower "
        "ANSWER_TIMEOUT_SECONDS",
        "error: OPENAI_TIMEOUT_SECONDS (500 s, one LLM step) must not exceed ANSWER_TIMEOUT_SECONDS "
        "(400 s, the whole answer)",
    ]


def test_a_bad_time_limit_is_said_once_in_settings_own_words() -> None:
    result = run_check(base_env(**ALL_SECRETS, ANSWER_TIMEOUT_SECONDS="long", OPENAI_TIMEOUT_SECONDS="600"))

    assert result.returncode == 1
    assert result.stderr.splitlines() == ["error: ANSWER_TIMEOUT_SECONDS must be a number, got 'long'"]


@pytest.mark.parametrize(
    ("config", "seconds"),
    [
        ({"lambda_functions": {"worker": {"lambda_timeout": 360}}, "stages": {"dev": {}}}, 360),
        ({"lambda_timeout": 200, "stages": {"dev": {"lambda_functions": {"worker": {"lambda_timeout": 500}}}}}, 500),
        ({"stages": {"dev": {}}}, 60),  # unset: Chalice's default
    ],
)
def test_the_workers_lambda_timeout_is_looked_up_as_chalice_does(config: dict, seconds: float) -> None:
    assert script().worker_lambda_timeout("dev", config) == seconds


@pytest.mark.parametrize(
    ("lambda_timeout", "environ", "problems"),
    [
        (360, {}, []),
        (301, {"OPENAI_TIMEOUT_SECONDS": "300"}, []),  # equal to the answer's: one step may take it all
        (300, {}, ["must be above ANSWER_TIMEOUT_SECONDS (300 s)"]),
        (901, {}, ["must be at most 900 s"]),
        (900, {"ANSWER_TIMEOUT_SECONDS": "900"}, ["must be above ANSWER_TIMEOUT_SECONDS (900 s)"]),
        (120, {"ANSWER_TIMEOUT_SECONDS": "100", "OPENAI_TIMEOUT_SECONDS": "100.5"}, ["must not exceed"]),
    ],
)
def test_time_limits(lambda_timeout: float, environ: dict[str, str], problems: list[str]) -> None:
    findings = script().timeout_errors(environ, lambda_timeout)
    assert [finding.level for finding in findings] == ["error"] * len(problems)
    assert all(problem in finding.text for problem, finding in zip(problems, findings, strict=True))


def test_unknown_stage_is_a_usage_error() -> None:
    result = run_check(base_env(**ALL_SECRETS), "staging")

    assert result.returncode == 2
    assert result.stderr.strip() == "error: stage 'staging' is not in .chalice/config.json (stages: dev, prod)"


def script() -> ModuleType:
    return import_script("check_local")


@pytest.mark.parametrize(
    ("base_url", "local"),
    [
        ("http://127.0.0.1:8123/v1", True),
        ("http://127.8.9.10/v1", True),
        ("http://localhost:11434/v1", True),
        ("http://LOCALHOST/v1", True),
        ("http://[::1]:8000/v1", True),
        ("https://api.openai.com/v1", False),
        ("https://127.0.0.1.example.com/v1", False),
        ("http://10.0.0.5:8000/v1", False),
        ("not a url", False),
        ("http://[::1/v1", False),
    ],
)
def test_a_loopback_openai_base_url_needs_no_key(base_url: str, local: bool) -> None:
    """A local OpenAI-compatible server asks for no key: the bot sends a placeholder (chalicelib.secrets)."""
    environ = {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": BOT_TOKEN, "OPENAI_BASE_URL": base_url}
    findings = script().check(environ, aws_problem=lambda: "no credentials")
    if local:
        assert findings == []
    else:
        [finding] = findings
        assert finding.level == "warning" and finding.text.startswith("OPENAI_API_KEY is not set")
        assert "export your OpenAI API key" in finding.text
        assert base_url not in finding.text  # a URL may carry credentials: never shown


def test_aws_is_asked_only_when_a_secret_is_missing() -> None:
    asked: list[bool] = []

    def aws_problem() -> str | None:
        asked.append(True)
        return None

    assert script().check(dict(ALL_SECRETS), aws_problem=aws_problem) == []
    assert asked == []


# --- make run --------------------------------------------------------------------------------------


def test_make_run_without_a_signing_secret_stops_before_chalice_local(tmp_path: Path) -> None:
    project = copy_make_project(tmp_path)
    port = free_port()
    result = subprocess.run(
        ["make", "run", f"PORT={port}"], cwd=project, env=base_env(), capture_output=True, text=True, timeout=120
    )

    assert result.returncode != 0
    lines = own_lines(result.stderr)
    assert len(lines) == 3 and lines[0].startswith("error: SLACK_SIGNING_SECRET is not set"), result.stderr
    assert "chalice local" not in result.stdout  # the recipe's next command was not even echoed
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_make_run_warns_and_still_starts_without_the_openai_key_and_bot_token(tmp_path: Path) -> None:
    """Before, `make run` said nothing, and every question got "the bot is not set up correctly"."""
    project = copy_make_project(tmp_path)
    port = free_port()
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        # Its own session, so that make and the chalice local it starts stop together.
        process = subprocess.Popen(
            ["make", "run", f"PORT={port}"],
            cwd=project,
            env=base_env(SLACK_SIGNING_SECRET=SIGNING_SECRET),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        chalice_local.wait_until_listening(process, port, log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    output = log.read_text()
    warnings = [line for line in output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, output
    assert warnings[0].startswith("warning: OPENAI_API_KEY is not set")
    assert warnings[1].startswith("warning: SLACK_BOT_TOKEN is not set")
    assert output.index("warning: SLACK_BOT_TOKEN") < output.index("chalice local")  # checked first
    assert SIGNING_SECRET not in output
