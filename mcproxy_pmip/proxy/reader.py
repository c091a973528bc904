"""A reactor reader for one kernel socket: readable -> one handler call, failures isolated.

Twisted's ``TuntapPort.doRead`` pattern: the kernel object reads a bounded batch
without blocking; an exception from the handler is logged with its traceback
and the reader goes on, so one bad packet never stops the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from zope.interface import implementer
from twisted.internet.interfaces import IReadDescriptor

log = logging.getLogger(__name__)


@implementer(IReadDescriptor)
class SocketReader:
    """Calls ``on_readable()`` whenever ``fileno()`` is readable."""

    def __init__(self, name: str, fileno: Callable[[], int], on_readable: Callable[[], None]) -> None:
        self.name = name
        self._fileno = fileno
        self._on_readable = on_readable

    def fileno(self) -> int:
        return self._fileno()

    def doRead(self) -> None:
        try:
            self._on_readable()
        except Exception:
            log.exception("reader_failed reader=%s", self.name)

    def connectionLost(self, reason: object) -> None:
        log.debug("reader_closed reader=%s", self.name)

    def logPrefix(self) -> str:
        return self.name
