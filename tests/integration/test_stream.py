"""chalicelib.slack.stream.Replier against the fake Slack Web API, through the real slack_sdk.

The clock is the test's: cadence is checked by moving it, never by sleeping.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.deadline import Deadline
from chalicelib.slack import markdown, stream, web
from devkit.fake_slack_api import FAKE_BOT_TOKEN, Call, FakeSlackAPI

DM = "D0123456"
CHANNEL = "C0123456"
USER = "U0001"
TEAM = "T0001"
STREAM_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI() as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


def replier(fake: FakeSlackAPI, clock: Clock, channel: str = DM, seconds: float = 60.0, **kwargs: Any) -> Any:
    root = fake.add_message(channel, "question", user=USER)
    client = web.client(FAKE_BOT_TOKEN, fake.url, Deadline.in_seconds(seconds))
    kwargs.setdefault("recipient_user_id", USER)
    kwargs.setdefault("recipient_team_id", TEAM)
    return stream.Replier(client, channel, root, clock=clock, **kwargs), root


def slack_calls(fake: FakeSlackAPI) -> list[tuple[str, str | None]]:
    """(method, markdown_text or text) of every call, in order."""
    return [(c.method, c.params.get("markdown_text", c.params.get("text"))) for c in fake.calls]


def answer_texts(fake: FakeSlackAPI, channel: str, root: str) -> list[str]:
    return [m.text for m in fake.bot_messages(channel, root)]


def assert_rejoins(texts: list[str], answer: str) -> None:
    """Each message is the next part of ``answer``, give or take a rollover's added lines: a
    closing fence at its end, and the fence's opening line again at the start of the next."""
    position, reopen = 0, ""
    for text in texts:
        assert text.startswith(reopen), (reopen, text[:40])
        text = text[len(reopen) :]
        reopen = ""
        if answer.startswith(text, position):
            position += len(text)
            continue
        for closing in ("```", "\n```"):
            body = text[: -len(closing)]
            fence = markdown.open_fence(answer[: position + len(body)])
            if text.endswith(closing) and answer.startswith(body, position) and fence is not None:
                position += len(body)
                reopen = fence + "\n"
                break
        else:
            raise AssertionError(f"message not from the answer at {position}: {text[:60]!r}")
    assert position == len(answer) and not reopen


def assert_all_accepted(fake: FakeSlackAPI) -> None:
    refused = [(c.method, c.error) for c in fake.calls if not c.ok]
    assert refused == []
    for call in fake.calls:
        assert len(call.params.get("markdown_text") or "") <= markdown.MAX_MARKDOWN_CHARS


# --- cadence ----------------------------------------------------------------------------------------------------------


