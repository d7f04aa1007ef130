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
    ``SettingsError`` message, which names the variable. Every variable is checked, whichever
    function reads it (``Settings.from_env(..., function=None)``): the HTTP function would
    start with a bad worker-only value, and every answer would then fail;
  - the time limits do not fit together (``timeout_errors``): the worker's ``lambda_timeout``
    (``.chalice/config.json``, as Chalice resolves it for the stage) must be above
    ``ANSWER_TIMEOUT_SECONDS`` and at most Lambda's 900 s, and ``OPENAI_TIMEOUT_SECONDS`` (one
    LLM step) must not exceed ``ANSWER_TIMEOUT_SECONDS`` (the whole answer).
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

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# For common (which puts the repository on sys.path for chalicelib), also when a test imports this file by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import check_aws
import common

from chalicelib.settings import ENV_NAMES, Settings, SettingsError

DEFAULT_STAGE = "dev"
WORKER = "worker"  # the worker's name in app.py and .chalice/config.json
CHALICE_DEFAULT_LAMBDA_TIMEOUT = 60  # chalice.constants.DEFAULT_LAMBDA_TIMEOUT: what an unset lambda_timeout gets
LAMBDA_MAX_TIMEOUT = 900  # Lambda refuses a longer timeout
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

    config = CLIFactory(project_dir=str(common.ROOT)).create_config_obj(chalice_stage_name=stage)
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


def worker_lambda_timeout(stage: str, config: Mapping[str, Any] | None = None) -> float:
    """The worker's ``lambda_timeout`` for ``stage``, looked up as Chalice does (the stage's
    function, the stage, the top-level function, the top level; else Chalice's default)."""
    from chalice.config import Config

    if config is None:
        config = common.load_config()
    timeout = Config(chalice_stage=stage, function_name=WORKER, config_from_disk=dict(config)).lambda_timeout
    return float(timeout or CHALICE_DEFAULT_LAMBDA_TIMEOUT)


def _seconds(environ: Mapping[str, str], name: str, attribute: str) -> float | None:
    """One timeout setting, parsed alone; None when it is unusable (``setting_errors`` says so)."""
    try:
        return float(getattr(Settings.from_env({name: environ.get(name, "")}), attribute))
    except SettingsError:
        return None


def timeout_errors(environ: Mapping[str, str], lambda_timeout: float) -> list[Finding]:
    """The time limits that do not fit together, one finding each."""
    findings = []
    answer = _seconds(environ, "ANSWER_TIMEOUT_SECONDS", "answer_timeout_seconds")
    step = _seconds(environ, "OPENAI_TIMEOUT_SECONDS", "openai_timeout_seconds")
    where = f"the worker's lambda_timeout ({lambda_timeout:g} s in .chalice/config.json)"
    if lambda_timeout > LAMBDA_MAX_TIMEOUT:
        findings.append(Finding("error", f"{where} must be at most {LAMBDA_MAX_TIMEOUT} s: Lambda allows no more"))
    if answer is not None and lambda_timeout <= answer:
        # Lambda would kill the worker mid-answer: no error reply, and the user waits in vain.
        findings.append(
            Finding(
                "error",
                f"{where} must be above ANSWER_TIMEOUT_SECONDS ({answer:g} s), or Lambda stops the worker before "
                "an answer's own deadline; raise it (at most 900) or lower ANSWER_TIMEOUT_SECONDS",
            )
        )
    if answer is not None and step is not None and step > answer:
        findings.append(
            Finding(
                "error",
                f"OPENAI_TIMEOUT_SECONDS ({step:g} s, one LLM step) must not exceed ANSWER_TIMEOUT_SECONDS "
                f"({answer:g} s, the whole answer)",
            )
        )
    return findings


def configuration_errors(environ: Mapping[str, str], lambda_timeout: float) -> list[Finding]:
    """Every unusable setting and every time limit that does not fit, one finding each."""
    return setting_errors(environ) + timeout_errors(environ, lambda_timeout)


def check(
    environ: Mapping[str, str],
    aws_problem: Callable[[], str | None] = check_aws.problem,
    lambda_timeout: float | None = None,
) -> list[Finding]:
    """Everything a local run with ``environ`` lacks, worst first within each secret's line;
    with the worker's ``lambda_timeout``, the time limits too."""
    findings = setting_errors(environ) if lambda_timeout is None else configuration_errors(environ, lambda_timeout)
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
    try:
        common.stage_config(stage)
    except common.UnknownStage as unknown:
        return common.error(str(unknown), 2)
    findings = check(local_environment(stage, environ), lambda_timeout=worker_lambda_timeout(stage))
    for finding in findings:
        print(finding, file=sys.stderr)
    return 1 if any(finding.level == "error" for finding in findings) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
