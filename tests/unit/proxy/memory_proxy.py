"""A whole Proxy on ``task.Clock``: the in-memory data plane and packet sockets, a host table of links.

``MemoryHost`` stands in for the kernel's interface monitor (links come, go,
lose carrier); ``FakeReactor`` is a ``Clock`` that also takes readers. Tests
inject packets with ``igmp_report`` / ``mld_report`` and read what the
daemon sent with ``sent_reports`` / ``sent_queries``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from twisted.internet.task import Clock

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config import parse_config
from mcproxy_pmip.dataplane.memory import MemoryPacketSocket, MemoryPlane
from mcproxy_pmip.kernel.igmp_socket import ReceivedIgmp
from mcproxy_pmip.kernel.interfaces import InterfaceInfo
from mcproxy_pmip.kernel.mld_socket import ReceivedMld
from mcproxy_pmip.kernel.netmon import LinkAdded, LinkChanged, LinkRemoved, on_link
from mcproxy_pmip.proxy.proxy import Proxy
from mcproxy_pmip.wire import igmp, mld
from mcproxy_pmip.wire.records import GroupRecord, RecordType


class FakeReactor(Clock):
    """``task.Clock`` plus the reader registry the Proxy uses."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: list = []

    def addReader(self, reader) -> None:
        self.readers.append(reader)

    def removeReader(self, reader) -> None:
        self.readers.remove(reader)


class MemoryHost:
    """The links of a pretend host; implements what Proxy asks of ``InterfaceMonitor``."""

    def __init__(self) -> None:
        self.links: dict[str, InterfaceInfo] = {}
        self._events: list = []
        self._next_index = 10

    def add_link(self, name: str, *, running: bool = True) -> InterfaceInfo:
        index = self._next_index
        self._next_index += 1
        info = InterfaceInfo(name, index, True, 1500,
                             (ipaddress.IPv4Interface(f"10.{index // 256}.{index % 256}.1/24"),),
                             ipaddress.IPv6Address(f"fe80::{index:x}:1"), (), running)
        self.links[name] = info
        self._events.append(LinkAdded(index, name, True, running, 1500))
        return info

    def set_carrier(self, name: str, running: bool) -> None:
        old = self.links[name]
        self.links[name] = InterfaceInfo(old.name, old.ifindex, old.up, old.mtu, old.ipv4_addresses,
                                         old.ipv6_link_local, old.ipv6_addresses, running)
        self._events.append(LinkChanged(old.ifindex, name, True, running, 1500))

    def remove_link(self, name: str) -> None:
        info = self.links.pop(name)
        self._events.append(LinkRemoved(info.ifindex, name))

    # -- InterfaceMonitor --------------------------------------------------------------
    def fileno(self) -> int:
        return -1

    def read_events(self) -> list:
        events, self._events = self._events, []
        return events

    def interface(self, ifindex: int) -> InterfaceInfo | None:
        return next((i for i in self.links.values() if i.ifindex == ifindex), None)

    def interface_by_name(self, name: str) -> InterfaceInfo | None:
        return self.links.get(name)

    def is_own_address(self, address) -> bool:
        return any(address == i.primary_ipv4 or address == i.ipv6_link_local for i in self.links.values())

    def is_on_link(self, ifindex: int, address) -> bool:
        info = self.interface(ifindex)
        return info is not None and on_link(info, address)

    def close(self) -> None:
        pass


class MemoryProxy:
    """A started Proxy over ``MemoryHost`` links; ``plane`` and ``sockets`` are the memory ports."""

    def __init__(self, config_text: str, links: Iterable[str], *, max_interfaces: int | None = None,
                 seed: int = 1) -> None:
        self.reactor = FakeReactor()
        self.host = MemoryHost()
        for name in links:
            self.host.add_link(name)
        self.host.read_events()
        self.plane = MemoryPlane(max_interfaces)
        self.sockets: dict[Family, MemoryPacketSocket] = {}
        self.proxy = Proxy(parse_config(config_text), self.reactor, self.plane, self._socket,
                           monitor_factory=lambda: self.host, seed=seed)
        self.proxy.startService()

    def _socket(self, family: Family) -> MemoryPacketSocket:
        self.sockets[family] = MemoryPacketSocket(family)
        return self.sockets[family]

    def links_changed(self) -> None:
        """What the reactor does when the netlink monitor is readable (to the end of its turn)."""
        self.proxy._read_interface_events()
        self.reactor.advance(0)

    def deliver(self) -> None:
        """What the reactor does when the packet sockets are readable (to the end of its turn)."""
        self.proxy.receiver.read_igmp()
        self.proxy.receiver.read_mld()
        self.reactor.advance(0)

    def igmp_report(self, link: str, records: list[GroupRecord], source: str = "10.9.9.9") -> None:
        info = self.host.links[link]
        payload = igmp.build(igmp.IgmpV3Report(tuple(records)))
        self.sockets[Family.IPV4].inject(ReceivedIgmp(info.ifindex, ipaddress.IPv4Address(source),
                                                      ipaddress.IPv4Address("224.0.0.22"), 1, True, payload))
        self.deliver()

    def mld_report(self, link: str, records: list[GroupRecord], source: str = "fe80::99") -> None:
        info = self.host.links[link]
        src, dst = ipaddress.IPv6Address(source), ipaddress.IPv6Address("ff02::16")
        payload = mld.build(mld.MldV2Report(tuple(records)), src, dst)
        self.sockets[Family.IPV6].inject(ReceivedMld(info.ifindex, src, dst, 1, True, payload))
        self.deliver()

    def sent(self, family: Family, link: str) -> list:
        index = self.host.links[link].ifindex
        return [p for p in self.sockets[family].sent if p.ifindex == index]

    def sent_reports(self, family: Family, link: str) -> list:
        parse = igmp.parse if family is Family.IPV4 else mld.parse
        kinds = (igmp.IgmpQuery, mld.MldQuery)
        return [m for m in (parse(p.payload) for p in self.sent(family, link)) if not isinstance(m, kinds)]

    def sent_queries(self, family: Family, link: str) -> list:
        parse = igmp.parse if family is Family.IPV4 else mld.parse
        return [m for m in (parse(p.payload) for p in self.sent(family, link))
                if isinstance(m, (igmp.IgmpQuery, mld.MldQuery))]

    def stop(self) -> None:
        self.proxy.stopService()


def exclude_none(group: str) -> GroupRecord:
    """A (*,G) join: CHANGE_TO_EXCLUDE({})."""
    return GroupRecord(RecordType.CHANGE_TO_EXCLUDE, ipaddress.ip_address(group), ())


def include(group: str, *sources: str) -> GroupRecord:
    return GroupRecord(RecordType.ALLOW_NEW_SOURCES, ipaddress.ip_address(group),
                       tuple(ipaddress.ip_address(s) for s in sources))


def leave(group: str) -> GroupRecord:
    """The last member leaves: CHANGE_TO_INCLUDE({})."""
    return GroupRecord(RecordType.CHANGE_TO_INCLUDE, ipaddress.ip_address(group), ())
