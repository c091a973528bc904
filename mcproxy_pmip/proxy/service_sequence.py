"""SequentialServices: a ``MultiService`` whose children stop one after another.

Children start in the order they were added; a child that raises stops the
start there (the exception goes to the caller). Stopping goes in reverse
order over the children that are running, each waited for before the next,
so a later piece never outlives one it depends on. A child whose stop fails
is logged with its traceback and the others still stop (the kernel state
they own must go even when one piece is broken).
"""

from __future__ import annotations

import logging

from twisted.application import service
from twisted.internet import defer

log = logging.getLogger(__name__)


class SequentialServices(service.MultiService):
    """Start in order, stop the started ones in reverse, one at a time."""

    @defer.inlineCallbacks
    def stopService(self):
        service.Service.stopService(self)
        for child in reversed(list(self)):
            if not child.running:
                continue
            try:
                yield defer.maybeDeferred(child.stopService)
            except Exception:
                log.exception("service_stop_failed service=%s", child.name or type(child).__name__)
