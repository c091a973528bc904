"""The deadline heap every engine object keeps (membership.deadlines): routers, upstream
hosts and the instance core."""

from __future__ import annotations

import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

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


def test_a_deadline_moved_later_comes_out_at_its_new_time() -> None:
    deadlines = Deadlines()
    deadlines.set("a", 1.0)
    deadlines.set("b", 2.0)
    deadlines.set("a", 3.0)
    assert deadlines.get("a") == 3.0
    assert deadlines.earliest() == 2.0
    assert deadlines.pop_due(2.5) == ["b"]
    deadlines.set("a", 0.5)
    assert deadlines.earliest() == 0.5
    assert deadlines.pop_due(10.0) == ["a"]
    assert len(deadlines) == 0 and deadlines.earliest() is None


def test_equal_deadlines_come_out_in_the_order_they_were_last_set() -> None:
    deadlines = Deadlines()
    deadlines.set("a", 1.0)
    deadlines.set("b", 5.0)
    deadlines.set("a", 5.0)
    deadlines.set("c", 5.0)
    assert deadlines.pop_due(5.0) == ["b", "a", "c"]


def test_clear_forgets_everything() -> None:
    deadlines = Deadlines()
    deadlines.set("a", 1.0)
    deadlines.set("b", 2.0)
    deadlines.clear()
    assert len(deadlines) == 0 and deadlines.earliest() is None and deadlines.pop_due(9.0) == []
    deadlines.set("a", 4.0)
    assert deadlines.pop_due(9.0) == ["a"]


_OPERATIONS = st.lists(st.tuples(st.sampled_from(("set", "cancel", "pop")),
                                 st.integers(0, 7), st.integers(0, 40)), max_size=300)


@given(_OPERATIONS)
def test_behaves_like_a_sorted_dictionary(operations) -> None:
    """Against a plain model: a dict of key -> (deadline, order of the last set)."""
    deadlines = Deadlines()
    model: dict[int, tuple[float, int]] = {}
    for order, (operation, key, value) in enumerate(operations):
        if operation == "set":
            deadlines.set(key, float(value))
            model[key] = (float(value), order)
        elif operation == "cancel":
            deadlines.cancel(key)
            model.pop(key, None)
        else:
            due = sorted((entry, k) for k, entry in model.items() if entry[0] <= value)
            assert deadlines.pop_due(float(value)) == [k for _, k in due]
            for _, k in due:
                del model[k]
        assert len(deadlines) == len(model)
        assert deadlines.earliest() == min((at for at, _ in model.values()), default=None)
        assert all(deadlines.get(k) == at for k, (at, _) in model.items())
