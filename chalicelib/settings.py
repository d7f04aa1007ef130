"""Every setting of the bot, read from environment variables.

Contract: ``Settings.from_env(environ, function=None)`` is pure. It returns a frozen
``Settings`` with the defaults below filled in, or raises ``SettingsError`` whose ``name`` is
the variable and whose message names it and says what is wrong with it. ``function`` is
"api" (the HTTP function), "worker", or None (every variable: the scripts' checks): only the
variables ``VARIABLES`` lists for that function are read and checked, and every other field
keeps its default, so that a bad value one function never uses cannot stop it. Secret values
are excluded from ``repr`` so that a logged ``Settings`` never shows one.

Read settings inside each request, not at import time: ``chalice.test.Client`` applies the
stage's variables only for the duration of a call.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal
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
    """A setting has a value the bot cannot use. ``name`` is the variable; the message names it too."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


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
    # A Slack stream is stopped and the answer goes on in a new message before it is this old
    # (Slack ends them near 5 min).
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
    def from_env(cls, environ: Mapping[str, str], function: Function | None = None) -> Settings:
        """The settings ``function`` uses ("api": the HTTP function, "worker"; None: every one),
        parsed and checked; the others keep their defaults, unread, so that a bad value the
        function never uses cannot stop it."""
        # Parsing and checking every variable was a fifth of a warm request's own time, and a
        # Lambda container's environment never changes: build once per distinct set of values.
        names = _NAMES[function]
        return _from_values(function, tuple(environ.get(name) for name in names))

    @classmethod
    def _build(cls, environ: Mapping[str, str], function: Function | None = None) -> Settings:
        values: dict[str, object] = {}
        for variable in _VARIABLES[function]:
            raw = environ.get(variable.name)
            if variable.strip:
                raw = (raw or "").strip()
            if raw:  # unset or empty: the field's default
                values[variable.attribute] = variable.parse(variable.name, raw)
        return cls(**values)  # type: ignore[arg-type]  # each parser returns its field's type


