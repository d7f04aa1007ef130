"""Every message the bot shows in Slack, as pure functions returning JSON-ready dicts.

Contract: each function returns a Slack message payload (``text`` plus ``response_type``),
usable both as an HTTP response body and as a ``response_url`` POST body, except
``notice``, ``cut_short`` and ``mention_usage``, which return the mrkdwn ``text`` of a
message in a thread. User and LLM text
is escaped for Slack's mrkdwn; the LLM's Markdown is converted to mrkdwn; nothing here ever
contains an exception's text or a secret.
"""

from __future__ import annotations

from typing import Any

from chalicelib.kinds import CutShortFault, Fault

Message = dict[str, Any]

# Slack truncates text above 40,000 characters; stay clear of it with room for the question.
MAX_TEXT_CHARS = 39_000
TRUNCATED = "\n…(the answer was too long for Slack and was cut here)"
# After an answer the model stopped at MAX_OUTPUT_TOKENS (finish_reason "length"), or the
# provider's content filter stopped (finish_reason "content_filter").
LENGTH_LIMITED = "\n…(the answer reached the length limit and was cut here)"
FILTERED = "\n…(the AI service's content filter stopped the answer here, so it is incomplete)"
ANSWER_TAILS = {"length": LENGTH_LIMITED, "content_filter": FILTERED}
MAX_ECHOED_QUESTION_CHARS = 3000

ERROR_TEXTS: dict[Fault, str] = {
    "rate_limited": "The AI service is busy right now (rate limited). Please try again in a minute.",
    "quota_exhausted": "The AI service's usage quota is used up. Please tell the bot's admin.",
    "invalid_key": "The bot's OpenAI API key was rejected. Please tell the bot's admin.",
    "permission_denied": "The AI service refused the bot access to its AI model. Please tell the bot's admin.",
    "model_not_found": "The AI service doesn't know the AI model the bot is set up for. Please tell the bot's admin.",
    "too_long": "Your question is too long for the AI model. Please shorten it and try again.",
    "timeout": "The AI service took too long to answer, so I gave up. Please try again.",
    "unreadable": "The AI service sent an answer I couldn't read. Please try again.",
    "service_error": "The AI service had a problem answering. Please try again later.",
    "not_configured": "The bot is not set up correctly, so it can't answer. Please tell the bot's admin.",
    "cut_off": "The AI service stopped answering part-way. Please try again.",
    "stalled": "The AI service stopped sending its answer part-way. Please try again.",
    "output_limit": "The AI model used up its output limit (MAX_OUTPUT_TOKENS) before it wrote any answer. "
    "Please tell the bot's admin, or ask something shorter.",
    "content_filter": "The AI service's content filter stopped the answer. Please rephrase your question.",
    "slack_error": "Slack refused part of my answer, so it may be incomplete. Please try again.",
    # A secret could not be read from SSM for now (throttled, timed out, unreachable): nothing to fix.
    "secrets_busy": "The bot is busy right now, so it can't answer yet. Please try again in a minute.",
}
# Why an answer that was already streaming stopped early, said after what the user has.
CUT_SHORT_REASONS: dict[CutShortFault, str] = {
    "timeout": "the AI service took too long",
    "cut_off": "the AI service stopped sending it",
    "length": "it reached the AI model's length limit",
    "rate_limited": "the AI service is busy (rate limited)",
    "quota_exhausted": "the AI service's usage quota is used up",
    "unreadable": "the AI service sent something I couldn't read",
    "stalled": "the AI service stopped sending it for too long",
    "content_filter": "the AI service's content filter stopped it",
    "service_error": "the AI service had a problem",
}
THINKING_STATUS = "is thinking…"
TOO_LATE = "Sorry, I was too busy to get to your question in time. Please ask again."
TOO_LATE_LINE = ":warning: " + TOO_LATE
# The user pressed Slack's stop button: Slack asks apps to confirm it, plainly (no error note).
STOPPED = "Stopped."


def ephemeral(text: str) -> Message:
    return {"response_type": "ephemeral", "text": text}


def usage(command: str) -> Message:
    return ephemeral(f"Ask me anything, for example:\n`{command} 東京でおすすめの散歩道は？`")


