"""Settings: defaults, every variable, and clear errors for unusable values."""

from __future__ import annotations

import dataclasses

import pytest

from chalicelib.settings import DEFAULT_SYSTEM_PROMPT, ENV_NAMES, VARIABLES, Settings, SettingsError, in_lambda
from chalicelib.slack import messages


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.openai_model == "gpt-4.1-mini"
    assert settings.openai_temperature == 0.9
    assert settings.openai_timeout_seconds == 60
    assert settings.openai_base_url is None
    assert settings.openai_api_key_parameter == "/openai/api-key"
    assert settings.slack_signing_secret_parameter == "/slack/signing-secret"
    assert settings.slack_response_type == "ephemeral"
    assert settings.max_input_chars == 4000
    assert settings.worker_function_name is None
    assert settings.log_level == "INFO" and settings.log_message_text is False
    assert settings.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert "「豆香」" in DEFAULT_SYSTEM_PROMPT


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "SLACK_SIGNING_SECRET": "s1",
            "SLACK_SIGNING_SECRET_PARAMETER": "/p/slack",
            "OPENAI_API_KEY": "k1",
            "OPENAI_API_KEY_PARAMETER": "/p/openai",
            "OPENAI_MODEL": "gpt-x",
            "OPENAI_TEMPERATURE": "0.2",
            "OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
            "OPENAI_TIMEOUT_SECONDS": "15",
            "SYSTEM_PROMPT": "Be brief.",
            "SLACK_RESPONSE_TYPE": "in_channel",
            "MAX_INPUT_CHARS": "100",
            "WORKER_FUNCTION_NAME": "mameka-dev-worker",
            "LOG_LEVEL": "debug",
            "LOG_MESSAGE_TEXT": "true",
        }
    )
    assert settings == Settings(
        slack_signing_secret="s1",
        slack_signing_secret_parameter="/p/slack",
        openai_api_key="k1",
        openai_api_key_parameter="/p/openai",
        openai_model="gpt-x",
        openai_temperature=0.2,
        openai_base_url="http://127.0.0.1:1/v1",
        openai_timeout_seconds=15,
        system_prompt="Be brief.",
        slack_response_type="in_channel",
        max_input_chars=100,
        worker_function_name="mameka-dev-worker",
        log_level="DEBUG",
        log_message_text=True,
    )


def test_temperature_none_is_left_out() -> None:
    assert Settings.from_env({"OPENAI_TEMPERATURE": "none"}).openai_temperature is None


def test_empty_values_mean_default() -> None:
    assert Settings.from_env({"OPENAI_MODEL": "  ", "MAX_INPUT_CHARS": ""}) == Settings.from_env({})


