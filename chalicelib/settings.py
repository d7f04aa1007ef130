"""Every setting of the bot, read from environment variables.

Contract: ``Settings.from_env(environ)`` is pure. It returns a frozen ``Settings`` with the
defaults below filled in, or raises ``SettingsError`` whose message names the variable and
says what is wrong with it. Secret values are excluded from ``repr`` so that a logged
``Settings`` never shows one.

Read settings inside each request, not at import time: ``chalice.test.Client`` applies the
stage's variables only for the duration of a call.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_SYSTEM_PROMPT = """美少女キャラとしてフレンドリーに話してください。
以下の制約条件を守ってください。

- 「です」「ます」等の敬語は使わない
- AI Chatの一人称は「豆香」を使う
- Userは友達として会話する"""

DEFAULT_MODEL = "gpt-4.1-mini"
# Escaped for Slack, a question can grow fivefold (& -> &amp;); it must still fit in a reply
# under Slack's 40,000 characters, and its job in Lambda's 256 KB async payload.
MAX_INPUT_CHARS_LIMIT = 7000
RESPONSE_TYPES = ("ephemeral", "in_channel")
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
# Shown when a user opens the assistant pane; in the persona's language.
DEFAULT_SUGGESTED_PROMPTS: tuple[tuple[str, str], ...] = (
    ("東京の散歩道", "東京でおすすめの散歩道は？"),
    ("今日の夕飯", "冷蔵庫に卵と玉ねぎとトマトがあるよ。今日の夕飯、何にしよう？"),
    ("要約して", "次の文章を3行で要約して："),
    ("英語にして", "次の文章を自然な英語にして："),
)
MAX_SUGGESTED_PROMPTS = 4  # Slack's limit for assistant.threads.setSuggestedPrompts
# Where a slash command's response_url may point: Slack's own hosts (commercial and GovSlack).
DEFAULT_RESPONSE_URL_HOSTS = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """A setting has a value the bot cannot use. The message names the variable."""


@dataclass(frozen=True)
class Settings:
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_signing_secret_parameter: str = "/slack/signing-secret"
    openai_api_key: str | None = field(default=None, repr=False)
    openai_api_key_parameter: str = "/openai/api-key"
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_bot_token_parameter: str = "/slack/bot-token"
    slack_api_url: str = DEFAULT_SLACK_API_URL
    suggested_prompts: tuple[tuple[str, str], ...] = DEFAULT_SUGGESTED_PROMPTS
    max_history_messages: int = 50
    max_context_tokens: int = 16_000
    openai_model: str = DEFAULT_MODEL
    openai_temperature: float | None = 0.9
    openai_base_url: str | None = None
    openai_timeout_seconds: float = 60.0
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    slack_response_type: str = "ephemeral"
    max_input_chars: int = 4000
    worker_function_name: str | None = None
    log_level: str = "INFO"
    log_message_text: bool = False
    secrets_ttl_seconds: float = 300.0
    response_url_hosts: frozenset[str] = DEFAULT_RESPONSE_URL_HOSTS
    allowed_team_ids: frozenset[str] = frozenset()  # empty: anyone
    allowed_channel_ids: frozenset[str] = frozenset()
    allowed_user_ids: frozenset[str] = frozenset()
    max_output_tokens: int = 2048
    job_max_age_seconds: float = 300.0
    in_lambda: bool = False  # AWS_LAMBDA_FUNCTION_NAME is set: the Lambda runtime sets it
    idempotency_table: str | None = None  # DynamoDB table for claims and per-user counts (worker only)
    user_rate_limit_per_minute: int | None = None  # None: no limit
    # The whole answer (every LLM step, retry and Slack call); OPENAI_TIMEOUT_SECONDS bounds one step.
    answer_timeout_seconds: float = 300.0
    # After a stream's first chunk, silence longer than this is a broken stream (before it, only the step's timeout).
    stream_stall_seconds: float = 5.0
    # A Slack stream is stopped and the answer goes on in a new message before it is this old (Slack ends them near 5 min).
    stream_rotate_seconds: float = 240.0

    @property
    def llm_is_local(self) -> bool:
        """Outside Lambda, ``OPENAI_BASE_URL`` points at this machine: a local server, which needs no key."""
        if self.in_lambda:
            return False
        try:
            host = urlsplit(self.openai_base_url or "").hostname or ""
        except ValueError:
            return False
        # 127.0.0.0/8, but not a name such as 127.0.0.1.example.com
        return host in ("localhost", "::1") or (host.startswith("127.") and host.replace(".", "").isdigit())

    def allows(self, team_id: str, channel_id: str, user_id: str) -> bool:
        """Whether this asker may use the bot here (``ALLOWED_*_IDS``; empty lists allow anyone).

        A DM (channel id ``D...``) obeys the team and user lists only: it is no channel to list.
        """
        if self.allowed_team_ids and team_id not in self.allowed_team_ids:
            return False
        if self.allowed_user_ids and user_id not in self.allowed_user_ids:
            return False
        in_dm = channel_id.startswith("D")
        return in_dm or not self.allowed_channel_ids or channel_id in self.allowed_channel_ids

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        # Parsing and checking every variable was a fifth of a warm request's own time, and a
        # Lambda container's environment never changes: build once per distinct set of values.
        return _from_values(tuple(environ.get(name) for name in ENV_NAMES))

    @classmethod
    def _build(cls, environ: Mapping[str, str]) -> Settings:
        def text(name: str, default: str | None) -> str | None:
            value = environ.get(name, "").strip()
            return value or default

        temperature = text("OPENAI_TEMPERATURE", "0.9")
        return cls(
            slack_signing_secret=text("SLACK_SIGNING_SECRET", None),
            slack_signing_secret_parameter=text("SLACK_SIGNING_SECRET_PARAMETER", cls.slack_signing_secret_parameter),
            openai_api_key=text("OPENAI_API_KEY", None),
            openai_api_key_parameter=text("OPENAI_API_KEY_PARAMETER", cls.openai_api_key_parameter),
            slack_bot_token=text("SLACK_BOT_TOKEN", None),
            slack_bot_token_parameter=text("SLACK_BOT_TOKEN_PARAMETER", cls.slack_bot_token_parameter),
            slack_api_url=_api_url(text("SLACK_API_URL", DEFAULT_SLACK_API_URL)),
            suggested_prompts=_prompts(text("SUGGESTED_PROMPTS", None)),
            max_history_messages=int(
                _number("MAX_HISTORY_MESSAGES", text("MAX_HISTORY_MESSAGES", "50"), low=1, high=1000, whole=True)
            ),
            max_context_tokens=int(
                _number("MAX_CONTEXT_TOKENS", text("MAX_CONTEXT_TOKENS", "16000"), low=500, high=2_000_000, whole=True)
            ),
            openai_model=text("OPENAI_MODEL", DEFAULT_MODEL),
            # "none" leaves the temperature out: reasoning models reject any value but their own.
            openai_temperature=None
            if temperature.lower() == "none"
            else _number("OPENAI_TEMPERATURE", temperature, low=0.0, high=2.0),
            openai_base_url=text("OPENAI_BASE_URL", None),
            openai_timeout_seconds=_number(
                "OPENAI_TIMEOUT_SECONDS", text("OPENAI_TIMEOUT_SECONDS", "60"), low=1.0, high=900.0
            ),
            # Not stripped: leading spaces or newlines in a prompt may be deliberate.
            system_prompt=environ.get("SYSTEM_PROMPT") or DEFAULT_SYSTEM_PROMPT,
            slack_response_type=_choice(
                "SLACK_RESPONSE_TYPE", text("SLACK_RESPONSE_TYPE", "ephemeral").lower(), RESPONSE_TYPES
            ),
            max_input_chars=int(
                _number(
                    "MAX_INPUT_CHARS", text("MAX_INPUT_CHARS", "4000"), low=1, high=MAX_INPUT_CHARS_LIMIT, whole=True
                )
            ),
            worker_function_name=text("WORKER_FUNCTION_NAME", None),
            log_level=_choice("LOG_LEVEL", text("LOG_LEVEL", "INFO").upper(), LOG_LEVELS),
            log_message_text=_flag("LOG_MESSAGE_TEXT", text("LOG_MESSAGE_TEXT", "false")),
            secrets_ttl_seconds=_number(
                "SECRETS_TTL_SECONDS", text("SECRETS_TTL_SECONDS", "300"), low=0.0, high=86_400.0
            ),
            response_url_hosts=_names(text("RESPONSE_URL_HOSTS", None), DEFAULT_RESPONSE_URL_HOSTS, lower=True),
            allowed_team_ids=_names(text("ALLOWED_TEAM_IDS", None), frozenset()),
            allowed_channel_ids=_names(text("ALLOWED_CHANNEL_IDS", None), frozenset()),
            allowed_user_ids=_names(text("ALLOWED_USER_IDS", None), frozenset()),
            max_output_tokens=int(
                _number("MAX_OUTPUT_TOKENS", text("MAX_OUTPUT_TOKENS", "2048"), low=16, high=1_000_000, whole=True)
            ),
            in_lambda=bool(environ.get("AWS_LAMBDA_FUNCTION_NAME")),
            idempotency_table=text("IDEMPOTENCY_TABLE", None),
            user_rate_limit_per_minute=_optional_count(
                "USER_RATE_LIMIT_PER_MINUTE", text("USER_RATE_LIMIT_PER_MINUTE", None)
            ),
            job_max_age_seconds=_number(
                "JOB_MAX_AGE_SECONDS", text("JOB_MAX_AGE_SECONDS", "300"), low=1.0, high=86_400.0
            ),
            answer_timeout_seconds=_number(
                "ANSWER_TIMEOUT_SECONDS", text("ANSWER_TIMEOUT_SECONDS", "300"), low=1.0, high=900.0
            ),
            stream_stall_seconds=_number(
                "STREAM_STALL_SECONDS", text("STREAM_STALL_SECONDS", "5"), low=0.1, high=900.0
            ),
            stream_rotate_seconds=_number(
                "STREAM_ROTATE_SECONDS", text("STREAM_ROTATE_SECONDS", "240"), low=1.0, high=290.0
            ),
        )


ENV_NAMES = (
    "SLACK_SIGNING_SECRET",
    "SLACK_SIGNING_SECRET_PARAMETER",
    "OPENAI_API_KEY",
    "OPENAI_API_KEY_PARAMETER",
    "SLACK_BOT_TOKEN",
    "SLACK_BOT_TOKEN_PARAMETER",
    "SLACK_API_URL",
    "SUGGESTED_PROMPTS",
    "MAX_HISTORY_MESSAGES",
    "MAX_CONTEXT_TOKENS",
    "OPENAI_MODEL",
    "OPENAI_TEMPERATURE",
    "OPENAI_BASE_URL",
    "OPENAI_TIMEOUT_SECONDS",
    "SYSTEM_PROMPT",
    "SLACK_RESPONSE_TYPE",
    "MAX_INPUT_CHARS",
    "WORKER_FUNCTION_NAME",
    "LOG_LEVEL",
    "LOG_MESSAGE_TEXT",
    "SECRETS_TTL_SECONDS",
    "RESPONSE_URL_HOSTS",
    "ALLOWED_TEAM_IDS",
    "ALLOWED_CHANNEL_IDS",
    "ALLOWED_USER_IDS",
    "MAX_OUTPUT_TOKENS",
    "JOB_MAX_AGE_SECONDS",
    "AWS_LAMBDA_FUNCTION_NAME",
    "IDEMPOTENCY_TABLE",
    "USER_RATE_LIMIT_PER_MINUTE",
    "ANSWER_TIMEOUT_SECONDS",
    "STREAM_STALL_SECONDS",
    "STREAM_ROTATE_SECONDS",
)


@functools.lru_cache(maxsize=16)
def _from_values(values: tuple[str | None, ...]) -> Settings:
    """Settings for these values of ``ENV_NAMES``; a ``SettingsError`` is raised, not cached."""
    return Settings._build({name: value for name, value in zip(ENV_NAMES, values, strict=True) if value is not None})


def _number(name: str, raw: str, *, low: float, high: float, whole: bool = False) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or not low <= value <= high or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise SettingsError(f"{name} must be {kind} from {low:g} to {high:g}, got {raw!r}")
    return value


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _flag(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _api_url(raw: str) -> str:
    if not raw.startswith(("https://", "http://")):
        raise SettingsError(f"SLACK_API_URL must be an http(s) URL, got {raw!r}")
    # slack_sdk joins the method name onto base_url as a string: it needs the trailing slash.
    return raw if raw.endswith("/") else raw + "/"


def _prompts(raw: str | None) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return DEFAULT_SUGGESTED_PROMPTS
    problem = f"SUGGESTED_PROMPTS must be a JSON list of at most {MAX_SUGGESTED_PROMPTS} {{title, message}} objects"
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past json's limit
        raise SettingsError(f"{problem}; it is not JSON") from None
    if not isinstance(value, list) or len(value) > MAX_SUGGESTED_PROMPTS:
        raise SettingsError(problem)
    prompts = []
    for item in value:
        title = item.get("title") if isinstance(item, dict) else None
        message = item.get("message") if isinstance(item, dict) else None
        if not (isinstance(title, str) and title.strip() and isinstance(message, str) and message.strip()):
            raise SettingsError(f"{problem}, each with a non-empty title and message")
        prompts.append((title.strip(), message.strip()))
    return tuple(prompts)


def _names(raw: str | None, default: frozenset[str], lower: bool = False) -> frozenset[str]:
    """A comma-separated list (ids, host names); blanks around and between items are ignored."""
    if raw is None:
        return default
    items = (item.strip() for item in raw.split(","))
    return frozenset(item.lower() if lower else item for item in items if item)


def _optional_count(name: str, raw: str | None) -> int | None:
    """A whole number from 1 up, or None when unset (empty): "no limit"."""
    if raw is None:
        return None
    return int(_number(name, raw, low=1, high=1_000_000, whole=True))
