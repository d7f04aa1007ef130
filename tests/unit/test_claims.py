"""Claims: all-or-nothing, expiring on an injected clock, safe under racing threads."""

from __future__ import annotations

import threading

from chalicelib import claims


class Clock:
    """A clock the test moves by hand: expiry is checked without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_same_key_is_claimed_once() -> None:
    store = claims.MemoryClaims()
    assert store.claim(["Ev1"]) is True
    assert store.claim(["Ev1"]) is False
    assert store.claim(["Ev2"]) is True


def test_any_overlapping_key_is_refused_and_nothing_is_claimed() -> None:
    store = claims.MemoryClaims()
    assert store.claim(["Ev1", "C1:1700000000.000100"]) is True
    # The same message redelivered under a new event_id: refused on the message key...
    assert store.claim(["Ev2", "C1:1700000000.000100"]) is False
    # ...and its new event_id was not claimed by the refused call.
    assert store.claim(["Ev2"]) is True
    assert store.claim(["Ev3", "Ev1"]) is False
    assert store.claim(["Ev3"]) is True


def test_a_released_key_can_be_claimed_again_and_the_others_stay() -> None:
    store = claims.MemoryClaims()
    assert store.claim(["a", "b"])
    store.release(["a", "never-claimed"])
    assert store.claim(["a"]) is True
    assert store.claim(["b"]) is False


def test_a_claim_expires_after_its_ttl() -> None:
    clock = Clock()
    store = claims.MemoryClaims(ttl_seconds=600, clock=clock)
    assert store.claim(["Ev1"]) is True
    clock.now += 599.9
    assert store.claim(["Ev1"]) is False
    clock.now += 0.1
    assert store.claim(["Ev1"]) is True  # expired, so claimable again, for another full TTL
    clock.now += 599.9
    assert store.claim(["Ev1"]) is False


def test_the_default_ttl_outlives_slacks_retries() -> None:
    clock = Clock()
    store = claims.MemoryClaims(clock=clock)
    store.claim(["Ev1"])
    clock.now += 10 * 60  # the issue asks for at least 10 minutes
    assert store.claim(["Ev1"]) is False
    assert claims.CLAIM_TTL_SECONDS == 900


def test_expired_keys_are_purged_so_memory_stays_bounded() -> None:
    clock = Clock()
    store = claims.MemoryClaims(ttl_seconds=60, clock=clock)
    for i in range(1000):
        assert store.claim([f"Ev{i}", f"C1:{i}"])
        clock.now += 0.01
    assert len(store) == 2000
    clock.now += 60
    assert store.claim(["new"]) is True
    assert len(store) == 1  # the old claims went on the next call, without a sweep of their own


def test_a_reclaimed_key_expires_on_its_new_time() -> None:
    clock = Clock()
    store = claims.MemoryClaims(ttl_seconds=60, clock=clock)
    store.claim(["a"])
    clock.now += 30
    store.claim(["b"])
    clock.now += 30
    assert store.claim(["a"]) is True  # a expired; re-claimed at t=60, so it now expires after b
    clock.now += 30
    assert store.claim(["b"]) is True
    assert store.claim(["a"]) is False


def test_many_threads_racing_for_one_key_make_exactly_one_winner() -> None:
    store = claims.MemoryClaims()
    threads_count = 32
    start = threading.Barrier(threads_count)
    results: list[bool] = []
    results_lock = threading.Lock()

    def race(i: int) -> None:
        start.wait()  # all threads call claim() at the same moment
        # Each has its own event_id but the same message key: all-or-nothing must hold too.
        won = store.claim([f"Ev{i}", "C1:1700000000.000100"])
        with results_lock:
            results.append(won)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * (threads_count - 1) + [True]
    # The losers claimed nothing: exactly one event_id is held.
    assert sum(store.claim([f"Ev{i}"]) for i in range(threads_count)) == threads_count - 1


def test_the_process_wide_store_is_one_instance() -> None:
    assert claims.store() is claims.store()
    assert isinstance(claims.store(), claims.MemoryClaims)
