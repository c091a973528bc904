"""TimerDriver keeps one call armed at the engine's deadline, on a task.Clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from mcproxy_pmip.proxy.timer_driver import TimerDriver


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
