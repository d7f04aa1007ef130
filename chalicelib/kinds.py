"""The closed sets of names that the code and the log lines share: job kinds, faults, outcomes.

Contract: each set is a ``Literal`` type, so that mypy refuses a name outside it, and
``values(T)`` gives its members at run time (for tests and checks). A log line's
``outcome`` is always an ``Outcome``; an error the user is told about is a ``Fault``, whose
plain-language line is in ``slack.messages``. Dashboards and the README's queries match
these strings: renaming one is a change to the logs' contract.

Standard library only: the HTTP function imports it.
"""

from __future__ import annotations

from typing import Literal, cast, get_args

JobKind = Literal["slash_command", "message", "assistant_thread_started", "messages_tab_opened", "feedback"]

# What ``llm.LLMError.kind`` can be: a request the SDK gave up on, or a stream that broke.
LLMFault = Literal[
    "timeout",
    "rate_limited",
    "quota_exhausted",
    "invalid_key",
    "permission_denied",
    "model_not_found",
    "too_long",
    "service_error",
    "cut_off",  # the stream closed without a finish_reason
    "stalled",  # silence longer than STREAM_STALL_SECONDS after the first chunk
    "unreadable",  # a chunk that does not parse, or an answer with no text
]
# Every fault a user can be told about (``messages.error``/``notice``) or an answer cut short by.
Fault = (
    LLMFault
    | Literal[
        "length",  # finish_reason "length" after some text
        "output_limit",  # finish_reason "length" before any text
        "content_filter",
        "not_configured",
        "slack_error",
        "secrets_busy",
    ]
)

# What can cut an answer short after some of it was shown: a broken stream, or its finish_reason.
CutShortFault = LLMFault | Literal["length", "content_filter"]
# A ``cut_short_<fault>`` outcome: the text so far stayed, then one line said why it stopped.
CutShort = Literal[
    "cut_short_timeout",
    "cut_short_rate_limited",
    "cut_short_quota_exhausted",
    "cut_short_invalid_key",
    "cut_short_permission_denied",
    "cut_short_model_not_found",
    "cut_short_too_long",
    "cut_short_service_error",
    "cut_short_cut_off",
    "cut_short_stalled",
    "cut_short_unreadable",
    "cut_short_length",
    "cut_short_content_filter",
]
GatewayOutcome = Literal[
    "ssl_check",
    "url_verification",
    "ignored",
    "dispatched",
    "dispatch_failed",
    "not_configured",
    "secrets_unavailable",
    "invalid_signature",
    "malformed",
    "response_url_refused",
    "denied",
    "usage",
    "too_long",
    "stop_recorded",  # agent_session_stopped: the stop is marked for the answer it was pressed on
    "stop_failed",  # the stop mark could not be written (503: Slack delivers the event again)
    "recently_offered",  # the Messages tab opened again soon after its prompts were pinned
]
AnswerOutcome = (
    Fault
    | CutShort
    | Literal[
        "answered",
        "prompts_set",
        "usage",
        "too_long_input",
        "too_late",
        "duplicate",
        "bad_payload",
        "internal_error",
        "user_rate_limited",
        "secrets_unavailable",
        "stopped",  # the user pressed Slack's stop button: the LLM was cut off, "Stopped." said
    ]
)
# A feedback job's (``chalicelib.feedback``): a first vote (thanked), a changed one, or not stored.
FeedbackOutcome = Literal["vote_recorded", "vote_changed", "vote_not_stored"]
Outcome = GatewayOutcome | AnswerOutcome | FeedbackOutcome
# Which status a thread answer's log line says it ran under (``session``): Slack's agent session,
# or the legacy assistant status where the workspace or app lacks agent sessions.
SessionPath = Literal["agent", "assistant"]


def values(kind: object) -> frozenset[str]:
    """The members of a ``Literal`` (or a union of them), e.g. ``values(Fault)``."""
    members: set[str] = set()
    for arg in get_args(kind):
        members |= {arg} if isinstance(arg, str) else values(arg)
    return frozenset(members)


def cut_short(fault: CutShortFault) -> CutShort:
    """The outcome of an answer that ``fault`` cut short (tests/unit/test_kinds.py checks every one exists)."""
    return cast(CutShort, f"cut_short_{fault}")