def _number(name: str, raw: str, *, low: float, high: float, whole: bool = False) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or not low <= value <= high or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise SettingsError(name, f"{name} must be {kind} from {low:g} to {high:g}, got {raw!r}")
    return value


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise SettingsError(name, f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _flag(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(name, f"{name} must be true or false, got {raw!r}")


def _api_url(name: str, raw: str) -> str:
    if not raw.startswith(("https://", "http://")):
        raise SettingsError(name, f"{name} must be an http(s) URL, got {raw!r}")
    # slack_sdk joins the method name onto base_url as a string: it needs the trailing slash.
    return raw if raw.endswith("/") else raw + "/"


def _prompts(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    problem = f"{name} must be a JSON list of at most {MAX_SUGGESTED_PROMPTS} {{title, message}} objects"
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past json's limit
        raise SettingsError(name, f"{problem}; it is not JSON") from None
    if not isinstance(value, list) or len(value) > MAX_SUGGESTED_PROMPTS:
        raise SettingsError(name, problem)
    prompts = []
    for item in value:
        title = item.get("title") if isinstance(item, dict) else None
        message = item.get("message") if isinstance(item, dict) else None
        if not (isinstance(title, str) and title.strip() and isinstance(message, str) and message.strip()):
            raise SettingsError(name, f"{problem}, each with a non-empty title and message")
        prompts.append((title.strip(), message.strip()))
    return tuple(prompts)


def _names(raw: str, lower: bool = False) -> frozenset[str]:
    """A comma-separated list (ids, host names); blanks around and between items are ignored."""
    items = (item.strip() for item in raw.split(","))
    return frozenset(item.lower() if lower else item for item in items if item)


Function = Literal["api", "worker"]
API: Function = "api"
WORKER: Function = "worker"
BOTH: frozenset[Function] = frozenset({API, WORKER})


@dataclass(frozen=True)
class Variable:
    """One environment variable: the ``Settings`` attribute it sets, the functions that use it, and
    how its value (stripped unless ``strip`` is False; never empty) becomes the field's value."""

    name: str
    attribute: str
    functions: frozenset[Function]
    parse: Callable[[str, str], object]
    strip: bool = True


def _as_is(name: str, raw: str) -> str:
    return raw


def _in_lambda(name: str, raw: str) -> bool:
    return True  # the Lambda runtime sets AWS_LAMBDA_FUNCTION_NAME; any value means "in Lambda"


def _between(low: float, high: float, whole: bool = False) -> Callable[[str, str], float]:
    if whole:
        return lambda name, raw: int(_number(name, raw, low=low, high=high, whole=True))
    return lambda name, raw: _number(name, raw, low=low, high=high)


def _temperature(name: str, raw: str) -> float | None:
    # "none" leaves the temperature out: reasoning models reject any value but their own.
    return None if raw.lower() == "none" else _number(name, raw, low=0.0, high=2.0)


def _one_of(choices: tuple[str, ...], upper: bool) -> Callable[[str, str], str]:
    return lambda name, raw: _choice(name, raw.upper() if upper else raw.lower(), choices)


def _ids(lower: bool = False) -> Callable[[str, str], frozenset[str]]:
    return lambda name, raw: _names(raw, lower)


# Every variable, and which function reads it. The HTTP function parses only its own (the
# signature check, the ack and the dispatch): a worker-only setting with a bad value must not
# stop it from verifying and acknowledging. Adding a variable here is all it takes to read it.
VARIABLES: tuple[Variable, ...] = (
    Variable("SLACK_SIGNING_SECRET", "slack_signing_secret", frozenset({API}), _as_is),
    Variable("SLACK_SIGNING_SECRET_PARAMETER", "slack_signing_secret_parameter", frozenset({API}), _as_is),
    Variable("OPENAI_API_KEY", "openai_api_key", frozenset({WORKER}), _as_is),
    Variable("OPENAI_API_KEY_PARAMETER", "openai_api_key_parameter", frozenset({WORKER}), _as_is),
    Variable("SLACK_BOT_TOKEN", "slack_bot_token", frozenset({WORKER}), _as_is),
    Variable("SLACK_BOT_TOKEN_PARAMETER", "slack_bot_token_parameter", frozenset({WORKER}), _as_is),
    Variable("SLACK_API_URL", "slack_api_url", frozenset({WORKER}), _api_url),
    Variable("SUGGESTED_PROMPTS", "suggested_prompts", frozenset({WORKER}), _prompts),
    Variable("MAX_HISTORY_MESSAGES", "max_history_messages", frozenset({WORKER}), _between(1, 1000, whole=True)),
    Variable("MAX_CONTEXT_TOKENS", "max_context_tokens", frozenset({WORKER}), _between(500, 2_000_000, whole=True)),
    Variable("OPENAI_MODEL", "openai_model", frozenset({WORKER}), _as_is),
    Variable("OPENAI_TEMPERATURE", "openai_temperature", frozenset({WORKER}), _temperature),
    Variable("OPENAI_BASE_URL", "openai_base_url", frozenset({WORKER}), _as_is),
    Variable("OPENAI_TIMEOUT_SECONDS", "openai_timeout_seconds", frozenset({WORKER}), _between(1.0, 900.0)),
    # Not stripped: leading spaces or newlines in a prompt may be deliberate.
    Variable("SYSTEM_PROMPT", "system_prompt", frozenset({WORKER}), _as_is, strip=False),
    Variable("SLACK_RESPONSE_TYPE", "slack_response_type", frozenset({WORKER}), _one_of(RESPONSE_TYPES, upper=False)),
    Variable("MAX_INPUT_CHARS", "max_input_chars", BOTH, _between(1, MAX_INPUT_CHARS_LIMIT, whole=True)),
    Variable("WORKER_FUNCTION_NAME", "worker_function_name", frozenset({API}), _as_is),
    Variable("LOG_LEVEL", "log_level", BOTH, _one_of(LOG_LEVELS, upper=True)),
    Variable("LOG_MESSAGE_TEXT", "log_message_text", BOTH, _flag),
    Variable("SECRETS_TTL_SECONDS", "secrets_ttl_seconds", BOTH, _between(0.0, 86_400.0)),
    Variable("RESPONSE_URL_HOSTS", "response_url_hosts", BOTH, _ids(lower=True)),
    Variable("ALLOWED_TEAM_IDS", "allowed_team_ids", frozenset({API}), _ids()),
    Variable("ALLOWED_CHANNEL_IDS", "allowed_channel_ids", frozenset({API}), _ids()),
    Variable("ALLOWED_USER_IDS", "allowed_user_ids", frozenset({API}), _ids()),
    Variable("MAX_OUTPUT_TOKENS", "max_output_tokens", frozenset({WORKER}), _between(16, 1_000_000, whole=True)),
    Variable("JOB_MAX_AGE_SECONDS", "job_max_age_seconds", frozenset({WORKER}), _between(1.0, 86_400.0)),
    # Not stripped: the runtime sets it, and any value at all means Lambda.
    Variable("AWS_LAMBDA_FUNCTION_NAME", "in_lambda", BOTH, _in_lambda, strip=False),
    Variable("IDEMPOTENCY_TABLE", "idempotency_table", frozenset({WORKER}), _as_is),
    Variable(
        "USER_RATE_LIMIT_PER_MINUTE",
        "user_rate_limit_per_minute",
        frozenset({WORKER}),
        _between(1, 1_000_000, whole=True),
    ),
    Variable("ANSWER_TIMEOUT_SECONDS", "answer_timeout_seconds", frozenset({WORKER}), _between(1.0, 900.0)),
    Variable("STREAM_STALL_SECONDS", "stream_stall_seconds", frozenset({WORKER}), _between(0.1, 900.0)),
    Variable("STREAM_ROTATE_SECONDS", "stream_rotate_seconds", frozenset({WORKER}), _between(1.0, 290.0)),
)
ENV_NAMES = tuple(variable.name for variable in VARIABLES)
_VARIABLES: dict[Function | None, tuple[Variable, ...]] = {
    None: VARIABLES,
    API: tuple(variable for variable in VARIABLES if API in variable.functions),
    WORKER: tuple(variable for variable in VARIABLES if WORKER in variable.functions),
}
_NAMES = {function: tuple(variable.name for variable in variables) for function, variables in _VARIABLES.items()}


@functools.lru_cache(maxsize=16)
def _from_values(function: Function | None, values: tuple[str | None, ...]) -> Settings:
    """Settings for these values of ``function``'s variables; a ``SettingsError`` is raised, not cached."""
    names = _NAMES[function]
    environ = {name: value for name, value in zip(names, values, strict=True) if value is not None}
    return Settings._build(environ, function)
