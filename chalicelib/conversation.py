"""Answer a message in its Slack thread, streamed as the LLM writes it; offer prompts where a chat opens.

Contract: ``answer(job, deadline, settings)`` and ``offer_prompts(job, deadline, settings)``
(``SUGGESTED_PROMPTS`` set in an opened assistant pane's thread, or pinned atop the Messages
tab, with no ``thread_ts``, for an opened Messages tab) never raise, finish every Slack call
before they return, and write one JSON log line;
``say_too_late(job, deadline, settings)`` posts "too busy, please ask again" in the thread.

``answer`` runs inside a session (``chalicelib.session``): its first Slack call, the sign of
life, sets the thread's agent session ``processing`` with the question as its title (or,
where the workspace or app lacks agent sessions, the legacy "is thinking…" status), and on
every ending, whatever the outcome, the session is set ``active`` once (the log line's
``session`` says ``agent`` or ``assistant``). It reads the
thread's earlier messages when the message is in one (the pages read before a failure are
kept), builds the chat within ``MAX_CONTEXT_TOKENS`` and hands it to the answer core
(``chalicelib.answer``) with a ``ThreadSurface``: the answer is streamed into the thread
(``chalicelib.slack.stream`` decides the cadence, message sizes and rotation), a retried
attempt replaces what the failed one showed, and every ending is one plain-language line at
most. A completed answer ends with the feedback buttons (``chalicelib.feedback``) on its last
message; an answer cut short, or an error line, has none. Besides what the core decides:

- a session call refused with ``channel_not_found``, ``not_in_channel`` or ``invalid_auth``, or
  a Slack that cannot be reached at all, means the answer could not be posted: the LLM is not
  asked (any other failure of the status is logged and ignored);
- if Slack refuses the answer (or a call's fate stays unknown after the replier's own
  recovery), or anything unexpected fails, the stream is stopped and one line says so, unless
  a line was already attempted: never two endings;
- Slack's stop button (``chalicelib.stops``, watched while the answer runs) ends it as the core
  says: nothing more is streamed, the stream is stopped quietly, and "Stopped." is posted;
- under the legacy status, "is thinking…" is cleared on every ending that posted nothing in
  the thread (Slack clears it itself when the bot posts);
- each pipe table in the answer (``chalicelib.slack.tables``) is left out of the streamed text,
  a short pointer in its place, and posted as a message of its own (a table block) right after
  the stream, in order; one beyond Slack's limits stays in the text as a code block;
- a thread of more than ``progress.LONG_THREAD_MESSAGES`` earlier messages shows "Read N
  earlier messages" as a completed task on the stream's first call, and a retried answer its
  retry (``chalicelib.progress``), shown as ``TASK_DISPLAY_MODE`` says;
- given ``Unconfigured`` settings (the worker could not read them), ``answer`` posts one line
  naming the bad setting (never its value) with only what reaching the thread takes, if that
  is usable; ``offer_prompts`` does nothing. If the bot token is unusable there is no way to
  reach the user: the log line says so.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from chalicelib import answer as core
from chalicelib import feedback, logs, progress, secrets, stops
from chalicelib.deadline import Deadline
from chalicelib.jobs import MessageJob, PromptsJob
from chalicelib.kinds import AnswerOutcome, CutShortFault
from chalicelib.session import Session, title_of
from chalicelib.settings import Settings, Unconfigured
from chalicelib.slack import history, messages, tables, web
from chalicelib.slack.stream import Replier

logger = logging.getLogger(__name__)

# Kept back from the LLM for stopping the stream and saying what went wrong, at worst.
FINISH_RESERVE_SECONDS = 10.0
# Kept back from every Slack call, so that a Slack that never answers cannot hold the worker
# past its deadline (in Lambda, a timeout): time to give up, log and return.
SLACK_RESERVE_SECONDS = 1.0
# A status refused for one of these means the answer cannot be posted either: no LLM call.
# ("connection": Slack could not be reached, the status call's own retries included.)
UNREACHABLE = frozenset(
    {"channel_not_found", "not_in_channel", "invalid_auth", "is_archived", "account_inactive", "connection"}
)


class ThreadSurface:
    """The answer core's surface for a thread: the ``Replier`` streams, notices end it; tables
    go around the stream, into messages of their own after it."""

    reserve_seconds = FINISH_RESERVE_SECONDS
    paced = True

    def __init__(self, replier: Replier, tasks: progress.Tasks | None = None, final_blocks: Sequence[Any] = ()) -> None:
        self.replier = replier
        self.tables = tables.TableRouter(replier.push)
        self.tasks = tasks
        self.final_blocks = list(final_blocks)  # a completed answer's last message only

    @property
    def visible(self) -> bool:
        return self.replier.visible

    def push(self, text: str) -> None:
        self.tables.push(text)

    def due_in(self) -> float | None:
        return self.replier.due_in()

    def flush_if_due(self) -> None:
        self.replier.flush_if_due()

    def restart(self) -> None:
        self.tables.reset()
        self.replier.restart()
        if self.tasks is not None:
            self.tasks.replay()  # the new attempt's message shows the whole timeline

    def complete(self) -> None:
        self._finish(self.final_blocks)

    def cut_short(self, kind: CutShortFault) -> None:
        self._finish()
        self.replier.post_notice(messages.cut_short(kind))

    def _finish(self, final_blocks: Sequence[Any] = ()) -> None:
        """End the stream (``final_blocks`` below its last message), then post each table in its
        own message, in order."""
        kept = self.tables.end()
        self.replier.finish(final_blocks)
        for routed in kept:
            self.replier.post_table(tables.attachment(routed.block, routed.table), tables.code_block(routed.table))

    def say(self, text: str) -> None:
        self.tables.reset()
        self.replier.discard_pending()  # an answer that failed: text held back must not go out first
        self.replier.post_notice(text)

    def stopped(self) -> None:
        self.tables.reset()  # a table held back is dropped with the rest of the answer
        self.replier.halt()
        self.replier.post_notice(messages.STOPPED)


def answer(job: MessageJob, deadline: Deadline, settings: Settings | Unconfigured) -> None:
    started = time.perf_counter()
    fields: dict[str, Any] = job.log_fields()
    try:
        with _watching_stop(job, settings) as stop:
            fields["outcome"] = _answer(job, deadline, settings, fields, started, stop)
    except Exception:  # a last guard: log it; the user was told if they could be
        logger.exception("unexpected error while answering a message")
        fields["outcome"] = "internal_error"
    fields["total_ms"] = logs.ms_since(started)
    core.no_llm_call(fields)
    logs.emit("answer", **fields)


def offer_prompts(job: PromptsJob, deadline: Deadline, settings: Settings | Unconfigured) -> None:
    fields: dict[str, Any] = job.log_fields()
    try:
        if isinstance(settings, Unconfigured):  # the worker logged which and why
            raise _Unconfigured(settings.setting)
        token = _token(settings)
        _, error = _first_call(
            settings,
            token,
            deadline,
            lambda slack: web.set_suggested_prompts(slack, job.channel_id, job.thread_ts, settings.suggested_prompts),
        )
        if error is None:
            fields["outcome"] = "prompts_set"
        else:
            logger.error("could not set the suggested prompts: %s", error.code)
            fields.update(outcome="slack_error", slack_error=error.code)
    except _Unconfigured:
        fields["outcome"] = "not_configured"
    except Exception:
        logger.exception("unexpected error while setting the suggested prompts")
        fields["outcome"] = "internal_error"
    logs.emit("answer", **fields)


def say_too_late(job: MessageJob, deadline: Deadline, settings: Settings) -> None:
    """Tell the asker, in the thread, that the question waited too long; no LLM call."""
    try:
        web.post(
            web.client(_token(settings), settings.slack_api_url, deadline.shortened(SLACK_RESERVE_SECONDS)),
            job.channel_id,
            job.reply_thread_ts,
            text=messages.TOO_LATE_LINE,
        )
    except (_Unconfigured, web.SlackError) as error:
        logger.error("could not say the question came too late: %s", getattr(error, "code", "not_configured"))


class _Unconfigured(Exception):
    """The settings or the bot token are unusable (already logged); ``setting`` names a bad
    setting; ``transient``: SSM could not give the token for now (throttled, unreachable)."""

    def __init__(self, setting: str | None = None, transient: bool = False) -> None:
        super().__init__(setting)
        self.setting = setting
        self.transient = transient


def _token(settings: Settings) -> str:
    try:
        return secrets.slack_bot_token(settings)
    except secrets.SecretUnavailable as error:
        raise _Unconfigured(transient=error.transient) from None


def _say_unconfigured(job: MessageJob, deadline: Deadline, unconfigured: Unconfigured) -> None:
    """One line in the thread naming the bad setting, if the thread can be reached without it."""
    reach = unconfigured.reach
    if reach is None:  # what reaching the thread takes is itself unusable (the worker logged it)
        logger.error("could not say the bot is not set up: SettingsError")
        return
    try:
        slack = web.client(
            secrets.slack_bot_token(reach), reach.slack_api_url, deadline.shortened(SLACK_RESERVE_SECONDS)
        )
        web.post(slack, job.channel_id, job.reply_thread_ts, text=messages.not_configured(unconfigured.setting)["text"])
    except (secrets.SecretUnavailable, web.SlackError) as error:
        logger.error("could not say the bot is not set up: %s", getattr(error, "code", type(error).__name__))


def _first_call(
    settings: Settings, token: str, deadline: Deadline, call: Callable[[Any], None]
) -> tuple[Any, web.SlackError | None]:
    """Make a job's first Slack call; after ``invalid_auth``, once more with the bot token read
    afresh (``make secrets`` may have replaced it since this container read it). Returns the
    client to go on with, and the call's error if it still failed."""
    deadline = deadline.shortened(SLACK_RESERVE_SECONDS)
    slack = web.client(token, settings.slack_api_url, deadline)
    try:
        call(slack)
        return slack, None
    except web.SlackError as error:
        if error.code != "invalid_auth" or not secrets.slack_bot_token_rejected(settings):
            return slack, error
        first_error = error
    try:
        slack = web.client(secrets.slack_bot_token(settings), settings.slack_api_url, deadline)
        call(slack)
        return slack, None
    except secrets.SecretUnavailable:
        return slack, first_error
    except web.SlackError as error:
        return slack, error


