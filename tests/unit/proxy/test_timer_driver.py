"""TimerDriver keeps one call armed at the engine's deadline, on a task.Clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from mcproxy_pmip.proxy.timer_driver import RETRY_INTERVAL, TimerDriver


class CountdownEngine:
    """Fires at each deadline in its list, returning the time it fired."""

    def __init__(self, deadlines: list[float]) -> None:
        self.deadlines = sorted(deadlines)

    def get_timer(self) -> float | None:
        return self.deadlines[0] if self.deadlines else None

    def handle_timer(self, now: float) -> list[float]:
        fired = []
        while self.deadlines and self.deadlines[0] <= now:
            self.deadlines.pop(0)
            fired.append(now)
        return fired

    def poke(self, now: float, deadline: float) -> list[str]:
        self.deadlines = sorted(self.deadlines + [deadline])
        return ["poked"]


def test_fires_each_deadline_once_and_rearms() -> None:
    clock = Clock()
    engine = CountdownEngine([1.0, 3.0])
    seen: list = []
    driver = TimerDriver(clock, engine, seen.extend)
    driver.rearm()
    clock.advance(0.5)
    assert seen == []
    clock.advance(0.5)
    assert seen == [1.0]
    clock.advance(2.0)
    assert seen == [1.0, 3.0]
    assert clock.getDelayedCalls() == []


def test_call_delivers_actions_and_arms_earlier_deadline() -> None:
    clock = Clock()
    engine = CountdownEngine([10.0])
    seen: list = []
    driver = TimerDriver(clock, engine, seen.extend)
    driver.rearm()
    driver.call(engine.poke, 2.0)
    assert seen == ["poked"]
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(2.0)
    assert seen == ["poked", 2.0]


def test_cancel_leaves_nothing_pending() -> None:
    clock = Clock()
    driver = TimerDriver(clock, CountdownEngine([5.0]), lambda actions: None)
    driver.rearm()
    driver.cancel()
    assert clock.getDelayedCalls() == []


class FlakyEngine(CountdownEngine):
    """Raises on the deadlines listed in ``broken`` without consuming them (a bug in the engine)."""

    def __init__(self, deadlines: list[float], broken: set[float]) -> None:
        super().__init__(deadlines)
        self.broken = set(broken)

    def handle_timer(self, now: float) -> list[float]:
        if self.deadlines and self.deadlines[0] in self.broken:
            self.broken.discard(self.deadlines[0])
            raise RuntimeError("engine bug")
        return super().handle_timer(now)


def test_an_exception_at_a_deadline_is_logged_and_the_next_deadline_still_fires(caplog) -> None:
    clock = Clock()
    engine = FlakyEngine([1.0, 5.0], broken={1.0})
    seen: list = []
    driver = TimerDriver(clock, engine, seen.extend)
    driver.rearm()
    clock.advance(1.0)
    assert driver.failures == 1
    failed = [r for r in caplog.records if r.getMessage().startswith("timer_failed")]
    assert failed and failed[0].exc_info is not None, "no traceback logged"
    assert len(clock.getDelayedCalls()) == 1, "the timer died"
    # The unconsumed deadline is retried no earlier than RETRY_INTERVAL later, not in a tight loop.
    clock.advance(RETRY_INTERVAL / 2)
    assert seen == []
    clock.advance(RETRY_INTERVAL / 2)
    assert seen == [2.0]
    clock.advance(3.0)
    assert seen == [2.0, 5.0]
    assert clock.getDelayedCalls() == []


def test_a_failing_sink_does_not_stop_the_timer() -> None:
    clock = Clock()
    engine = CountdownEngine([1.0, 2.0, 3.0])
    seen: list = []

    def sink(actions) -> None:
        if actions == [1.0]:
            raise ValueError("sender bug")
        seen.extend(actions)

    driver = TimerDriver(clock, engine, sink)
    driver.rearm()
    clock.advance(1.0)
    assert driver.failures == 1
    clock.advance(1.0)
    clock.advance(1.0)
    assert seen == [2.0, 3.0]


def test_call_rearms_even_when_the_entry_point_raises() -> None:
    clock = Clock()
    engine = CountdownEngine([])
    driver = TimerDriver(clock, engine, lambda actions: None)

    def poke_then_fail(now: float) -> list:
        engine.deadlines.append(4.0)
        raise RuntimeError("entry point bug")

    with pytest.raises(RuntimeError):
        driver.call(poke_then_fail)
    assert [call.getTime() for call in clock.getDelayedCalls()] == [4.0]
