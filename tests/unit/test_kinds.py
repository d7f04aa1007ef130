"""The closed vocabularies: every cut-short outcome exists, every fault has its words."""

from __future__ import annotations

from chalicelib import kinds
from chalicelib.jobs import KINDS
from chalicelib.slack import messages


def test_values_lists_a_literal_and_a_union_of_them() -> None:
    assert kinds.values(kinds.JobKind) == {
        "slash_command",
        "message",
        "assistant_thread_started",
        "messages_tab_opened",
        "feedback",
    }
    assert kinds.values(kinds.LLMFault) < kinds.values(kinds.Fault)
    assert "answered" in kinds.values(kinds.Outcome) and "dispatched" in kinds.values(kinds.Outcome)


def test_every_fault_that_cuts_an_answer_short_has_its_outcome_and_only_those() -> None:
    made = {kinds.cut_short(fault) for fault in kinds.values(kinds.CutShortFault)}
    assert made == kinds.values(kinds.CutShort)


def test_every_job_kind_has_its_job_class() -> None:
    assert set(KINDS) == kinds.values(kinds.JobKind)


def test_every_fault_a_user_is_told_has_its_own_line() -> None:
    # "length" is told as cut short only (the text came); every other fault has its own plain line.
    assert set(messages.ERROR_TEXTS) == kinds.values(kinds.Fault) - {"length"}
    assert set(messages.CUT_SHORT_REASONS) <= kinds.values(kinds.CutShortFault)
