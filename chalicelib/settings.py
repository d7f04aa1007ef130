"""Every setting of the bot, read from environment variables: one table, parsed once per call.

Contract: ``Settings.from_env(environ, function=None)`` is pure. It returns a frozen
``Settings`` with the defaults below filled in, or raises ``SettingsError`` whose ``name`` is
the variable and whose message names it and says what is wrong with it. ``function`` is
"api" (the HTTP function), "worker", or None (every variable: the scripts' checks): only the
variables ``VARIABLES`` lists for that function are read and checked, and every other field
keeps its default, so that a bad value one function never uses cannot stop it. Secret values
are excluded from ``repr`` so that a logged ``Settings`` never shows one. The same values give
the same object (memoised per distinct values: a container's environment never changes).

``Settings.reach_from_env(environ, surface)`` reads only what reaching the asker takes
(``"reply"``: a slash command's ``response_url``; ``"thread"``: the Web API), so that the
worker can still say which setting is bad; ``Unconfigured`` carries that to the handlers.

``in_lambda(environ)`` is the one place that decides "this runs in AWS Lambda"; everything
else asks ``settings.in_lambda``.

The table: each ``Settings`` field is declared once, with ``setting(env name, function(s),
parser, one line of doc, default=...)``, and ``VARIABLES`` is derived from the fields. The
parse, ``make run``'s check (scripts/check_local.py), ``make deploy``'s preflight
(scripts/deployment.py) and the README's settings table (scripts/settings_table.py, ``make
docs``) all come from it: adding a setting is one edit here (then ``make docs``).

Only the entry points (``gateway``, ``worker``, the scripts) parse settings, once per handler
call and not at import time: ``chalice.test.Client`` applies the stage's variables only for
the duration of a call. Everything below them takes a ``Settings``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Literal
from urllib.parse import urlsplit

from chalicelib import container

DEFAULT_SYSTEM_PROMPT = """美少女キャラとしてフレンドリーに話してください。
以下の制約条件を守ってください。

- 「です」「ます」等の敬語は使わない
- AI Chatの一人称は「豆香」を使う
- Userは友達として会話する"""

DEFAULT_MODEL = "gpt-4.1-mini"
DEFAULT_TEMPERATURE: float | None = 0.9  # typed so: OPENAI_TEMPERATURE=none gives None
# Escaped for Slack, a question can grow fivefold (& -> &amp;); it must still fit in a reply
# under Slack's 40,000 characters, and its job in Lambda's 256 KB async payload.
MAX_INPUT_CHARS_LIMIT = 7000
RESPONSE_TYPES = ("ephemeral", "in_channel")
TASK_DISPLAY_MODES = ("timeline", "plan")  # chat.startStream's task_display_mode
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
# Pinned atop the Messages tab (and in a legacy assistant pane); in the persona's language.
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
LAMBDA_VARIABLE = "AWS_LAMBDA_FUNCTION_NAME"  # set by the Lambda runtime

Function = Literal["api", "worker"]
API: Function = "api"
WORKER: Function = "worker"
BOTH: frozenset[Function] = frozenset({API, WORKER})
# Where the worker reaches an asker: a slash command's response_url, or a thread through the Web API.
Surface = Literal["reply", "thread"]
REPLY: Surface = "reply"
THREAD: Surface = "thread"
Scope = Function | Surface | None  # what one parse reads: a function's variables, a surface's, or all


def in_lambda(environ: Mapping[str, str]) -> bool:
    """Whether this runs in AWS Lambda: the runtime sets ``AWS_LAMBDA_FUNCTION_NAME`` (any value)."""
    return bool(environ.get(LAMBDA_VARIABLE))


class SettingsError(ValueError):
    """A setting has a value the bot cannot use. ``name`` is the variable; the message names it too."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class Variable:
    """One row of the table: an environment variable and the ``Settings`` field it sets.

    ``functions`` use it; ``parse(name, raw)`` turns its value (stripped unless ``strip`` is
    False; never empty: unset or empty keeps the default) into the field's value; ``doc`` is
    its one line in the README; ``shown`` is how the README shows the default (None: the
    default itself); a ``secret``'s value is never shown or logged; ``reach``: the surfaces
    an asker is reached on with it, even when another setting is bad. ``attribute`` and
    ``default`` come from the field.
    """

    name: str
    functions: frozenset[Function]
    parse: Callable[[str, str], object]
    doc: str
    shown: str | None = None
    strip: bool = True
    secret: bool = False
    reach: frozenset[Surface] = frozenset()
    attribute: str = ""
    default: object = None


