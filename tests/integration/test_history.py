"""Thread history into a chat: roles, authors, order, the current message, the token trim that
keeps the thread's root, and answers Slack stores in blocks (the last one over HTTP, against the
fake Slack API)."""

from __future__ import annotations

import pytest

from chalicelib.deadline import Deadline
from chalicelib.slack import history, web
from devkit.fake_slack_api import FAKE_BOT_TOKEN, FakeSlackAPI

BOT = "UBOT0001"
DM = "D0123456"
SYSTEM = "You are 豆香."


def slack_message(ts: str, text: str, user: str = "U111", bot: bool = False) -> dict[str, str]:
    message = {"type": "message", "ts": ts, "text": text, "user": BOT if bot else user}
    if bot:
        message["bot_id"] = "BBOT0001"
    return message


def test_strip_mention() -> None:
    assert history.strip_mention("<@UBOT0001> 散歩道は？", BOT) == "散歩道は？"
    assert history.strip_mention("hi <@UBOT0001> there <@UBOT0001|mameka>!", BOT) == "hi there !"
    assert history.strip_mention("  <@UBOT0001|mameka>\nline two  ", BOT) == "line two"
    assert history.strip_mention("ask <@U222> about it", BOT) == "ask <@U222> about it"  # others stay
    assert history.strip_mention("<@UBOT00011> not us", BOT) == "<@UBOT00011> not us"
    assert history.strip_mention("<@UBOT0001>", BOT) == ""
    assert history.strip_mention(" plain ", "") == "plain"


def test_a_thread_becomes_turns_with_authors_and_the_current_message_last() -> None:
    thread = [
        slack_message("1700000000.000100", "<@UBOT0001> おすすめの散歩道は？", user="U111"),
        slack_message("1700000001.000200", "代々木公園がおすすめです。", bot=True),
        slack_message("1700000002.000300", "I'd add the Meguro river", user="U222"),
        slack_message("1700000003.000400", "<@UBOT0001> 朝と夜ならどっち？", user="U111"),  # the current one
    ]
    current = {"ts": "1700000003.000400", "text": "<@UBOT0001> 朝と夜ならどっち？", "user": "U111"}
    assert history.to_chat(thread, current, BOT, SYSTEM) == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "<@U111>: おすすめの散歩道は？"},
        {"role": "assistant", "content": "代々木公園がおすすめです。"},
        {"role": "user", "content": "<@U222>: I'd add the Meguro river"},
        {"role": "user", "content": "<@U111>: 朝と夜ならどっち？"},  # once, though the thread has it too
    ]


def test_the_current_message_is_added_when_the_thread_does_not_hold_it() -> None:
    thread = [slack_message("1700000000.000100", "root")]
    current = {"ts": "1700000000.000200", "text": "<@UBOT0001> and?", "user": "U333"}
    assert history.to_chat(thread, current, BOT, SYSTEM)[1:] == [
        {"role": "user", "content": "<@U111>: root"},
        {"role": "user", "content": "<@U333>: and?"},
    ]
    assert history.to_chat([], current, BOT, SYSTEM) == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "<@U333>: and?"},
    ]


def test_messages_newer_than_the_current_one_are_not_history() -> None:
    thread = [
        slack_message("1700000000.000100", "root"),
        slack_message("1700000000.000200", "current"),
        slack_message("1700000000.000300", "written while we read the thread"),
        slack_message("1700000001.000000", "later still", bot=True),
    ]
    current = {"ts": "1700000000.000200", "text": "current", "user": "U111"}
    assert [m["content"] for m in history.to_chat(thread, current, BOT, SYSTEM)] == [
        SYSTEM,
        "<@U111>: root",
        "<@U111>: current",
    ]


def test_ts_is_compared_as_a_decimal_not_a_float() -> None:
    # As floats, the current one and the later one are the same number (and would be history).
    thread = [
        slack_message("1700000000.0000001", "earlier"),
        slack_message("1700000000.00000020", "the current one, with a trailing zero"),
        slack_message("1700000000.0000003", "later"),
        slack_message("999999999.999999", "much earlier, one digit fewer"),
        slack_message("not-a-ts", "unreadable ts"),
    ]
    current = {"ts": "1700000000.0000002", "text": "now", "user": "U111"}
    contents = [m["content"] for m in history.to_chat(thread, current, BOT, SYSTEM)]
    assert contents == [SYSTEM, "<@U111>: earlier", "<@U111>: much earlier, one digit fewer", "<@U111>: now"]
    with pytest.raises(ValueError):
        history.to_chat(thread, {"ts": 1700000000.0, "text": "x", "user": "U1"}, BOT, SYSTEM)


