"""scripts/playground.py's choice of model, and when scripts/ask.py asks the playground.

Starting the playground (chalice local, the stand-ins, the fresh environment, stopping it all)
runs end to end in tests/tools/test_demo.py and tests/tools/test_scripts_ask.py.
"""

from __future__ import annotations

import pytest

from devkit import stand_in_model
from tests.conftest import import_script

ask = import_script("ask")
playground = ask.playground  # the module ask.py uses, whose Model its options hold


def test_without_openai_base_url_the_model_is_the_stand_in() -> None:
    model = playground.parse_model({"OPENAI_MODEL": "ignored without a URL"})

    assert model == playground.Model(None, stand_in_model.MODEL_NAME)
    assert model.timeout == playground.STAND_IN_TIMEOUT
    assert model.describe() == "a stand-in model (not an LLM)"


@pytest.mark.parametrize("url", ["http://127.0.0.1:11434/v1", "http://localhost:8080/v1", "https://[::1]:1/v1"])
def test_a_local_server_is_the_model_with_more_time(url: str) -> None:
    model = playground.parse_model({"OPENAI_BASE_URL": f" {url} ", "OPENAI_MODEL": "llama3.2"})

    assert model == playground.Model(url, "llama3.2")
    assert model.timeout == playground.MODEL_TIMEOUT > playground.STAND_IN_TIMEOUT
    assert model.describe() == f"your model llama3.2 at {url}"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OPENAI_BASE_URL": "https://api.openai.com/v1", "OPENAI_MODEL": "m"}, "must be a local server"),
        ({"OPENAI_BASE_URL": "http://127.0.0.1.example.com/v1", "OPENAI_MODEL": "m"}, "must be a local server"),
        ({"OPENAI_BASE_URL": "ftp://127.0.0.1/v1", "OPENAI_MODEL": "m"}, "must be a local server"),
        ({"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}, "set OPENAI_MODEL"),
    ],
)
def test_a_model_off_this_machine_or_unnamed_is_a_usage_error(environ: dict[str, str], message: str) -> None:
    with pytest.raises(playground.UsageError, match=message):
        playground.parse_model(environ)


def test_ask_without_a_secret_or_url_asks_the_playground() -> None:
    # The variables that would point `make run`'s Slack elsewhere do not matter then: the playground has its own.
    environ = {"EVENT": "mention", "SLACK_API_URL": "https://slack.com/api/", "SLACK_BOT_TOKEN": "xoxb-users"}

    options = ask.parse_options(["鎌倉の", "おすすめは？"], environ)

    assert options.model == playground.Model(None, stand_in_model.MODEL_NAME)
    assert (options.question, options.event, options.timeout) == ("鎌倉の おすすめは？", "mention", 30.0)
    assert options.secret == options.url == ""  # the playground's, once it runs
    assert ask.parse_options(["q"], {"TIMEOUT": "5"}).timeout == 5.0


def test_ask_with_a_secret_asks_the_bot_at_url_as_before() -> None:
    options = ask.parse_options(["q"], {"SLACK_SIGNING_SECRET": "s"})

    assert options.model is None
    assert options.url == "http://127.0.0.1:8000/slack/commands"
    assert options.timeout == ask.DEFAULT_TIMEOUT
    with pytest.raises(ask.UsageError, match="SLACK_SIGNING_SECRET is not set"):
        ask.parse_options(["q"], {"URL": "http://127.0.0.1:8000"})


def test_a_long_question_is_cut_short_for_one_line() -> None:
    assert ask.one_line("短い質問") == "短い質問"
    assert ask.one_line("長" * 4001) == "長" * 20 + "… (4,001 characters)"
