"""Tasks an answer reports, taken as stream chunks: each once per change, in order, replayed whole."""

from __future__ import annotations

from chalicelib import progress
from chalicelib.settings import Settings


def updates(tasks: progress.Tasks) -> list[tuple[str, str, str]]:
    return [(chunk.id, chunk.title, chunk.status) for chunk in tasks.take()]


def test_tasks_are_taken_once_per_change_in_the_order_first_reported() -> None:
    tasks = progress.Tasks()
    assert updates(tasks) == []
    tasks.report("thread", progress.thread_read_title(25), "complete")
    tasks.report("retry-1", progress.retry_title("stalled"), "in_progress")
    assert updates(tasks) == [
        ("thread", "Read 25 earlier messages", "complete"),
        ("retry-1", "The model stopped sending its answer: asking again", "in_progress"),
    ]
    assert updates(tasks) == []
    tasks.report("retry-1", progress.retry_title("stalled"), "in_progress")  # no change: nothing to send
    assert updates(tasks) == []
    tasks.report("retry-1", progress.retry_title("stalled"), "complete")
    assert updates(tasks) == [("retry-1", "The model stopped sending its answer: asking again", "complete")]
    assert tasks.status("retry-1") == "complete" and tasks.status("nope") is None


def test_replay_gives_the_whole_timeline_again_for_a_new_message() -> None:
    tasks = progress.Tasks()
    tasks.report("a", "A", "error")
    tasks.report("b", "B", "in_progress")
    tasks.take()
    tasks.replay()
    assert [(chunk.id, chunk.status) for chunk in tasks.take()] == [("a", "error"), ("b", "in_progress")]


def test_every_retried_fault_has_its_own_plain_words() -> None:
    from chalicelib.answer import RETRIED_KINDS

    titles = {progress.retry_title(kind) for kind in RETRIED_KINDS}
    assert len(titles) == len(RETRIED_KINDS)
    assert progress.retry_title("cut_off") == "The model's connection dropped: asking again"
    assert all(title.endswith(": asking again") for title in titles)


def test_task_display_mode_defaults_to_timeline_and_takes_plan() -> None:
    assert Settings.from_env({}, "worker").task_display_mode == "timeline"
    assert Settings.from_env({"TASK_DISPLAY_MODE": "Plan"}, "worker").task_display_mode == "plan"
