"""ProxyInstance's collaborators on their own: attachments, action dispatch, source ageing."""

from __future__ import annotations

import ipaddress

import pytest
from twisted.internet.task import Clock

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.dataplane.port import Role
from mcproxy_pmip.errors import McproxyError
from mcproxy_pmip.membership.actions import ForwardingChanged
from mcproxy_pmip.proxy.ageing import AGEING_INTERVAL, SourceAgeing
from mcproxy_pmip.proxy.attachments import InterfaceAttachments
from mcproxy_pmip.proxy.dispatch import ActionDispatcher

G1 = ipaddress.IPv4Address("239.1.1.1")
G2 = ipaddress.IPv4Address("239.1.1.2")


class RecordingPlane:
    """An InstancePlane that records calls and refuses interfaces beyond ``limit``."""

    def __init__(self, limit: int = 8) -> None:
        self.limit = limit
        self.interfaces: dict[str, int] = {}
        self.updates: list[list] = []
        self.aged: list[float] = []

    def add_interface(self, name: str, ifindex: int, role: Role) -> None:
        if len(self.interfaces) >= self.limit:
            raise McproxyError("no free vif")
        self.interfaces[name] = ifindex

    def remove_interface(self, name: str) -> None:
        del self.interfaces[name]

    def groups_changed(self, changed) -> None:
        self.updates.append(list(changed))

    def age(self, now: float) -> None:
        self.aged.append(now)


class WatchingSocket:
    def __init__(self) -> None:
        self.watched: set[int] = set()

    def watch(self, ifindex: int) -> None:
        self.watched.add(ifindex)

    def unwatch(self, ifindex: int) -> None:
        self.watched.discard(ifindex)


def attachments(limit: int = 8) -> tuple[InterfaceAttachments, RecordingPlane, WatchingSocket]:
    sock = WatchingSocket()
    parts = InterfaceAttachments("i1", frozenset({Family.IPV4}), {Family.IPV4: sock})
    parts.forwarding = RecordingPlane(limit)
    return parts, parts.forwarding, sock


def test_attach_gives_the_interface_to_plane_and_socket_and_release_takes_it_back() -> None:
    parts, plane, sock = attachments()
    parts.attach("d1", 7, Role.DOWNSTREAM)
    assert (parts.attached, plane.interfaces, sock.watched) == ({"d1"}, {"d1": 7}, {7})
    parts.release("d1")
    assert (parts.attached, plane.interfaces, sock.watched) == (set(), {}, set())


def test_a_refused_interface_leaves_nothing_behind() -> None:
    parts, plane, sock = attachments(limit=0)
    with pytest.raises(McproxyError):
        parts.attach("d1", 7, Role.DOWNSTREAM)
    assert (parts.attached, plane.interfaces, sock.watched) == (set(), {}, set())


def test_carrier_counts_as_regained_only_after_it_was_seen_lost() -> None:
    parts, _, _ = attachments()
    assert parts.note_carrier("d1", True) is False
    assert parts.note_carrier("d1", False) is False
    assert parts.note_carrier("d1", True) is True
    assert parts.note_carrier("d1", True) is False


def test_groups_changed_in_one_turn_reach_the_plane_in_one_call() -> None:
    clock, plane, heard = Clock(), RecordingPlane(), []
    dispatcher = ActionDispatcher("i1", clock, None, lambda: plane, lambda f, g: heard.append(g))
    dispatcher.apply([ForwardingChanged(Family.IPV4, G1), ForwardingChanged(Family.IPV4, G2)])
    dispatcher.apply([ForwardingChanged(Family.IPV4, G1)])
    assert heard == [G1, G2, G1] and plane.updates == []
    clock.advance(0)
    assert plane.updates == [[(Family.IPV4, G1), (Family.IPV4, G2)]]


def test_cancel_drops_the_groups_not_yet_handed_over() -> None:
    clock, plane = Clock(), RecordingPlane()
    dispatcher = ActionDispatcher("i1", clock, None, lambda: plane, lambda f, g: None)
    dispatcher.apply([ForwardingChanged(Family.IPV4, G1)])
    dispatcher.cancel()
    clock.advance(1)
    assert plane.updates == [] and clock.getDelayedCalls() == []


def test_ageing_asks_the_plane_every_interval_until_stopped() -> None:
    clock, plane = Clock(), RecordingPlane()
    ageing = SourceAgeing(clock, lambda: plane)
    ageing.start()
    clock.advance(AGEING_INTERVAL)
    clock.advance(AGEING_INTERVAL)
    ageing.stop()
    clock.advance(AGEING_INTERVAL)
    assert plane.aged == [AGEING_INTERVAL, 2 * AGEING_INTERVAL]
