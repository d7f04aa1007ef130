"""Shared fixtures: fake servers on loopback, signed requests, and a fresh "container".

Every test runs with fake AWS credentials and no real secrets; a test that needs AWS uses
moto. The fakes are real HTTP servers on loopback, shared with scripts and bench: see ``devkit``.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType

import pytest

from chalicelib import answer, container, dispatch
from chalicelib.jobs import SlashCommandJob
from chalicelib.settings import ENV_NAMES
from devkit import slack_requests
from devkit.fake_lambda import fake_lambda
from devkit.fake_openai import fake_openai
from devkit.fake_response_url import fake_response_url
from devkit.fake_slack_api import FAKE_BOT_TOKEN, FakeSlackAPI
from devkit.http_fake import FakeServer
from devkit.slack_requests import command_form as command_form  # re-exported: tests import it from here

ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "test-signing-secret-not-real"
OPENAI_KEY = "sk-test-fake-key-not-real"


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No real AWS, OpenAI or Slack settings leak in; caches start empty as in a new container."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "OPENAI_", "SLACK_")) or name in ENV_NAMES:
            monkeypatch.delenv(name)
    # Under `make test`, a `make` that a test runs would inherit the outer make's flags and print
    # "Entering directory" lines into the output the test checks.
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    new_container()
    yield
    wait_for_local_jobs()
    new_container()


# The fast lane: `make check` sets MAMEKA_FAST_LANE=1, and each hypothesis property then runs an eighth
# of its examples (the same property, the same derandomized generator); `make test` and CI run them all.
FAST_LANE = os.environ.get("MAMEKA_FAST_LANE", "") not in ("", "0")


_held_ports: list[socket.socket] = []


def closed_port() -> int:
    """A loopback port that refuses connections: bound and held, never listening, for the rest of
    the run. Bound then closed, the kernel could give it to another test worker's server at once,
    and the "refused" test would reach that server instead."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    _held_ports.append(sock)
    return int(sock.getsockname()[1])


