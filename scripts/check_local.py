"""What a local run (`make run`) lacks, said before ``chalice local`` starts. Not deployed.

    python scripts/check_local.py [STAGE]      # `make run` runs it; STAGE defaults to dev

Contract:

- It looks at the environment ``chalice local --stage STAGE`` will give the app: this
  process's environment with the stage's ``environment_variables`` from
  ``.chalice/config.json`` laid over it (Chalice's own ``Config`` merges them).
- Each problem is one line on stderr; nothing is printed when there is none. A value is
  never printed, only variable and parameter names.
- ``error:`` (exit 1, ``make run`` stops) when nothing could work:
  - ``SLACK_SIGNING_SECRET`` is unset and its SSM parameter cannot be read either (boto3
    finds no AWS credentials or region): no request can be verified;
  - a setting has a value the bot cannot use: the line is ``chalicelib.settings``' own
    ``SettingsError`` message, which names the variable (every request would fail).
- ``warning:`` (exit 0, ``make run`` goes on) when one kind of request cannot be answered:
  - ``OPENAI_API_KEY`` is unset (and no SSM), unless ``OPENAI_BASE_URL`` is on loopback (a local
    server needs no key): every question gets "the bot is not set up correctly";
  - ``SLACK_BOT_TOKEN`` is unset (and no SSM): mentions, DMs and the assistant pane cannot be
    answered (they reply through Slack's Web API); slash commands do not need it.
- ``note:`` (exit 0) for a secret that is unset but will be read from its SSM parameter,
  because boto3 finds AWS credentials and a region (whether the parameter exists and may be
  read is not tried: that would be an AWS call at every start).
- Exit 2: usage, or a stage that is not in ``.chalice/config.json``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for chalicelib, when run as `python scripts/...`
sys.path.insert(0, str(ROOT / "scripts"))  # for check_aws, also when a test imports this file by path

import check_aws  # noqa: E402

from chalicelib.settings import ENV_NAMES, Settings, SettingsError  # noqa: E402

DEFAULT_STAGE = "dev"
SECRET_SETTINGS = (
    "SLACK_SIGNING_SECRET",
    "SLACK_SIGNING_SECRET_PARAMETER",
    "OPENAI_API_KEY",
    "OPENAI_API_KEY_PARAMETER",
    "OPENAI_BASE_URL",
    "SLACK_BOT_TOKEN",
    "SLACK_BOT_TOKEN_PARAMETER",
)


@dataclass(frozen=True)
class Finding:
    level: str  # "error" (make run stops), "warning" or "note"
    text: str

    def __str__(self) -> str:
        return f"{self.level}: {self.text}"


def local_environment(stage: str, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with the stage's config variables over it, as ``chalice local`` applies them."""
    from chalice.cli.factory import CLIFactory

    config = CLIFactory(project_dir=str(ROOT)).create_config_obj(chalice_stage_name=stage)
    return {**environ, **config.environment_variables}


def setting_errors(environ: Mapping[str, str]) -> list[Finding]:
    """One finding per unusable variable (each is parsed alone), plus any error of the whole set."""
    messages: list[str] = []
    for name in ENV_NAMES:
        if name in environ:
            try:
                Settings.from_env({name: environ[name]})
            except SettingsError as error:
                messages.append(str(error))
    try:
        Settings.from_env(environ)
    except SettingsError as error:  # a rule over several variables would show only here
        if str(error) not in messages:
            messages.append(str(error))
    return [Finding("error", message) for message in messages]


def check(environ: Mapping[str, str], aws_problem: Callable[[], str | None] = check_aws.problem) -> list[Finding]:
    """Everything a local run with ``environ`` lacks, worst first within each secret's line."""
    findings = setting_errors(environ)
    # These settings are plain strings, never refused: parsing them alone cannot raise.
    settings = Settings.from_env({name: environ[name] for name in SECRET_SETTINGS if name in environ})
    missing = [
        (name, parameter)
        for name, value, parameter in (
            ("SLACK_SIGNING_SECRET", settings.slack_signing_secret, settings.slack_signing_secret_parameter),
            ("OPENAI_API_KEY", settings.openai_api_key, settings.openai_api_key_parameter),
            ("SLACK_BOT_TOKEN", settings.slack_bot_token, settings.slack_bot_token_parameter),
        )
        if not value and not (name == "OPENAI_API_KEY" and settings.llm_is_local)
    ]
    if not missing:
        return findings
    no_ssm = aws_problem()  # asked only when it matters: it may probe for an instance role
    for name, parameter in missing:
        if no_ssm is None:
            findings.append(Finding("note", f"{name} is not set: it will be read from SSM parameter {parameter}"))
            continue
        unread = f"{name} is not set (and SSM parameter {parameter} cannot be read: no AWS credentials or region)"
        if name == "SLACK_SIGNING_SECRET":
            findings.append(
                Finding(
                    "error",
                    f"{unread}: no request can be verified. Export the Slack app's signing secret "
                    "(for `make ask`, any value: it signs with the same variable)",
                )
            )
        elif name == "OPENAI_API_KEY":
            what = "export your OpenAI API key, or point OPENAI_BASE_URL at a local OpenAI-compatible server"
            findings.append(Finding("warning", f'{unread}: questions get "the bot is not set up correctly"; {what}'))
        else:
            findings.append(
                Finding(
                    "warning",
                    f"{unread}: mentions, DMs and the assistant pane cannot be answered (slash commands do not "
                    "need it); export the bot's xoxb- token (for `make ask EVENT=mention`, any value)",
                )
            )
    return findings


def main(argv: list[str], environ: Mapping[str, str] = os.environ) -> int:
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: check_local.py [STAGE]   (or: make run STAGE=...)", file=sys.stderr)
        return 2
    stage = argv[0] if argv else DEFAULT_STAGE
    stages = json.loads((ROOT / ".chalice" / "config.json").read_text()).get("stages", {})
    if stage not in stages:
        print(f"error: stage {stage!r} is not in .chalice/config.json (stages: {', '.join(stages)})", file=sys.stderr)
        return 2
    findings = check(local_environment(stage, environ))
    for finding in findings:
        print(finding, file=sys.stderr)
    return 1 if any(finding.level == "error" for finding in findings) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
