"""Secrets from the environment or SSM (moto), cached once per container."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from chalicelib import secrets
from chalicelib.settings import Settings


@pytest.fixture
def ssm():
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


def test_a_set_variable_wins_and_ssm_is_not_called(ssm) -> None:
    ssm.put_parameter(Name="/openai/api-key", Value="from-ssm", Type="SecureString")
    settings = Settings.from_env({"OPENAI_API_KEY": "from-env"})
    assert secrets.openai_api_key(settings) == "from-env"


def test_securestring_parameters_are_read_decrypted(ssm) -> None:
    ssm.put_parameter(Name="/openai/api-key", Value="openai-from-ssm", Type="SecureString")
    ssm.put_parameter(Name="/mameka/dev/slack", Value="slack-from-ssm", Type="SecureString")
    settings = Settings.from_env({"SLACK_SIGNING_SECRET_PARAMETER": "/mameka/dev/slack"})
    assert secrets.openai_api_key(settings) == "openai-from-ssm"
    assert secrets.slack_signing_secret(settings) == "slack-from-ssm"


def test_a_parameter_is_read_once_per_container(ssm) -> None:
    ssm.put_parameter(Name="/openai/api-key", Value="first", Type="SecureString")
    settings = Settings.from_env({})
    assert secrets.openai_api_key(settings) == "first"
    ssm.put_parameter(Name="/openai/api-key", Value="second", Type="SecureString", Overwrite=True)
    assert secrets.openai_api_key(settings) == "first"


def test_a_missing_parameter_names_itself_not_a_secret(ssm, caplog) -> None:
    settings = Settings.from_env({"OPENAI_API_KEY_PARAMETER": "/nope"})
    with pytest.raises(
        secrets.SecretUnavailable, match=r"^SSM parameter /nope could not be read \(ParameterNotFound\)$"
    ):
        secrets.openai_api_key(settings)
    assert "ParameterNotFound" in caplog.text
    # Failures are not cached: once the parameter exists, the next request succeeds.
    ssm.put_parameter(Name="/nope", Value="now-here", Type="SecureString")
    assert secrets.openai_api_key(settings) == "now-here"


def test_a_pasted_newline_is_stripped_and_an_empty_value_is_reported(ssm, caplog) -> None:
    ssm.put_parameter(Name="/openai/api-key", Value="sk-fake-with-newline\n", Type="SecureString")
    assert secrets.openai_api_key(Settings.from_env({})) == "sk-fake-with-newline"
    ssm.put_parameter(Name="/blank", Value=" \n", Type="SecureString")
    with pytest.raises(secrets.SecretUnavailable, match=r"^SSM parameter /blank is empty$"):
        secrets.openai_api_key(Settings.from_env({"OPENAI_API_KEY_PARAMETER": "/blank"}))
    assert "SSM parameter /blank is empty" in caplog.text