def test_empty_messages_are_skipped_but_the_current_one_stays() -> None:
    thread = [
        slack_message("1700000000.000100", "<@UBOT0001>"),
        slack_message("1700000000.000200", ""),
        {"ts": "1700000000.000300", "user": "U111", "files": [{"id": "F1"}]},  # a file, no text
        slack_message("1700000000.000400", "what do you think?"),
    ]
    current = {"ts": "1700000000.000500", "text": "<@UBOT0001>", "user": "U111"}
    assert [m["content"] for m in history.to_chat(thread, current, BOT, SYSTEM)] == [
        SYSTEM,
        "<@U111>: what do you think?",
        "<@U111>: ",  # just a mention: the model answers the thread
    ]


def test_other_apps_are_users_named_as_slack_shows_them() -> None:
    thread = [
        {"ts": "1.000001", "text": "Build passed", "bot_id": "B999", "username": "CI"},
        {"ts": "1.000002", "text": "Deploy done", "bot_id": "B998", "bot_profile": {"name": "Deployer"}},
        {"ts": "1.000003", "text": "Also me", "bot_id": "B997", "user": "U997"},
    ]
    current = {"ts": "1.000004", "text": "ok", "user": "U111"}
    assert history.to_chat(thread, current, BOT, SYSTEM)[1:4] == [
        {"role": "user", "content": "CI: Build passed"},
        {"role": "user", "content": "Deployer: Deploy done"},
        {"role": "user", "content": "<@U997>: Also me"},
    ]


def test_estimate_errs_on_the_safe_side() -> None:
    japanese = "今日は代々木公園を散歩しましょう。朝の光がきれいです。"
    assert history.estimate_tokens(japanese) >= len(japanese)
    assert history.estimate_tokens(japanese) == len(japanese) + history.MESSAGE_OVERHEAD_TOKENS
    assert history.estimate_tokens("abcdefg") == 3 + 4  # ceil(7 / 3), plus the message's overhead
    assert history.estimate_tokens("") == 4
    assert history.estimate_tokens("a 日本") == 1 + 2 + 4
    english = "The quick brown fox jumps over the lazy dog. " * 10
    assert history.estimate_tokens(english) >= len(english) / 4  # English runs about 4 characters a token


def chat(history_count: int, size: int = 100) -> list[dict[str, str]]:
    turns = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i:03d} " + "x" * (size - 9)}
        for i in range(history_count)
    ]
    return [{"role": "system", "content": "s" * size}, *turns, {"role": "user", "content": "current " + "q" * 92}]


def test_fit_drops_the_oldest_turns_after_the_root_until_the_estimate_fits() -> None:
    messages = chat(10)  # each message estimates at ceil(100 / 3) + 4 = 38 tokens; messages[1] is the root
    assert history.fit(messages, 10_000) == messages
    assert history.fit(messages, 12 * 38) == messages
    fitted = history.fit(messages, 12 * 38 - 1)
    assert fitted == [messages[0], messages[1], *messages[3:]]  # the oldest turn after the root went
    fitted = history.fit(messages, 5 * 38)
    assert fitted == [messages[0], messages[1], *messages[-3:]]
    assert sum(history.estimate_tokens(m["content"]) for m in fitted) <= 5 * 38
    assert history.fit(messages, 3 * 38) == [messages[0], messages[1], messages[-1]]
    assert history.fit(messages, 3 * 38 - 1) == [messages[0], messages[-1]]  # the root goes last of all


def test_fit_drops_a_root_too_big_to_fit_and_keeps_the_newest_turns_that_do() -> None:
    messages = chat(10)
    messages[1] = {"role": "user", "content": "the task " + "r" * 3000}  # about 1,000 tokens
    fitted = history.fit(messages, 5 * 38)
    assert fitted == [messages[0], *messages[-4:]]


def test_fit_keeps_system_and_current_even_when_they_alone_are_too_big() -> None:
    messages = chat(10)
    assert history.fit(messages, 1) == [messages[0], messages[-1]]
    assert history.fit(messages[:1] + messages[-1:], 1) == [messages[0], messages[-1]]