def examples(count: int, at_least: int = 20) -> int:
    """How many examples a hypothesis property runs: ``count``, or in the fast lane an eighth (but
    ``at_least``: a property that checks what its generator reached needs enough of them)."""
    return max(at_least, count // 8) if FAST_LANE else count


def new_container() -> None:
    """Forget what a Lambda container caches between invocations."""
    container.reset()


def wait_for_local_jobs(timeout: float = 120.0) -> None:
    """Join the in-process worker threads that dispatch started, so no job outlives its test."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith(dispatch.LOCAL_THREAD_PREFIX):
            thread.join(max(0.0, deadline - time.monotonic()))
            assert not thread.is_alive(), f"worker thread {thread.name} did not finish"


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variables: the real clients (urllib, slack_sdk, openai) honour them, and a
    request to a loopback fake must stay on loopback."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer core's pause before it asks the LLM again (``answer.BACKOFF_SECONDS``, 0.5 s doubled
    per retry) cut to 0.05 s: for tests of which attempts are made and what the user sees, not of
    how long the pause is or whether it fits the deadline (those keep it: tests/integration/test_deadlines.py)."""
    monkeypatch.setattr(answer, "BACKOFF_SECONDS", 0.05)


@pytest.fixture
def openai_server() -> Iterator[FakeServer]:
    with fake_openai() as server:
        yield server


@pytest.fixture
def slack_server() -> Iterator[FakeServer]:
    with fake_response_url() as server:
        yield server


@pytest.fixture
def lambda_server() -> Iterator[FakeServer]:
    with fake_lambda() as server:
        yield server


@pytest.fixture
def bot_env(openai_server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a working bot whose LLM is the fake server."""
    env = {
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": openai_server.url + "/v1",
        "OPENAI_TIMEOUT_SECONDS": "20",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def import_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (scripts/ is not a package), under a name that shadows nothing."""
    spec = importlib.util.spec_from_file_location(f"mameka_scripts_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


def response_path() -> str:
    return f"/commands/{uuid.uuid4().hex}"


def signed_headers(
    body: bytes,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    content_type: str = slack_requests.FORM,
) -> dict[str, str]:
    """Slack's headers for ``body``, signed with the tests' secret unless told otherwise."""
    return slack_requests.signed_headers(secret, body, timestamp, content_type)


def slash_payload(response_url: str, text: str = "hi") -> dict[str, str]:
    """A slash-command job's payload as the HTTP function sends it, with a fresh job id."""
    job = SlashCommandJob(
        id=str(uuid.uuid4()),
        asked_at=time.time(),
        text=text,
        response_url=response_url,
        user_id="U1",
        channel_id="C1",
        team_id="T1",
    )
    return job.to_payload()


@pytest.fixture
def slack_api() -> Iterator[FakeSlackAPI]:
    """The Slack Web API, faked on loopback; the bot's token is ``FAKE_BOT_TOKEN``."""
    with FakeSlackAPI() as server:
        yield server


@pytest.fixture
def conversation_env(
    bot_env: dict[str, str], slack_api: FakeSlackAPI, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """A working bot's environment for mentions and DMs: the fake LLM and the fake Slack Web API."""
    env = {"SLACK_BOT_TOKEN": FAKE_BOT_TOKEN, "SLACK_API_URL": slack_api.url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {**bot_env, **env}


# --- secrets hygiene: no test's output shows a secret ----------------------------------------------------------------
#
# Every test's captured stdout, stderr and log records, and whatever it read through capsys
# (which is then gone from its report), are searched for the secrets the suites use: a test
# whose output holds one fails (an error, if it showed in setup or teardown). chalice local's
# log is searched by tests/chalice_local.py. A secret that a test passes through a redaction
# shows only redacted, so such a test passes; a test that must show a raw secret (the check's
# own test) says so with @pytest.mark.secrets_in_output("why").

# Every secret value the tests use, with where; a value of SECRET_VARIABLES that a test sets is added.
TEST_SECRETS: tuple[str, ...] = (
    SIGNING_SECRET,
    OPENAI_KEY,
    FAKE_BOT_TOKEN,
    "sk-test-fake-openai-key-for-scripts-0001",  # test_scripts_secrets.py
    "0123456789abcdef0123456789abcdef",
    "xoxb-fake-test-token-for-scripts",
    "xoxp-fake-user-token-for-scripts",
    "sk-this-is-the-wrong-one-not-real",
    "xoxb-ask-script-test-not-real",  # test_scripts_ask.py
    "xoxb-another-test-token",
    "devkit-test-secret-not-real",  # test_slack_requests.py
    "xoxb-fake-old-token",  # test_conversation.py
    "xoxb-fake-new-token",
    "sk-from-ssm-fake",  # test_worker.py
    "sk-fake-with-newline",  # test_secrets.py
)
SECRET_VARIABLES = ("SLACK_SIGNING_SECRET", "OPENAI_API_KEY", "SLACK_BOT_TOKEN")
MIN_SECRET_CHARS = 8  # a shorter value that a test sets ("s", "x") would be found in ordinary text

_known_secrets = pytest.StashKey[set[str]]()
_output_read = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "secrets_in_output(reason): this test's output shows a secret on purpose")


def secrets_in(text: str, secrets: Iterable[str]) -> list[str]:
    """The ``secrets`` that appear in ``text``, masked (the check must not show them either)."""
    return sorted(f"{secret[:4]}…({len(secret)} chars)" for secret in set(secrets) if secret and secret in text)


def secrets_in_environment(environ: Mapping[str, str] = os.environ) -> set[str]:
    """The values of ``SECRET_VARIABLES`` set in ``environ`` (long enough to mean something)."""
    values = (environ.get(name, "").strip() for name in SECRET_VARIABLES)
    return {value for value in values if len(value) >= MIN_SECRET_CHARS}


@pytest.fixture
def capsys(capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> pytest.CaptureFixture[str]:
    """pytest's capsys, but what the test reads is kept for the secrets check."""
    read = request.node.stash.setdefault(_output_read, [])
    readouterr = capsys.readouterr

    def keep() -> pytest.CaptureResult[str]:
        result = readouterr()
        read.append(result.out + result.err)
        return result

    capsys.readouterr = keep  # type: ignore[method-assign]
    return capsys


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    known = item.stash.setdefault(_known_secrets, set(TEST_SECRETS))
    known |= secrets_in_environment()  # before teardown: monkeypatch has not undone the test's yet
    texts = [text for title, text in report.sections if title.startswith("Captured ") and title.endswith(report.when)]
    read = item.stash.get(_output_read, [])
    texts += read
    read.clear()  # in place: the capsys fixture keeps appending to this list
    leaked = secrets_in("\n".join(texts), known)
    if leaked and item.get_closest_marker("secrets_in_output") is None:
        message = f"secrets hygiene: this test's {report.when} output shows {', '.join(leaked)}"
        if report.outcome == "failed":
            report.sections.append(("secrets hygiene", message))
        else:
            report.outcome, report.longrepr = "failed", message
    return report
