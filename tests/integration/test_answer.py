"""The answer core (``chalicelib.answer``) on both surfaces: a thread's stream and a slash command's reply.

Every test runs a job through ``worker.run`` against real HTTP fakes: the openai SDK against the
fake LLM (which cuts, stalls, garbles or ends its streams with any finish_reason), slack_sdk
against the fake Slack Web API (which models what a user finally sees after updates, deletes and
stream appends), and a local server as the slash command's ``response_url``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib import worker
from chalicelib.deadline import Deadline
from chalicelib.slack import events, stream
from devkit import slack_requests
from devkit.fake_openai import StreamReply, openai_error
from devkit.fake_slack_api import FakeSlackAPI
from devkit.http_fake import FakeServer
from tests.conftest import response_path, slash_payload

# Which attempts are made and what the user sees, not how long the pause between them is.
pytestmark = pytest.mark.usefixtures("quick_retries")

USER = slack_requests.USER_ID
CHANNEL = slack_requests.CHANNEL_ID
CHAT = "/v1/chat/completions"
WHOLE = "The whole answer, from the second attempt."
# Short enough for a test, long enough that a busy machine's scheduling is not taken for a stall.
STALL = "0.5"


def run_mention(env: dict[str, str], slack_api: FakeSlackAPI, text: str = "質問") -> str:
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event(text, ts=ts)
    slack_api.add_event(body)
    job, _ = events.parse(body)
    assert worker.run(job.to_payload(), Deadline.in_seconds(60), env) is None  # type: ignore[union-attr]
    return ts


def run_slash(env: dict[str, str], response_server: FakeServer, text: str = "質問") -> list[dict[str, Any]]:
    path = response_path()
    assert worker.run(slash_payload(response_server.url + path, text), Deadline.in_seconds(60), env) is None
    return [request.json() for request in response_server.requests_to(path)]


def answer_line(captured: str) -> dict[str, Any]:
    lines = [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line["event"] == "answer"]
    return line


def bot_texts(slack_api: FakeSlackAPI, ts: str) -> list[str]:
    return [message.text for message in slack_api.bot_messages(CHANNEL, ts)]


# One cut of each kind, after the first two deltas: by then the thread shows text.
CUTS = {
    "closed_cleanly": {"close_cleanly_after": 2},
    "connection_dropped": {"break_after": 2},
    "unreadable_chunk": {"garbage_after": 2},
    "error_event": {"error_after": 2},
    "stalled": {"pause_after": 2, "pause_seconds": 3.0},
}


@pytest.mark.parametrize("cut", list(CUTS.values()), ids=list(CUTS))
def test_a_stream_broken_after_text_was_shown_is_asked_again_and_replaces_it(
    cut: dict[str, Any], conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, capsys
) -> None:
    openai_server.script = [
        StreamReply(deltas=["A first ", "attempt ", "that breaks"], **cut),
        StreamReply(deltas=["The whole answer, ", "from the second attempt."]),
    ]
    env = {**conversation_env, "STREAM_STALL_SECONDS": STALL}
    ts = run_mention(env, slack_api)

    assert bot_texts(slack_api, ts) == [WHOLE]  # one whole answer, no partial, no note
    assert len(slack_api.calls_to("chat.delete")) == 1  # the first attempt's message went
    assert len(openai_server.requests_to(CHAT)) == 2
    line = answer_line(capsys.readouterr().out)
    assert (line["outcome"], line["attempts"]) == ("answered", 2)
    # Both attempts are paid for: the cut one was estimated, having no usage chunk.
    assert line["tokens_out"] > 7 and line["tokens_in"] > 11 and line["tokens_estimated"] is True


@pytest.mark.parametrize("cut", list(CUTS.values()), ids=list(CUTS))
def test_a_slash_command_gets_the_same_retries_and_one_whole_reply(
    cut: dict[str, Any], bot_env: dict[str, str], slack_server: FakeServer, openai_server: FakeServer, capsys
) -> None:
    openai_server.script = [
        StreamReply(deltas=["A first ", "attempt ", "that breaks"], **cut),
        StreamReply(deltas=["The whole answer, ", "from the second attempt."]),
    ]
    [reply] = run_slash({**bot_env, "STREAM_STALL_SECONDS": STALL}, slack_server)
    assert reply["text"].endswith(WHOLE) and "first" not in reply["text"]
    assert (answer_line(capsys.readouterr().out)["attempts"]) == 2


def test_without_retries_left_the_text_stays_and_one_line_says_it_was_cut(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, capsys
) -> None:
    openai_server.script = [StreamReply(deltas=["part ", "of it", " lost"], break_after=2) for _ in range(3)]
    ts = run_mention(conversation_env, slack_api)
    texts = bot_texts(slack_api, ts)
    assert texts[0] == "part of it" and len(texts) == 2
    assert "cut short" in texts[1] and "stopped sending it" in texts[1]
    line = answer_line(capsys.readouterr().out)
    assert (line["outcome"], line["attempts"]) == ("cut_short_cut_off", 3)


def test_an_answer_stopped_at_the_output_limit_before_any_text_is_one_call_and_one_line(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, capsys
) -> None:
    openai_server.script = [StreamReply(deltas=[], finish_reason="length")]
    ts = run_mention(conversation_env, slack_api)
    [text] = bot_texts(slack_api, ts)
    assert "limit" in text and "MAX_OUTPUT_TOKENS" in text
    assert len(openai_server.requests_to(CHAT)) == 1
    assert answer_line(capsys.readouterr().out)["outcome"] == "output_limit"


def test_a_slash_command_stopped_at_the_output_limit_before_any_text_says_so(
    bot_env: dict[str, str], slack_server: FakeServer, openai_server: FakeServer
) -> None:
    openai_server.script = [StreamReply(deltas=[], finish_reason="length")]
    [reply] = run_slash(bot_env, slack_server)
    assert "limit" in reply["text"] and "MAX_OUTPUT_TOKENS" in reply["text"]
    assert len(openai_server.requests_to(CHAT)) == 1


def test_a_content_filter_stop_is_never_shown_as_complete(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, slack_server: FakeServer
) -> None:
    openai_server.script = [StreamReply(deltas=["Some of ", "it"], finish_reason="content_filter") for _ in range(2)]
    ts = run_mention(conversation_env, slack_api)
    texts = bot_texts(slack_api, ts)
    assert texts[0] == "Some of it" and "filter" in texts[1]
    [reply] = run_slash(conversation_env, slack_server)
    assert "Some of it" in reply["text"] and "filter" in reply["text"]


def test_an_unknown_finish_reason_is_logged_and_taken_as_complete(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, capsys, caplog
) -> None:
    openai_server.script = [StreamReply(deltas=["Done."], finish_reason="new_reason_2027")]
    ts = run_mention(conversation_env, slack_api)
    assert bot_texts(slack_api, ts) == ["Done."]
    line = answer_line(capsys.readouterr().out)
    assert (line["outcome"], line["finish_reason"]) == ("answered", "new_reason_2027")
    assert "new_reason_2027" in caplog.text


BROADCASTS = ["Hey <", "!here> and <!channel>, <!everyone> and <!subteam^S123|team>; ", "ask <@U0FRIEND> too"]


def test_the_models_broadcast_mentions_never_reach_a_thread(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer
) -> None:
    openai_server.script = [StreamReply(deltas=BROADCASTS)]
    ts = run_mention(conversation_env, slack_api)
    [text] = bot_texts(slack_api, ts)
    assert "<!" not in text and "<@U0FRIEND>" in text
    sent = [call.params.get("markdown_text") or "" for call in slack_api.calls if call.method.startswith("chat.")]
    assert "<!" not in "".join(sent)


def test_the_models_broadcast_mentions_never_reach_a_slash_reply(
    bot_env: dict[str, str], slack_server: FakeServer, openai_server: FakeServer
) -> None:
    openai_server.script = [StreamReply(deltas=BROADCASTS)]
    [reply] = run_slash(bot_env, slack_server)
    assert "<!" not in reply["text"] and "<@U0FRIEND>" in reply["text"]


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("channel_not_found", "channel_not_found"),
        ("not_in_channel", "not_in_channel"),
        ("invalid_auth", "invalid_auth"),
        ("drop", "connection"),  # Slack unreachable, the status call's own retries included
    ],
)
def test_no_llm_call_when_slack_cannot_take_the_answer(
    fault: str,
    code: str,
    conversation_env: dict[str, str],
    slack_api: FakeSlackAPI,
    openai_server: FakeServer,
    capsys,
) -> None:
    slack_api.fail_next("agents.sessions.setStatus", fault, count=3)
    run_mention(conversation_env, slack_api)
    assert openai_server.requests_to(CHAT) == []
    # No session was made: none is left "processing", and there is nothing to set "active".
    assert [call.method for call in slack_api.calls] == ["agents.sessions.setStatus"] * len(slack_api.calls)
    line = answer_line(capsys.readouterr().out)
    assert (line["outcome"], line["slack_error"]) == ("slack_error", code)


def test_the_thinking_status_is_cleared_when_nothing_could_be_posted(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI
) -> None:
    slack_api.agent_sessions_error = "not_agent_app"  # the legacy status: an app without the agent view
    slack_api.fail_next("chat.startStream", "msg_blocked")
    slack_api.fail_next("chat.postMessage", "msg_blocked", count=3)
    ts = run_mention(conversation_env, slack_api)
    assert bot_texts(slack_api, ts) == []
    assert slack_api.status(CHANNEL, ts) == ""
    assert slack_api.calls_to("assistant.threads.setStatus")[-1].params["status"] == ""


def test_the_session_is_set_active_when_nothing_could_be_posted(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI
) -> None:
    slack_api.fail_next("chat.startStream", "msg_blocked")
    slack_api.fail_next("chat.postMessage", "msg_blocked", count=3)
    ts = run_mention(conversation_env, slack_api)
    assert bot_texts(slack_api, ts) == []
    session = slack_api.session(CHANNEL, ts)
    assert session is not None and session.statuses == ["processing", "active"]


# The append cadence, shortened from stream.STREAM_INTERVAL_SECONDS (2 s) for the tests below that
# need several appends: their answers and Slack's stream ages are scaled with it.
CADENCE = 0.4


@pytest.fixture
def quick_cadence(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(stream, "STREAM_INTERVAL_SECONDS", CADENCE)
    return CADENCE


def slow_answer(pieces: int = 12, delay: float = 0.08) -> tuple[StreamReply, str]:
    """An answer that streams for about ``pieces * delay`` seconds: past two appends at ``CADENCE``."""
    deltas = [f"Line {i} of a slow answer.\n" for i in range(pieces)]
    return StreamReply(deltas=deltas, delay=delay), "".join(deltas)


@pytest.mark.parametrize(
    ("method", "fault"),
    [
        ("chat.startStream", "disconnect"),  # it made the message: found, finished, and gone on from
        ("chat.startStream", "drop"),  # it made nothing: started again
        ("chat.appendStream", "disconnect"),
        ("chat.appendStream", "drop"),
        ("chat.stopStream", "disconnect"),
        ("chat.stopStream", "drop"),
    ],
)
def test_a_slack_connection_lost_mid_stream_leaves_nothing_open_lost_or_doubled(
    method: str,
    fault: str,
    conversation_env: dict[str, str],
    slack_api: FakeSlackAPI,
    openai_server: FakeServer,
    capsys,
    quick_cadence: float,
) -> None:
    reply, whole = slow_answer()
    openai_server.script = [reply]
    slack_api.fail_next(method, fault)
    ts = run_mention(conversation_env, slack_api)

    assert [call.method for call in slack_api.calls if call.dropped] == [method]  # the connection was lost there
    messages = slack_api.bot_messages(CHANNEL, ts)
    assert "".join(message.text for message in messages) == whole  # whole, and once
    assert all(not message.streaming for message in messages)
    assert answer_line(capsys.readouterr().out)["outcome"] == "answered"


def test_streams_are_rotated_before_slack_ends_them(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, quick_cadence: float
) -> None:
    reply, whole = slow_answer(pieces=14, delay=0.15)  # about 2.1 s
    openai_server.script = [reply]
    # Rotated at the first append from 1 s on (about 1.2 s in): Slack would end a stream at 1.8 s.
    slack_api.stream_max_age = 1.8
    ts = run_mention({**conversation_env, "STREAM_ROTATE_SECONDS": "1"}, slack_api)
    messages = slack_api.bot_messages(CHANNEL, ts)
    assert len(messages) >= 2 and "".join(m.text for m in messages) == whole
    refused = [call for call in slack_api.calls if call.error == "message_not_in_streaming_state"]
    assert refused == []


def test_a_stream_slack_ended_is_finished_and_the_answer_goes_on(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, quick_cadence: float
) -> None:
    reply, whole = slow_answer(pieces=14, delay=0.1)  # about 1.4 s: appends at 0.4, 0.8, 1.2 s
    openai_server.script = [reply]
    slack_api.stream_max_age = 0.6  # ends before our rotation (the default 240 s) would
    ts = run_mention(conversation_env, slack_api)
    messages = slack_api.bot_messages(CHANNEL, ts)
    assert len(messages) >= 2 and "".join(m.text for m in messages) == whole
    assert all(not message.streaming for message in messages)


def test_a_retry_that_shows_nothing_leaves_the_user_what_they_had(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, capsys
) -> None:
    openai_server.script = [
        StreamReply(deltas=["What the user ", "already read", "…"], break_after=2),
        openai_error(401, "invalid_api_key"),  # the retry fails before any text
    ]
    ts = run_mention(conversation_env, slack_api)
    texts = bot_texts(slack_api, ts)
    # What the user saw (the first words went out at once; the rest was still held back) stays.
    assert texts[0] == "What the user " and len(texts) == 2 and "cut short" in texts[1]
    assert slack_api.calls_to("chat.delete") == []
    line = answer_line(capsys.readouterr().out)
    assert (line["outcome"], line["attempts"]) == ("cut_short_invalid_key", 2)


def test_an_empty_last_attempt_after_a_shown_partial_says_it_was_cut_not_that_nothing_came(
    conversation_env: dict[str, str], slack_api: FakeSlackAPI, openai_server: FakeServer, capsys
) -> None:
    openai_server.script = [
        StreamReply(deltas=["Shown ", "then broken", "…"], break_after=2),
        StreamReply(deltas=[], finish_reason="length"),
    ]
    ts = run_mention(conversation_env, slack_api)
    shown, line_text = bot_texts(slack_api, ts)
    assert shown == "Shown " and "cut short" in line_text and "length limit" in line_text
    assert answer_line(capsys.readouterr().out)["outcome"] == "cut_short_length"
