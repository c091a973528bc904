"""ActionDispatcher on a task.Clock: a plane update that raises does not stop later updates."""

from __future__ import annotations

from ipaddress import IPv4Address

from twisted.internet.task import Clock

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.membership.actions import ForwardingChanged
from mcproxy_pmip.proxy.dispatch import ActionDispatcher

GROUP = IPv4Address("232.1.1.1")


class FailingOncePlane:
    def __init__(self) -> None:
        self.updates: list[list] = []

    def groups_changed(self, changed) -> None:
        self.updates.append(list(changed))
        if len(self.updates) == 1:
            raise RuntimeError("plane bug")


def test_a_plane_update_that_raises_is_logged_and_the_next_turn_still_reaches_the_plane(caplog) -> None:
    clock, plane = Clock(), FailingOncePlane()
    dispatcher = ActionDispatcher("i1", clock, None, lambda: plane, lambda f, g: None)
    dispatcher.apply([ForwardingChanged(Family.IPV4, GROUP)])
    clock.advance(0)
    logged = [r for r in caplog.records if r.getMessage().startswith("forwarding_update_failed")]
    assert logged and logged[0].exc_info is not None
    dispatcher.apply([ForwardingChanged(Family.IPV4, GROUP)])
    clock.advance(0)
    assert len(plane.updates) == 2