_ROW = "mameka.setting"  # the field metadata key that holds a field's Variable


def setting[T](
    name: str,
    functions: Function | frozenset[Function],
    parse: Callable[[str, str], T],
    doc: str,
    *,
    default: T,
    shown: str | None = None,
    strip: bool = True,
    secret: bool = False,
    reach: frozenset[Surface] = frozenset(),
) -> T:
    """A ``Settings`` field that the variable ``name`` sets: one row of the table (see ``Variable``)."""
    row = Variable(
        name,
        frozenset({functions}) if isinstance(functions, str) else functions,
        parse,
        doc,
        shown=shown,
        strip=strip,
        secret=secret,
        reach=reach,
    )
    return field(default=default, repr=not secret, metadata={_ROW: row})


# --- parsers: (variable name, raw value) -> the field's value, or SettingsError --------------------------------------


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


def _as_is(name: str, raw: str) -> str:
    return raw


def _lambda(name: str, raw: str) -> bool:
    return in_lambda({name: raw})


def _whole(low: int, high: int) -> Callable[[str, str], int]:
    return lambda name, raw: int(_number(name, raw, low=low, high=high, whole=True))


def _between(low: float, high: float) -> Callable[[str, str], float]:
    return lambda name, raw: _number(name, raw, low=low, high=high)


def _temperature(name: str, raw: str) -> float | None:
    # "none" leaves the temperature out: reasoning models reject any value but their own.
    return None if raw.lower() == "none" else _number(name, raw, low=0.0, high=2.0)


def _one_of(choices: tuple[str, ...], upper: bool) -> Callable[[str, str], str]:
    return lambda name, raw: _choice(name, raw.upper() if upper else raw.lower(), choices)


def _ids(lower: bool = False) -> Callable[[str, str], frozenset[str]]:
    return lambda name, raw: _names(raw, lower)


# --- the table -------------------------------------------------------------------------------------------------------
#
# Each function parses only its own variables: a worker-only setting with a bad value must not
# stop the HTTP function from verifying and acknowledging. The order is the README's.