def too_long(length: int, limit: int) -> Message:
    return ephemeral(
        f"Your question is {length:,} characters long; the limit is {limit:,}. Please shorten it and try again."
    )


def acknowledgement(question: str) -> Message:
    return ephemeral(f":hourglass_flowing_sand: Thinking about your question…\n{code_block(question)}")


def not_allowed() -> Message:
    return ephemeral("Sorry, I'm not available to you here. Please ask the bot's admin if you need me.")


def too_late() -> Message:
    return ephemeral(TOO_LATE_LINE)


def too_many_questions(limit: int, seconds: int) -> Message:
    questions = "question" if limit == 1 else "questions"
    later = "1 second" if seconds == 1 else f"{seconds} seconds"
    return ephemeral(f"You've reached the limit of {limit} {questions} a minute. Please ask again in {later}.")


def could_not_start() -> Message:
    return ephemeral(":warning: Sorry, I couldn't start working on your question. Please try again in a moment.")


def not_configured(setting: str | None = None) -> Message:
    """The "not set up" message, naming ``setting`` (a variable's name, never its value) when given."""
    if setting is None:
        return error("not_configured")
    return ephemeral(
        f":warning: The bot is not set up correctly ({setting} is invalid), so it can't answer. "
        "Please tell the bot's admin."
    )


def busy() -> Message:
    """A secret could not be read for now (SSM throttled or unreachable): ask again shortly."""
    return error("secrets_busy")


def answer(question: str, answer_markdown: str, response_type: str, finish_reason: str | None = None) -> Message:
    """The question echoed, then the answer; ``finish_reason`` "length" or "content_filter" adds
    the line that says it was cut, and why."""
    # Imported here: the HTTP function uses this module for its acknowledgements, never these.
    from chalicelib.slack import markdown
    from chalicelib.slack.mrkdwn import to_mrkdwn

    tail = ""
    if finish_reason in ANSWER_TAILS:
        fence = markdown.open_fence(answer_markdown)
        if fence is not None:  # cut inside a code block: close it, or the line would be part of the code
            answer_markdown += "\n" + markdown.closing_fence(fence)
        tail = ANSWER_TAILS[finish_reason]
    body = to_mrkdwn(answer_markdown)
    if len(question) > MAX_ECHOED_QUESTION_CHARS:  # the answer matters more than the echo
        question = question[:MAX_ECHOED_QUESTION_CHARS] + "…"
    head = code_block(question) + "\n"
    if len(head) + len(body) + len(tail) > MAX_TEXT_CHARS:  # one cut, so one line saying so
        body, tail = body[: MAX_TEXT_CHARS - len(head) - len(TRUNCATED)], TRUNCATED
    return {"response_type": response_type, "text": head + body + tail}


def error(kind: Fault) -> Message:
    return ephemeral(":warning: " + ERROR_TEXTS.get(kind, ERROR_TEXTS["service_error"]))


def notice(kind: Fault) -> str:
    """One plain-language error line for a thread (mrkdwn ``text``)."""
    text: str = error(kind)["text"]
    return text


def cut_short(kind: CutShortFault) -> str:
    """The line that follows a streamed answer which stopped before its end."""
    reason = CUT_SHORT_REASONS.get(kind, "the AI service had a problem")
    return f":warning: The answer above was cut short because {reason}. Please ask again if you need the rest."


FEEDBACK_THANKS = "Thanks for the feedback."
FEEDBACK_NOT_RECORDED = ":warning: Sorry, I couldn't record your feedback. Please try again later."


def feedback_thanks() -> Message:
    """Said once to a user who voted on an answer; it stays under the answer (not replacing it)."""
    return {"response_type": "ephemeral", "replace_original": False, "text": FEEDBACK_THANKS}


def feedback_not_recorded() -> Message:
    return {"response_type": "ephemeral", "replace_original": False, "text": FEEDBACK_NOT_RECORDED}


def mention_usage(bot_user_id: str) -> str:
    return f"Ask me anything, for example: <@{bot_user_id}> 東京でおすすめの散歩道は？"


def escape(text: str) -> str:
    """Escape the three characters mrkdwn reserves (and only those)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code_block(text: str) -> str:
    # A ``` inside the block would end it early; a zero-width space keeps it literal.
    return "```" + escape(text).replace("```", "`\u200b``") + "```"
