"""devkit.fake_slack_api (and its model, devkit.slack_model), driven by the real slack_sdk WebClient over loopback.

The fake is only worth having if it refuses what Slack refuses and accepts what Slack
accepts, so each refusal in its contract has a test here, next to the good calls: streams
add up, paging returns every message once, the bot's posts come back with its bot_id.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from devkit import slack_requests
from devkit.fake_slack_api import FAKE_BOT_TOKEN, Call, FakeSlackAPI
from devkit.slack_model import FALLBACK_TEXT_CHARS, MAX_MARKDOWN_CHARS, STREAMING_STATE_CONFLICT, TOMBSTONE_TEXT
from tests.conftest import ROOT

CHANNEL = "C2147483705"
DM = "D2147483705"
USER = "U2147483697"
TEAM = "T0001"


pytestmark = pytest.mark.usefixtures("no_proxy")


@pytest.fixture
def slack() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI() as fake:
        yield fake


def web(fake: FakeSlackAPI, token: str | None = FAKE_BOT_TOKEN, **options: Any) -> WebClient:
    return WebClient(token=token, base_url=fake.url, timeout=10, **options)


@pytest.fixture
def client(slack: FakeSlackAPI) -> WebClient:
    return web(slack)


def refusal(call: Any) -> str:
    with pytest.raises(SlackApiError) as raised:
        call()
    assert raised.value.response.status_code == 200
    return str(raised.value.response["error"])


# --- auth -------------------------------------------------------------------------------------------------------------


def test_auth_test_names_the_bot(client: WebClient) -> None:
    answer = client.auth_test()
    assert answer["user_id"] == "UBOT0001" and answer["bot_id"] == "BBOT0001" and answer["team_id"] == TEAM


def test_a_missing_or_wrong_token_is_refused(slack: FakeSlackAPI) -> None:
    assert refusal(lambda: web(slack, token=None).chat_postMessage(channel=CHANNEL, text="hi")) == "not_authed"
    assert (
        refusal(lambda: web(slack, token="xoxb-wrong").chat_postMessage(channel=CHANNEL, text="hi")) == "invalid_auth"
    )
    assert slack.messages(CHANNEL) == []
    # The token is never part of what the fake records.
    assert all("token" not in call.params and "xoxb-wrong" not in json.dumps(call.params) for call in slack.calls)


# --- chat.postMessage and chat.update ---------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing:UserWarning")  # markdown_text only
def test_post_message_content_rules(slack: FakeSlackAPI, client: WebClient) -> None:
    assert refusal(lambda: client.chat_postMessage(channel=CHANNEL, text="a", markdown_text="**a**")) == (
        "markdown_text_conflict"
    )
    assert refusal(lambda: client.chat_postMessage(channel=CHANNEL)) == "no_text"
    too_long = "x" * (MAX_MARKDOWN_CHARS + 1)
    assert refusal(lambda: client.chat_postMessage(channel=CHANNEL, markdown_text=too_long)) == "msg_too_long"
    assert refusal(lambda: client.chat_postMessage(channel=CHANNEL, text="x" * 40_001)) == "msg_too_long"
    assert slack.messages(CHANNEL) == []

    posted = client.chat_postMessage(channel=CHANNEL, markdown_text="x" * MAX_MARKDOWN_CHARS)
    [message] = slack.messages(CHANNEL)
    assert message.ts == posted["ts"] and message.markdown and len(message.text) == MAX_MARKDOWN_CHARS
    assert message.user == "UBOT0001" and message.bot_id == "BBOT0001"


def test_update_replaces_the_bots_text_only(slack: FakeSlackAPI, client: WebClient) -> None:
    root = slack.add_message(CHANNEL, "<@UBOT0001> question", user=USER)
    ts = client.chat_postMessage(channel=CHANNEL, thread_ts=root, text="Thinking…")["ts"]
    client.chat_update(channel=CHANNEL, ts=ts, markdown_text="**the answer**")
    assert slack.visible_text(CHANNEL, root) == ["<@UBOT0001> question", "**the answer**"]
    assert slack.thread(CHANNEL, root)[1].edited

    assert refusal(lambda: client.chat_update(channel=CHANNEL, ts=root, text="hijacked")) == "cant_update_message"
    assert refusal(lambda: client.chat_update(channel=CHANNEL, ts="1.000001", text="x")) == "message_not_found"
    assert refusal(lambda: client.chat_update(channel=CHANNEL, ts=ts, text="a", markdown_text="b")) == (
        "markdown_text_conflict"
    )


def test_new_messages_get_unique_increasing_ts_even_after_a_seed_from_the_future(
    slack: FakeSlackAPI, client: WebClient
) -> None:
    future = slack.add_message(CHANNEL, "from the future", ts="9999999999.000000")
    posted = [client.chat_postMessage(channel=CHANNEL, text=str(i))["ts"] for i in range(5)]
    assert len(set(posted)) == 5
    assert [Decimal(ts) for ts in posted] == sorted(Decimal(ts) for ts in posted)
    assert Decimal(posted[0]) > Decimal(future)


# --- streaming --------------------------------------------------------------------------------------------------------


def test_a_stream_adds_up_and_shows_as_the_bots_reply(slack: FakeSlackAPI, client: WebClient) -> None:
    root = slack.add_message(DM, "hello", user=USER)
    slack.fail_next("chat.appendStream", "ratelimited", retry_after=0)  # refused calls add nothing
    streamer = client.chat_stream(channel=DM, thread_ts=root, buffer_size=1)
    streamer.append(markdown_text="# Title\n")
    [message] = slack.bot_messages(DM, root)
    assert message.streaming and message.text == "# Title\n"

    with pytest.raises(SlackApiError):
        streamer.append(markdown_text="kept ")
    streamer.append(markdown_text="東京は")  # ChatStream kept the refused text in its buffer and sends it now
    streamer.stop(markdown_text="晴れ。")
    [message] = slack.bot_messages(DM, root)
    assert message.text == "# Title\nkept 東京は晴れ。"
    assert not message.streaming and message.stream == "stopped"
    assert message.user == "UBOT0001" and message.thread_ts == root

    # The raw methods: markdown_text and chunks both count.
    ts = client.chat_startStream(channel=DM, thread_ts=root, markdown_text="a")["ts"]
    client.chat_appendStream(channel=DM, ts=ts, chunks=[{"type": "markdown_text", "text": "b"}])
    client.chat_stopStream(channel=DM, ts=ts, markdown_text="c")
    assert slack.visible_text(DM, root) == ["hello", "# Title\nkept 東京は晴れ。", "abc"]


def test_start_stream_in_a_channel_needs_the_recipient(slack: FakeSlackAPI, client: WebClient) -> None:
    root = slack.add_message(CHANNEL, "<@UBOT0001> hi", user=USER)
    assert refusal(lambda: client.chat_startStream(channel=CHANNEL, thread_ts=root, markdown_text="x")) == (
        "missing_recipient_user_id"
    )
    assert refusal(
        lambda: client.chat_startStream(channel=CHANNEL, thread_ts=root, markdown_text="x", recipient_user_id=USER)
    ) == ("missing_recipient_team_id")
    assert slack.bot_messages(CHANNEL, root) == []
    client.chat_startStream(
        channel=CHANNEL, thread_ts=root, markdown_text="x", recipient_user_id=USER, recipient_team_id=TEAM
    )
    assert [m.text for m in slack.bot_messages(CHANNEL, root)] == ["x"]


def test_stream_size_limits() -> None:
    with FakeSlackAPI(stream_byte_limit=100) as slack:
        client = web(slack)
        root = slack.add_message(DM, "hi", user=USER)
        too_long = "x" * (MAX_MARKDOWN_CHARS + 1)
        assert refusal(lambda: client.chat_startStream(channel=DM, thread_ts=root, markdown_text=too_long)) == (
            "msg_too_long"
        )
        ts = client.chat_startStream(channel=DM, thread_ts=root, markdown_text="晴" * 30)["ts"]  # 90 bytes
        chunk = [{"type": "markdown_text", "text": too_long}]
        assert refusal(lambda: client.chat_appendStream(channel=DM, ts=ts, chunks=chunk)) == "msg_too_long"
        # 4 more characters are 102 bytes in all: over the streamed message's cap.
        assert refusal(lambda: client.chat_appendStream(channel=DM, ts=ts, markdown_text="晴れ。。")) == "msg_too_long"
        assert refusal(lambda: client.chat_stopStream(channel=DM, ts=ts, markdown_text="晴れ。。")) == "msg_too_long"
        client.chat_appendStream(channel=DM, ts=ts, markdown_text="123")  # 93 bytes: fine
        client.chat_stopStream(channel=DM, ts=ts)
        assert slack.visible_text(DM, root)[1] == "晴" * 30 + "123"
        assert refusal(lambda: client.chat_appendStream(channel=DM, ts=ts)) == "message_not_in_streaming_state"


def test_append_or_stop_after_the_end_or_expiry_is_refused_and_update_finishes_the_message(
    slack: FakeSlackAPI, client: WebClient
) -> None:
    root = slack.add_message(DM, "hi", user=USER)
    done = client.chat_startStream(channel=DM, thread_ts=root, markdown_text="one")["ts"]
    client.chat_stopStream(channel=DM, ts=done)
    assert refusal(lambda: client.chat_appendStream(channel=DM, ts=done, markdown_text="x")) == (
        "message_not_in_streaming_state"
    )
    assert refusal(lambda: client.chat_stopStream(channel=DM, ts=done)) == "message_not_in_streaming_state"

    open_ts = client.chat_startStream(channel=DM, thread_ts=root, markdown_text="two, part 1")["ts"]
    slack.expire_streams()
    assert refusal(lambda: client.chat_appendStream(channel=DM, ts=open_ts, markdown_text=" part 2")) == (
        "message_not_in_streaming_state"
    )
    assert refusal(lambda: client.chat_stopStream(channel=DM, ts=open_ts)) == "message_not_in_streaming_state"
    assert slack.thread(DM, root)[2].stream == "expired"
    client.chat_update(channel=DM, ts=open_ts, markdown_text="two, part 1 part 2")
    assert slack.visible_text(DM, root) == ["hi", "one", "two, part 1 part 2"]
    assert refusal(lambda: client.chat_appendStream(channel=DM, ts="1.000001", markdown_text="x")) == (
        "message_not_found"
    )


def test_append_without_text_and_start_without_a_thread_are_refused(slack: FakeSlackAPI, client: WebClient) -> None:
    root = slack.add_message(DM, "hi", user=USER)
    ts = client.chat_startStream(channel=DM, thread_ts=root)["ts"]  # starting empty is allowed
    assert refusal(lambda: client.chat_appendStream(channel=DM, ts=ts)) == "no_text"
    assert refusal(lambda: client.api_call("chat.startStream", json={"channel": DM})) == "invalid_arguments"


# --- conversations.replies --------------------------------------------------------------------------------------------


def test_replies_page_oldest_first_and_include_the_bots_posts() -> None:
    with FakeSlackAPI(page_size=4) as slack:
        client = web(slack)
        root = slack.add_message(CHANNEL, "<@UBOT0001> first", user=USER)
        for i in range(5):
            client.chat_postMessage(channel=CHANNEL, thread_ts=root, markdown_text=f"answer {i}")
            slack.add_message(CHANNEL, f"<@UBOT0001> follow-up {i}", user=USER, thread_ts=root)
        slack.add_message(CHANNEL, "another thread", user=USER)

        # Iterating a SlackResponse refills the same object: keep each page's data as it comes.
        pages = [page.data for page in client.conversations_replies(channel=CHANNEL, ts=root)]
        assert [len(page["messages"]) for page in pages] == [4, 4, 3]
        assert [page["has_more"] for page in pages] == [True, True, False]
        messages = [message for page in pages for message in page["messages"]]
        assert [m["text"] for m in messages] == [
            "<@UBOT0001> first",
            *[text for i in range(5) for text in (f"answer {i}", f"<@UBOT0001> follow-up {i}")],
        ]
        assert len({m["ts"] for m in messages}) == 11
        answers = messages[1::2]
        assert all(m["user"] == "UBOT0001" and m["bot_id"] == "BBOT0001" for m in answers)
        assert all("bot_id" not in m and m["user"] == USER for m in messages[0::2])
        assert messages[0]["reply_count"] == 10 and messages[0]["thread_ts"] == root
        assert all(m["thread_ts"] == root for m in messages)

        # limit below the page size sets the page; a reply's ts gives its whole thread.
        small = [page.data for page in client.conversations_replies(channel=CHANNEL, ts=messages[3]["ts"], limit=2)]
        assert [len(page["messages"]) for page in small] == [2] * 5 + [1]
        assert [m["ts"] for page in small for m in page["messages"]] == [m["ts"] for m in messages]


def test_replies_can_repeat_the_parent_on_every_page() -> None:
    with FakeSlackAPI(page_size=3, parent_on_every_page=True) as slack:
        root = slack.add_message(CHANNEL, "root", user=USER)
        for i in range(4):
            slack.add_message(CHANNEL, f"reply {i}", user=USER, thread_ts=root)
        pages = [page["messages"] for page in web(slack).conversations_replies(channel=CHANNEL, ts=root)]
        assert [[m["text"] for m in page] for page in pages] == [
            ["root", "reply 0", "reply 1"],
            ["root", "reply 2", "reply 3"],
        ]


def test_replies_refusals(slack: FakeSlackAPI, client: WebClient) -> None:
    slack.add_message(CHANNEL, "root", user=USER)
    assert refusal(lambda: client.conversations_replies(channel=CHANNEL, ts="1.000001")) == "thread_not_found"
    assert refusal(lambda: client.conversations_replies(channel="C0OTHER", ts="1.000001")) == "thread_not_found"
    root = slack.messages(CHANNEL)[0].ts
    assert refusal(lambda: client.conversations_replies(channel=CHANNEL, ts=root, cursor="garbage")) == (
        "invalid_cursor"
    )
    # A read method does not read a JSON body, as in Slack.
    assert refusal(lambda: client.api_call("conversations.replies", json={"channel": CHANNEL, "ts": root})) == (
        "channel_not_found"
    )


def test_a_plain_get_with_a_query_string_works(slack: FakeSlackAPI) -> None:
    root = slack.add_message(CHANNEL, "root", user=USER)
    request = urllib.request.Request(
        f"{slack.url}conversations.replies?channel={CHANNEL}&ts={root}",
        headers={"Authorization": f"Bearer {FAKE_BOT_TOKEN}"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["ok"] and [m["text"] for m in answer["messages"]] == ["root"]

    with pytest.raises(urllib.error.HTTPError) as raised:
        # (chat.delete was the unknown method here until the fake served it.)
        opener.open(urllib.request.Request(f"{slack.url}chat.scheduleMessage", data=b"", method="POST"), timeout=10)
    assert raised.value.code == 404
    assert json.loads(raised.value.read())["error"] == "unknown_method"


# --- assistant threads ------------------------------------------------------------------------------------------------


def test_status_is_shown_until_the_bot_replies(slack: FakeSlackAPI, client: WebClient) -> None:
    root = slack.add_message(DM, "hi", user=USER)
    client.assistant_threads_setStatus(channel_id=DM, thread_ts=root, status="is thinking…")
    assert slack.status(DM, root) == "is thinking…"
    client.chat_postMessage(channel=DM, thread_ts=root, text="answer")
    assert slack.status(DM, root) == ""

    client.assistant_threads_setStatus(channel_id=DM, thread_ts=root, status="again")
    client.assistant_threads_setStatus(channel_id=DM, thread_ts=root, status="")
    assert slack.status(DM, root) == ""
    many = [f"m{i}" for i in range(11)]
    assert refusal(
        lambda: client.assistant_threads_setStatus(channel_id=DM, thread_ts=root, status="x", loading_messages=many)
    ) == ("invalid_arguments")


def test_at_most_four_suggested_prompts(slack: FakeSlackAPI, client: WebClient) -> None:
    root = slack.add_message(DM, "hi", user=USER)
    prompts = [{"title": f"t{i}", "message": f"m{i}"} for i in range(5)]
    assert refusal(
        lambda: client.assistant_threads_setSuggestedPrompts(channel_id=DM, thread_ts=root, prompts=prompts)
    ) == ("invalid_arguments")
    assert refusal(
        lambda: client.assistant_threads_setSuggestedPrompts(channel_id=DM, prompts=[{"title": "no message"}])
    ) == ("invalid_arguments")
    client.assistant_threads_setSuggestedPrompts(channel_id=DM, thread_ts=root, prompts=prompts[:4])
    assert slack.suggested_prompts(DM, root) == prompts[:4]


def test_suggested_prompts_without_a_thread_are_pinned_atop_the_dm(slack: FakeSlackAPI, client: WebClient) -> None:
    prompts = [{"title": "t", "message": "m"}]
    client.assistant_threads_setSuggestedPrompts(channel_id=DM, prompts=prompts)
    assert slack.suggested_prompts(DM) == prompts
    too_many = [{"title": f"t{i}", "message": f"m{i}"} for i in range(5)]
    assert refusal(lambda: client.assistant_threads_setSuggestedPrompts(channel_id=DM, prompts=too_many)) == (
        "invalid_arguments"
    )
    assert slack.suggested_prompts(DM) == prompts  # a refusal changes nothing


# --- agent sessions ---------------------------------------------------------------------------------------------------


def test_a_session_is_created_processing_and_moves_on(slack: FakeSlackAPI, client: WebClient) -> None:
    root = slack.add_message(CHANNEL, "question", user=USER)
    assert slack.session(CHANNEL, root) is None
    answer = client.agents_sessions_setStatus(
        channel_id=CHANNEL, thread_ts=root, status="processing", title="question", initiator_user_id=USER
    )
    assert answer["status"] == "processing"
    # Later calls change the status only: the title was for the creation.
    client.agents_sessions_setStatus(channel_id=CHANNEL, thread_ts=root, status="active", title="another")
    session = slack.session(CHANNEL, root)
    assert session is not None
    assert (session.status, session.title, session.initiator_user_id) == ("active", "question", USER)
    assert session.statuses == ["processing", "active"]
    client.agents_sessions_setStatus(
        channel_id=CHANNEL,
        thread_ts=root,
        status="closed",
        icon_emoji=":bean:",
        icon_url="https://x/i.png",
        username="m",
    )
    assert slack.session(CHANNEL, root).statuses == ["processing", "active", "closed"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"status": "thinking"}, "invalid_arguments"),  # not a session status
        ({"status": "processing", "title": "x" * 201}, "invalid_arguments"),
        ({"status": "processing", "loading_messages": ["..."]}, "invalid_arguments"),  # assistant.threads' own
        ({"status": "processing", "channel": CHANNEL}, "invalid_arguments"),  # channel_id, not channel
        ({"status": "processing", "thread_ts": None}, "thread_ts_required"),
        ({"status": None}, "invalid_arguments"),
        ({"status": "processing", "channel_id": None}, "invalid_arguments"),
    ],
)
def test_a_session_call_slack_would_refuse_is_refused(
    slack: FakeSlackAPI, client: WebClient, arguments: dict[str, Any], error: str
) -> None:
    root = slack.add_message(CHANNEL, "question", user=USER)
    params = {"channel_id": CHANNEL, "thread_ts": root, **arguments}
    params = {name: value for name, value in params.items() if value is not None}
    assert refusal(lambda: client.api_call("agents.sessions.setStatus", json=params)) == error
    assert slack.session(CHANNEL, root) is None  # nothing was made


@pytest.mark.parametrize("error", ["feature_disabled", "not_agent_app"])
def test_agent_sessions_can_be_switched_off(error: str) -> None:
    with FakeSlackAPI(agent_sessions_error=error) as slack:
        root = slack.add_message(CHANNEL, "question", user=USER)
        assert refusal(
            lambda: web(slack).agents_sessions_setStatus(channel_id=CHANNEL, thread_ts=root, status="processing")
        ) == (error)
        assert slack.session(CHANNEL, root) is None
        slack.agent_sessions_error = None  # a workspace that turns them on
        web(slack).agents_sessions_setStatus(channel_id=CHANNEL, thread_ts=root, status="processing")
        assert slack.session(CHANNEL, root).status == "processing"  # type: ignore[union-attr]


# --- scripted trouble -------------------------------------------------------------------------------------------------


def test_ratelimited_answers_429_with_retry_after_and_changes_nothing(slack: FakeSlackAPI, client: WebClient) -> None:
    slack.fail_next("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel=CHANNEL, text="hi")
    response = raised.value.response
    assert response.status_code == 429 and response["error"] == "ratelimited"
    assert response.headers["Retry-After"] == "7"
    assert slack.messages(CHANNEL) == []
    client.chat_postMessage(channel=CHANNEL, text="hi")  # only the next call was scripted
    assert [c.error for c in slack.calls_to("chat.postMessage")] == ["ratelimited", None]

    # slack_sdk's own rate-limit handler reads it as Slack's and retries (after Retry-After + up to 1 s).
    slack.fail_next("chat.postMessage", retry_after=0)
    retrying = web(slack, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    retrying.chat_postMessage(channel=CHANNEL, text="second time")
    assert [m.text for m in slack.messages(CHANNEL)] == ["hi", "second time"]


def test_other_scripted_errors_are_http_200(slack: FakeSlackAPI, client: WebClient) -> None:
    slack.fail_next("conversations.replies", "internal_error")
    root = slack.add_message(CHANNEL, "root", user=USER)
    assert refusal(lambda: client.conversations_replies(channel=CHANNEL, ts=root)) == "internal_error"
    assert client.conversations_replies(channel=CHANNEL, ts=root)["ok"]


def test_a_dropped_connection_after_the_post_took_effect(slack: FakeSlackAPI) -> None:
    """What makes re-sending a chat.* write unsafe: slack_sdk's default retry posts twice."""
    slack.fail_next("chat.postMessage", "disconnect")
    with pytest.raises((http.client.RemoteDisconnected, urllib.error.URLError, ConnectionError)):
        web(slack, retry_handlers=[]).chat_postMessage(channel=CHANNEL, text="once")
    assert [m.text for m in slack.messages(CHANNEL)] == ["once"]
    assert slack.calls_to("chat.postMessage")[0].dropped

    slack.fail_next("chat.postMessage", "disconnect")
    web(slack).chat_postMessage(channel=CHANNEL, text="twice")  # default handlers: ConnectionErrorRetryHandler
    assert [m.text for m in slack.messages(CHANNEL)] == ["once", "twice", "twice"]