@dataclass(frozen=True)
class Settings:
    slack_signing_secret: str | None = setting(
        "SLACK_SIGNING_SECRET",
        API,
        _as_is,
        "The Slack app's signing secret. Set for local runs; in AWS leave unset and use the parameter.",
        default=None,
        secret=True,
    )
    slack_signing_secret_parameter: str = setting(
        "SLACK_SIGNING_SECRET_PARAMETER",
        API,
        _as_is,
        "SSM SecureString to read it from when the variable is unset (the stages set "
        "`/mameka/<stage>/slack-signing-secret`). Kept per container for `SECRETS_TTL_SECONDS`.",
        default="/slack/signing-secret",
    )
    openai_api_key: str | None = setting(
        "OPENAI_API_KEY",
        WORKER,
        _as_is,
        "OpenAI API key; same rule as the signing secret. Outside Lambda, with `OPENAI_BASE_URL` on loopback "
        "(a local server) none is needed.",
        default=None,
        secret=True,
    )
    openai_api_key_parameter: str = setting(
        "OPENAI_API_KEY_PARAMETER",
        WORKER,
        _as_is,
        "SSM SecureString for the key (the stages set `/mameka/<stage>/openai-api-key`).",
        default="/openai/api-key",
    )
    slack_bot_token: str | None = setting(
        "SLACK_BOT_TOKEN",
        WORKER,
        _as_is,
        "The bot's `xoxb-` token, for the Web API (mentions, DMs, the assistant pane); same rule as the signing "
        "secret.",
        default=None,
        secret=True,
        reach=frozenset({THREAD}),
    )
    slack_bot_token_parameter: str = setting(
        "SLACK_BOT_TOKEN_PARAMETER",
        WORKER,
        _as_is,
        "SSM SecureString for the bot token (the stages set `/mameka/<stage>/slack-bot-token`). Only the worker "
        "may read it.",
        default="/slack/bot-token",
        reach=frozenset({THREAD}),
    )
    slack_api_url: str = setting(
        "SLACK_API_URL",
        WORKER,
        _api_url,
        "The Web API's base URL: a proxy, or a local fake (`make run` with `make ask EVENT=mention`).",
        default=DEFAULT_SLACK_API_URL,
        reach=frozenset({THREAD}),
    )
    suggested_prompts: tuple[tuple[str, str], ...] = setting(
        "SUGGESTED_PROMPTS",
        WORKER,
        _prompts,
        'JSON list of at most 4 `{"title": ..., "message": ...}`: pinned atop the Messages tab when a user opens '
        "it, offered in a new assistant-pane thread (legacy installs), and listed in `make manifest`'s agent view.",
        default=DEFAULT_SUGGESTED_PROMPTS,
        shown="four prompts in Japanese",
    )
    max_history_messages: int = setting(
        "MAX_HISTORY_MESSAGES",
        WORKER,
        _whole(1, 1000),
        "Messages read from a thread: its first one and the newest others (1 to 1000).",
        default=50,
    )
    max_context_tokens: int = setting(
        "MAX_CONTEXT_TOKENS",
        WORKER,
        _whole(500, 2_000_000),
        "Budget for the system prompt, the history and the question (not the answer), by an estimate that counts "
        "every non-ASCII character as a token; the oldest turns are left out until it fits.",
        default=16_000,
    )
    openai_model: str = setting("OPENAI_MODEL", WORKER, _as_is, "Chat model.", default=DEFAULT_MODEL)
    openai_temperature: float | None = setting(
        "OPENAI_TEMPERATURE",
        WORKER,
        _temperature,
        "0 to 2; `none` leaves it out (reasoning models accept only their own).",
        default=DEFAULT_TEMPERATURE,
    )
    openai_base_url: str | None = setting(
        "OPENAI_BASE_URL",
        WORKER,
        _as_is,
        "Any OpenAI-compatible endpoint: Azure, a proxy, a local server.",
        default=None,
        shown="OpenAI's",
    )
    openai_timeout_seconds: float = setting(
        "OPENAI_TIMEOUT_SECONDS",
        WORKER,
        _between(1.0, 900.0),
        "Cap on one LLM step (a streamed answer included), every retry and backoff included (the SDK's, and the "
        "answer core's own after a broken stream); further capped by the worker's remaining time less the reply's "
        "worst case (about 25 s for a slash command, 10 s for a thread; or a quarter of the time left if that is "
        "less).",
        default=60.0,
    )
    answer_timeout_seconds: float = setting(
        "ANSWER_TIMEOUT_SECONDS",
        WORKER,
        _between(1.0, 900.0),
        "Cap on the whole answer: every LLM step, retry and Slack call (1 to 900). The worker's `lambda_timeout` "
        "must be above it, and `OPENAI_TIMEOUT_SECONDS` at most it.",
        default=300.0,
    )
    stream_stall_seconds: float = setting(
        "STREAM_STALL_SECONDS",
        WORKER,
        _between(0.1, 900.0),
        "After the LLM stream's first chunk, a silence longer than this is a broken stream: it is asked for again "
        "(or, with no time left, cut short with a note). Before the first chunk only `OPENAI_TIMEOUT_SECONDS` "
        "bounds the wait.",
        default=5.0,
    )
    stream_rotate_seconds: float = setting(
        "STREAM_ROTATE_SECONDS",
        WORKER,
        _between(1.0, 290.0),
        "A Slack stream is stopped before it is this old, and the answer goes on in a new message in the thread: "
        "Slack ends streams about 5 minutes after they start (1 to 290).",
        default=240.0,
    )
    system_prompt: str = setting(
        "SYSTEM_PROMPT",
        WORKER,
        _as_is,
        "The system message.",
        default=DEFAULT_SYSTEM_PROMPT,
        shown="豆香's persona",
        strip=False,  # leading spaces or newlines in a prompt may be deliberate
    )
    slack_response_type: str = setting(
        "SLACK_RESPONSE_TYPE",
        WORKER,
        _one_of(RESPONSE_TYPES, upper=False),
        "`ephemeral` (only the asker sees the answer) or `in_channel`.",
        default="ephemeral",
    )
    task_display_mode: str = setting(
        "TASK_DISPLAY_MODE",
        WORKER,
        _one_of(TASK_DISPLAY_MODES, upper=False),
        "How a thread's answer shows what it does besides writing (a retry, a long thread read): `timeline` "
        "(each task in line) or `plan` (grouped as one plan). Passed to `chat.startStream`.",
        default="timeline",
    )
    max_input_chars: int = setting(
        "MAX_INPUT_CHARS",
        BOTH,
        _whole(1, MAX_INPUT_CHARS_LIMIT),
        "Longer questions (a command's text, or a message's, the mention left out) are refused with a message, not "
        "sent to the LLM. At most 7000, so that a reply echoing the question fits in a Slack message.",
        default=4000,
    )
    worker_function_name: str | None = setting(
        "WORKER_FUNCTION_NAME",
        API,
        _as_is,
        'The worker to invoke in AWS (`mameka-<stage>-worker` under `chalice deploy`; `{"Ref": "Worker"}` in '
        "`make package`).",
        default=None,
        shown="set per stage",
    )
    log_level: str = setting(
        "LOG_LEVEL", BOTH, _one_of(LOG_LEVELS, upper=True), "Level of ordinary log records.", default="INFO"
    )
    log_message_text: bool = setting(
        "LOG_MESSAGE_TEXT", BOTH, _flag, "`true` adds the question's text to the JSON log lines.", default=False
    )
    secrets_ttl_seconds: float = setting(
        "SECRETS_TTL_SECONDS",
        BOTH,
        _between(0.0, 86_400.0),
        "How long a secret read from SSM is kept in a container, so that `make secrets` reaches warm containers. "
        "A refresh that fails keeps the value it has (one WARNING line) and is tried again after 1 s, 2 s, 4 s… at "
        "most 60 s. A signature that does not match, a 401 from the LLM or `invalid_auth` from Slack re-reads that "
        "secret at once (at most once a minute per container). Secrets from variables are never re-read.",
        default=300.0,
        reach=frozenset({THREAD}),
    )
    response_url_hosts: frozenset[str] = setting(
        "RESPONSE_URL_HOSTS",
        BOTH,
        _ids(lower=True),
        "Hosts a slash command's `response_url` may name (comma-separated, any case, any port). The reply goes "
        "only over https to a listed host, or over plain http to a loopback host (`127.0.0.1`, `localhost`, "
        "`::1`): always outside Lambda (`make run`, `make ask`, the tests), and in Lambda only when that host is "
        "listed. Any other URL gets HTTP 400 and nothing is dispatched; the worker checks again before it posts. "
        "No redirect is followed.",
        default=DEFAULT_RESPONSE_URL_HOSTS,
        shown="`hooks.slack.com,hooks.slack-gov.com`",
        reach=frozenset({REPLY}),
    )
    allowed_team_ids: frozenset[str] = setting(
        "ALLOWED_TEAM_IDS",
        API,
        _ids(),
        "Comma-separated workspace ids that may use the bot; the asker's team (in a Slack Connect channel, the "
        "user's own).",
        default=frozenset(),
        shown="empty (anyone)",
    )
    allowed_channel_ids: frozenset[str] = setting(
        "ALLOWED_CHANNEL_IDS",
        API,
        _ids(),
        "Channels where the bot answers. DMs and the assistant pane obey the team and user lists only.",
        default=frozenset(),
        shown="empty (anyone)",
    )
    allowed_user_ids: frozenset[str] = setting(
        "ALLOWED_USER_IDS", API, _ids(), "Users the bot answers.", default=frozenset(), shown="empty (anyone)"
    )
    max_output_tokens: int = setting(
        "MAX_OUTPUT_TOKENS",
        WORKER,
        _whole(16, 1_000_000),
        "Sent as `max_completion_tokens`: the longest answer, in tokens. An answer stopped there says so in one line.",
        default=2048,
    )
    idempotency_table: str | None = setting(
        "IDEMPOTENCY_TABLE",
        BOTH,
        _as_is,
        "The DynamoDB table for job claims, per-user counts and stop marks (the HTTP function writes a stop, the "
        "worker reads it), set under `stages.<stage>.lambda_functions` for each function. Used only in Lambda: "
        "`make run` and the tests keep all three in memory.",
        default=None,
        shown="`mameka-<stage>-claims`",
    )
    user_rate_limit_per_minute: int | None = setting(
        "USER_RATE_LIMIT_PER_MINUTE",
        WORKER,
        _whole(1, 1_000_000),
        "Questions a user may ask per calendar minute (UTC), across every container. The next one gets "
        '"You\'ve reached the limit… Please ask again in N seconds" and no LLM call.',
        default=None,
        shown="empty (no limit)",
    )
    job_max_age_seconds: float = setting(
        "JOB_MAX_AGE_SECONDS",
        WORKER,
        _between(1.0, 86_400.0),
        "A job older than this when the worker gets it (it waited in Lambda's queue while the worker was "
        'throttled) is answered "too busy, please ask again", without an LLM call.',
        default=300.0,
    )
    in_lambda: bool = setting(
        LAMBDA_VARIABLE,
        BOTH,
        _lambda,
        "Set by the Lambda runtime, never by hand: any value means the code runs in AWS Lambda (the worker is "
        "invoked, claims and counts use `IDEMPOTENCY_TABLE`, a loopback `response_url` must be listed).",
        default=False,
        shown="set in Lambda",
        strip=False,  # the runtime sets it, and any value at all means Lambda
        reach=frozenset({REPLY, THREAD}),
    )

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
        return _parse(environ, function)

    @classmethod
    def reach_from_env(cls, environ: Mapping[str, str], surface: Surface) -> Settings:
        """Only what reaching an asker on ``surface`` takes (the ``reach`` column), parsed alone:
        what the worker still has when another setting is bad. Raises ``SettingsError`` when one
        of these is bad itself."""
        return _parse(environ, surface)

    @classmethod
    def _build(cls, environ: Mapping[str, str], scope: Scope = None) -> Settings:
        values: dict[str, object] = {}
        for variable in _VARIABLES[scope]:
            raw = environ.get(variable.name)
            if variable.strip:
                raw = (raw or "").strip()
            if raw:  # unset or empty: the field's default
                values[variable.attribute] = variable.parse(variable.name, raw)
        return cls(**values)  # type: ignore[arg-type]  # each parser returns its field's type


