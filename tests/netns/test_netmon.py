"""InterfaceMonitor and interface lookups against real rtnetlink in a namespace."""

from __future__ import annotations

import ipaddress
import os
import select
from collections.abc import Iterator

import pytest

from mcproxy_pmip.kernel import interfaces
from mcproxy_pmip.kernel.netmon import (AddressAdded, AddressRemoved, InterfaceEvent,
                                        InterfaceMonitor, LinkAdded, LinkChanged, LinkRemoved,
                                        Resynced)
from pkt_fixtures import drain, in_netns, namespace, run, wait_for

__all__ = ["namespace"]  # the fixture, imported for pytest

pytestmark = pytest.mark.netns

WAIT = 3.0
V4 = ipaddress.IPv4Interface("10.88.0.1/24")
V6 = ipaddress.IPv6Interface("fd00:88::1/64")


@pytest.fixture
def monitor(namespace: str) -> Iterator[InterfaceMonitor]:
    mon = InterfaceMonitor(netns=namespace)
    try:
        yield mon
    finally:
        mon.close()


def expect(monitor: InterfaceMonitor, event: InterfaceEvent) -> list[InterfaceEvent]:
    """Wait for exactly ``event``; return the events that came before it."""
    _, before = wait_for(monitor.fileno(), monitor.read_events, lambda e: e == event, WAIT, repr(event))
    return before


def expect_all(monitor: InterfaceMonitor, *events: InterfaceEvent) -> list[InterfaceEvent]:
    """Wait until every one of ``events`` arrived, in any order; return all events read."""
    missing = set(events)
    seen: list[InterfaceEvent] = []

    def arrived(event: InterfaceEvent) -> bool:
        seen.append(event)
        missing.discard(event)
        return not missing

    wait_for(monitor.fileno(), monitor.read_events, arrived, WAIT, f"all of {events!r}")
    return seen


def ifindex(ns: str, name: str) -> int:
    return int(run("ip", "-n", ns, "-o", "link", "show", "dev", name).split(":", 1)[0])


def test_start_state_is_the_namespace(namespace: str, monitor: InterfaceMonitor) -> None:
    names = [info.name for info in monitor.interfaces()]
    assert names == ["lo"]
    lo = monitor.interface_by_name("lo")
    assert lo is not None and lo.up and lo.ipv4_addresses == (ipaddress.IPv4Interface("127.0.0.1/8"),)
    assert monitor.is_own_address(ipaddress.IPv4Address("127.0.0.1"))
    assert not monitor.is_own_address(ipaddress.IPv4Address("10.88.0.1"))


def test_link_lifecycle_and_addresses(namespace: str, monitor: InterfaceMonitor) -> None:
    run("ip", "-n", namespace, "link", "add", "mv0", "type", "veth", "peer", "name", "mv1")
    index = ifindex(namespace, "mv0")
    expect(monitor, LinkAdded(index, "mv0", up=False, running=False, mtu=1500))

    run("ip", "-n", namespace, "addr", "add", str(V4), "dev", "mv0")
    expect(monitor, AddressAdded(index, V4.ip, 24))
    assert monitor.is_own_address(V4.ip)

    run("ip", "-n", namespace, "link", "set", "mv1", "up")
    run("ip", "-n", namespace, "link", "set", "mv0", "up")
    expect(monitor, LinkChanged(index, "mv0", up=True, running=True, mtu=1500))

    run("ip", "-n", namespace, "addr", "add", str(V6), "dev", "mv0")
    expect(monitor, AddressAdded(index, V6.ip, 64))
    info = monitor.interface(index)
    assert info is not None
    assert info.ipv4_addresses == (V4,)
    assert V6 in info.ipv6_addresses
    assert info.ipv6_link_local is not None and info.ipv6_link_local.is_link_local

    run("ip", "-n", namespace, "link", "set", "mv0", "mtu", "1400")
    expect(monitor, LinkChanged(index, "mv0", up=True, running=True, mtu=1400))

    run("ip", "-n", namespace, "addr", "del", str(V4), "dev", "mv0")
    expect(monitor, AddressRemoved(index, V4.ip, 24))
    assert not monitor.is_own_address(V4.ip)

    # Administratively down: Linux drops the link's IPv6 addresses (keep_addr_on_down=0).
    run("ip", "-n", namespace, "link", "set", "mv0", "down")
    expect_all(monitor, LinkChanged(index, "mv0", up=False, running=False, mtu=1400),
               AddressRemoved(index, V6.ip, 64))
    assert monitor.interface(index).ipv6_addresses == ()

    run("ip", "-n", namespace, "addr", "add", str(V4), "dev", "mv0")
    expect(monitor, AddressAdded(index, V4.ip, 24))
    run("ip", "-n", namespace, "link", "del", "mv0")
    seen = expect_all(monitor, LinkRemoved(index, "mv0"), AddressRemoved(index, V4.ip, 24))
    assert seen.index(AddressRemoved(index, V4.ip, 24)) < seen.index(LinkRemoved(index, "mv0"))
    assert monitor.interface(index) is None
    assert not monitor.is_own_address(V4.ip)


