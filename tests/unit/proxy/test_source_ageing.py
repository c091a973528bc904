"""SourceAgeing on a task.Clock: sweeps in bounded steps, survives failures, keeps its period."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from twisted.internet.task import Clock

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.dataplane.memory import IDLE_INTERVAL, MemoryPlane
from mcproxy_pmip.dataplane.port import Role
from mcproxy_pmip.proxy.ageing import AGEING_INTERVAL, SourceAgeing
from tests.forwarding_views import FixedOutputs

GROUP = IPv4Address("232.1.1.1")


def source(n: int) -> IPv4Address:
    return IPv4Address(0x0A000000 + n)


def plane_with_sources(count: int):
    plane = MemoryPlane().open_instance("a", frozenset({Family.IPV4}), None, FixedOutputs())
    plane.add_interface("up", 1, Role.UPSTREAM)
    for n in range(count):
        plane.data(Family.IPV4, source(n), GROUP, "up", 0.0)
    return plane


class TurnClock(Clock):
    """A Clock that numbers its delayed calls as they run: each is one reactor turn."""

    def __init__(self) -> None:
        super().__init__()
        self.turn = 0

    def callLater(self, delay, func, *args, **kw):
        def turn(*a, **k):
            self.turn += 1
            return func(*a, **k)
        return super().callLater(delay, turn, *args, **kw)


class Scheduled:
    """Records, per ``age_step``, the reactor turn it ran in and how many entries it looked at."""

    def __init__(self, plane, clock: TurnClock) -> None:
        self.plane = plane
        self.clock = clock
        self.steps: list[tuple[int, int]] = []
        self._age_step = plane.age_step
        plane.age_step = self.age_step

    def age_step(self, budget: int) -> bool:
        before = len(self.plane._cursor)
        done = self._age_step(budget)
        self.steps.append((self.clock.turn, before - len(self.plane._cursor)))
        return done


def test_a_sweep_of_many_entries_is_spread_over_bounded_turns() -> None:
    clock = TurnClock()
    plane = plane_with_sources(2500)
    watch = Scheduled(plane, clock)
    ageing = SourceAgeing(clock, lambda: plane, batch=1000)
    ageing.start()
    clock.advance(AGEING_INTERVAL)
    assert [looked for _, looked in watch.steps] == [1000, 1000, 500]
    turns = [turn for turn, _ in watch.steps]
    assert len(set(turns)) == 3, f"several steps in one reactor turn: {turns}"
    assert ageing.sweeps == 1 and ageing.last_sweep_steps == 3
    assert len(plane.sg) == 2500
    # Idle for IDLE_INTERVAL: the entries go, over several turns again.
    for _ in range(int(IDLE_INTERVAL // AGEING_INTERVAL)):
        clock.advance(AGEING_INTERVAL)
        for _ in range(3):
            clock.advance(0)
    assert plane.sg == {}
    assert plane.quota.in_use == 0 and plane.counters()["routes_aged"] == 2500


def test_an_active_source_survives_and_an_idle_one_goes() -> None:
    clock = Clock()
    plane = plane_with_sources(2)
    ageing = SourceAgeing(clock, lambda: plane, batch=10)
    ageing.start()
    for _ in range(4):
        plane.data(Family.IPV4, source(0), GROUP, "up", clock.seconds())
        clock.advance(AGEING_INTERVAL)
    assert set(key[1] for key in plane.sg) == {source(0)}


def test_one_failed_counter_read_spares_that_entry_and_the_rest_of_the_sweep() -> None:
    clock = Clock()
    plane = plane_with_sources(5)
    broken = (Family.IPV4, source(2), GROUP)
    plane.failing_reads.add(broken)
    ageing = SourceAgeing(clock, lambda: plane, batch=2)
    ageing.start()
    for _ in range(5):
        clock.advance(AGEING_INTERVAL)
        for _ in range(3):
            clock.advance(0)
    assert list(plane.sg) == [broken], "a failed read dropped the sweep, or aged the unreadable entry"
    assert plane.counters()["route_counter_read_failures"] == 5
    assert ageing.failures == 0


class ExplodingPlane:
    def __init__(self, fail_times: int) -> None:
        self.fail_times = fail_times
        self.aged_at: list[float] = []

    def age(self, now: float) -> None:
        self.aged_at.append(now)
        if len(self.aged_at) <= self.fail_times:
            raise OSError("counter read exploded")


def test_an_exception_in_a_sweep_is_logged_and_the_next_sweep_still_runs(caplog) -> None:
    clock = Clock()
    plane = ExplodingPlane(fail_times=2)
    ageing = SourceAgeing(clock, lambda: plane)
    ageing.start()
    for _ in range(3):
        clock.advance(AGEING_INTERVAL)
    assert plane.aged_at == [AGEING_INTERVAL, 2 * AGEING_INTERVAL, 3 * AGEING_INTERVAL]
    assert ageing.failures == 2 and ageing.sweeps == 1
    logged = [r for r in caplog.records if r.getMessage().startswith("source_ageing_failed")]
    assert len(logged) == 2 and all(r.exc_info is not None for r in logged)
    assert len(clock.getDelayedCalls()) == 1


def test_an_exception_in_a_step_ends_that_sweep_and_keeps_the_period() -> None:
    clock = Clock()
    plane = plane_with_sources(30)
    calls = {"n": 0}
    real_step = plane.age_step

    def step(budget: int) -> bool:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("step bug")
        return real_step(budget)

    plane.age_step = step
    ageing = SourceAgeing(clock, lambda: plane, batch=10)
    ageing.start()
    clock.advance(AGEING_INTERVAL)
    clock.advance(0)
    assert ageing.failures == 1
    assert [call.getTime() for call in clock.getDelayedCalls()] == [2 * AGEING_INTERVAL]
    clock.advance(AGEING_INTERVAL)
    for _ in range(3):
        clock.advance(0)
    assert ageing.sweeps == 1


def test_stop_cancels_a_sweep_in_progress() -> None:
    clock = Clock()
    plane = plane_with_sources(30)
    ageing = SourceAgeing(clock, lambda: plane, batch=10)
    ageing.start()
    clock.advance(AGEING_INTERVAL)
    ageing.stop()
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("replaced", [None, "other"])
def test_a_plane_replaced_mid_sweep_ends_the_sweep(replaced) -> None:
    clock = Clock()
    plane = plane_with_sources(30)
    current = {"plane": plane}
    ageing = SourceAgeing(clock, lambda: current["plane"], batch=10)
    ageing.start()
    clock.advance(AGEING_INTERVAL)
    current["plane"] = None if replaced is None else plane_with_sources(1)
    clock.advance(0)
    assert [call.getTime() for call in clock.getDelayedCalls()] == [2 * AGEING_INTERVAL]
    assert ageing.failures == 0

