"""The jobs the HTTP function hands to the worker: one small typed record per kind.

Contract: every job is a frozen dataclass of strings (``None`` where its type says so) and
the time the user asked (``asked_at``, epoch seconds), with an ``id`` that keys its claim,
and ``to_payload()`` gives a JSON-ready dict tagged with ``"kind"``.
``from_payload(payload)`` returns the job that payload describes, or raises ``ValueError``
saying what is wrong: an unknown kind, a missing field, a field of the wrong type, an
empty required field, or a ``ts``/``thread_ts`` that is not a Slack timestamp. A job
carries ids and the message text, never a thread: the worker reads history itself
(Lambda's async payload limit, and small is fast).

Standard library only: the HTTP function imports this module on its cold path.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from chalicelib.kinds import JobKind


class _JobBase:
    """What every kind shares: its payload, and the keys that claim it (its id, unless it says more)."""

    kind: ClassVar[JobKind]
    __dataclass_fields__: ClassVar[dict[str, Any]]  # every subclass is a dataclass: dataclasses.fields takes it
    id: str
    team_id: str
    channel_id: str
    user_id: str

    def to_payload(self) -> dict[str, Any]:
        # Every subclass is a dataclass of strings, None and a float: its fields, in order, are its
        # __dict__, which dataclasses.asdict would copy deeply (eight times slower, for the same dict).
        return {"kind": self.kind, **vars(self)}

    @property
    def claim_keys(self) -> tuple[str, ...]:
        return (self.id,)

    def log_fields(self) -> dict[str, Any]:
        """What the worker's log line says about the job: its kind, id and who asked where."""
        return {
            "kind": self.kind,
            "job_id": self.id,
            "team_id": self.team_id,
            "channel_id": self.channel_id,
            "user_id": self.user_id,
        }


def new_id() -> str:
    """A fresh random id for a job, as ``str(uuid.uuid4())`` makes it (a version 4 UUID, in its
    36-character form), in about 60% of its time: the HTTP function makes one per command."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    hex_ = raw.hex()
    return f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:]}"


@dataclass(frozen=True)
class SlashCommandJob(_JobBase):
    """``/mameka <text>``: answered once through ``response_url``."""

    kind: ClassVar[JobKind] = "slash_command"
    id: str  # new_id(), made by the HTTP function: trigger_id is not unique in tests and tools
    asked_at: float  # when the user asked (epoch seconds): the request's signed timestamp
    text: str
    response_url: str
    user_id: str
    channel_id: str
    team_id: str


@dataclass(frozen=True)
class MessageJob(_JobBase):
    """A mention of the bot, or a message in a DM with it (the assistant pane included)."""

    kind: ClassVar[JobKind] = "message"
    may_be_empty: ClassVar[frozenset[str]] = frozenset({"text"})  # a file shared without a word
    timestamps: ClassVar[frozenset[str]] = frozenset({"ts", "thread_ts"})
    id: str  # the envelope's event_id
    asked_at: float  # the envelope's event_time: a redelivery keeps the original's
    team_id: str
    channel_id: str
    user_id: str
    text: str
    ts: str
    thread_ts: str | None  # None when the message starts a thread of its own
    bot_user_id: str

    @property
    def reply_thread_ts(self) -> str:
        """Where the answer goes: the message's thread, or a new one under the message."""
        return self.thread_ts or self.ts

    @property
    def in_thread(self) -> bool:
        """Whether there are earlier messages to read: a message that starts a thread has none."""
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def claim_keys(self) -> tuple[str, ...]:
        # Slack has sent one message twice under two event_ids: the message itself is a key too.
        return (self.id, f"{self.channel_id}:{self.ts}")


@dataclass(frozen=True)
class AssistantThreadStartedJob(_JobBase):
    """The user opened the bot's assistant pane: offer the suggested prompts."""

    kind: ClassVar[JobKind] = "assistant_thread_started"
    timestamps: ClassVar[frozenset[str]] = frozenset({"thread_ts"})
    id: str  # the envelope's event_id
    asked_at: float  # the envelope's event_time
    team_id: str
    channel_id: str
    thread_ts: str
    user_id: str