def test_repeated_notifications_are_not_events(namespace: str, monitor: InterfaceMonitor) -> None:
    run("ip", "-n", namespace, "link", "add", "mv0", "type", "veth", "peer", "name", "mv1")
    index = ifindex(namespace, "mv0")
    expect(monitor, LinkAdded(index, "mv0", up=False, running=False, mtu=1500))
    run("ip", "-n", namespace, "link", "set", "mv0", "up")  # no carrier: mv1 is down
    expect(monitor, LinkChanged(index, "mv0", up=True, running=False, mtu=1500))
    run("ip", "-n", namespace, "link", "set", "mv0", "up")  # no change
    rest = drain(monitor.fileno(), monitor.read_events, quiet_interval=0.2)
    assert [e for e in rest if getattr(e, "ifindex", None) == index] == []


def test_reads_never_block_and_stop_after_max_reads(namespace: str) -> None:
    monitor = InterfaceMonitor(netns=namespace, max_reads=2)
    try:
        assert not os.get_blocking(monitor.fileno())
        assert monitor.read_events() == []  # nothing queued: returns at once
        run("ip", "-n", namespace, "link", "add", "mv0", "type", "veth", "peer", "name", "mv1")
        index = ifindex(namespace, "mv0")
        batch = "".join(f"addr add 10.77.0.{i}/24 dev mv0\n" for i in range(1, 6))
        run("ip", "-n", namespace, "-batch", "-", input_text=batch)
        # The kernel queued every notification before ``ip`` returned: one
        # datagram each, so a call reads at most two of them and leaves the rest.
        first = monitor.read_events()
        assert 1 <= len(first) <= 2
        readable, _, _ = select.select([monitor.fileno()], [], [], 0)
        assert readable, "notifications beyond max_reads stay queued for the next call"
        expected = [AddressAdded(index, ipaddress.IPv4Address(f"10.77.0.{i}"), 24)
                    for i in range(1, 6)]
        seen = first + expect_all(monitor, *expected)
        assert [e for e in seen if isinstance(e, AddressAdded)] == expected
    finally:
        monitor.close()


def test_overrun_resyncs_from_a_full_dump(namespace: str) -> None:
    monitor = InterfaceMonitor(netns=namespace, receive_buffer_size=1024)
    try:
        run("ip", "-n", namespace, "link", "add", "mv0", "type", "veth", "peer", "name", "mv1")
        batch = "".join(f"addr add 10.99.{i // 200}.{i % 200 + 1}/16 dev mv0\n" for i in range(100))
        run("ip", "-n", namespace, "-batch", "-", input_text=batch)
        event, _ = wait_for(monitor.fileno(), monitor.read_events,
                            lambda e: isinstance(e, Resynced), WAIT, "a Resynced event")
        assert monitor.resync_count == 1
        by_name = {info.name: info for info in event.snapshot}
        assert set(by_name) == {"lo", "mv0", "mv1"}
        assert len(by_name["mv0"].ipv4_addresses) == 100
        assert monitor.is_own_address(ipaddress.IPv4Address("10.99.0.100"))
        # The new subscription (with a larger buffer) works: the deletion is seen,
        # as an event or in a further resync.
        index = by_name["mv0"].ifindex
        run("ip", "-n", namespace, "link", "del", "mv0")
        wait_for(monitor.fileno(), monitor.read_events,
                 lambda e: e == LinkRemoved(index, "mv0")
                 or (isinstance(e, Resynced) and all(i.ifindex != index for i in e.snapshot)),
                 WAIT, "mv0's removal")
        assert monitor.interface(index) is None
        assert monitor.receive_buffer_size > 1024
    finally:
        monitor.close()


def test_interface_lookups(namespace: str) -> None:
    run("ip", "-n", namespace, "link", "add", "mv0", "type", "veth", "peer", "name", "mv1")
    run("ip", "-n", namespace, "addr", "add", str(V4), "dev", "mv0")
    run("ip", "-n", namespace, "addr", "add", "10.88.1.1/24", "dev", "mv0")
    run("ip", "-n", namespace, "link", "set", "mv0", "mtu", "1280", "up")
    info = interfaces.interface_by_name("mv0", netns=namespace)
    assert info is not None
    assert info.ifindex == ifindex(namespace, "mv0")
    assert (info.up, info.mtu) == (True, 1280)
    assert info.ipv4_addresses == (V4, ipaddress.IPv4Interface("10.88.1.1/24"))
    assert info.primary_ipv4 == V4.ip
    assert interfaces.interface_by_index(info.ifindex, netns=namespace) == info
    assert interfaces.interface_by_name("nope", netns=namespace) is None
    with in_netns(namespace):
        assert interfaces.ifindex_of("mv0") == info.ifindex