def test_first_text_at_once_then_one_append_every_two_seconds(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, root = replier(fake, clock)
    assert reply.due_in() is None  # nothing to send: the caller may wait for the LLM alone
    reply.push("Hello")
    assert slack_calls(fake) == [("chat.startStream", "Hello")]
    assert reply.visible and reply.calls == 1

    reply.push(", wor")
    reply.push("ld")
    assert reply.due_in() == pytest.approx(2.0)
    clock.advance(1.9)
    reply.flush_if_due()
    reply.push(".")
    assert [m for m, _ in slack_calls(fake)] == ["chat.startStream"]  # nothing before 2 s
    assert reply.due_in() == pytest.approx(0.1)

    clock.advance(0.1)
    reply.flush_if_due()
    assert slack_calls(fake)[1:] == [("chat.appendStream", ", world.")]
    reply.push(" Bye")
    assert reply.due_in() == pytest.approx(2.0)
    assert len(fake.calls_to("chat.appendStream")) == 1

    reply.finish()  # the rest goes at once with the stop
    assert slack_calls(fake)[2:] == [("chat.stopStream", " Bye")]
    assert answer_texts(fake, DM, root) == ["Hello, world. Bye"]
    assert fake.bot_messages(DM, root)[0].stream == "stopped"
    assert reply.calls == 3 and reply.posted_ts == [fake.bot_messages(DM, root)[0].ts]
    reply.finish()  # again: nothing more
    assert reply.calls == 3


def test_blank_text_waits_for_something_to_show(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, _root = replier(fake, clock)
    reply.push("\n")
    assert reply.due_in() is None and fake.calls == []
    reply.push("Hi")
    assert slack_calls(fake) == [("chat.startStream", "\nHi")]
    reply.push("  \n")
    clock.advance(5)
    reply.flush_if_due()
    reply.finish()
    assert slack_calls(fake)[1:] == [("chat.stopStream", None)]  # trailing blanks are not worth a call


def test_in_a_dm_no_recipient_is_sent(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, _ = replier(fake, clock, channel=DM)
    reply.push("hi")
    params = fake.calls_to("chat.startStream")[0].params
    assert "recipient_user_id" not in params and "recipient_team_id" not in params


def test_in_a_channel_the_recipient_is_sent(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, root = replier(fake, clock, channel=CHANNEL)
    reply.push("hi")
    reply.finish()
    params = fake.calls_to("chat.startStream")[0].params
    assert (params["recipient_user_id"], params["recipient_team_id"]) == (USER, TEAM)
    assert answer_texts(fake, CHANNEL, root) == ["hi"]
    assert not reply.fallback


# --- rollover ---------------------------------------------------------------------------------------------------------


def japanese_answer() -> str:
    """About 30,000 characters: Japanese paragraphs (3 bytes a character) around a long code block."""
    sentence = "東京の散歩道は季節ごとに表情が変わり、歩くたびに新しい発見があります。"
    paragraphs = [f"## 第{n}章\n\n" + sentence * 24 for n in range(1, 25)]
    code = "```python\n" + "".join(f"print('行 {n}: こんにちは、世界')\n" for n in range(450)) + "```\n"
    text = "\n\n".join(paragraphs[:8]) + "\n\n" + code + "\n" + "\n\n".join(paragraphs[8:])
    assert len(text) >= 30_000
    return text


def test_a_long_japanese_answer_rolls_over_before_slack_refuses_it(fake: FakeSlackAPI, clock: Clock) -> None:
    """The fake refuses a streamed message over 11,000 bytes: one stream could not hold this."""
    text = japanese_answer()
    appended_at: dict[str, list[float]] = {}

    def record(call: Call) -> None:  # runs before the answer goes back: the client is waiting
        if call.method == "chat.appendStream" and call.ok:
            appended_at.setdefault(call.params["ts"], []).append(clock())

    fake.on_call = record
    reply, root = replier(fake, clock)
    for start in range(0, len(text), 40):  # an LLM's pace: 40 characters every 0.25 s
        reply.push(text[start : start + 40])
        clock.advance(0.25)
        reply.flush_if_due()
    reply.finish()

    assert_all_accepted(fake)
    messages = fake.bot_messages(DM, root)
    texts = [m.text for m in messages]
    assert all(m.stream == "stopped" for m in messages)
    assert len(texts) >= 10  # 30,000 characters × 3 bytes / 9,000
    assert all(len(t.encode()) <= stream.STREAM_MAX_BYTES for t in texts)
    assert_rejoins(texts, text)  # nothing lost, nothing repeated
    reopened = [t for t in texts[1:] if t.startswith("```python\n")]
    assert reopened, "the code block cut by a rollover is reopened"
    assert all(texts[texts.index(t) - 1].endswith("```") for t in reopened)
    assert all(t.count("```") % 2 == 0 for t in texts)  # every message renders on its own
    assert all(t.endswith(("\n\n", "```")) for t in texts[:-1])  # ended at a paragraph, or a full code block
    for times in appended_at.values():
        assert all(b - a >= stream.STREAM_INTERVAL_SECONDS for a, b in itertools.pairwise(times))
    assert reply.posted_ts == [m.ts for m in messages]
    assert reply.calls == len(fake.calls)  # every call the fake saw came from the replier


def test_a_whole_answer_pushed_at_once_is_split_into_streams(fake: FakeSlackAPI, clock: Clock) -> None:
    text = japanese_answer()
    reply, root = replier(fake, clock)
    reply.push(text)
    reply.finish()
    assert_all_accepted(fake)
    texts = answer_texts(fake, DM, root)
    assert_rejoins(texts, text)
    # A full message costs a start and a stop, nothing more.
    assert len(fake.calls) == 2 * len(texts)


def test_a_stream_slack_finds_too_long_goes_on_in_a_new_one(clock: Clock) -> None:
    with FakeSlackAPI(stream_byte_limit=5_000) as fake:  # a stricter Slack than we planned for
        reply, root = replier(fake, clock)
        text = "".join(f"line {n} of a long answer\n" for n in range(600))
        for start in range(0, len(text), 500):
            reply.push(text[start : start + 500])
            clock.advance(2)
            reply.flush_if_due()
        reply.finish()
        texts = answer_texts(fake, DM, root)
        assert "".join(texts) == text
        assert len(texts) >= 3
        refused = {c.error for c in fake.calls if not c.ok}
        assert refused == {"msg_too_long"}


def test_a_code_block_filling_a_stream_keeps_room_to_close_its_fence(fake: FakeSlackAPI, clock: Clock) -> None:
    # Found by the properties: a message filled to 8,999 bytes inside a code block (a delta with
    # no line break to end it at) had no room left for the closing fence added when it was cut,
    # and stopped at 9,003 bytes, past STREAM_MAX_BYTES.
    reply, root = replier(fake, clock)
    reply.push("```\n" + "x" * 100)
    reply.push("x" * 8895)
    clock.advance(2)
    reply.flush_if_due()
    reply.push("x" * 10)
    reply.finish()
    assert_all_accepted(fake)
    texts = answer_texts(fake, DM, root)
    assert [len(t.encode()) for t in texts] == [stream.STREAM_MAX_BYTES, 17]  # cut where the closing line fits
    assert texts[0].endswith("x\n```") and texts[1] == "```\n" + "x" * 13
    assert_rejoins(texts, "```\n" + "x" * 9005)


@pytest.mark.parametrize(("fallback", "words"), [(False, 1400), (True, 1900)])
def test_blank_text_at_a_rollover_goes_on_in_the_next_message(
    fake: FakeSlackAPI, clock: Clock, fallback: bool, words: int
) -> None:
    # Found by the properties: a message nearly full ended at the line break that starts the next
    # delta, and that "\n" (a blank piece, never sent) was lost between the two messages.
    if fallback:
        fake.fail_next("chat.startStream", error="not_allowed_token_type")
    reply, root = replier(fake, clock)
    text = ["word " * words, "\nabc def", " ghi"]  # the first is past three quarters of a message
    reply.push(text[0])
    clock.advance(3.5)
    reply.push(text[1])
    clock.advance(3.5)
    reply.push(text[2])
    reply.finish()
    texts = answer_texts(fake, DM, root)
    assert texts == [text[0], "\nabc def ghi"]
    assert all(call.params.get("markdown_text") != "\n" for call in fake.calls)  # blank text is never sent alone


# --- fallback ---------------------------------------------------------------------------------------------------------


def test_when_streaming_is_refused_it_posts_and_updates_every_three_seconds(fake: FakeSlackAPI, clock: Clock) -> None:
    fake.fail_next("chat.startStream", error="not_allowed_token_type")
    reply, root = replier(fake, clock)
    reply.push("Hello")
    assert slack_calls(fake) == [("chat.startStream", "Hello"), ("chat.postMessage", "Hello")]
    assert reply.fallback and reply.visible

    reply.push(" world")
    clock.advance(2.5)
    reply.flush_if_due()
    assert len(fake.calls) == 2  # not before 3 s
    assert reply.due_in() == pytest.approx(0.5)
    clock.advance(0.5)
    reply.flush_if_due()
    assert slack_calls(fake)[2:] == [("chat.update", "Hello world")]

    reply.push("!")
    reply.finish()
    assert slack_calls(fake)[3:] == [("chat.update", "Hello world!")]
    assert answer_texts(fake, DM, root) == ["Hello world!"]
    assert reply.calls == 4


def test_a_long_fallback_answer_rolls_over_before_twelve_thousand_characters(fake: FakeSlackAPI, clock: Clock) -> None:
    fake.fail_next("chat.startStream", error="not_allowed_token_type")
    reply, root = replier(fake, clock, channel=CHANNEL)
    text = "".join(f"Paragraph {n}. " + "word " * 60 + "\n\n" for n in range(100))
    assert len(text) > 30_000
    for start in range(0, len(text), 1000):
        reply.push(text[start : start + 1000])
        clock.advance(1)
        reply.flush_if_due()
    reply.finish()
    refused = [(c.method, c.error) for c in fake.calls if not c.ok]
    assert refused == [("chat.startStream", "not_allowed_token_type")]
    texts = answer_texts(fake, CHANNEL, root)
    assert len(texts) >= 3
    assert all(len(t) <= markdown.MAX_MARKDOWN_CHARS for t in texts)
    assert "".join(texts) == text
    assert all(t.endswith("\n\n") for t in texts[:-1])  # cut between paragraphs


def test_a_fallback_message_full_of_code_keeps_room_to_close_its_fence(fake: FakeSlackAPI, clock: Clock) -> None:
    # Found in review: a code block filling a posted message to 12,000 characters left no room
    # for the closing fence added at the cut, and chat.update was refused (msg_too_long).
    fake.fail_next("chat.startStream", error="not_allowed_token_type")
    reply, root = replier(fake, clock, channel=CHANNEL)
    reply.push("```python\n")
    clock.advance(3.1)
    reply.push("print(1234567890)\n" * 666)  # 11,988 characters, inside the block
    clock.advance(3.1)
    reply.push("\nprint(2)\n")
    reply.finish()
    assert [(c.method, c.error) for c in fake.calls if not c.ok] == [("chat.startStream", "not_allowed_token_type")]
    texts = answer_texts(fake, CHANNEL, root)
    assert all(len(t) <= markdown.MAX_MARKDOWN_CHARS for t in texts)
    assert texts[0].endswith("```") and texts[1].startswith("```python\n")


def test_a_rate_limited_start_falls_back_to_posting(fake: FakeSlackAPI, clock: Clock) -> None:
    fake.fail_next("chat.startStream", "ratelimited", retry_after=600)  # beyond the deadline: refused at once
    reply, root = replier(fake, clock)
    reply.push("hi")
    assert [m for m, _ in slack_calls(fake)] == ["chat.startStream", "chat.postMessage"]
    reply.push(" there")
    reply.finish()
    assert answer_texts(fake, DM, root) == ["hi there"]


def test_missing_recipient_in_a_channel_falls_back_to_posting(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, root = replier(fake, clock, channel=CHANNEL, recipient_user_id=None, recipient_team_id=None)
    reply.push("hi")
    reply.finish()
    assert fake.calls_to("chat.startStream")[0].error == "missing_recipient_user_id"
    assert answer_texts(fake, CHANNEL, root) == ["hi"]


# --- trouble ----------------------------------------------------------------------------------------------------------


def test_an_expired_stream_is_finished_with_an_update_and_the_answer_goes_on(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, root = replier(fake, clock)
    reply.push("```python\nprint(1)\n")
    fake.expire_streams()
    reply.push("print(2)\n")
    clock.advance(2)
    reply.flush_if_due()
    first = fake.bot_messages(DM, root)[0]
    assert [c.error for c in fake.calls_to("chat.appendStream")] == ["message_not_in_streaming_state"]
    assert fake.calls_to("chat.update")[0].params["ts"] == first.ts
    assert first.text == "```python\nprint(1)\nprint(2)\n```"  # the code block is closed there...

    reply.push("print(3)\n```\nDone.")  # ...and reopened in the new message, at once
    assert [m for m, _ in slack_calls(fake)][-1] == "chat.startStream"
    fake.expire_streams()
    reply.finish()  # the stop is refused too: finished with chat.update
    texts = answer_texts(fake, DM, root)
    assert texts == ["```python\nprint(1)\nprint(2)\n```", "```python\nprint(3)\n```\nDone."]
    assert [c.error for c in fake.calls_to("chat.stopStream")] == ["message_not_in_streaming_state"]
    assert len(fake.calls_to("chat.update")) == 2


def test_a_rate_limited_append_keeps_its_text_for_the_next_turn(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, root = replier(fake, clock, seconds=20)
    reply.push("one")
    fake.fail_next("chat.appendStream", "ratelimited", retry_after=60)  # longer than the deadline allows
    reply.push(" two")
    clock.advance(2)
    reply.flush_if_due()
    assert [c.error for c in fake.calls_to("chat.appendStream")] == ["ratelimited"]
    assert reply.due_in() == pytest.approx(2.0)
    reply.push(" three")
    clock.advance(2)
    reply.flush_if_due()
    reply.finish()
    assert answer_texts(fake, DM, root) == ["one two three"]


def test_a_lost_append_is_recovered_with_the_whole_text_never_sent_again(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, root = replier(fake, clock)
    reply.push("partial")
    fake.fail_next("chat.appendStream", "disconnect")  # applied, but its answer was lost
    reply.push(" answer")
    clock.advance(2)
    reply.flush_if_due()
    reply.push(" and more")
    reply.finish()
    assert answer_texts(fake, DM, root) == ["partial answer", " and more"]
    assert len(fake.calls_to("chat.appendStream")) == 1  # not sent again: the update set the whole text
    assert all(not message.streaming for message in fake.bot_messages(DM, root))


def test_a_lost_connection_that_cannot_be_recovered_is_raised_once_and_a_notice_can_still_be_posted(
    fake: FakeSlackAPI, clock: Clock
) -> None:
    reply, root = replier(fake, clock)
    reply.push("partial")
    fake.fail_next("chat.appendStream", "disconnect")
    fake.fail_next("chat.update", "disconnect", count=3)  # the recovery's own call is lost too
    reply.push(" answer")
    clock.advance(2)
    with pytest.raises(web.SlackError) as caught:
        reply.flush_if_due()
    assert caught.value.code == "connection"
    reply.push(" more")  # spent: nothing more is sent
    assert reply.due_in() is None
    calls_before = len(fake.calls)
    reply.finish()  # stops the stream once more (safe to repeat), sends nothing
    assert [m for m, _ in slack_calls(fake)[calls_before:]] == ["chat.stopStream"]
    ts = reply.post_notice("The answer was cut short: Slack could not be reached.")
    assert fake.calls[-1].params["text"] == "The answer was cut short: Slack could not be reached."
    assert reply.posted_ts[-1] == ts
    assert len(fake.calls_to("chat.appendStream")) == 1  # not sent again
    assert [m.stream for m in fake.bot_messages(DM, root)] == ["stopped", None]


def test_a_notice_comes_after_the_answer(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, root = replier(fake, clock)
    reply.push("Part of an answer")
    reply.push(", and more")
    reply.post_notice("The AI service stopped answering part-way.")
    assert [m for m, _ in slack_calls(fake)] == ["chat.startStream", "chat.stopStream", "chat.postMessage"]
    assert answer_texts(fake, DM, root) == ["Part of an answer, and more", "The AI service stopped answering part-way."]
    assert len(reply.posted_ts) == 2


def test_a_start_that_may_have_landed_is_not_posted_again(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, _root = replier(fake, clock)
    fake.fail_next("chat.startStream", "disconnect")
    with pytest.raises(web.SlackError) as caught:
        reply.push("hello")
    assert caught.value.code == "connection"
    assert fake.calls_to("chat.postMessage") == []  # no fallback copy of what may already show
    assert not reply.visible


# --- the answer core's needs: rotation, restart, lost calls, broadcasts -----------------------------------------------


def test_a_stream_is_rotated_before_it_reaches_rotate_seconds_and_a_code_block_reopens(
    fake: FakeSlackAPI, clock: Clock
) -> None:
    reply, root = replier(fake, clock, rotate_seconds=240.0)
    reply.push("Here:\n```python\nx = 1\n")
    clock.advance(239.0)
    reply.push("y = 2\n")
    reply.flush_if_due()
    assert len(fake.calls_to("chat.startStream")) == 1  # not old enough yet
    clock.advance(1.0)
    reply.push("z = 3\n```\nDone.")
    reply.flush_if_due()
    reply.finish()
    first, second = answer_texts(fake, DM, root)
    assert first == "Here:\n```python\nx = 1\ny = 2\n```"
    assert second == "```python\nz = 3\n```\nDone."
    assert [c for c in fake.calls if not c.ok] == []


def test_restart_replaces_what_the_attempt_showed_once_the_next_one_shows(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, root = replier(fake, clock)
    reply.push("a partial answer")
    assert reply.visible and answer_texts(fake, DM, root) == ["a partial answer"]
    reply.push(" that breaks")  # held back by the cadence: forgotten too
    reply.restart()
    # Until the next attempt shows text, the user keeps what they had (stopped, not spinning).
    assert answer_texts(fake, DM, root) == ["a partial answer"]
    assert all(not message.streaming for message in fake.bot_messages(DM, root))
    reply.push("the whole answer")
    assert answer_texts(fake, DM, root) == ["the whole answer"]
    reply.finish()
    assert answer_texts(fake, DM, root) == ["the whole answer"] and len(reply.posted_ts) == 1
    assert all(not message.streaming for message in fake.bot_messages(DM, root))


def test_a_partial_that_cannot_be_deleted_says_it_was_replaced(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, root = replier(fake, clock)
    reply.push("a partial answer")
    reply.restart()
    fake.fail_next("chat.delete", "cant_delete_message")
    reply.push("the whole answer")
    reply.finish()
    assert answer_texts(fake, DM, root) == [stream.REPLACED, "the whole answer"]


def test_a_lost_start_never_takes_another_jobs_message(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, root = replier(fake, clock, bot_user_id=fake.bot_user_id, asked_ts="1.000000")
    fake.fail_next("chat.startStream", "drop")  # ours never took effect...
    other = fake.add_message(DM, "another job's answer", thread_ts=root, bot=True)  # ...another job's did
    reply.push("our answer")
    reply.finish()
    assert fake.text_of(DM, other) == "another job's answer"
    assert answer_texts(fake, DM, root) == ["another job's answer", "our answer"]


def test_a_lost_start_that_made_a_message_is_finished_not_posted_twice(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, root = replier(fake, clock, bot_user_id=fake.bot_user_id, asked_ts="1.000000")
    fake.fail_next("chat.startStream", "disconnect")  # applied, then the answer was lost
    reply.push("first part. ")
    reply.push("second part.")
    reply.finish()
    assert "".join(answer_texts(fake, DM, root)) == "first part. second part."
    assert len(fake.calls_to("chat.update")) == 1


def test_a_broadcast_split_across_deltas_is_defused(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, root = replier(fake, clock)
    for delta in ["ping <", "!here> and <!chan", "nel> but <@U0FRIEND>"]:
        reply.push(delta)
        clock.advance(2.0)
        reply.flush_if_due()
    reply.finish()
    [text] = answer_texts(fake, DM, root)
    assert "<!" not in text and "<@U0FRIEND>" in text


def test_a_recovered_start_replaces_the_earlier_attempt_too(fake: FakeSlackAPI, clock: Clock) -> None:
    reply, root = replier(fake, clock, bot_user_id=fake.bot_user_id, asked_ts="1.000000")
    reply.push("a partial")
    reply.restart()
    fake.fail_next("chat.startStream", "disconnect")  # the new attempt's start lands; its answer is lost
    reply.push("the whole answer")
    reply.finish()
    assert answer_texts(fake, DM, root) == ["the whole answer"]
