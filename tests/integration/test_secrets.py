"""Secrets from the environment or SSM (moto), cached once per container."""

from __future__ import annotations

import contextlib
import itertools
import threading

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.stub import Stubber
from moto import mock_aws

from chalicelib import aws, secrets
from chalicelib.settings import Settings
from devkit.http_fake import FakeServer, Received, Reply


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


def test_two_threads_reading_one_parameter_at_once_make_one_ssm_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two local jobs start at once on a cold cache: the second waits for the first's read
    # instead of making its own. SSM is a fake endpoint on loopback that holds its first answer
    # until a second request arrives (what a cache without its lock would send) or 1 s passes
    # (less than the SSM client's 2 s read timeout, after which botocore would send it again).
    def answer(received: Received) -> Reply:
        with contextlib.suppress(AssertionError):
            ssm.wait_for("/", count=2, timeout=1)
        return Reply(
            200, {"Parameter": {"Name": "/openai/api-key", "Type": "SecureString", "Value": "sk-from-ssm-fake"}}
        )

    ssm = FakeServer(answer)
    barrier = threading.Barrier(2)
    values: list[str] = []

    def read() -> None:
        barrier.wait()
        values.append(secrets.openai_api_key(Settings.from_env({})))

    with ssm:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", ssm.url)
        threads = [threading.Thread(target=read) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert values == ["sk-from-ssm-fake"] * 2
    assert [r.headers["x-amz-target"] for r in ssm.received] == ["AmazonSSM.GetParameter"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_parameter_lives_at_most_the_ttl_in_the_cache(ssm) -> None:
    ssm.put_parameter(Name="/openai/api-key", Value="first", Type="SecureString")
    clock = Clock()
    cache = secrets.ParameterCache(clock)
    settings = Settings.from_env({"SECRETS_TTL_SECONDS": "300"})
    assert cache.get("/openai/api-key", settings) == "first"
    ssm.put_parameter(Name="/openai/api-key", Value="second", Type="SecureString", Overwrite=True)
    clock.now += 299.9
    assert cache.get("/openai/api-key", settings) == "first"
    clock.now += 0.1
    assert cache.get("/openai/api-key", settings) == "second"  # `make secrets` reaches a warm container


def test_a_rejected_parameter_is_read_again_at_once_but_at_most_once_a_minute(ssm) -> None:
    ssm.put_parameter(Name="/p", Value="old", Type="SecureString")
    clock = Clock()
    cache = secrets.ParameterCache(clock)
    settings = Settings.from_env({})
    assert cache.get("/p", settings) == "old"
    ssm.put_parameter(Name="/p", Value="new", Type="SecureString", Overwrite=True)
    assert cache.forget("/p") is True
    assert cache.get("/p", settings) == "new"
    ssm.put_parameter(Name="/p", Value="newer", Type="SecureString", Overwrite=True)
    clock.now += 59
    assert cache.forget("/p") is False  # a flood of bad signatures is not a flood of SSM calls
    assert cache.get("/p", settings) == "new"
    clock.now += 1
    assert cache.forget("/p") is True
    assert cache.get("/p", settings) == "newer"


def test_a_secret_from_the_environment_is_never_forgotten(ssm) -> None:
    settings = Settings.from_env(
        {"OPENAI_API_KEY": "from-env", "SLACK_BOT_TOKEN": "xoxb-env", "SLACK_SIGNING_SECRET": "s"}
    )
    assert not secrets.openai_api_key_rejected(settings)
    assert not secrets.slack_bot_token_rejected(settings)
    assert not secrets.signing_secret_rejected(settings)


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8123/v1", "http://localhost:11434/v1", "http://[::1]/v1"])
def test_a_local_llm_server_needs_no_key_and_ssm_is_not_asked(base_url: str) -> None:
    # No mock_aws: an SSM call would fail here (and is what made `make run` demand a key).
    settings = Settings.from_env({"OPENAI_BASE_URL": base_url})
    assert secrets.openai_api_key(settings) == secrets.LOCAL_SERVER_KEY
    assert not Settings.from_env({"OPENAI_BASE_URL": "https://api.openai.com/v1"}).llm_is_local
    # In Lambda nothing listens on loopback: the key is read as usual.
    assert not Settings.from_env({"OPENAI_BASE_URL": base_url, "AWS_LAMBDA_FUNCTION_NAME": "w"}).llm_is_local


# --- stale-while-error: a warm container outlives an SSM outage ---------------------------------


def record_ssm_reads(clock: Clock) -> list[float]:
    """When the container's own SSM client calls GetParameter from now on (botocore's events)."""
    times: list[float] = []
    aws.client("ssm").meta.events.register("before-call.ssm.GetParameter", lambda **_: times.append(clock.now))
    return times


HELD = "sk-held-value-not-real-9f3"
FRESH = "sk-fresh-value-not-real-4e1"


def test_after_the_ttl_a_failed_refresh_serves_the_value_held_and_backs_off(ssm, caplog) -> None:
    """Before, a request after the TTL while SSM failed got no secret, and every request asked SSM."""
    ssm.put_parameter(Name="/p", Value=HELD, Type="SecureString")
    clock = Clock()
    cache = secrets.ParameterCache(clock)
    settings = Settings.from_env({"SECRETS_TTL_SECONDS": "300"})
    reads = record_ssm_reads(clock)
    assert cache.get("/p", settings) == HELD
    ssm.delete_parameter(Name="/p")  # from now on every read fails
    clock.now += 300
    caplog.clear()
    for _ in range(1600):  # a request every 0.25 s for 400 s
        assert cache.get("/p", settings) == HELD
        clock.now += 0.25

    gaps = [later - earlier for earlier, later in itertools.pairwise(reads[1:])]
    assert gaps == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60]  # not one SSM call per request
    logged = [record for record in caplog.records if record.name == "chalicelib.secrets"]
    assert [record.levelname for record in logged] == ["WARNING"] * (len(reads) - 1)  # one per failed read
    assert logged[0].getMessage() == (
        "could not read SSM parameter /p: ParameterNotFound; serving the value read 300 s ago, trying again in 1 s"
    )
    assert HELD not in caplog.text

    ssm.put_parameter(Name="/p", Value=FRESH, Type="SecureString")
    clock.now = reads[-1] + 60
    assert cache.get("/p", settings) == FRESH  # refreshed at the next try once SSM works again
    clock.now += 299.9
    assert cache.get("/p", settings) == FRESH
    assert reads[-1] == clock.now - 299.9  # a fresh TTL, no backoff left over


def test_a_rejected_value_is_forgotten_even_while_ssm_fails(ssm) -> None:
    ssm.put_parameter(Name="/p", Value=HELD, Type="SecureString")
    clock = Clock()
    cache = secrets.ParameterCache(clock)
    settings = Settings.from_env({})
    assert cache.get("/p", settings) == HELD
    ssm.delete_parameter(Name="/p")
    assert cache.forget("/p") is True
    with pytest.raises(secrets.SecretUnavailable) as error:  # no good value to fall back on
        cache.get("/p", settings)
    assert error.value.transient is False


# --- transient or not: busy, or not set up ----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 400),
        ("TooManyUpdates", 400),
        ("RequestLimitExceeded", 400),
        ("InternalServerError", 500),
        ("ServiceUnavailable", 503),
        ("SomethingNew", 502),  # any 5xx, whatever its code
    ],
)
def test_throttling_and_server_errors_are_transient(code: str, status: int) -> None:
    # moto cannot throttle or fail: botocore's Stubber answers on the container's own client.
    with Stubber(aws.client("ssm")) as ssm:
        ssm.add_client_error("get_parameter", service_error_code=code, http_status_code=status)
        message = rf"^SSM parameter /openai/api-key could not be read \({code}\)$"
        with pytest.raises(secrets.SecretUnavailable, match=message) as error:
            secrets.openai_api_key(Settings.from_env({}))
    assert error.value.transient is True


