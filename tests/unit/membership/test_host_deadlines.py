"""The deadline heap the host side and the instance core keep (membership.deadlines)."""

from __future__ import annotations

import tracemalloc

from mcproxy_pmip.membership.deadlines import Deadlines


def test_earliest_and_pop_due_in_order() -> None:
    deadlines = Deadlines()
    deadlines.set("b", 2.0)
    deadlines.set("a", 1.0)
    deadlines.set("c", 3.0)
    assert deadlines.earliest() == 1.0
    assert deadlines.pop_due(2.0) == ["a", "b"]
    assert deadlines.earliest() == 3.0 and len(deadlines) == 1


def test_moving_and_cancelling_skip_stale_entries() -> None:
    deadlines = Deadlines()
    deadlines.set("a", 1.0)
    deadlines.set("a", 5.0)
    deadlines.set("b", 2.0)
    deadlines.cancel("b")
    deadlines.cancel("missing")
    assert deadlines.earliest() == 5.0
    assert deadlines.pop_due(4.0) == []
    assert deadlines.pop_due(5.0) == ["a"]
    assert deadlines.earliest() is None and "a" not in deadlines


def test_setting_the_same_deadline_twice_fires_once() -> None:
    deadlines = Deadlines()
    deadlines.set("a", 1.0)
    deadlines.set("a", 1.0)
    assert deadlines.pop_due(1.0) == ["a"]
    assert deadlines.pop_due(10.0) == []


def test_rescheduling_one_key_does_not_grow_memory() -> None:
    deadlines = Deadlines()
    deadlines.set("a", 0.0)
    tracemalloc.start()
    try:
        for step in range(20_000):
            deadlines.set("a", float(step))
        grown = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert grown < 64_000, f"{grown} bytes held after 20,000 reschedules of one key"
    assert deadlines.earliest() == 19_999.0
