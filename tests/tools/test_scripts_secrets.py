"""scripts/store_secrets.py as `make secrets` runs it: a subprocess, against moto's server on 127.0.0.1.

The script reaches moto through ``AWS_ENDPOINT_URL`` with fake credentials, and reads the
values from a piped stdin (not a terminal), as it does in any non-interactive use; one test
gives it a pseudo-terminal instead, to see the hidden prompts as a person would.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from devkit.http_fake import FakeServer, Received, Reply
from tests.conftest import ROOT, import_script
from tests.tools.test_deploy import copy_make_project, own_lines

SCRIPT = ROOT / "scripts" / "store_secrets.py"
OPENAI_VALUE = "sk-test-fake-openai-key-for-scripts-0001"
SLACK_VALUE = "0123456789abcdef0123456789abcdef"  # shaped like a signing secret, and fake
# Shaped like a bot token only in its prefix: no secret scanner takes it for a real one.
BOT_VALUE = "xoxb-fake-test-token-for-scripts"
USER_TOKEN = "xoxp-fake-user-token-for-scripts"  # the usual mistake: the User OAuth Token
ALL_VALUES = f"{OPENAI_VALUE}\n{SLACK_VALUE}\n{BOT_VALUE}\n"
DEV = {
    "openai": "/mameka/dev/openai-api-key",
    "slack": "/mameka/dev/slack-signing-secret",
    "bot": "/mameka/dev/slack-bot-token",
}
PROD = {
    "openai": "/mameka/prod/openai-api-key",
    "slack": "/mameka/prod/slack-signing-secret",
    "bot": "/mameka/prod/slack-bot-token",
}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def ssm(moto_url: str) -> Any:
    """A client of the same moto server, emptied first."""
    request = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    return boto3.client(
        "ssm", endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="x"
    )


def script_env(moto_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPENAI_", "SLACK_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=moto_url,
        # Nothing from this machine's AWS setup may take part.
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(extra)
    return env


def run_secrets(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        input=stdin,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stored(ssm: Any, name: str) -> dict[str, Any] | None:
    try:
        return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    except ssm.exceptions.ParameterNotFound:
        return None


def assert_no_value_shown(result: subprocess.CompletedProcess[str], *values: str) -> None:
    for value in values:
        assert value not in result.stdout and value not in result.stderr


def test_creates_then_updates_all_three_secrets_as_secure_strings(moto_url: str, ssm: Any) -> None:
    first = run_secrets(script_env(moto_url), "dev", stdin=ALL_VALUES)

    assert first.returncode == 0, first.stderr
    assert f"created {DEV['openai']} (OpenAI API key" in first.stdout
    assert f"created {DEV['slack']} (Slack signing secret" in first.stdout
    assert f"created {DEV['bot']} (Slack bot token" in first.stdout
    assert "stdin is not a terminal" in first.stderr
    assert "warning: the" not in first.stderr  # every value is shaped as expected
    assert_no_value_shown(first, OPENAI_VALUE, SLACK_VALUE, BOT_VALUE)
    for name, value in ((DEV["openai"], OPENAI_VALUE), (DEV["slack"], SLACK_VALUE), (DEV["bot"], BOT_VALUE)):
        parameter = stored(ssm, name)
        assert parameter is not None
        assert parameter["Type"] == "SecureString"
        assert parameter["Value"] == value
        assert parameter["Version"] == 1

    new_openai, new_slack = OPENAI_VALUE + "-rotated", "fedcba9876543210fedcba9876543210"
    new_bot = BOT_VALUE + "-reinstalled"
    second = run_secrets(script_env(moto_url), "dev", stdin=f"  {new_openai}  \n{new_slack}\n{new_bot} \n")

    assert second.returncode == 0, second.stderr
    assert f"updated {DEV['openai']}" in second.stdout
    assert f"updated {DEV['slack']}" in second.stdout
    assert f"updated {DEV['bot']}" in second.stdout
    assert "created" not in second.stdout
    assert_no_value_shown(second, new_openai, new_slack, new_bot, OPENAI_VALUE, SLACK_VALUE, BOT_VALUE)
    assert stored(ssm, DEV["openai"])["Value"] == new_openai  # stripped of the pasted spaces
    assert stored(ssm, DEV["slack"])["Value"] == new_slack
    assert stored(ssm, DEV["slack"])["Version"] == 2
    assert stored(ssm, DEV["bot"])["Value"] == new_bot
    assert stored(ssm, DEV["bot"])["Version"] == 2


def test_one_secret_can_be_stored_alone_under_the_stages_name(moto_url: str, ssm: Any) -> None:
    result = run_secrets(script_env(moto_url), "prod", "slack", stdin=f"{SLACK_VALUE}\n")

    assert result.returncode == 0, result.stderr
    assert f"created {PROD['slack']}" in result.stdout
    assert stored(ssm, PROD["slack"])["Value"] == SLACK_VALUE
    assert stored(ssm, PROD["openai"]) is None
    assert stored(ssm, DEV["slack"]) is None


def test_the_bot_token_can_be_stored_alone_after_installing_the_app(moto_url: str, ssm: Any) -> None:
    result = run_secrets(script_env(moto_url), "prod", "bot", stdin=f"{BOT_VALUE}\n")

    assert result.returncode == 0, result.stderr
    assert f"created {PROD['bot']} (Slack bot token" in result.stdout
    assert stored(ssm, PROD["bot"])["Value"] == BOT_VALUE
    assert stored(ssm, PROD["openai"]) is None and stored(ssm, PROD["slack"]) is None


@pytest.mark.parametrize(
    ("wrong", "reason"),
    [
        (USER_TOKEN, "this is a user token (User OAuth Token)"),
        ("xapp-fake-app-level-token", "this is an app-level token (Basic Information → App-Level Tokens)"),
        (SLACK_VALUE, "this does not start with xoxb-"),  # the signing secret, pasted twice
    ],
)
def test_a_token_that_is_not_a_bot_token_is_refused_and_nothing_is_stored(
    moto_url: str, ssm: Any, wrong: str, reason: str
) -> None:
    result = run_secrets(script_env(moto_url), "dev", stdin=f"{OPENAI_VALUE}\n{SLACK_VALUE}\n{wrong}\n")

    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: the Slack bot token read from stdin is wrong: {reason}; ")
    assert "Bot User OAuth Token, which starts with xoxb-" in error and "OAuth & Permissions" in error
    assert error.endswith("Nothing was stored.")
    assert "Traceback" not in result.stderr
    assert_no_value_shown(result, OPENAI_VALUE, SLACK_VALUE, wrong)
    assert all(stored(ssm, name) is None for name in DEV.values())  # not even the two good values


def test_an_unusual_value_is_stored_with_a_warning(moto_url: str, ssm: Any) -> None:
    result = run_secrets(script_env(moto_url), "dev", "slack", stdin="sk-this-is-the-wrong-one-not-real\n")

    assert result.returncode == 0, result.stderr
    assert "Slack signing secret entered looks unusual" in result.stderr
    assert_no_value_shown(result, "sk-this-is-the-wrong-one-not-real")


@pytest.mark.parametrize(
    "stdin",
    ["\n", f"{OPENAI_VALUE}\n   \n", f"{OPENAI_VALUE}\n", f"{OPENAI_VALUE}\n{SLACK_VALUE}\n", ""],
)
def test_an_empty_value_is_refused_and_nothing_is_stored(moto_url: str, ssm: Any, stdin: str) -> None:
    result = run_secrets(script_env(moto_url), "dev", stdin=stdin)

    assert result.returncode == 1
    assert "empty" in result.stderr and "nothing was stored" in result.stderr
    assert "Traceback" not in result.stderr
    assert_no_value_shown(result, OPENAI_VALUE, SLACK_VALUE)
    assert all(stored(ssm, name) is None for name in DEV.values())


@pytest.mark.parametrize(("args", "message"), [(("staging",), "stage 'staging' is not in"), ((), "usage:")])
def test_unknown_stage_or_no_stage_exits_2(moto_url: str, args: tuple[str, ...], message: str) -> None:
    result = run_secrets(script_env(moto_url), *args, stdin=ALL_VALUES)

    assert result.returncode == 2
    assert message in result.stderr
    assert "dev, prod" in result.stderr or not args


HOW_CREDENTIALS = (
    "run `aws configure` (or `aws sso login` for an SSO profile), or set AWS_PROFILE, "
    "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)
HOW_REGION = "set AWS_DEFAULT_REGION, or a region in your profile with `aws configure`"


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), f"no AWS credentials found: {HOW_CREDENTIALS}"),
        (("AWS_DEFAULT_REGION",), f"no AWS region set: {HOW_REGION}"),
        (
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"),
            f"no AWS credentials and no region found: {HOW_CREDENTIALS}; and {HOW_REGION}",
        ),
    ],
)
def test_no_credentials_or_region_is_one_clear_line_before_any_value_is_asked(
    moto_url: str, ssm: Any, remove: tuple[str, ...], expected: str
) -> None:
    env = script_env(moto_url)
    for name in remove:
        del env[name]
    result = run_secrets(env, "dev", stdin=ALL_VALUES)

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"error: cannot use AWS: {expected}"]
    assert all(stored(ssm, name) is None for name in DEV.values())


def test_make_secrets_without_credentials_says_how_in_one_line(moto_url: str, tmp_path: Path) -> None:
    """`make secrets` as a user runs it, in a project copy with no AWS setup at all."""
    project = copy_make_project(tmp_path)
    env = script_env(moto_url)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        del env[name]
    result = subprocess.run(
        ["make", "secrets", "STAGE=dev"],
        cwd=project,
        env=env,
        input=ALL_VALUES,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert own_lines(result.stderr) == [
        f"error: cannot use AWS: no AWS credentials and no region found: {HOW_CREDENTIALS}; and {HOW_REGION}"
    ]
    assert result.stdout == ""


def access_denied(received: Received) -> Reply:
    # An AWS message may quote the request; the value in it must not reach the terminal.
    value = received.json().get("Value", "")
    message = f"User: arn:aws:iam::123456789012:user/dev is not authorized to perform: ssm:PutParameter ({value})"
    return Reply(400, {"__type": "AccessDeniedException", "message": message})


def test_access_denied_is_one_clear_line_without_the_value(moto_url: str, ssm: Any) -> None:
    with FakeServer(access_denied) as denying_ssm:
        env = script_env(moto_url, AWS_ENDPOINT_URL_SSM=denying_ssm.url)  # STS stays on moto
        result = run_secrets(env, "dev", stdin=ALL_VALUES)

    assert result.returncode == 1
    assert denying_ssm.received[0].headers["x-amz-target"] == "AmazonSSM.PutParameter"
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert f"could not store {DEV['openai']}: AccessDeniedException: User:" in error_lines[0]
    assert "(***)" in error_lines[0]
    assert "Traceback" not in result.stderr
    assert_no_value_shown(result, OPENAI_VALUE, SLACK_VALUE, BOT_VALUE)
    assert "created" not in result.stdout


def load_script() -> ModuleType:
    return import_script("store_secrets")


def test_parameter_names_are_merged_as_chalice_merges_environments() -> None:
    script = load_script()
    openai, slack, bot = script.SECRETS
    config = {
        "environment_variables": {"OPENAI_API_KEY_PARAMETER": "/top/openai"},
        "stages": {
            "a": {
                "environment_variables": {"SLACK_SIGNING_SECRET_PARAMETER": "/a/slack"},
                "lambda_functions": {"worker": {"environment_variables": {"OPENAI_API_KEY_PARAMETER": "/a/worker"}}},
            },
            "b": {"lambda_functions": {"api_handler": {"environment_variables": {"OPENAI_API_KEY_PARAMETER": "/x"}}}},
            "c": {"environment_variables": {"OPENAI_API_KEY_PARAMETER": " "}},
        },
    }
    config_without_top = {"stages": {"c": {}}}

    assert script.parameter_name(config, "a", openai) == "/a/worker"  # the worker reads the key
    assert script.parameter_name(config, "a", slack) == "/a/slack"
    assert script.parameter_name(config, "b", openai) == "/top/openai"  # the HTTP function's value is not the worker's
    assert script.parameter_name(config, "c", openai) == "/openai/api-key"  # blank: the default, as Settings does
    assert script.parameter_name(config_without_top, "c", slack) == "/slack/signing-secret"
    assert script.parameter_name(config, "a", bot) == "/slack/bot-token"  # the worker reads it; unset: the default
    real = script.load_config()
    assert script.parameter_name(real, "dev", openai) == DEV["openai"]
    assert script.parameter_name(real, "prod", slack) == PROD["slack"]
    assert script.parameter_name(real, "dev", bot) == DEV["bot"]
    assert script.parameter_name(real, "prod", bot) == PROD["bot"]


class Terminal:
    """The script on a pseudo-terminal, as a person at a shell runs it (stdin, stdout and stderr)."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.master, slave = pty.openpty()
        # A new session has no controlling terminal, so getpass cannot open this machine's
        # /dev/tty: it falls back to stdin, our pseudo-terminal, and turns its echo off there.
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        os.close(slave)
        self.output = ""

    def read_until(self, text: str, count: int = 1, timeout: float = 60) -> None:
        """Read what the script writes until ``text`` has appeared ``count`` times."""
        deadline = time.monotonic() + timeout
        while self.output.count(text) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} did not appear; the terminal shows:\n{self.output}"
            if select.select([self.master], [], [], remaining)[0] and not self.read_some():
                raise AssertionError(f"the script ended before {text!r}; the terminal shows:\n{self.output}")

    def read_some(self) -> bool:
        try:
            data = os.read(self.master, 4096)
        except OSError:  # EIO: the script has exited and closed its side
            return False
        self.output += data.decode(errors="replace")
        return bool(data)

    def type(self, line: str) -> None:
        # Only after the prompt is shown: getpass flushes pending input when it turns echo off.
        os.write(self.master, (line + "\n").encode())

    def finish(self, timeout: float = 60) -> int:
        returncode = self.process.wait(timeout)
        while self.read_some():
            pass
        os.close(self.master)
        return returncode


