"""SourceAgeing: asks an instance's data plane every minute to forget its idle sources.

A plane whose per-source state is its own to sweep (``port.SteppedAgeing``:
the memory plane, and any plane that keeps (S,G) entries with counters) is
swept in steps of ``AGEING_BATCH`` entries, one step per reactor turn
(``callLater(0)`` between steps), so 50,000 entries never hold the reactor
for long; other planes get one ``age(now)`` call. The periodic call outlives
every exception: a failed sweep or step is logged with its traceback and
counted, and the next sweep is still scheduled ``AGEING_INTERVAL`` after the
start of the failed one. A plane replaced while a sweep is running (the
instance restarted) ends that sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime

from mcproxy_pmip.dataplane.port import InstancePlane, SteppedAgeing

log = logging.getLogger(__name__)

#: how often the data plane is asked to forget idle sources
AGEING_INTERVAL = 60.0
#: most entries one step of a sweep looks at (one reactor turn)
AGEING_BATCH = 1000


class SourceAgeing:
    """Calls the plane's ageing every ``interval`` seconds between ``start`` and ``stop``."""

    def __init__(self, clock: IReactorTime, forwarding: Callable[[], InstancePlane | None],
                 interval: float = AGEING_INTERVAL, batch: int = AGEING_BATCH) -> None:
        self._clock = clock
        self._forwarding = forwarding
        self._interval = interval
        self._batch = batch
        self._call = None
        self._next_at: float | None = None
        #: sweeps or steps that raised (each logged with its traceback)
        self.failures = 0
        #: sweeps finished, and the reactor turns (steps) the last one took
        self.sweeps = 0
        self.last_sweep_steps = 0

    def start(self) -> None:
        self._next_at = self._clock.seconds() + self._interval
        self._call = self._clock.callLater(self._interval, self._sweep)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._next_at = None

    def _sweep(self) -> None:
        now = self._clock.seconds()
        self._next_at = now + self._interval
        try:
            plane = self._forwarding()
            if isinstance(plane, SteppedAgeing):
                plane.begin_ageing(now)
                self.last_sweep_steps = 0
                self._step(plane)
                return
            if plane is not None:
                plane.age(now)
            self.sweeps += 1
        except Exception:
            self._failed("sweep")
        self._schedule_next()

    def _step(self, plane: SteppedAgeing) -> None:
        self._call = None
        if self._forwarding() is not plane:
            log.info("source_ageing_abandoned reason=the plane was replaced")
            self._schedule_next()
            return
        self.last_sweep_steps += 1
        try:
            done = plane.age_step(self._batch)
        except Exception:
            self._failed("step")
            done = True
        else:
            if done:
                self.sweeps += 1
        if done:
            self._schedule_next()
        else:
            self._call = self._clock.callLater(0, self._step, plane)

    def _failed(self, what: str) -> None:
        self.failures += 1
        log.exception("source_ageing_failed part=%s failures=%d", what, self.failures)

    def _schedule_next(self) -> None:
        if self._next_at is None:
            return
        self._call = self._clock.callLater(max(0.0, self._next_at - self._clock.seconds()), self._sweep)