def test_a_late_answer_times_the_client_out_after_the_post(slack: FakeSlackAPI) -> None:
    slack.delay_next("chat.postMessage", 30)
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        WebClient(token=FAKE_BOT_TOKEN, base_url=slack.url, timeout=0.2, retry_handlers=[]).chat_postMessage(
            channel=CHANNEL, text="slow"
        )
    assert [m.text for m in slack.messages(CHANNEL)] == ["slow"]  # stop() releases the held answer


# --- observation ------------------------------------------------------------------------------------------------------


def test_wait_for_returns_when_calls_arrive_and_fails_when_they_do_not(slack: FakeSlackAPI, client: WebClient) -> None:
    seen: list[Call] = []
    slack.on_call = seen.append
    go = threading.Event()

    def later() -> None:
        go.wait(10)
        for i in range(3):
            client.chat_postMessage(channel=CHANNEL, text=str(i))

    worker = threading.Thread(target=later)
    worker.start()
    go.set()
    calls = slack.wait_for("chat.postMessage", count=3, timeout=30)
    worker.join()
    assert [c.params["text"] for c in calls] == ["0", "1", "2"] and all(c.ok for c in calls)
    assert [c.method for c in seen] == ["chat.postMessage"] * 3
    with pytest.raises(AssertionError, match=r"chat\.update"):
        slack.wait_for("chat.update", timeout=0.05)