def test_on_a_terminal_the_values_are_hidden_and_a_wrong_token_is_asked_again(moto_url: str, ssm: Any) -> None:
    terminal = Terminal(script_env(moto_url), "dev")
    try:
        terminal.read_until("OpenAI API key (input hidden): ")
        terminal.type(OPENAI_VALUE)
        terminal.read_until("Slack signing secret (input hidden): ")
        terminal.type(SLACK_VALUE)
        terminal.read_until("Slack bot token (input hidden): ")
        terminal.type(USER_TOKEN)
        terminal.read_until("Slack bot token (input hidden): ", count=2)
        terminal.type(BOT_VALUE)
        returncode = terminal.finish()
    finally:
        if terminal.process.poll() is None:
            terminal.process.kill()
            terminal.process.wait()
    shown = terminal.output

    assert returncode == 0, shown
    # Each prompt names the parameter and where the value is found.
    assert f"Slack bot token → {DEV['bot']}" in shown
    assert "OAuth & Permissions → Bot User OAuth Token" in shown
    assert "Not stored: this is a user token (User OAuth Token); the bot token is the Bot User OAuth Token" in shown
    assert "stdin is not a terminal" not in shown
    # Echo was off: nothing typed came back to the screen.
    for value in (OPENAI_VALUE, SLACK_VALUE, USER_TOKEN, BOT_VALUE):
        assert value not in shown
    assert f"created {DEV['bot']}" in shown
    assert stored(ssm, DEV["bot"])["Value"] == BOT_VALUE
    assert stored(ssm, DEV["openai"])["Value"] == OPENAI_VALUE