@dataclass(frozen=True)
class Unconfigured:
    """The worker's settings are unusable. ``setting`` names the bad variable (a reply may name
    it, never its value); ``reach`` is only what reaching the asker takes
    (``Settings.reach_from_env``), or None when one of those is unusable too."""

    setting: str
    reach: Settings | None


# Every variable, in the README's order, derived from the fields: the one table.
VARIABLES: tuple[Variable, ...] = tuple(
    replace(f.metadata[_ROW], attribute=f.name, default=f.default) for f in fields(Settings)
)
ENV_NAMES = tuple(variable.name for variable in VARIABLES)
_VARIABLES: dict[Scope, tuple[Variable, ...]] = {
    None: VARIABLES,
    API: tuple(variable for variable in VARIABLES if API in variable.functions),
    WORKER: tuple(variable for variable in VARIABLES if WORKER in variable.functions),
    REPLY: tuple(variable for variable in VARIABLES if REPLY in variable.reach),
    THREAD: tuple(variable for variable in VARIABLES if THREAD in variable.reach),
}
_NAMES = {scope: tuple(variable.name for variable in variables) for scope, variables in _VARIABLES.items()}


def _parse(environ: Mapping[str, str], scope: Scope) -> Settings:
    # Parsing and checking every variable was a fifth of a warm request's own time, and a
    # Lambda container's environment never changes: build once per distinct set of values.
    return _from_values(scope, tuple(environ.get(name) for name in _NAMES[scope]))


@container.cached(maxsize=16)
def _from_values(scope: Scope, values: tuple[str | None, ...]) -> Settings:
    """Settings for these values of ``scope``'s variables; a ``SettingsError`` is raised, not cached."""
    environ = {name: value for name, value in zip(_NAMES[scope], values, strict=True) if value is not None}
    return Settings._build(environ, scope)
