"""HangupLatch: SIGHUP is caught from the first line of ``main`` and turned into serialised reloads.

SIGHUP's default action ends the process. The command line installs the
latch before it reads the configuration, so a SIGHUP that arrives while the
daemon is still starting (the kernel half set up) only marks a reload as
pending. Once the reactor runs, ``connect`` gives the latch its reload
function and the reactor's ``callFromThread`` (safe in a signal handler):
a pending SIGHUP is delivered then, and every later one schedules one run
on the reactor. Reloads never interleave: they run one at a time in reactor
turns, and a burst of signals while one is queued or running coalesces into
one more run after it (which reads the file as it is by then).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

log = logging.getLogger(__name__)


class HangupLatch:
    """Counts SIGHUPs, runs ``reload`` on the reactor for them, at most one queued at a time."""

    def __init__(self) -> None:
        self.pending = False
        self.received = 0
        self.coalesced = 0
        self._reload: Callable[[], None] | None = None
        self._call_from_thread: Callable[..., None] | None = None
        self._queued = False
        self._previous = None

    def install(self) -> None:
        """Catch SIGHUP from now on (main thread only)."""
        self._previous = signal.signal(signal.SIGHUP, self._on_signal)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def connect(self, reload: Callable[[], None], call_from_thread: Callable[..., None]) -> None:
        """Run ``reload`` for SIGHUPs from now on; one that came before runs at the next reactor turn."""
        self._reload = reload
        self._call_from_thread = call_from_thread
        if self.pending:
            log.info("reload_pending_delivered signals=%d", self.received)
            self._schedule()

    def disconnect(self) -> None:
        """The daemon is stopping: SIGHUPs are only counted."""
        self._reload = None

    def _on_signal(self, signum, frame) -> None:
        self.received += 1
        if self.pending:
            self.coalesced += 1
        self.pending = True
        if self._reload is not None:
            self._schedule()

    def _schedule(self) -> None:
        if not self._queued:
            self._queued = True
            self._call_from_thread(self._run)

    def _run(self) -> None:
        self._queued = False
        if not self.pending or self._reload is None:
            return
        self.pending = False
        self._reload()
