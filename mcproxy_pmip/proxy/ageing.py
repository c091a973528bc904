"""SourceAgeing: asks an instance's data plane every minute to forget its idle sources."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime

from mcproxy_pmip.dataplane.port import InstancePlane

#: how often the data plane is asked to forget idle sources
AGEING_INTERVAL = 60.0


class SourceAgeing:
    """Calls ``forwarding().age(now)`` every ``AGEING_INTERVAL`` seconds between ``start`` and ``stop``."""

    def __init__(self, clock: IReactorTime, forwarding: Callable[[], InstancePlane | None]) -> None:
        self._clock = clock
        self._forwarding = forwarding
        self._call = None

    def start(self) -> None:
        self._call = self._clock.callLater(AGEING_INTERVAL, self._age)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()

    def _age(self) -> None:
        forwarding = self._forwarding()
        if forwarding is not None:
            forwarding.age(self._clock.seconds())
        self._call = self._clock.callLater(AGEING_INTERVAL, self._age)