def test_halve_history_keeps_the_root_and_the_newer_half_of_the_rest() -> None:
    messages = chat(10)
    assert history.halve_history(messages) == [messages[0], messages[1], *messages[7:]]  # root + 4 of 9
    messages = chat(5)
    assert history.halve_history(messages) == [messages[0], messages[1], *messages[4:]]  # root + 2 of 4
    messages = chat(2)
    assert history.halve_history(messages) == [messages[0], messages[1], messages[-1]]  # a retry must be smaller
    messages = chat(1)
    assert history.halve_history(messages) == [messages[0], messages[-1]]  # the root alone: it goes
    messages = chat(0)
    assert history.halve_history(messages) == messages
    for turns in range(1, 12):  # always smaller, never without the system prompt and the current message
        messages = chat(turns)
        halved = history.halve_history(messages)
        assert len(halved) < len(messages) and halved[0] == messages[0] and halved[-1] == messages[-1]


def test_the_threads_root_survives_trimming_from_to_chat_to_fit() -> None:
    # As the worker builds it: web.thread_messages gives the root first, to_chat makes it the
    # first history turn, fit keeps it while dropping the turns after it.
    thread = [slack_message("1700000000.000100", "<@UBOT0001> 課題: 東京の散歩道を3つ、理由つきで")]
    for n in range(1, 30):
        thread.append(slack_message(f"1700000000.{n + 100:06d}", f"turn {n} " + "x" * 200, bot=n % 2 == 0))
    current = {"ts": "1700000001.000000", "text": "<@UBOT0001> 3つ目は？", "user": "U111"}
    chat = history.to_chat(thread, current, BOT, SYSTEM)
    fitted = history.fit(chat, 800)
    assert fitted[1] == {"role": "user", "content": "<@U111>: 課題: 東京の散歩道を3つ、理由つきで"}
    assert fitted[-2]["content"].startswith("<@U111>: turn 29 ") and fitted[-1]["content"] == "<@U111>: 3つ目は？"
    assert len(fitted) < len(chat)
    assert history.halve_history(chat)[1] == fitted[1]


def test_slack_escapes_are_undone_and_the_assistant_panes_root_is_not_history() -> None:
    thread = [
        {"ts": "1.000001", "user": "U1", "text": "New chat", "subtype": "assistant_app_thread"},
        {"ts": "1.000002", "user": "U1", "text": "is 1 &lt; 2 &amp;&amp; 3 &gt; 2?"},
    ]
    chat = history.to_chat(thread, {"ts": "1.000003", "user": "U1", "text": "<@UBOT> a &lt;b&gt;"}, "UBOT", "sys")
    assert [m["content"] for m in chat[1:]] == ["<@U1>: is 1 < 2 && 3 > 2?", "<@U1>: a <b>"]


# --- answers stored in blocks -----------------------------------------------------------------------------------------


def test_message_text_takes_the_blocks_when_they_hold_more_than_the_fallback() -> None:
    whole = "# 散歩道\n\n1. 代々木公園 <朝がいい> & 静か\n" + "説明" * 100
    streamed = {"ts": "1.000001", "user": BOT, "text": whole[:100], "blocks": [{"type": "markdown", "text": whole}]}
    assert history.message_text(streamed) == whole  # the Markdown as sent: nothing to unescape
    same = {"text": "a &lt;b&gt;", "blocks": [{"type": "rich_text", "elements": []}]}
    assert history.message_text(same) == "a <b>"
    # Blocks that only repeat the text (a user's rich_text) leave the text as it was.
    user = {
        "text": "<@UBOT0001> *see* <https://example.com|this>",
        "blocks": [
            {
                "type": "rich_text",
                "elements": [
                    {
                        "type": "rich_text_section",
                        "elements": [
                            {"type": "user", "user_id": "UBOT0001"},
                            {"type": "text", "text": " "},
                            {"type": "text", "text": "see", "style": {"bold": True}},
                            {"type": "text", "text": " "},
                            {"type": "link", "url": "https://example.com", "text": "this"},
                        ],
                    }
                ],
            }
        ],
    }
    assert history.message_text(user) == "<@UBOT0001> *see* <https://example.com|this>"
    assert history.message_text({"ts": "1.000002"}) == ""
    assert history.message_text({"text": None, "blocks": "not a list"}) == ""


