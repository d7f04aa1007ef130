"""Stop marks in memory: which answer a stop applies to, and how its signal reaches the answer."""

from __future__ import annotations

import threading

from chalicelib import stops
from chalicelib.settings import Settings

QUESTION = "1700000000.000200"
EARLIER, LATER = "1700000000.000100", "1700000000.000300"


def test_a_stop_applies_to_work_asked_before_it_not_to_a_later_question() -> None:
    assert stops.applies(LATER, QUESTION)
    assert stops.applies(QUESTION, QUESTION)
    assert not stops.applies(EARLIER, QUESTION)
    assert stops.applies("1700000001", "1700000000.999999")  # whole seconds compare as numbers


def test_a_stop_sets_the_running_answers_signal_at_once_and_runs_its_callbacks() -> None:
    store = stops.MemoryStops()
    closed = threading.Event()
    with store.watching("C1", QUESTION, QUESTION) as signal:
        forget = signal.on_stop(closed.set)
        assert not signal.is_set()
        store.record("C1", QUESTION, LATER)
        assert signal.is_set() and closed.is_set()  # in the recording thread, before record returns
        forget()


def test_a_stop_recorded_before_the_answer_starts_stops_it_at_its_start() -> None:
    store = stops.MemoryStops()
    store.record("C1", QUESTION, LATER)
    with store.watching("C1", QUESTION, QUESTION) as signal:
        assert signal.is_set()
        called = []
        signal.on_stop(lambda: called.append(True))  # registered late: called at once
        assert called == [True]


def test_a_stop_pressed_before_a_question_or_in_another_thread_leaves_it_alone() -> None:
    store = stops.MemoryStops()
    store.record("C1", QUESTION, EARLIER)
    store.record("C2", QUESTION, LATER)
    with store.watching("C1", QUESTION, QUESTION) as signal:
        store.record("C1", "1700000000.000900", LATER)  # another thread of the same channel
        assert not signal.is_set() and not signal.check_within(0.01)


def test_marks_expire_and_watchers_are_forgotten() -> None:
    now = [0.0]
    store = stops.MemoryStops(ttl_seconds=10, clock=lambda: now[0])
    store.record("C1", QUESTION, LATER)
    now[0] = 11.0
    with store.watching("C1", QUESTION, QUESTION) as signal:
        assert not signal.is_set()
    store.record("C1", QUESTION, LATER)  # nobody is watching any more: nothing to signal, no error
    assert store._watchers == {}


def test_a_failing_callback_does_not_stop_the_others_or_the_recorder() -> None:
    signal = stops.StopSignal()
    reached = []

    def broken() -> None:
        raise RuntimeError("boom")

    signal.on_stop(broken)
    signal.on_stop(lambda: reached.append(True))
    signal.set()
    signal.set()  # once only
    assert reached == [True]


def test_check_now_reads_the_store_and_sets_the_signal() -> None:
    answers = iter([False, True])
    signal = stops.StopSignal(check=lambda: next(answers))
    assert not signal.check_now()
    assert signal.check_within(5.0) and signal.is_set()


def test_the_store_is_memory_outside_lambda_and_the_table_in_it() -> None:
    assert isinstance(stops.store(Settings.from_env({"IDEMPOTENCY_TABLE": "t"})), stops.MemoryStops)
    in_lambda = stops.store(Settings.from_env({"IDEMPOTENCY_TABLE": "t", "AWS_LAMBDA_FUNCTION_NAME": "f"}))
    assert isinstance(in_lambda, stops.DynamoStops) and in_lambda.table_name == "t"
