"""The simulator's virtual clock: one heap of timed calls, engine timers on it, link losses.

``EventLoop`` runs callbacks in time order (ties in the order they were
queued). An engine object (``InstanceCore``, ``UpstreamHost``) is driven by
its ``get_timer`` / ``handle_timer``: ``rearm`` queues one call at the
deadline it gives after every call into it, and a queued call whose deadline
has since moved is skipped when it comes up. ``lost`` draws the fate of a
control message from one seeded stream per link and direction, so whether a
message is lost does not depend on the order in which messages of other links
due at the same instant are handled.
"""

from __future__ import annotations

import gc
import itertools
import random
import sys
from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

from mcproxy_pmip_sim.parts import Timed

Progress = Callable[[float, float, int], None]

#: whether ``gc`` is CPython's generational collector (``run_events`` manages it then)
GENERATIONAL_GC = sys.implementation.name == "cpython"


class EventLoop:
    """Time-ordered calls at virtual ``now``; ``events`` counts the calls run (skipped
    stale timer calls included)."""

    def __init__(self, seed: int, progress: Progress | None) -> None:
        self.seed = seed
        self.progress = progress
        self.now = 0.0
        self.events = 0
        self._queue: list[tuple[float, int, Callable[..., None], tuple]] = []
        self._order = itertools.count(1)
        self._loss_rngs: dict[str, random.Random] = {}

    def at(self, when: float, fn: Callable[..., None], *args: Any) -> None:
        heappush(self._queue, (when, next(self._order), fn, args))

    def rearm(self, timed: Timed) -> None:
        """Queue a call at the engine object's deadline when it moved."""
        due = timed.obj.get_timer()
        if due != timed.armed_at:
            timed.armed_at = due
            if due is not None:
                heappush(self._queue, (due if due > self.now else self.now, next(self._order),
                                       self._fire, (timed, due)))

    def _fire(self, timed: Timed, due: float) -> None:
        if timed.armed_at != due or not timed.alive():
            return
        timed.armed_at = None
        timed.deliver(timed.obj.handle_timer(self.now))
        self.rearm(timed)

    def lost(self, probability: float, link: str) -> bool:
        """Whether a control message on ``link`` (a link and a direction) is lost."""
        if probability <= 0:
            return False
        rng = self._loss_rngs.get(link)
        if rng is None:
            rng = self._loss_rngs[link] = random.Random(f"{self.seed}:loss:{link}")
        return rng.random() < probability

    def run_events(self, duration: float) -> None:
        """Run every call due by ``duration``, in a hundred slices; ``progress`` is told
        after each.

        On CPython the cyclic garbage collector is off during the run and collects the
        youngest generation between slices: a run allocates millions of long-lived objects
        (rows, engine records) that automatic collections would rescan again and again,
        and makes almost no cycles (10,000 MNs over 10 minutes: about 1,600 objects).
        Other interpreters keep their own collector: PyPy's ``gc.collect`` ignores the
        generation and collects everything, which made a run 2.2 times slower.
        """
        enabled = gc.isenabled()
        if GENERATIONAL_GC:
            gc.disable()
        try:
            for percent in range(1, 101):
                until = duration if percent == 100 else duration * percent / 100
                self._run_until(until)
                if GENERATIONAL_GC:
                    gc.collect(0)
                if self.progress is not None:
                    self.progress(until, duration, self.events)
        finally:
            if enabled:
                gc.enable()
        self.now = duration

    def _run_until(self, end: float) -> None:
        """The hot loop (locals only)."""
        queue, pop = self._queue, heappop
        events = self.events
        try:
            while queue and queue[0][0] <= end:
                when, _, fn, args = pop(queue)
                self.now = when
                events += 1
                fn(*args)
        finally:
            self.events = events
