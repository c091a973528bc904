"""Binds one sans-IO engine object to the reactor's clock.

The engine exposes ``get_timer()`` (its earliest deadline) and
``handle_timer(now)``; the driver keeps exactly one ``IReactorTime.callLater``
armed at that deadline, and re-arms it after every call into the engine
(aioquic's ``transmit()`` pattern). Tests pass a ``twisted.internet.task.Clock``.

A timer never dies of one exception: when the engine or the action sink
raises while a deadline fires, the driver logs it with its traceback, counts
it (``failures``) and arms again, no earlier than ``RETRY_INTERVAL`` from
now, so a deadline the engine failed to consume cannot spin the reactor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

log = logging.getLogger(__name__)

#: after a failed deadline, the next one is armed no earlier than this many seconds from now
RETRY_INTERVAL = 1.0


class TimedEngine(Protocol):
    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> Sequence[Any]: ...


class TimerDriver:
    """Keeps one delayed call armed at ``engine.get_timer()``; actions go to ``sink``."""

    def __init__(self, clock: IReactorTime, engine: TimedEngine,
                 sink: Callable[[Sequence[Any]], None]) -> None:
        self._clock = clock
        self._engine = engine
        self._sink = sink
        self._call: IDelayedCall | None = None
        self._armed_at: float | None = None
        #: deadlines whose handling raised (each logged with its traceback)
        self.failures = 0

    def now(self) -> float:
        return self._clock.seconds()

    def call(self, method: Callable[..., Sequence[Any]], *args: Any) -> None:
        """Run an engine entry point with ``now`` first, deliver its actions, re-arm.

        An exception reaches the caller, after the timer was re-armed.
        """
        try:
            self._sink(method(self._clock.seconds(), *args))
        finally:
            self.rearm()

    def rearm(self) -> None:
        self._arm(self._engine.get_timer())

    def _arm(self, deadline: float | None) -> None:
        if deadline == self._armed_at and self._call is not None and self._call.active():
            return
        self.cancel()
        if deadline is None:
            return
        delay = max(0.0, deadline - self._clock.seconds())
        self._armed_at = deadline
        self._call = self._clock.callLater(delay, self._fire)

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._armed_at = None

    def _fire(self) -> None:
        self._call = None
        self._armed_at = None
        try:
            self._sink(self._engine.handle_timer(self._clock.seconds()))
            self.rearm()
        except Exception:
            self.failures += 1
            log.exception("timer_failed engine=%s failures=%d", type(self._engine).__name__, self.failures)
            self._arm_after_failure()

    def _arm_after_failure(self) -> None:
        """Arm at the engine's deadline, but not before ``RETRY_INTERVAL``; retry then if it cannot say."""
        not_before = self._clock.seconds() + RETRY_INTERVAL
        try:
            deadline = self._engine.get_timer()
        except Exception:
            log.exception("timer_deadline_unreadable engine=%s", type(self._engine).__name__)
            deadline = not_before
        self._arm(None if deadline is None else max(deadline, not_before))
