"""Interface monitor: link and address changes from rtnetlink, as events.

An ``IPRSocket`` subscribed to RTMGRP_LINK, RTMGRP_IPV4_IFADDR and
RTMGRP_IPV6_IFADDR (RFC 3549 §2.3.3) delivers RTM_NEWLINK / RTM_DELLINK /
RTM_NEWADDR / RTM_DELADDR notifications. The monitor keeps the current links
and usable addresses and turns each notification into an event only when it
changes that state, so repeated notifications (the kernel sends several per
link creation) do not reach the proxy.

Netlink multicast is lossy: when the receive buffer overflows, the kernel
reports ENOBUFS. The monitor then closes the socket, opens a new one (the
subscription first, so nothing is missed), rebuilds its state from a full
dump and returns one ``Resynced`` event with the snapshot; the consumer
reconciles against it. Each overrun doubles the receive buffer (up to 16 MiB).

Tentative and DAD-failed addresses count as absent (``kernel.interfaces``): an
address is ``AddressAdded`` when the kernel can send from it.

The IO layer registers ``fileno()`` with the reactor and calls the
non-blocking ``read_events()``: the descriptor is in non-blocking mode and each
``IPRSocket.get()`` (pyroute2's public API) reads one datagram, at most
``max_reads`` a call. The monitor also answers ``is_own_address`` for the
Receiver, which drops reports the host stack sent for the proxy's own joins,
and ``is_on_link`` (``on_link``), which keeps queries from sources that are
not neighbours on the link out of querier election.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRSocket
from pyroute2.netlink.rtnl import (RTM_DELADDR, RTM_DELLINK, RTM_NEWADDR, RTM_NEWLINK,
                                   RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK)

from mcproxy_pmip.addresses import IPAddress
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel.interfaces import (AddressState, InterfaceInfo, LinkState, build_info,
                                            dump_addresses, dump_links, parse_address, parse_link)

log = logging.getLogger(__name__)

MONITOR_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
DEFAULT_RECEIVE_BUFFER_SIZE = 1 << 20
MAX_RECEIVE_BUFFER_SIZE = 1 << 24
DEFAULT_MAX_READS = 32
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>; missing from Python's socket module


@dataclass(frozen=True, slots=True)
class LinkAdded:
    """A link appeared (created, or moved into this namespace)."""

    ifindex: int
    name: str
    up: bool  # IFF_UP: administratively up
    running: bool  # IFF_RUNNING: carrier present
    mtu: int


@dataclass(frozen=True, slots=True)
class LinkChanged:
    """A known link changed name, administrative state, carrier or MTU."""

    ifindex: int
    name: str
    up: bool
    running: bool
    mtu: int


@dataclass(frozen=True, slots=True)
class LinkRemoved:
    """A link disappeared (deleted, or moved out of this namespace)."""

    ifindex: int
    name: str


@dataclass(frozen=True, slots=True)
class AddressAdded:
    """An address became usable on a link."""

    ifindex: int
    address: IPAddress
    prefixlen: int


@dataclass(frozen=True, slots=True)
class AddressRemoved:
    """An address went away from a link (or DAD failed for it)."""

    ifindex: int
    address: IPAddress
    prefixlen: int


@dataclass(frozen=True, slots=True)
class Resynced:
    """Notifications were lost (ENOBUFS); this is the whole current state."""

    snapshot: tuple[InterfaceInfo, ...]


InterfaceEvent = LinkAdded | LinkChanged | LinkRemoved | AddressAdded | AddressRemoved | Resynced


def on_link(info: InterfaceInfo, address: IPAddress) -> bool:
    """True if ``address`` can be a neighbour on the interface ``info`` describes.

    IPv6: a link-local address, or one inside a prefix of the interface.
    IPv4: an address inside a subnet of the interface; on an interface with
    no IPv4 subnet wider than /32 (unnumbered or point-to-point: the peer is
    the only neighbour, and it may be numbered from anywhere) every address.
    The unspecified address is on no link.
    """
    if address.is_unspecified:
        return False
    if address.version == 6:
        return address.is_link_local or any(address in entry.network for entry in info.ipv6_addresses)
    subnets = [entry.network for entry in info.ipv4_addresses if entry.network.prefixlen < 32]
    return not subnets or any(address in subnet for subnet in subnets)


class InterfaceMonitor:
    """Link and address events of one network namespace.

    ``netns`` names the namespace (under /run/netns) to watch; None is the
    calling thread's namespace. Reopening after ENOBUFS uses the same one.
    """

    def __init__(self, netns: str | None = None,
                 receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
                 max_reads: int = DEFAULT_MAX_READS) -> None:
        self.netns = netns
        self.receive_buffer_size = receive_buffer_size
        self.max_reads = max_reads
        self.resync_count = 0
        self._links: dict[int, LinkState] = {}
        self._addresses: dict[int, dict[IPAddress, AddressState]] = {}
        #: every usable address of the namespace -> on how many links it is
        self._own: Counter[IPAddress] = Counter()
        #: InterfaceInfo by ifindex and ifindex by name, built on demand, dropped on any change
        self._infos: dict[int, InterfaceInfo] = {}
        self._names: dict[str, int] | None = None
        self._sock = self._subscribe()
        try:
            self._load()
        except KernelError:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def _subscribe(self) -> Any:
        sock = IPRSocket(groups=MONITOR_GROUPS, rcvbuf=self.receive_buffer_size, netns=self.netns)
        try:
            sock.bind(groups=MONITOR_GROUPS)
            os.set_blocking(sock.fileno(), False)
        except OSError as exc:
            sock.close()
            raise KernelError("bind(rtnetlink monitor)", exc.errno or errno.EIO) from exc
        try:
            # Beyond net.core.rmem_max, which caps SO_RCVBUF; needs CAP_NET_ADMIN.
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.receive_buffer_size)
        except PermissionError:
            log.debug("netlink_rcvbuf_capped reason=no-CAP_NET_ADMIN size=%d", self.receive_buffer_size)
        except OSError as exc:
            sock.close()
            raise KernelError("setsockopt(SO_RCVBUFFORCE)", exc.errno or errno.EIO) from exc
        return sock

    def _load(self) -> None:
        """Replace the known state by a full dump."""
        links = dump_links(self.netns)
        addresses = dump_addresses(self.netns)
        self._links = {link.ifindex: link for link in links}
        self._addresses = {}
        for entry in addresses:
            if entry.usable:
                self._addresses.setdefault(entry.ifindex, {})[entry.address] = entry
        self._own = Counter(address for entries in self._addresses.values() for address in entries)
        self._forget_infos()

    def _forget_infos(self) -> None:
        self._infos.clear()
        self._names = None

    def snapshot(self) -> tuple[InterfaceInfo, ...]:
        """A full dump: the known state is rebuilt from it and returned, by ifindex."""
        self._load()
        return self.interfaces()

    def interfaces(self) -> tuple[InterfaceInfo, ...]:
        """The known state (no syscall), by ifindex."""
        return tuple(self._info(ifindex) for ifindex in sorted(self._links))

    def interface(self, ifindex: int) -> InterfaceInfo | None:
        """The known state of one interface (no syscall)."""
        if ifindex not in self._links:
            return None
        return self._info(ifindex)

    def interface_by_name(self, name: str) -> InterfaceInfo | None:
        """The known state of the interface called ``name`` (no syscall)."""
        if self._names is None:
            self._names = {link.name: ifindex for ifindex, link in self._links.items()}
        ifindex = self._names.get(name)
        return None if ifindex is None else self._info(ifindex)

    def _info(self, ifindex: int) -> InterfaceInfo:
        info = self._infos.get(ifindex)
        if info is None:
            info = build_info(self._links[ifindex], list(self._addresses.get(ifindex, {}).values()))
            self._infos[ifindex] = info
        return info

    def is_own_address(self, address: IPAddress) -> bool:
        """True if ``address`` is assigned to any interface of this namespace.

        Checked namespace-wide, because the host stack may source a report
        from another interface's address when the sending one has none.
        """
        return address in self._own

    def is_on_link(self, ifindex: int, address: IPAddress) -> bool:
        """True if ``address`` can be a neighbour on ``ifindex`` (``on_link``); False for an unknown link."""
        if ifindex not in self._links:
            return False
        return on_link(self._info(ifindex), address)

    def read_events(self) -> list[InterfaceEvent]:
        """The events queued so far, without blocking (at most ``max_reads`` datagrams)."""
        events: list[InterfaceEvent] = []
        for _ in range(self.max_reads):
            try:
                messages = self._sock.get()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise KernelError("recv(rtnetlink monitor)", exc.errno or errno.EIO) from exc
                events.append(self._resync())
                break
            self._forget_infos()
            for msg in messages:
                events.extend(self._handle(msg))
        return events

    def _resync(self) -> Resynced:
        self.resync_count += 1
        self.receive_buffer_size = min(2 * self.receive_buffer_size, MAX_RECEIVE_BUFFER_SIZE)
        log.warning("netlink_overrun action=resync count=%d receive_buffer_size=%d",
                    self.resync_count, self.receive_buffer_size)
        self._sock.close()
        self._sock = self._subscribe()
        return Resynced(self.snapshot())

    def _handle(self, msg: Any) -> list[InterfaceEvent]:
        kind = msg["header"]["type"]
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            if msg["family"] == socket.AF_BRIDGE:
                return []  # bridge port notifications, not link creation or removal
            link = parse_link(msg)
            return self._link_added(link) if kind == RTM_NEWLINK else self._link_removed(link)
        if kind in (RTM_NEWADDR, RTM_DELADDR):
            entry = parse_address(msg)
            if entry is None:
                return []
            if kind == RTM_NEWADDR and entry.usable:
                return self._address_added(entry)
            return self._address_removed(entry)
        return []

    def _link_added(self, link: LinkState) -> list[InterfaceEvent]:
        known = self._links.get(link.ifindex)
        self._links[link.ifindex] = link
        if known is None:
            return [LinkAdded(link.ifindex, link.name, link.up, link.running, link.mtu)]
        if known != link:
            return [LinkChanged(link.ifindex, link.name, link.up, link.running, link.mtu)]
        return []

    def _link_removed(self, link: LinkState) -> list[InterfaceEvent]:
        known = self._links.pop(link.ifindex, None)
        if known is None:
            return []
        # The kernel announces each address's removal first; anything left goes silently.
        self._own -= Counter(self._addresses.pop(link.ifindex, {}))
        return [LinkRemoved(link.ifindex, known.name)]

    def _address_added(self, entry: AddressState) -> list[InterfaceEvent]:
        entries = self._addresses.setdefault(entry.ifindex, {})
        known = entries.get(entry.address)
        entries[entry.address] = entry
        if known is None:
            self._own[entry.address] += 1
        if known is not None and known.prefixlen == entry.prefixlen:
            return []
        return [AddressAdded(entry.ifindex, entry.address, entry.prefixlen)]

    def _address_removed(self, entry: AddressState) -> list[InterfaceEvent]:
        known = self._addresses.get(entry.ifindex, {}).pop(entry.address, None)
        if known is None:
            return []
        self._own -= Counter((entry.address,))
        return [AddressRemoved(entry.ifindex, entry.address, known.prefixlen)]