def test_message_text_reads_section_and_rich_text_blocks() -> None:
    section = {
        "text": "Deploy done",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Deploy* of `api` &amp; `web` done"}},
            {
                "type": "section",
                "fields": [{"type": "plain_text", "text": "env: prod"}, {"type": "mrkdwn", "text": "a&lt;b"}],
            },
            {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Undo"}}]},
            "not a block",
        ],
    }
    assert history.message_text(section) == "*Deploy* of `api` & `web` done\nenv: prod\na<b"
    rich = {
        "text": "see",
        "blocks": [
            {
                "type": "rich_text",
                "elements": [
                    {"type": "rich_text_section", "elements": [{"type": "text", "text": "Steps for <#C1>:"}]},
                    {
                        "type": "rich_text_list",
                        "style": "ordered",
                        "elements": [
                            {"type": "rich_text_section", "elements": [{"type": "text", "text": "walk"}]},
                            {"type": "rich_text_section", "elements": [{"type": "emoji", "name": "coffee"}]},
                        ],
                    },
                    {"type": "rich_text_preformatted", "elements": [{"type": "text", "text": "make run"}]},
                    {"type": "rich_text_quote", "elements": [{"type": "text", "text": "ask <!here>"}]},
                    {
                        "type": "rich_text_section",
                        "elements": [
                            {"type": "link", "url": "https://example.com"},
                            {"type": "text", "text": " and "},
                            {"type": "channel", "channel_id": "C2"},
                            {"type": "broadcast", "range": "here"},
                            {"type": "usergroup", "usergroup_id": "S1"},
                            {"type": "date", "timestamp": 1, "fallback": "Jan 1"},
                        ],
                    },
                ],
            }
        ],
    }
    assert history.message_text(rich) == (
        "Steps for <#C1>:\n1. walk\n2. :coffee:\n```\nmake run\n```\n> ask <!here>\n"
        "https://example.com and <#C2><!here><!subteam^S1>Jan 1"
    )


def test_the_bots_streamed_answer_stored_in_blocks_is_history_whole() -> None:
    whole = "代々木公園がおすすめです。" * 20
    thread = [
        slack_message("1700000000.000100", "<@UBOT0001> おすすめの散歩道は？"),
        {**slack_message("1700000001.000200", whole[:100], bot=True), "blocks": [{"type": "markdown", "text": whole}]},
        {"ts": "1700000001.000300", "user": "USLACKBOT", "text": "This message was deleted.", "subtype": "tombstone"},
    ]
    current = {"ts": "1700000002.000300", "text": "<@UBOT0001> 朝と夜ならどっち？", "user": "U111"}
    assert [m["content"] for m in history.to_chat(thread, current, BOT, SYSTEM)] == [
        SYSTEM,
        "<@U111>: おすすめの散歩道は？",
        whole,  # not the 100-character fallback
        "<@U111>: 朝と夜ならどっち？",  # a tombstone was said by nobody
    ]


def test_history_read_back_from_slack_keeps_the_whole_streamed_answer() -> None:
    # End to end over HTTP: the fake stores streamed answers as Slack may (a 100-character
    # fallback in `text`, the whole in a markdown block); the history still has it all.
    whole = "".join(f"{n}. 代々木公園から原宿へ歩く道 <{n}>\n" for n in range(1, 15))
    with FakeSlackAPI(streamed_as_blocks=True) as slack:
        client = web.client(FAKE_BOT_TOKEN, slack.url, Deadline.in_seconds(30))
        root = slack.add_message(DM, "<@UBOT0001> 散歩道を教えて", user="U111")
        ts = web.start_stream(client, DM, root, whole[:30])
        web.append_stream(client, DM, ts, whole[30:])
        web.stop_stream(client, DM, ts)
        question = slack.add_message(DM, "<@UBOT0001> 3つ目は？", user="U111", thread_ts=root)
        thread, error = web.thread_messages(client, DM, root, 50)
        assert error is None and thread[1]["text"] == whole[:100]  # what a reader of `text` alone would get
        current = {"ts": question, "text": "<@UBOT0001> 3つ目は？", "user": "U111"}
        chat = history.to_chat(thread, current, slack.bot_user_id, SYSTEM)
        assert chat[2] == {"role": "assistant", "content": whole.strip()}  # trimmed, as every turn is