@contextlib.contextmanager
def _watching_stop(job: MessageJob, settings: Settings | Unconfigured) -> Iterator[stops.StopSignal]:
    """The stop signal of this answer, watched while it runs (never set without usable settings)."""
    if isinstance(settings, Unconfigured):
        yield stops.StopSignal()
        return
    with stops.watching(settings, job.channel_id, job.reply_thread_ts, job.ts) as stop:
        yield stop


def _answer(
    job: MessageJob,
    deadline: Deadline,
    settings: Settings | Unconfigured,
    fields: dict[str, Any],
    started: float,
    stop: stops.StopSignal,
) -> AnswerOutcome:
    if isinstance(settings, Unconfigured):  # the worker logged which and why
        fields["setting"] = settings.setting
        _say_unconfigured(job, deadline, settings)
        return "not_configured"
    try:
        token = _token(settings)
    except _Unconfigured as unconfigured:
        return "secrets_unavailable" if unconfigured.transient else "not_configured"
    fields["model"] = settings.openai_model
    if settings.log_message_text:
        fields["text"] = job.text
    thread_ts = job.reply_thread_ts
    session = Session(job.channel_id, thread_ts)
    slack, error = _first_call(
        settings,
        token,
        deadline,
        lambda slack: session.open(
            slack, title_of(history.strip_mention(job.text, job.bot_user_id)), initiator_user_id=job.user_id
        ),
    )
    fields["session"] = session.path
    if error is None:
        fields["status_ms"] = logs.ms_since(started)
    else:
        logger.warning("could not set the thread's status: %s", error.code)
        fields["status_error"] = error.code
        if error.code in UNREACHABLE:  # the answer could not be posted: don't pay for it
            fields["slack_error"] = error.code
            fields["slack_calls"] = session.calls
            return "slack_error"
    tasks = progress.Tasks()
    replier = Replier(
        slack,
        job.channel_id,
        thread_ts,
        recipient_user_id=job.user_id,
        recipient_team_id=job.team_id,
        rotate_seconds=settings.stream_rotate_seconds,
        bot_user_id=job.bot_user_id,
        asked_ts=job.ts,
        chunks=tasks.take,
        task_display_mode=settings.task_display_mode,
        stopped=stop.check_within,
    )
    try:
        return _converse(job, settings, slack, replier, deadline, fields, started, tasks, stop)
    except web.SlackError as error:
        # Slack refused the answer itself (not_in_channel, invalid_auth...): one last try to say
        # so, which may well be refused for the same reason. Not after a notice, nor after a
        # call that may have landed: the user must not read two endings.
        logger.error("Slack refused the answer: %s", error.code)
        fields["slack_error"] = error.code
        if not replier.notice_attempted:  # a notice is a message of its own: it cannot double the answer
            _notify(replier, messages.notice("slack_error"))
        return "slack_error"
    except Exception:  # a last guard: stop the stream and tell the user, as for any failure
        logger.exception("unexpected error while answering a message")
        if not replier.notice_attempted:
            _notify(replier, messages.notice("service_error"))
        return "internal_error"
    finally:
        # Every ending, whatever it was: the session leaves "processing" (its stop button) once.
        session.close(slack, posted=bool(replier.posted_ts))
        fields["slack_calls"] = replier.calls + session.calls


