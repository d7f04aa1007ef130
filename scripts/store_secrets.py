"""Store the bot's three secrets in SSM Parameter Store for one stage. Not deployed.

    make secrets STAGE=prod                                   # all three, in this order:
    .venv/bin/python scripts/store_secrets.py prod openai     # `openai`, `slack` (signing secret), `bot`

Contract:

- It asks for the OpenAI API key, the Slack signing secret and the Slack bot token with
  hidden input, so no value is ever on a command line (or in shell history). It refuses an
  empty value and a bot token that does not start with ``xoxb-`` (asking again on a
  terminal), and it reads every value before it stores any, so a refusal leaves SSM as it was.
- It stores each value as a ``SecureString`` (``Overwrite=True``) under the parameter name
  the deployed function reads: ``OPENAI_API_KEY_PARAMETER`` and ``SLACK_BOT_TOKEN_PARAMETER``
  as the worker sees them and ``SLACK_SIGNING_SECRET_PARAMETER`` as the HTTP function sees it,
  merged from ``.chalice/config.json`` as Chalice merges it (top level, stage, then stage
  function), falling back to ``chalicelib.settings``' defaults.
- It says, per parameter, whether it was created or updated. It never prints a value.
- When stdin is not a terminal (a pipe, a test) it reads one value per line from stdin, with
  a warning, instead of asking the terminal.
- Before it asks for anything it checks that boto3 finds AWS credentials and a region
  (``check_aws.problem()``); without them it says, in one line, how to set them.
- Exit status: 0 stored; 1 a value was refused, AWS credentials or a region are missing, or
  AWS failed (one line says why, with no traceback); 2 usage error or a stage that is not in
  ``.chalice/config.json``.

AWS is reached the usual boto3 way (``AWS_PROFILE``, ``AWS_DEFAULT_REGION`` (boto3 does not
read ``AWS_REGION``), ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import getpass
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

# For common (which puts the repository on sys.path for chalicelib), also when a test imports this file by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import check_aws
import common
from common import load_config

from chalicelib.settings import Settings

HTTP_FUNCTION = "api_handler"  # Chalice's name for the function that serves the routes
WORKER_FUNCTION = "worker"  # the @app.lambda_function name in app.py
MAX_ANSWERS = 3  # tries at the hidden prompt before giving up
BOT_TOKEN_PREFIX = "xoxb-"
# What a wrong Slack token is, by its prefix: the one part of a value that is safe to name.
OTHER_SLACK_TOKENS = {
    "xoxp-": "a user token (User OAuth Token)",
    "xapp-": "an app-level token (Basic Information → App-Level Tokens)",
    "xoxe.": "a rotating token, and this app has token rotation off",
    "xoxe-": "a refresh token",
    "xoxc-": "a browser session token",
}


class Refused(Exception):
    """Nothing will be stored; ``str(error)`` says why and never contains a value."""


@dataclass(frozen=True)
class Secret:
    key: str  # the name on this script's command line
    label: str
    variable: str  # the setting that names the parameter
    function: str  # the function that reads it, whose merged environment decides the name
    default_parameter: str
    where: str  # where to find it, shown at the prompt
    looks_right: Callable[[str], bool]
    expected_shape: str
    refuse: Callable[[str], str | None] = lambda value: None  # why the value cannot be right, or None


def not_a_bot_token(value: str) -> str | None:
    """Why ``value`` is not a bot token, naming at most its well-known prefix; None if it is one.

    Any other token would fail every Web API call of the worker (``invalid_auth`` or
    ``not_allowed_token_type``), so it is refused rather than stored with a warning.
    """
    if value.startswith(BOT_TOKEN_PREFIX):
        return None
    kind = next((what for prefix, what in OTHER_SLACK_TOKENS.items() if value.startswith(prefix)), None)
    found = f"this is {kind}" if kind else f"this does not start with {BOT_TOKEN_PREFIX}"
    return (
        f"{found}; the bot token is the Bot User OAuth Token, which starts with {BOT_TOKEN_PREFIX}, "
        "on the Slack app's OAuth & Permissions page"
    )


SECRETS = (
    Secret(
        key="openai",
        label="OpenAI API key",
        variable="OPENAI_API_KEY_PARAMETER",
        function=WORKER_FUNCTION,
        default_parameter=Settings.openai_api_key_parameter,
        where="platform.openai.com → API keys",
        looks_right=lambda value: value.startswith("sk-") and len(value) > 20,
        expected_shape="it usually starts with sk-",
    ),
    Secret(
        key="slack",
        label="Slack signing secret",
        variable="SLACK_SIGNING_SECRET_PARAMETER",
        function=HTTP_FUNCTION,
        default_parameter=Settings.slack_signing_secret_parameter,
        where="the Slack app's Basic Information → App Credentials → Signing Secret",
        looks_right=lambda value: re.fullmatch(r"[0-9a-f]{32}", value) is not None,
        expected_shape="it is usually 32 hexadecimal characters, from Basic Information → App Credentials",
    ),
    Secret(
        key="bot",
        label="Slack bot token",
        variable="SLACK_BOT_TOKEN_PARAMETER",
        function=WORKER_FUNCTION,
        default_parameter=Settings.slack_bot_token_parameter,
        where="the Slack app's OAuth & Permissions → Bot User OAuth Token, after Install to Workspace",
        looks_right=lambda value: value.startswith(BOT_TOKEN_PREFIX),
        expected_shape=f"it starts with {BOT_TOKEN_PREFIX}",
        refuse=not_a_bot_token,
    ),
)


def parameter_name(config: dict[str, Any], stage: str, secret: Secret) -> str:
    value = common.function_environment(config, stage, secret.function).get(secret.variable, "").strip()
    return value or secret.default_parameter


def read_value(secret: Secret, interactive: bool, stdin: TextIO) -> str:
    if not interactive:
        value = stdin.readline().strip()
        if not value:
            raise Refused(f"the {secret.label} read from stdin is empty; nothing was stored")
        problem = secret.refuse(value)
        if problem:
            raise Refused(f"the {secret.label} read from stdin is wrong: {problem}. Nothing was stored.")
        return value
    for _ in range(MAX_ANSWERS):
        value = getpass.getpass(f"{secret.label} (input hidden): ").strip()
        problem = "it cannot be empty" if not value else secret.refuse(value)
        if not problem:
            return value
        print(f"  Not stored: {problem}. Paste it and press Enter, or Ctrl-C to stop.", file=sys.stderr)
    raise Refused(f"no usable {secret.label} was entered; nothing was stored")


def scrub(text: str, values: list[str]) -> str:
    """``text`` with every secret value blanked: AWS error messages may quote the request."""
    for value in values:
        text = text.replace(value, "***")
    return text


def ssm_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("ssm", config=Config(connect_timeout=5, read_timeout=20, retries={"mode": "standard"}))


def caller_account() -> str:
    """The account the secrets will land in, asked before any value is typed (fails early)."""
    import boto3

    return str(boto3.client("sts").get_caller_identity()["Account"])


def aws_failure(error: Exception, values: list[str]) -> str:
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    if isinstance(error, NoCredentialsError):
        return f"no AWS credentials found: {check_aws.HOW_CREDENTIALS}"
    if isinstance(error, NoRegionError):
        return f"no AWS region set: {check_aws.HOW_REGION}"
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return scrub(f"{details.get('Code', 'Error')}: {details.get('Message', '')}".rstrip(": "), values)
    return scrub(str(error) or type(error).__name__, values)


def usage() -> int:
    keys = "|".join(secret.key for secret in SECRETS)
    print(f"usage: secrets.py STAGE [{keys} ...]   (or: make secrets STAGE=...)", file=sys.stderr)
    return 2


def main(argv: list[str], stdin: TextIO = sys.stdin) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    if not argv or argv[0].startswith("-"):
        return usage()
    stage, wanted = argv[0], argv[1:]
    config = load_config()
    try:
        common.stage_config(stage, config)
    except common.UnknownStage as unknown_stage:
        return common.error(str(unknown_stage), 2)
    unknown = [key for key in wanted if key not in {secret.key for secret in SECRETS}]
    if unknown:
        common.error(f"unknown secret {unknown[0]!r}")
        return usage()
    chosen = [secret for secret in SECRETS if not wanted or secret.key in wanted]

    missing = check_aws.problem()  # before any value is typed, and without a traceback
    if missing:
        return common.error(f"cannot use AWS: {missing}")
    try:
        account = caller_account()
    except (BotoCoreError, ClientError) as error:
        return common.error(f"cannot use AWS: {aws_failure(error, [])}")
    client = ssm_client()
    print(f"Stage {stage}: storing in SSM Parameter Store, account {account}, region {client.meta.region_name}.")

    interactive = stdin.isatty()
    if not interactive:
        print("warning: stdin is not a terminal; reading the values from it, one per line.", file=sys.stderr)
    values: list[tuple[Secret, str, str]] = []
    try:
        for secret in chosen:
            name = parameter_name(config, stage, secret)
            if interactive:
                print(f"{secret.label} → {name}\n  (from {secret.where})", file=sys.stderr)
            value = read_value(secret, interactive, stdin)
            if not secret.looks_right(value):
                print(
                    f"warning: the {secret.label} entered looks unusual ({secret.expected_shape}); storing it anyway.",
                    file=sys.stderr,
                )
            values.append((secret, name, value))
    except Refused as refused:
        return common.error(str(refused))
    except (EOFError, KeyboardInterrupt):
        print("\ncancelled; nothing was stored.", file=sys.stderr)
        return 1

    everything = [value for _, _, value in values]
    for secret, name, value in values:
        try:
            response = client.put_parameter(
                Name=name,
                Value=value,
                Type="SecureString",
                Overwrite=True,
                Description=f"mameka {stage}: {secret.label} (set by make secrets)",
            )
        except (BotoCoreError, ClientError) as error:
            return common.error(f"could not store {name}: {aws_failure(error, everything)}")
        # Version 1 is a parameter that did not exist a moment ago (Overwrite would bump it).
        version = int(response.get("Version", 0))
        verb = "created" if version == 1 else "updated"
        print(f"{verb} {name} ({secret.label}, SecureString, version {version})")
    print(
        "Warm Lambda containers keep the values they already read until Lambda replaces them; "
        f"`make deploy STAGE={stage}` replaces them now."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
