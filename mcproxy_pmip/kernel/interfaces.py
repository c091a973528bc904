"""Interface lookups in the current network namespace: index, state, MTU, addresses.

One rtnetlink dump of links and one of addresses (RFC 3549 §3.1.1, §3.1.2 message
formats) gives an ``InterfaceInfo`` per interface. The proxy asks at start and
when the interface monitor (``kernel.netmon``) resyncs; ``netmon`` keeps the
same records current from link and address notifications.

Addresses that are tentative (duplicate address detection still running) or
whose DAD failed are left out: the kernel will not send from them, and MLD
messages must leave from a usable link-local address (RFC 3810 §5).

Sockets are opened in the calling thread's network namespace, or in the named
one (``netns``, as under /run/netns) for tests and the testbed.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRSocket
from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_GETADDR, RTM_GETLINK
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from mcproxy_pmip.errors import KernelError

log = logging.getLogger(__name__)

IFF_UP = 0x1
IFF_RUNNING = 0x40
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40

_DUMP_SEQUENCE = 1


@dataclass(frozen=True, slots=True)
class LinkState:
    """What an RTM_NEWLINK message says about one interface."""

    ifindex: int
    name: str
    up: bool
    running: bool
    mtu: int


@dataclass(frozen=True, slots=True)
class AddressState:
    """What an RTM_NEWADDR / RTM_DELADDR message says about one address."""

    ifindex: int
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    prefixlen: int
    usable: bool  # neither tentative nor DAD-failed


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    """One interface and its usable addresses, as the kernel reports them."""

    name: str
    ifindex: int
    up: bool
    mtu: int
    ipv4_addresses: tuple[ipaddress.IPv4Interface, ...] = ()
    ipv6_link_local: ipaddress.IPv6Address | None = None
    ipv6_addresses: tuple[ipaddress.IPv6Interface, ...] = ()
    running: bool = False  # IFF_RUNNING: carrier present

    @property
    def primary_ipv4(self) -> ipaddress.IPv4Address | None:
        """The first IPv4 address (the kernel's primary), the IGMP querier's own address."""
        return self.ipv4_addresses[0].ip if self.ipv4_addresses else None


def parse_link(msg: Any) -> LinkState:
    """An RTM_NEWLINK / RTM_DELLINK message as a ``LinkState``."""
    flags = msg["flags"]
    return LinkState(
        ifindex=msg["index"],
        name=msg.get_attr("IFLA_IFNAME") or "",
        up=bool(flags & IFF_UP),
        running=bool(flags & IFF_RUNNING),
        mtu=msg.get_attr("IFLA_MTU") or 0,
    )


def parse_address(msg: Any) -> AddressState | None:
    """An RTM_NEWADDR / RTM_DELADDR message as an ``AddressState`` (None: not IPv4/IPv6)."""
    family = msg["family"]
    if family == socket.AF_INET:
        # IFA_ADDRESS is the peer on point-to-point links; IFA_LOCAL is ours.
        text = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    elif family == socket.AF_INET6:
        text = msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL")
    else:
        return None
    if text is None:
        return None
    flags = msg.get_attr("IFA_FLAGS")
    if flags is None:
        flags = msg["flags"]
    return AddressState(
        ifindex=msg["index"],
        address=ipaddress.ip_address(text),
        prefixlen=msg["prefixlen"],
        usable=not flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED),
    )


def build_info(link: LinkState, addresses: list[AddressState]) -> InterfaceInfo:
    """Assemble an ``InterfaceInfo`` from a link and its usable addresses (in kernel order)."""
    ipv4: list[ipaddress.IPv4Interface] = []
    ipv6: list[ipaddress.IPv6Interface] = []
    link_local: ipaddress.IPv6Address | None = None
    for entry in addresses:
        if not entry.usable:
            continue
        if entry.address.version == 4:
            ipv4.append(ipaddress.IPv4Interface((entry.address, entry.prefixlen)))
            continue
        ipv6.append(ipaddress.IPv6Interface((entry.address, entry.prefixlen)))
        if entry.address.is_link_local and link_local is None:
            link_local = entry.address
    return InterfaceInfo(
        name=link.name,
        ifindex=link.ifindex,
        up=link.up,
        running=link.running,
        mtu=link.mtu,
        ipv4_addresses=tuple(ipv4),
        ipv6_link_local=link_local,
        ipv6_addresses=tuple(ipv6),
    )


def rtnl_dump(message: Any, message_type: int, netns: str | None) -> list[Any]:
    """Run one rtnetlink dump request on a private socket and return every answer."""
    sock = IPRSocket(groups=0, netns=netns)
    try:
        sock.bind(groups=0)
        sock.put(message, msg_type=message_type, msg_flags=NLM_F_REQUEST | NLM_F_DUMP,
                 msg_seq=_DUMP_SEQUENCE)
        answers: list[Any] = []
        while True:
            for msg in sock.get():
                kind = msg["header"]["type"]
                if kind == NLMSG_DONE:
                    return answers
                if kind == NLMSG_ERROR:
                    error = msg["header"].get("error")
                    raise KernelError("rtnetlink dump", getattr(error, "code", None) or errno.EIO)
                answers.append(msg)
    except OSError as exc:
        raise KernelError("rtnetlink dump", exc.errno or errno.EIO) from exc
    finally:
        sock.close()


def dump_links(netns: str | None = None) -> list[LinkState]:
    """Every link in the namespace (RTM_GETLINK dump)."""
    return [parse_link(msg) for msg in rtnl_dump(ifinfmsg(), RTM_GETLINK, netns)
            if msg["family"] != socket.AF_BRIDGE]


def dump_addresses(netns: str | None = None) -> list[AddressState]:
    """Every IPv4 and IPv6 address in the namespace (RTM_GETADDR dump)."""
    request = ifaddrmsg()
    request["family"] = socket.AF_UNSPEC
    parsed = (parse_address(msg) for msg in rtnl_dump(request, RTM_GETADDR, netns))
    return [entry for entry in parsed if entry is not None]


def snapshot(netns: str | None = None) -> tuple[InterfaceInfo, ...]:
    """All interfaces of the namespace with their usable addresses, by ifindex."""
    by_index: dict[int, list[AddressState]] = {}
    for entry in dump_addresses(netns):
        by_index.setdefault(entry.ifindex, []).append(entry)
    links = sorted(dump_links(netns), key=lambda link: link.ifindex)
    return tuple(build_info(link, by_index.get(link.ifindex, [])) for link in links)


def interface_by_name(name: str, netns: str | None = None) -> InterfaceInfo | None:
    """The interface called ``name``, or None."""
    for info in snapshot(netns):
        if info.name == name:
            return info
    return None


def interface_by_index(ifindex: int, netns: str | None = None) -> InterfaceInfo | None:
    """The interface with index ``ifindex``, or None."""
    for info in snapshot(netns):
        if info.ifindex == ifindex:
            return info
    return None


def ifindex_of(name: str) -> int:
    """The index of interface ``name`` (if_nametoindex); KernelError(ENODEV) if absent."""
    try:
        return socket.if_nametoindex(name)
    except OSError as exc:
        raise KernelError("if_nametoindex", exc.errno or errno.ENODEV, name) from exc