def _converse(
    job: MessageJob,
    settings: Settings,
    slack: Any,
    replier: Replier,
    deadline: Deadline,
    fields: dict[str, Any],
    started: float,
    tasks: progress.Tasks,
    stop: stops.StopSignal,
) -> AnswerOutcome:
    question = history.strip_mention(job.text, job.bot_user_id)
    thread: list[dict[str, Any]] = []
    if job.in_thread and job.thread_ts:
        thread, error = web.thread_messages(slack, job.channel_id, job.thread_ts, settings.max_history_messages)
        if error is not None:  # answer with what was read rather than not at all
            logger.warning("could not read all of the thread: %s", error.code)
            fields["history_error"] = error.code
        earlier = sum(1 for message in thread if message.get("ts") != job.ts)
        if earlier > progress.LONG_THREAD_MESSAGES:  # shown on the stream's first call, with the first text
            tasks.report("thread", progress.thread_read_title(earlier), "complete")
    if not question and not thread:
        replier.post_notice(messages.mention_usage(job.bot_user_id))
        return "usage"
    if len(question) > settings.max_input_chars:  # the same cap on cost as for a slash command
        replier.post_notice(messages.too_long(len(question), settings.max_input_chars)["text"])
        return "too_long_input"
    current = {"ts": job.ts, "text": job.text, "user": job.user_id}
    chat = history.fit(
        history.to_chat(thread, current, job.bot_user_id, settings.system_prompt), settings.max_context_tokens
    )
    fields["history_messages"] = len(chat) - 2
    surface = ThreadSurface(replier, tasks, [feedback.buttons(settings.openai_model)])
    return core.run(
        chat,
        surface,
        settings,
        deadline,
        fields,
        core.Asker(job.team_id, job.user_id),
        started,
        tasks=tasks,
        stop=stop,
    )


def _notify(replier: Replier, text: str) -> None:
    try:
        replier.post_notice(text)
    except web.SlackError as error:
        logger.error("could not tell the user either: %s", error.code)