@dataclass(frozen=True)
class FeedbackJob(_JobBase):
    """A user voted on an answer with its feedback buttons: store the vote, thank them once."""

    kind: ClassVar[JobKind] = "feedback"
    timestamps: ClassVar[frozenset[str]] = frozenset({"message_ts"})
    id: str  # new_id(), made by the HTTP function
    asked_at: float  # when the user clicked (epoch seconds): the request's signed timestamp
    team_id: str
    channel_id: str
    user_id: str
    message_ts: str  # the answer voted on
    vote: str  # "up" or "down" (chalicelib.slack.interactions.Vote)
    model: str  # the model that wrote the answer, from the button's value
    response_url: str | None  # where the thanks go; None: Slack sent none

    def log_fields(self) -> dict[str, Any]:
        return {**super().log_fields(), "message_ts": self.message_ts, "vote": self.vote, "model": self.model}


@dataclass(frozen=True)
class MessagesTabOpenedJob(_JobBase):
    """The user opened the bot's Messages tab (agent view): pin the suggested prompts atop it."""

    kind: ClassVar[JobKind] = "messages_tab_opened"
    thread_ts: ClassVar[None] = None  # pinned atop the tab, in no thread
    id: str  # the envelope's event_id
    asked_at: float  # the envelope's event_time
    team_id: str
    channel_id: str  # the user's DM with the bot
    user_id: str

    @property
    def claim_keys(self) -> tuple[str, ...]:
        # Slack sends the event on every open: one pin per user per claim's TTL (15 minutes) is enough,
        # in whichever container the next open lands.
        return (self.id, prompts_key(self.team_id, self.user_id))


def prompts_key(team_id: str, user_id: str) -> str:
    """The claim that says "this user's Messages tab got its prompts lately"."""
    return f"prompts:{team_id}:{user_id}"


PromptsJob = AssistantThreadStartedJob | MessagesTabOpenedJob  # the jobs answered with suggested prompts
Job = SlashCommandJob | MessageJob | AssistantThreadStartedJob | MessagesTabOpenedJob | FeedbackJob
KINDS: dict[str, type[Job]] = {
    cls.kind: cls for cls in (SlashCommandJob, MessageJob, AssistantThreadStartedJob, MessagesTabOpenedJob, FeedbackJob)
}


def from_payload(payload: Any) -> Job:
    if not isinstance(payload, dict):
        raise ValueError("payload is not an object")
    kind = payload.get("kind")
    cls = KINDS.get(kind) if isinstance(kind, str) else None  # a list or dict kind is unhashable
    if cls is None:
        raise ValueError(f"payload has an unknown kind {str(payload.get('kind'))[:40]!r}")
    values: dict[str, Any] = {}
    may_be_empty: frozenset[str] = getattr(cls, "may_be_empty", frozenset())
    timestamps: frozenset[str] = getattr(cls, "timestamps", frozenset())
    for field in dataclasses.fields(cls):
        value = payload.get(field.name)
        if value is None and "None" in str(field.type):  # an optional field, e.g. thread_ts
            values[field.name] = None
            continue
        if field.type == "float":
            number = finite_number(value)
            if number is None:
                raise ValueError(f"payload field {field.name!r} is missing or not a number")
            values[field.name] = number
            continue
        if not isinstance(value, str):
            raise ValueError(f"payload field {field.name!r} is missing or not a string")
        if not value and field.name not in may_be_empty:
            raise ValueError(f"payload field {field.name!r} is empty")
        if field.name in timestamps and not is_slack_ts(value):
            raise ValueError(f"payload field {field.name!r} is not a Slack timestamp")
        values[field.name] = value
    return cls(**values)


# A Slack message timestamp, "1700000000.000100": ASCII digits (``\d`` would take any script's),
# and short, so that the worker can read it as numbers (history orders messages by it).
_SLACK_TS = re.compile(r"[0-9]{1,16}(?:\.[0-9]{1,16})?")


def is_slack_ts(value: Any) -> bool:
    """Whether ``value`` is a Slack message timestamp (``ts``, ``thread_ts``)."""
    return isinstance(value, str) and _SLACK_TS.fullmatch(value) is not None


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None: not a number, a bool, NaN, an infinity, or an int
    past float's range (JSON reads 400 digits as an int)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