def test_seeding_from_an_event_body_builds_the_thread_the_bot_reads(slack: FakeSlackAPI, client: WebClient) -> None:
    body = slack_requests.mention_event("what is up?", channel=CHANNEL)
    ts = slack.add_event(body)
    event = json.loads(body)["event"]
    assert ts == event["ts"]
    client.chat_postMessage(channel=CHANNEL, thread_ts=ts, markdown_text="all good")
    follow_up = json.loads(slack_requests.mention_event("and now?", thread_ts=ts))["event"]
    slack.add_event({"event": follow_up})
    texts = [m["text"] for m in client.conversations_replies(channel=CHANNEL, ts=ts)["messages"]]
    assert texts == ["<@UBOT0001> what is up?", "all good", "<@UBOT0001> and now?"]

    started = slack_requests.assistant_thread_started_event()
    thread_ts = slack.add_event(started)
    [root] = slack.thread(DM, thread_ts or "")
    assert root.subtype == "assistant_app_thread" and root.user == USER


# --- chat.delete, stream age, updates while streaming, answers stored in blocks -------------------------------------


class Clock:
    """The fake's clock, moved by hand: a stream ages without anyone waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delete_removes_the_bots_message_only(slack: FakeSlackAPI, client: WebClient) -> None:
    root = slack.add_message(CHANNEL, "<@UBOT0001> question", user=USER)
    answer = client.chat_postMessage(channel=CHANNEL, thread_ts=root, text="answer")["ts"]
    later = slack.add_message(CHANNEL, "thanks", user=USER, thread_ts=root)
    assert refusal(lambda: client.chat_delete(channel=CHANNEL, ts=root)) == "cant_delete_message"
    assert refusal(lambda: client.chat_delete(channel=CHANNEL, ts="1.000001")) == "message_not_found"

    deleted = client.chat_delete(channel=CHANNEL, ts=answer)
    assert (deleted["channel"], deleted["ts"]) == (CHANNEL, answer)
    assert slack.visible_text(CHANNEL, root) == ["<@UBOT0001> question", "thanks"]
    assert slack.text_of(CHANNEL, answer) is None and slack.text_of(CHANNEL, later) == "thanks"
    texts = [m["text"] for m in client.conversations_replies(channel=CHANNEL, ts=root)["messages"]]
    assert texts == ["<@UBOT0001> question", "thanks"]
    assert refusal(lambda: client.chat_delete(channel=CHANNEL, ts=answer)) == "message_not_found"  # a second time

    # A deleted stream is gone: appending to it finds nothing.
    stream = client.chat_startStream(
        channel=CHANNEL, thread_ts=root, markdown_text="x", recipient_user_id=USER, recipient_team_id=TEAM
    )["ts"]
    client.chat_delete(channel=CHANNEL, ts=stream)
    assert refusal(lambda: client.chat_appendStream(channel=CHANNEL, ts=stream, markdown_text="y")) == (
        "message_not_found"
    )


def test_deleting_a_root_with_replies_leaves_slacks_tombstone(slack: FakeSlackAPI, client: WebClient) -> None:
    own_root = client.chat_postMessage(channel=CHANNEL, text="the bot's own thread")["ts"]
    slack.add_message(CHANNEL, "a reply", user=USER, thread_ts=own_root)
    client.chat_delete(channel=CHANNEL, ts=own_root)
    [root, reply] = client.conversations_replies(channel=CHANNEL, ts=own_root)["messages"]
    assert (root["subtype"], root["text"], root["user"]) == ("tombstone", TOMBSTONE_TEXT, "USLACKBOT")
    assert "bot_id" not in root and reply["text"] == "a reply"
    assert slack.visible_text(CHANNEL, own_root) == [TOMBSTONE_TEXT, "a reply"]


def test_a_stream_ends_at_its_max_age_even_while_appended_to() -> None:
    clock = Clock()
    with FakeSlackAPI(stream_max_age=300, clock=clock) as slack:
        client = web(slack)
        root = slack.add_message(DM, "hi", user=USER)
        ts = client.chat_startStream(channel=DM, thread_ts=root, markdown_text="one")["ts"]
        for _ in range(3):  # appended every 100 s: never idle, and still it ends at 300 s
            clock.now += 100
            client.chat_appendStream(channel=DM, ts=ts, markdown_text=" more")
        assert slack.thread(DM, root)[1].streaming
        clock.now += 0.5
        assert slack.thread(DM, root)[1].stream == "expired"  # observation sees the clock too
        assert refusal(lambda: client.chat_appendStream(channel=DM, ts=ts, markdown_text=" lost")) == (
            "message_not_in_streaming_state"
        )
        assert refusal(lambda: client.chat_stopStream(channel=DM, ts=ts, markdown_text=" lost")) == (
            "message_not_in_streaming_state"
        )
        assert slack.text_of(DM, ts) == "one more more more"  # the text it had stays
        newer = client.chat_startStream(channel=DM, thread_ts=root, markdown_text="two")["ts"]
        client.chat_appendStream(channel=DM, ts=newer, markdown_text=" ok")  # a new stream has its own age
        client.chat_update(channel=DM, ts=ts, markdown_text="one more more more, finished")  # an ended stream updates
        assert slack.visible_text(DM, root) == ["hi", "one more more more, finished", "two ok"]

    with FakeSlackAPI(clock=clock) as slack:  # default: no age limit
        client = web(slack)
        root = slack.add_message(DM, "hi", user=USER)
        ts = client.chat_startStream(channel=DM, thread_ts=root, markdown_text="one")["ts"]
        clock.now += 10_000
        client.chat_stopStream(channel=DM, ts=ts, markdown_text=" two")
        assert slack.text_of(DM, ts) == "one two"


def test_update_of_a_message_still_streaming_is_refused_by_default(slack: FakeSlackAPI, client: WebClient) -> None:
    assert slack.update_while_streaming is False
    root = slack.add_message(DM, "hi", user=USER)
    ts = client.chat_startStream(channel=DM, thread_ts=root, markdown_text="part")["ts"]
    assert refusal(lambda: client.chat_update(channel=DM, ts=ts, markdown_text="whole")) == STREAMING_STATE_CONFLICT
    [message] = slack.bot_messages(DM, root)
    assert (message.text, message.stream, message.edited) == ("part", "streaming", False)
    client.chat_appendStream(channel=DM, ts=ts, markdown_text=" still streams")
    # Stop first, then update: what works whichever way Slack behaves.
    client.chat_stopStream(channel=DM, ts=ts)
    client.chat_update(channel=DM, ts=ts, markdown_text="whole")
    assert slack.text_of(DM, ts) == "whole"


def test_update_of_a_message_still_streaming_can_be_allowed_and_ends_the_stream() -> None:
    with FakeSlackAPI(update_while_streaming=True) as slack:
        client = web(slack)
        root = slack.add_message(DM, "hi", user=USER)
        ts = client.chat_startStream(channel=DM, thread_ts=root, markdown_text="part")["ts"]
        client.chat_update(channel=DM, ts=ts, markdown_text="whole")
        [message] = slack.bot_messages(DM, root)
        assert (message.text, message.stream, message.edited) == ("whole", "stopped", True)
        assert refusal(lambda: client.chat_appendStream(channel=DM, ts=ts, markdown_text="x")) == (
            "message_not_in_streaming_state"
        )
        client.chat_update(channel=DM, ts=ts, markdown_text="again")  # later updates as for any message
        assert slack.text_of(DM, ts) == "again"


def test_streamed_answers_can_be_stored_in_blocks_with_a_short_fallback_text() -> None:
    long_answer = "".join(f"段落{i}: " + "x" * 40 + "\n" for i in range(8))  # well over 100 characters
    with FakeSlackAPI(streamed_as_blocks=True) as slack:
        client = web(slack)
        root = slack.add_message(DM, "hi", user=USER)
        streamed = client.chat_startStream(channel=DM, thread_ts=root, markdown_text=long_answer[:50])["ts"]
        client.chat_appendStream(channel=DM, ts=streamed, markdown_text=long_answer[50:])
        client.chat_stopStream(channel=DM, ts=streamed)
        posted = client.chat_postMessage(channel=DM, thread_ts=root, markdown_text=long_answer)["ts"]
        plain = client.chat_postMessage(channel=DM, thread_ts=root, text="m" * 150)["ts"]
        slack.add_message(DM, "u" * 150, user=USER, thread_ts=root)

        messages = {m["ts"]: m for m in client.conversations_replies(channel=DM, ts=root)["messages"]}
        for ts in (streamed, posted):
            assert messages[ts]["text"] == long_answer[:FALLBACK_TEXT_CHARS]
            assert messages[ts]["blocks"] == [{"type": "markdown", "text": long_answer}]
        assert messages[plain]["text"] == "m" * 150 and "blocks" not in messages[plain]  # mrkdwn text: as it was
        assert [m["text"] for m in messages.values() if m.get("user") == USER] == ["hi", "u" * 150]
        # What a user sees is the whole answer.
        assert slack.visible_text(DM, root) == ["hi", long_answer, long_answer, "m" * 150, "u" * 150]

    with FakeSlackAPI() as slack:  # default: the whole text in `text`, no blocks
        client = web(slack)
        root = slack.add_message(DM, "hi", user=USER)
        client.chat_postMessage(channel=DM, thread_ts=root, markdown_text=long_answer)
        answer = client.conversations_replies(channel=DM, ts=root)["messages"][1]
        assert answer["text"] == long_answer and "blocks" not in answer


def test_replies_oldest_and_latest_keep_the_root_first(slack: FakeSlackAPI, client: WebClient) -> None:
    root = slack.add_message(CHANNEL, "root", user=USER, ts="1700000000.000100")
    for n in range(1, 5):
        slack.add_message(CHANNEL, f"reply {n}", user=USER, thread_ts=root, ts=f"1700000000.00020{n}")

    def texts(**arguments: Any) -> list[str]:
        return [m["text"] for m in client.conversations_replies(channel=CHANNEL, ts=root, **arguments)["messages"]]

    assert texts(oldest="1700000000.000202") == ["root", "reply 3", "reply 4"]
    assert texts(oldest="1700000000.000202", inclusive=True) == ["root", "reply 2", "reply 3", "reply 4"]
    assert texts(latest="1700000000.000203") == ["root", "reply 1", "reply 2"]
    assert texts(oldest="1700000000.000201", latest="1700000000.000203", inclusive=True) == [
        "root",
        "reply 1",
        "reply 2",
        "reply 3",
    ]
    assert texts(oldest="1700000001") == ["root"]
    assert texts(oldest="0") == ["root", "reply 1", "reply 2", "reply 3", "reply 4"]
    assert refusal(lambda: client.conversations_replies(channel=CHANNEL, ts=root, oldest="yesterday")) == (
        "invalid_ts_oldest"
    )
    assert refusal(lambda: client.conversations_replies(channel=CHANNEL, ts=root, latest="1.2.3")) == (
        "invalid_ts_latest"
    )


def test_a_dropped_connection_before_the_post_took_effect(slack: FakeSlackAPI) -> None:
    """ "drop": the client is as unsure as after "disconnect", but nothing happened."""
    slack.fail_next("chat.postMessage", "drop")
    with pytest.raises((http.client.RemoteDisconnected, urllib.error.URLError, ConnectionError)):
        web(slack, retry_handlers=[]).chat_postMessage(channel=CHANNEL, text="never")
    assert slack.messages(CHANNEL) == []
    [call] = slack.calls_to("chat.postMessage")
    assert call.dropped and not call.ok and call.error == "drop"

    slack.fail_next("chat.postMessage", "drop")
    web(slack).chat_postMessage(channel=CHANNEL, text="once")  # slack_sdk's default retry: this time it is right
    assert [m.text for m in slack.messages(CHANNEL)] == ["once"]
    assert [(c.dropped, c.ok) for c in slack.calls_to("chat.postMessage")[1:]] == [(True, False), (False, True)]


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing:UserWarning")  # a no_text call
def test_fail_next_after_fails_a_later_call(slack: FakeSlackAPI, client: WebClient) -> None:
    root = slack.add_message(CHANNEL, "root", user=USER)
    for n in range(5):
        slack.add_message(CHANNEL, f"reply {n}", user=USER, thread_ts=root)
    slack.fail_next("conversations.replies", "internal_error", after=1)  # the second page
    first = client.conversations_replies(channel=CHANNEL, ts=root, limit=2)
    assert first["has_more"]
    cursor = first["response_metadata"]["next_cursor"]
    assert refusal(lambda: client.conversations_replies(channel=CHANNEL, ts=root, limit=2, cursor=cursor)) == (
        "internal_error"
    )
    again = client.conversations_replies(channel=CHANNEL, ts=root, limit=2, cursor=cursor)  # only one was scripted
    assert [m["text"] for m in again["messages"]] == ["reply 1", "reply 2"]
    assert [c.error for c in slack.calls_to("conversations.replies")] == [None, "internal_error", None]

    # The calls let through are counted whatever they answer, and other methods are not counted.
    slack.fail_next("chat.postMessage", "ratelimited", retry_after=0, after=2, count=2)
    assert refusal(lambda: client.chat_postMessage(channel=CHANNEL)) == "no_text"  # let through: it counts
    client.auth_test()
    client.chat_postMessage(channel=CHANNEL, text="second")
    for _ in range(2):
        with pytest.raises(SlackApiError) as raised:
            client.chat_postMessage(channel=CHANNEL, text="limited")
        assert raised.value.response.status_code == 429
    client.chat_postMessage(channel=CHANNEL, text="fifth")
    assert [m.text for m in slack.messages(CHANNEL) if m.bot_id] == ["second", "fifth"]
    with pytest.raises(ValueError):
        slack.fail_next("chat.postMessage", after=-1)


def test_text_of_and_visible_text_follow_updates_deletes_and_appends(slack: FakeSlackAPI, client: WebClient) -> None:
    root = slack.add_message(DM, "question", user=USER)
    posted = client.chat_postMessage(channel=DM, thread_ts=root, text="draft")["ts"]
    client.chat_update(channel=DM, ts=posted, markdown_text="final")
    streamed = client.chat_startStream(channel=DM, thread_ts=root, markdown_text="a")["ts"]
    client.chat_appendStream(channel=DM, ts=streamed, chunks=[{"type": "markdown_text", "text": "b"}])
    assert slack.text_of(DM, streamed) == "ab"  # a stream still open shows what it has so far
    client.chat_stopStream(channel=DM, ts=streamed, markdown_text="c")
    gone = client.chat_postMessage(channel=DM, thread_ts=root, text="oops")["ts"]
    client.chat_delete(channel=DM, ts=gone)
    assert [slack.text_of(DM, ts) for ts in (root, posted, streamed, gone)] == ["question", "final", "abc", None]
    assert slack.visible_text(DM, root) == ["question", "final", "abc"]
    assert slack.text_of("D0NOWHERE", root) is None


# --- the command line -------------------------------------------------------------------------------------------------


def test_command_line_serves_prints_each_call_and_stops_at_end_of_input() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devkit.fake_slack_api", "--port", "0"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        banner = process.stdout.readline()
        url = banner.split(" on ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/api/")
        client = WebClient(token=FAKE_BOT_TOKEN, base_url=url, timeout=10)
        client.chat_postMessage(channel=CHANNEL, text="hello there")
        with pytest.raises(SlackApiError):
            WebClient(token="xoxb-wrong", base_url=url, timeout=10).auth_test()
        posted, refused = process.stdout.readline(), process.stdout.readline()
        assert "chat.postMessage" in posted and " ok " in posted and "11 chars" in posted
        assert "auth.test" in refused and "invalid_auth" in refused
        process.stdin.close()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --- blocks -----------------------------------------------------------------------------------------------------------


def feedback_buttons(text: str = "Good answer", elements: int = 1) -> dict[str, Any]:
    button = {"text": {"type": "plain_text", "text": text}, "value": "up:m"}
    element = {"type": "feedback_buttons", "action_id": "f", "positive_button": button, "negative_button": button}
    return {"type": "context_actions", "elements": [element] * elements}


@pytest.mark.parametrize(
    ("blocks", "error"),
    [
        ([{"type": "divider"}] * 51, "msg_blocks_too_many"),
        ([{"type": "no_such_block"}], "invalid_blocks"),
        ([{"type": "markdown", "text": "x" * (MAX_MARKDOWN_CHARS + 1)}], "invalid_blocks"),
        ([feedback_buttons(elements=6)], "invalid_blocks"),
        ([feedback_buttons(text="x" * 76)], "invalid_blocks"),
        ([{"type": "context_actions", "elements": [{"type": "button"}]}], "invalid_blocks"),
    ],
)
def test_blocks_slack_refuses_are_refused_on_every_method_that_takes_them(
    slack: FakeSlackAPI, client: WebClient, blocks: list[dict[str, Any]], error: str
) -> None:
    posted = client.chat_postMessage(channel=CHANNEL, text="an answer")["ts"]
    streamed = client.chat_startStream(
        channel=CHANNEL, thread_ts=posted, markdown_text="hi", recipient_user_id=USER, recipient_team_id=TEAM
    )["ts"]
    assert refusal(lambda: client.chat_postMessage(channel=CHANNEL, text="x", blocks=blocks)) == error
    assert refusal(lambda: client.chat_update(channel=CHANNEL, ts=posted, text="x", blocks=blocks)) == error
    assert refusal(lambda: client.chat_stopStream(channel=CHANNEL, ts=streamed, blocks=blocks)) == error
    # Refused, nothing changed: the stream still runs and takes its stop, with blocks Slack takes.
    client.chat_stopStream(channel=CHANNEL, ts=streamed, markdown_text=" there", blocks=[feedback_buttons(elements=5)])
    [stopped] = [m for m in slack.messages(CHANNEL) if m.ts == streamed]
    assert (stopped.text, stopped.stream, stopped.blocks) == ("hi there", "stopped", [feedback_buttons(elements=5)])
    assert slack.text_of(CHANNEL, posted) == "an answer"


def test_the_fake_response_url_refuses_the_same_blocks() -> None:
    from devkit.fake_response_url import refusal as response_url_refusal

    assert response_url_refusal(json.dumps({"text": "x", "blocks": [feedback_buttons(elements=6)]}).encode()) == (
        "invalid_blocks"
    )
    assert response_url_refusal(json.dumps({"text": "x", "blocks": [feedback_buttons()]}).encode()) is None


# --- tables and chunks ------------------------------------------------------------------------------------------------


def table(rows: int = 2, cells: int = 2) -> dict[str, Any]:
    return {"type": "table", "rows": [[{"type": "raw_text", "text": "x"}] * cells for _ in range(rows)]}


def test_a_table_goes_in_attachments_one_per_message_within_slacks_limits(
    slack: FakeSlackAPI, client: WebClient
) -> None:
    root = slack.add_message(CHANNEL, "hi", user=USER)
    posted = client.chat_postMessage(
        channel=CHANNEL, thread_ts=root, text="Table", attachments=[{"fallback": "Table", "blocks": [table()]}]
    )
    assert slack.bot_messages(CHANNEL, root)[0].attachments == [{"fallback": "Table", "blocks": [table()]}]
    assert posted["message"]["attachments"][0]["blocks"] == [table()]
    assert client.chat_postMessage(channel=CHANNEL, text="t", attachments=[{"blocks": [table(100, 20)]}])["ok"]
    refused = {
        "two tables": [{"blocks": [table()]}, {"blocks": [table()]}],
        "two in one attachment": [{"blocks": [table(), table()]}],
        "101 rows": [{"blocks": [table(101)]}],
        "21 cells": [{"blocks": [table(1, 21)]}],
        "no rows": [{"blocks": [{"type": "table", "rows": []}]}],
        "an empty raw_text": [{"blocks": [{"type": "table", "rows": [[{"type": "raw_text", "text": ""}]]}]}],
        "an unknown cell": [{"blocks": [{"type": "table", "rows": [[{"type": "mrkdwn", "text": "x"}]]}]}],
        "a bad align": [{"blocks": [{**table(), "column_settings": [{"align": "middle"}]}]}],
    }
    for attachments in refused.values():
        assert refusal(lambda a=attachments: client.chat_postMessage(channel=CHANNEL, text="t", attachments=a)) == (
            "invalid_blocks"
        )
    assert refusal(lambda: client.chat_postMessage(channel=CHANNEL, text="t", blocks=[table()])) == "invalid_blocks"
    ts = posted["ts"]
    assert refusal(lambda: client.chat_update(channel=CHANNEL, ts=ts, text="t", attachments=refused["two tables"])) == (
        "invalid_blocks"
    )
    assert len(slack.bot_messages(CHANNEL, root)) == 1  # nothing refused was posted


def test_a_stream_cannot_carry_a_table(slack: FakeSlackAPI, client: WebClient) -> None:
    root = slack.add_message(DM, "hi", user=USER)
    blocks_chunk = [{"type": "blocks", "blocks": [table()]}]
    assert refusal(lambda: client.chat_startStream(channel=DM, thread_ts=root, chunks=blocks_chunk)) == (
        "invalid_blocks"
    )
    ts = client.chat_startStream(channel=DM, thread_ts=root, markdown_text="a")["ts"]
    assert refusal(lambda: client.chat_appendStream(channel=DM, ts=ts, chunks=blocks_chunk)) == "invalid_blocks"
    assert refusal(lambda: client.chat_stopStream(channel=DM, ts=ts, blocks=[table()])) == "invalid_blocks"
    client.chat_stopStream(channel=DM, ts=ts)


def test_stream_chunks_are_checked_and_kept_per_message(slack: FakeSlackAPI, client: WebClient) -> None:
    root = slack.add_message(DM, "hi", user=USER)
    task = {"type": "task_update", "id": "retry-1", "title": "Asking again", "status": "in_progress"}
    ts = client.chat_startStream(channel=DM, thread_ts=root, chunks=[task], task_display_mode="plan")["ts"]
    done = {**task, "status": "complete"}
    client.chat_appendStream(channel=DM, ts=ts, chunks=[done])  # chunks alone, no text: fine
    client.chat_appendStream(channel=DM, ts=ts, chunks=[{"type": "markdown_text", "text": "answer"}])
    client.chat_stopStream(channel=DM, ts=ts, chunks=[{"type": "plan_update", "title": "Done"}])
    message = slack.bot_messages(DM, root)[0]
    assert message.text == "answer"
    assert message.task_display_mode == "plan"
    assert [chunk["type"] for chunk in message.chunks] == ["task_update", "task_update", "markdown_text", "plan_update"]
    assert [chunk.get("status") for chunk in message.chunks[:2]] == ["in_progress", "complete"]
    bad_chunks = [
        [{"type": "thought", "text": "x"}],
        [{**task, "status": "done"}],
        [{"type": "task_update", "id": "t", "status": "complete"}],
        [{"type": "plan_update"}],
        [{"type": "markdown_text"}],
        [{"type": "blocks"}],
        ["text"],
    ]
    for chunks in bad_chunks:
        assert refusal(lambda c=chunks: client.chat_startStream(channel=DM, thread_ts=root, chunks=c)) == (
            "invalid_chunks"
        )
    assert refusal(
        lambda: client.chat_startStream(channel=DM, thread_ts=root, markdown_text="a", task_display_mode="dense")
    ) == ("invalid_arguments")
    assert len(slack.bot_messages(DM, root)) == 1
