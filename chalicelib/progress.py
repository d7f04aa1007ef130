"""What an answer does besides writing, as tasks a thread's stream shows above the text.

Contract: ``Tasks`` is the seam for reporting a task: ``report(task_id, title, status)``
(``status``: pending, in_progress, complete, error; a task reported again keeps its place and
takes the new title and status). The answer core reports a retry after a broken LLM stream
(``retry_title(kind)``: in_progress, then complete when the new attempt's first text arrives,
or error if it fails); a thread's surface reports a long thread read (``thread_read_title(n)``,
complete, for more than ``LONG_THREAD_MESSAGES`` earlier messages); tool calls will report
theirs the same way. Nothing here talks to Slack:

- ``take()`` gives the tasks changed since the last take, each once in its latest state, in the
  order they were first reported, as slack_sdk ``TaskUpdateChunk``s for the next stream call;
- ``replay()`` marks every task changed again: a new streamed message (after a retry replaced
  the old one) shows the whole timeline, not only what changed since.

A surface that cannot show tasks (a slash command's one reply) never takes them: reporting
costs nothing. Not thread-safe: one job's thread drives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from slack_sdk.models.messages.chunk import TaskUpdateChunk

TaskStatus = Literal["pending", "in_progress", "complete", "error"]

# A thread with more earlier messages than this shows "Read N earlier messages" as a task: a
# short thread is read in well under a second and needs no mention.
LONG_THREAD_MESSAGES = 20

# Why the answer is asked for again, in plain words, per fault the core retries.
RETRY_TITLES = {
    "cut_off": "The model's connection dropped: asking again",
    "stalled": "The model stopped sending its answer: asking again",
    "unreadable": "The model sent something unreadable: asking again",
    "service_error": "The AI service had a problem: asking again",
}


@dataclass
class _Task:
    title: str
    status: TaskStatus
    changed: bool = True


class Tasks:
    """One answer's tasks; see the module docstring."""

    def __init__(self) -> None:
        self._tasks: dict[str, _Task] = {}

    def report(self, task_id: str, title: str, status: TaskStatus) -> None:
        task = self._tasks.get(task_id)
        if task is None:
            self._tasks[task_id] = _Task(title, status)
        elif (task.title, task.status) != (title, status):
            task.title, task.status, task.changed = title, status, True

    def status(self, task_id: str) -> TaskStatus | None:
        task = self._tasks.get(task_id)
        return None if task is None else task.status

    def take(self) -> list[TaskUpdateChunk]:
        from slack_sdk.models.messages.chunk import TaskUpdateChunk  # the worker's thread path has it loaded

        chunks = []
        for task_id, task in self._tasks.items():
            if task.changed:
                chunks.append(TaskUpdateChunk(id=task_id, title=task.title, status=task.status))
                task.changed = False
        return chunks

    def replay(self) -> None:
        for task in self._tasks.values():
            task.changed = True


def retry_title(kind: str) -> str:
    return RETRY_TITLES.get(kind, "The answer broke off: asking again")


def thread_read_title(count: int) -> str:
    return f"Read {count} earlier messages"