def test_an_unreachable_ssm_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9")  # the discard port: refused at once
    with pytest.raises(secrets.SecretUnavailable, match=r"\(EndpointConnectionError\)$") as error:
        secrets.slack_signing_secret(Settings.from_env({}))
    assert error.value.transient is True


def test_a_missing_forbidden_or_empty_parameter_is_not_transient(ssm) -> None:
    settings = Settings.from_env({"OPENAI_API_KEY_PARAMETER": "/nope"})
    with pytest.raises(secrets.SecretUnavailable) as missing:
        secrets.openai_api_key(settings)
    ssm.put_parameter(Name="/blank", Value=" ", Type="SecureString")
    with pytest.raises(secrets.SecretUnavailable) as empty:
        secrets.openai_api_key(Settings.from_env({"OPENAI_API_KEY_PARAMETER": "/blank"}))
    with Stubber(aws.client("ssm")) as stub:  # moto grants every call: access denied from the Stubber
        stub.add_client_error("get_parameter", service_error_code="AccessDeniedException", http_status_code=400)
        with pytest.raises(secrets.SecretUnavailable) as denied:
            secrets.openai_api_key(settings)
    assert (missing.value.transient, empty.value.transient, denied.value.transient) == (False, False, False)


def test_no_credentials_is_not_transient(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "http://127.0.0.1:9")  # never reached: no credentials to sign with
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # earlier tests' session holds credentials it found
    with pytest.raises(secrets.SecretUnavailable, match=r"\(NoCredentialsError\)$") as error:
        secrets.slack_bot_token(Settings.from_env({}))
    assert error.value.transient is False


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ReadTimeoutError(endpoint_url="https://ssm"), True),
        (ConnectTimeoutError(endpoint_url="https://ssm"), True),
        (ConnectionClosedError(endpoint_url="https://ssm"), True),
        (EndpointConnectionError(endpoint_url="https://ssm"), True),
        (NoCredentialsError(), False),
        (ClientError({"Error": {"Code": "ParameterNotFound"}}, "GetParameter"), False),
        (ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "X"), False),
        (
            ClientError({"Error": {"Code": "ThrottlingException"}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "X"),
            True,
        ),
        (ClientError({"Error": {}, "ResponseMetadata": {"HTTPStatusCode": 504}}, "GetParameter"), True),
        (ValueError("not AWS at all"), False),
    ],
)
def test_aws_says_which_errors_may_pass_with_time(error: Exception, transient: bool) -> None:
    """The timeouts botocore raises, which no local server can produce quickly (the read timeout is 2 s)."""
    assert aws.is_transient(error) is transient
