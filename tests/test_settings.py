"""Settings: defaults, every variable, and clear errors for unusable values."""

from __future__ import annotations

import pytest

from chalicelib.settings import DEFAULT_SYSTEM_PROMPT, ENV_NAMES, Settings, SettingsError


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
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'"),
        ("LOG_MESSAGE_TEXT", "maybe", "LOG_MESSAGE_TEXT must be true or false, got 'maybe'"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env({name: value})
    assert str(error.value) == message


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
