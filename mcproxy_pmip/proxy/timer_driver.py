"""Binds one sans-IO engine object to the reactor's clock.

The engine exposes ``get_timer()`` (its earliest deadline) and
``handle_timer(now)``; the driver keeps exactly one ``IReactorTime.callLater``
armed at that deadline, and re-arms it after every call into the engine
(aioquic's ``transmit()`` pattern). Tests pass a ``twisted.internet.task.Clock``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime


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

    def now(self) -> float:
        return self._clock.seconds()

    def call(self, method: Callable[..., Sequence[Any]], *args: Any) -> None:
        """Run an engine entry point with ``now`` first, deliver its actions, re-arm."""
        self._sink(method(self._clock.seconds(), *args))
        self.rearm()

    def rearm(self) -> None:
        deadline = self._engine.get_timer()
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
        self._sink(self._engine.handle_timer(self._clock.seconds()))
        self.rearm()
