"""SequentialServices: a ``MultiService`` whose children stop one after another.

Children start in the order they were added; a child that raises stops the
start there (the exception goes to the caller). Stopping goes in reverse
order over the children that are running, each waited for before the next,
so a later piece never outlives one it depends on.
"""

from __future__ import annotations

from twisted.application import service
from twisted.internet import defer


class SequentialServices(service.MultiService):
    """Start in order, stop the started ones in reverse, one at a time."""

    @defer.inlineCallbacks
    def stopService(self):
        service.Service.stopService(self)
        for child in reversed(list(self)):
            if child.running:
                yield defer.maybeDeferred(child.stopService)