def test_secrets_are_not_in_repr() -> None:
    text = repr(Settings.from_env({"SLACK_SIGNING_SECRET": "shh-signing", "OPENAI_API_KEY": "sk-shh"}))
    assert "shh-signing" not in text and "sk-shh" not in text


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OPENAI_TEMPERATURE", "warm", "OPENAI_TEMPERATURE must be a number, got 'warm'"),
        ("OPENAI_TEMPERATURE", "3", "OPENAI_TEMPERATURE must be a number from 0 to 2, got '3'"),
        ("OPENAI_TIMEOUT_SECONDS", "nan", "OPENAI_TIMEOUT_SECONDS must be a number from 1 to 900, got 'nan'"),
        ("MAX_INPUT_CHARS", "10.5", "MAX_INPUT_CHARS must be a whole number from 1 to 7000, got '10.5'"),
        ("SLACK_RESPONSE_TYPE", "public", "SLACK_RESPONSE_TYPE must be one of ephemeral, in_channel, got 'public'"),
        ("TASK_DISPLAY_MODE", "dense", "TASK_DISPLAY_MODE must be one of timeline, plan, got 'dense'"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'"),
        ("LOG_MESSAGE_TEXT", "maybe", "LOG_MESSAGE_TEXT must be true or false, got 'maybe'"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env({name: value})
    assert str(error.value) == message
    assert error.value.name == name  # for a reply that names it: never the value


def test_env_names_are_exactly_the_variables_read() -> None:
    # from_env caches on the values of ENV_NAMES: a variable read but not listed would be ignored.
    read: set[str] = set()

    class Recording(dict):
        def get(self, key: str, default: object = None) -> object:
            read.add(key)
            return super().get(key, default)

    Settings._build(Recording())
    assert read == set(ENV_NAMES)


def test_settings_follow_the_environment_after_caching() -> None:
    assert Settings.from_env({"OPENAI_MODEL": "a"}).openai_model == "a"
    assert Settings.from_env({"OPENAI_MODEL": "b"}).openai_model == "b"
    assert Settings.from_env({"OPENAI_MODEL": "a"}).openai_model == "a"


# --- each function reads the variables it uses ---------------------------------------------------

WORKER_ONLY_BAD = {
    "SUGGESTED_PROMPTS": "[",
    "OPENAI_TEMPERATURE": "warm",
    "MAX_HISTORY_MESSAGES": "many",
    "SLACK_API_URL": "slack.com/api",
    "SLACK_RESPONSE_TYPE": "public",
    "MAX_OUTPUT_TOKENS": "1",
    "STREAM_ROTATE_SECONDS": "600",
}


def test_the_http_function_reads_only_its_own_variables() -> None:
    """Before, one bad worker-only value made the HTTP function refuse every request."""
    env = {
        **WORKER_ONLY_BAD,
        "SLACK_SIGNING_SECRET": "s1",
        "OPENAI_API_KEY": "k1",
        "OPENAI_MODEL": "gpt-x",
        "IDEMPOTENCY_TABLE": "t",
        "MAX_INPUT_CHARS": "100",
        "ALLOWED_TEAM_IDS": "T1, T2",
        "WORKER_FUNCTION_NAME": "w",
        "AWS_LAMBDA_FUNCTION_NAME": "mameka-dev",
    }
    settings = Settings.from_env(env, function="api")
    assert settings == Settings(
        slack_signing_secret="s1",
        max_input_chars=100,
        allowed_team_ids=frozenset({"T1", "T2"}),
        worker_function_name="w",
        idempotency_table="t",  # the HTTP function writes stop marks there
        in_lambda=True,
    )  # every worker-only field keeps its default, unread
    for name in WORKER_ONLY_BAD:
        with pytest.raises(SettingsError) as error:
            Settings.from_env({name: WORKER_ONLY_BAD[name]}, function="worker")
        assert error.value.name == name
        with pytest.raises(SettingsError):
            Settings.from_env({name: WORKER_ONLY_BAD[name]})  # None: every variable, as the scripts check


@pytest.mark.parametrize(("name", "value"), [("MAX_INPUT_CHARS", "lots"), ("LOG_LEVEL", "LOUD")])
def test_the_http_function_still_refuses_its_own_bad_settings(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env({name: value}, function="api")
    assert error.value.name == name


def test_the_worker_reads_its_own_variables_and_not_the_http_functions() -> None:
    env = {"OPENAI_MODEL": "gpt-x", "ALLOWED_USER_IDS": "U1", "WORKER_FUNCTION_NAME": "w", "LOG_MESSAGE_TEXT": "yes"}
    assert Settings.from_env(env, function="worker") == Settings(openai_model="gpt-x", log_message_text=True)
    assert Settings.from_env(env) == Settings(
        openai_model="gpt-x", allowed_user_ids=frozenset({"U1"}), worker_function_name="w", log_message_text=True
    )


def test_every_field_is_set_by_one_variable_that_some_function_uses() -> None:
    # The table is what a later issue turns into the settings' documentation.
    attributes = [variable.attribute for variable in VARIABLES]
    assert sorted(attributes) == sorted(f.name for f in dataclasses.fields(Settings))
    assert all(variable.functions and variable.functions <= {"api", "worker"} for variable in VARIABLES)


@pytest.mark.parametrize("function", ["api", "worker", None])
def test_each_function_reads_exactly_its_variables(function: str | None) -> None:
    read: set[str] = set()

    class Recording(dict):
        def get(self, key: str, default: object = None) -> object:
            read.add(key)
            return super().get(key, default)

    Settings._build(Recording(), function)
    assert read == {v.name for v in VARIABLES if function is None or function in v.functions}


def test_settings_are_cached_per_function() -> None:
    # The HTTP function's warm path: the same values give the very same object, without parsing.
    env = {"OPENAI_TEMPERATURE": "warm", "MAX_INPUT_CHARS": "10"}
    assert Settings.from_env(env, function="api") is Settings.from_env(dict(env), function="api")
    assert Settings.from_env(env, function="api").max_input_chars == 10


def test_not_set_up_can_name_the_setting_but_never_its_value() -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env({"SUGGESTED_PROMPTS": "[secret-ish"}, function="worker")
    assert messages.not_configured(error.value.name) == {
        "response_type": "ephemeral",
        "text": ":warning: The bot is not set up correctly (SUGGESTED_PROMPTS is invalid), so it can't answer. "
        "Please tell the bot's admin.",
    }
    assert messages.not_configured() == messages.error("not_configured")  # unchanged without a name
    assert messages.busy() == messages.error("secrets_busy")


def test_in_lambda_is_decided_in_one_place() -> None:
    # Moved from test_command.py (running_in_lambda): the Lambda runtime sets the variable, any value.
    assert in_lambda({"AWS_LAMBDA_FUNCTION_NAME": "mameka-dev-worker"})
    assert not in_lambda({}) and not in_lambda({"AWS_LAMBDA_FUNCTION_NAME": ""})
    assert Settings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "mameka-dev-worker"}).in_lambda
    assert not Settings.from_env({"AWS_LAMBDA_FUNCTION_NAME": ""}, function="api").in_lambda
