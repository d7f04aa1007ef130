"""The interactivity parser (``chalicelib.slack.interactions``) and the feedback buttons' blocks.

Any bytes, any form, any JSON payload: a decision or ``MalformedInteraction``, never another
exception (hypothesis, derandomized). The blocks ``chalicelib.feedback`` makes pass the checks
of devkit's fake Slack, which refuses what Slack refuses.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib import feedback
from chalicelib.slack import messages
from chalicelib.slack.interactions import (
    MAX_VALUE_CHARS,
    FeedbackVote,
    Ignored,
    MalformedInteraction,
    button_value,
    parse,
    read_value,
)
from devkit import slack_model, slack_requests
from tests.conftest import examples

PROPERTY = settings(max_examples=examples(500), deadline=None, derandomize=True, database=None)
URL = "https://hooks.slack.com/actions/T0001/1/abc"


def form(payload: dict[str, Any] | str) -> bytes:
    return slack_requests.interaction_form(payload)


def test_a_feedback_click_is_a_vote_with_its_answer_voter_and_model() -> None:
    payload = slack_requests.feedback_payload(button_value("down", "gpt-5:mini"), "1700000000.000100", URL)
    assert parse(form(payload)) == FeedbackVote(
        team_id=slack_requests.TEAM_ID,
        channel_id=slack_requests.CHANNEL_ID,
        user_id=slack_requests.USER_ID,
        message_ts="1700000000.000100",
        vote="down",
        model="gpt-5:mini",  # a colon in the model's name stays in it
        response_url=URL,
    )


def test_an_org_wide_app_gets_its_team_from_the_user() -> None:
    payload = slack_requests.feedback_payload("up:m", "1.2", URL, team=None)
    del payload["response_url"]
    vote = parse(form(payload))
    assert isinstance(vote, FeedbackVote)
    assert (vote.team_id, vote.response_url) == (slack_requests.TEAM_ID, None)


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "view_submission", "view": {}},
        {"type": "shortcut"},
        slack_requests.feedback_payload("up:m", "1.2", URL, actions=[{"type": "button", "value": "x"}]),
    ],
)
def test_other_interactions_are_ignored(payload: dict[str, Any]) -> None:
    assert isinstance(parse(form(payload)), Ignored)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "form has no single payload field"),
        (b"payload=1&payload=2", "form has no single payload field"),
        (b"payload=%7B", "payload is not JSON"),
        (form("[" * 100_000), "payload is not JSON"),
        (form({"type": 3}), "payload has no type"),
        (form({"type": "block_actions", "actions": []}), "block_actions has no actions"),
        (form(slack_requests.feedback_payload("up:", "1.2", URL)), "feedback_buttons action has no vote in its value"),
        (form(slack_requests.feedback_payload("up:m", "Ev0", URL)), "block_actions has no message.ts"),
        (form(slack_requests.feedback_payload("up:m", "1.2", URL, channel=None)), "block_actions has no channel"),
        (form(slack_requests.feedback_payload("up:m", "1.2", URL, user={"id": ""})), "block_actions has no user.id"),
    ],
)
def test_a_malformed_body_says_why(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedInteraction, match=f"^{reason}$"):
        parse(body)


@PROPERTY
@given(vote=st.sampled_from(["up", "down"]), model=st.text(min_size=1, max_size=2500))
def test_a_button_value_reads_back_within_slacks_limit(vote: Any, model: str) -> None:
    value = button_value(vote, model)
    assert len(value) <= MAX_VALUE_CHARS
    assert read_value(value) == (vote, value.partition(":")[2])


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# Near-valid payloads: a real click with one field replaced by anything.
near_valid = st.builds(
    lambda name, value: {**slack_requests.feedback_payload("up:m", "1.2", URL), name: value},
    st.sampled_from(["type", "actions", "message", "channel", "user", "team", "response_url"]),
    json_values,
)


@PROPERTY
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.lists(st.tuples(st.text(max_size=10), st.text(max_size=30)), max_size=20).map(
            lambda f: urlencode(f).encode()
        ),
        json_values.map(lambda v: form(json.dumps(v))),
        near_valid.map(form),
    )
)
def test_any_body_is_a_decision_or_a_reason(body: bytes) -> None:
    try:
        decision = parse(body)
    except MalformedInteraction as error:
        assert str(error) and len(str(error)) < 100
        return
    assert isinstance(decision, (FeedbackVote, Ignored))


# --- the blocks ----------------------------------------------------------------------------------------------------


def test_the_buttons_are_blocks_slack_takes_and_carry_the_vote_and_model() -> None:
    block = feedback.buttons("m" * 3000).to_dict()
    assert slack_model.check_blocks([block]) == [block]
    [element] = block["elements"]
    assert read_value(element["positive_button"]["value"]) == ("up", "m" * (MAX_VALUE_CHARS - 3))
    assert read_value(element["negative_button"]["value"]) == ("down", "m" * (MAX_VALUE_CHARS - 5))


def test_a_slash_reply_with_buttons_fences_the_question_past_its_backticks() -> None:
    reply = messages.answer("a ```b``` c", "**yes** <!here>", "ephemeral")
    with_buttons = feedback.with_buttons(reply, "a ```b``` c", "**yes** <!here>", "gpt-x")
    assert with_buttons["text"] == reply["text"] and with_buttons["response_type"] == "ephemeral"
    markdown_block = with_buttons["blocks"][0]
    assert markdown_block["type"] == "markdown"
    assert markdown_block["text"].startswith("````\na ```b``` c\n````\n**yes** ")
    assert "<!here>" not in markdown_block["text"]  # no broadcast from the model's text
    assert slack_model.check_blocks(with_buttons["blocks"]) is not None


def test_an_answer_past_the_markdown_blocks_limit_keeps_its_reply_without_buttons() -> None:
    answer = "x" * feedback.MAX_MARKDOWN_BLOCK_CHARS
    reply = messages.answer("q", answer, "ephemeral")
    assert feedback.with_buttons(reply, "q", answer, "gpt-x") is reply
