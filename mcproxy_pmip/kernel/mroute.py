"""The kernel's multicast routing socket (MRT / MRT6), one per instance table and family.

Linux multicast routing is driven through one raw socket per routing table:
``socket(AF_INET, SOCK_RAW, IPPROTO_IGMP)`` with ``MRT_*`` options at level
``IPPROTO_IP`` (``linux/mroute.h``), and ``socket(AF_INET6, SOCK_RAW,
IPPROTO_ICMPV6)`` with ``MRT6_*`` options at level ``IPPROTO_IPV6``
(``linux/mroute6.h``). ``MRT_TABLE`` selects the table and must come before
``MRT_INIT``; ``MRT_DONE`` (or closing the socket) drops the table's vifs and
MFC entries. The kernel reports cache misses and wrong-interface arrivals
("upcalls") by queueing messages on this socket; :meth:`MrouteSocket.read_upcalls`
reads and parses them (``kernel.upcalls``).

This module holds the option numbers, the C struct layouts (``vifctl``,
``mif6ctl``, ``mfcctl``, ``mf6cctl``, ``sioc_sg_req``, ``sioc_sg_req6``) and the
socket. ``kernel.vifs``, ``kernel.mfc`` and ``kernel.counters`` build on it.
Every failed syscall raises ``KernelError(op, errno)``.

This is the kernel side of RFC 4605 §4.2 (forwarding packets between the
upstream and downstream interfaces of a proxy).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import socket
import struct

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.errors import KernelError, MalformedPacket
from mcproxy_pmip.kernel import upcalls

log = logging.getLogger(__name__)

# linux/mroute.h and linux/mroute6.h share the numbers; the level differs.
MRT_BASE = 200
MRT_INIT = MRT_BASE
MRT_DONE = MRT_BASE + 1
MRT_ADD_VIF = MRT_BASE + 2
MRT_DEL_VIF = MRT_BASE + 3
MRT_ADD_MFC = MRT_BASE + 4
MRT_DEL_MFC = MRT_BASE + 5
MRT_VERSION = MRT_BASE + 6
MRT_ASSERT = MRT_BASE + 7
MRT_PIM = MRT_BASE + 8
MRT_TABLE = MRT_BASE + 9
MRT_FLUSH = MRT_BASE + 12
MRT6_INIT = MRT_INIT
MRT6_DONE = MRT_DONE
MRT6_ADD_MIF = MRT_ADD_VIF
MRT6_DEL_MIF = MRT_DEL_VIF
MRT6_ADD_MFC = MRT_ADD_MFC
MRT6_DEL_MFC = MRT_DEL_MFC
MRT6_ASSERT = MRT_ASSERT
MRT6_TABLE = MRT_TABLE
MRT6_FLUSH = MRT_FLUSH

MRT_FLUSH_MFC = 1
MRT_FLUSH_MFC_STATIC = 2
MRT_FLUSH_VIFS = 4
MRT_FLUSH_VIFS_STATIC = 8
MRT_FLUSH_ALL = MRT_FLUSH_MFC | MRT_FLUSH_MFC_STATIC | MRT_FLUSH_VIFS | MRT_FLUSH_VIFS_STATIC

SIOCPROTOPRIVATE = 0x89E0
SIOCGETVIFCNT = SIOCPROTOPRIVATE
SIOCGETSGCNT = SIOCPROTOPRIVATE + 1
SIOCGETMIFCNT_IN6 = SIOCPROTOPRIVATE
SIOCGETSGCNT_IN6 = SIOCPROTOPRIVATE + 1

MAXVIFS = 32
MAXMIFS = 32
VIFF_USE_IFINDEX = 0x8
RT_TABLE_DEFAULT = 253

ICMP6_FILTER = 1  # linux/icmpv6.h, level IPPROTO_ICMPV6

# struct vifctl { vifi_t vifc_vifi; u8 flags; u8 threshold; u32 rate_limit;
#                 union { in_addr lcl_addr; int lcl_ifindex; }; in_addr rmt_addr; }
VIFCTL = struct.Struct("@HBBIi4s")
# struct mif6ctl { mifi_t mifi; u8 flags; u8 threshold; u16 pifi; u32 rate_limit; }
MIF6CTL = struct.Struct("@HBBHI")
# struct mfcctl { in_addr origin; in_addr mcastgrp; vifi_t parent; u8 ttls[32];
#                 u32 pkt_cnt; u32 byte_cnt; u32 wrong_if; int expire; }
MFCCTL = struct.Struct(f"@4s4sH{MAXVIFS}sIIIi")
# struct sockaddr_in6 { u16 family; u16 port; u32 flowinfo; in6_addr addr; u32 scope_id; }
_SOCKADDR_IN6 = "H2sI16sI"
# struct mf6cctl { sockaddr_in6 origin; sockaddr_in6 mcastgrp; mifi_t parent; if_set ifset; }
IF_SETSIZE = 256
MF6CCTL = struct.Struct(f"@{_SOCKADDR_IN6}{_SOCKADDR_IN6}H{IF_SETSIZE // 32}I")
# struct sioc_sg_req { in_addr src; in_addr grp; unsigned long pktcnt, bytecnt, wrong_if; }
SIOC_SG_REQ = struct.Struct("@4s4sLLL")
# struct sioc_sg_req6 { sockaddr_in6 src; sockaddr_in6 grp; unsigned long pktcnt, bytecnt, wrong_if; }
SIOC_SG_REQ6 = struct.Struct(f"@{_SOCKADDR_IN6}{_SOCKADDR_IN6}LLL")

# Classic BPF for the IPv4 socket: keep only upcalls (IP protocol byte 9 == 0);
# the raw IGMP socket would otherwise also get a copy of every IGMP packet.
_SO_ATTACH_FILTER = 26
_BPF_UPCALLS_ONLY = (
    (0x30, 0, 0, 9),  # ldb [9]
    (0x15, 0, 1, 0),  # jeq #0, accept, drop
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1
    (0x06, 0, 0, 0),  # ret #0
)

_READ_SIZE = 65535


def pack_vifctl(vif: int, ifindex: int, threshold: int = 1) -> bytes:
    """A ``vifctl`` naming the interface by index (``VIFF_USE_IFINDEX``)."""
    return VIFCTL.pack(vif, VIFF_USE_IFINDEX, threshold, 0, ifindex, bytes(4))


def pack_mif6ctl(mif: int, ifindex: int, threshold: int = 1) -> bytes:
    """A ``mif6ctl`` for a physical interface (no ``MIFF_REGISTER``)."""
    if not 0 < ifindex <= 0xFFFF:
        raise ValueError(f"ifindex {ifindex} does not fit mif6ctl.mif6c_pifi (u16)")
    return MIF6CTL.pack(mif, 0, threshold, ifindex, 0)


def _check_vif(vif: int) -> None:
    if not 0 <= vif < MAXVIFS:
        raise ValueError(f"vif {vif} outside 0..{MAXVIFS - 1}")


def pack_mfcctl(source: IPAddress, group: IPAddress, iif_vif: int, oif_vifs: frozenset[int]) -> bytes:
    """An ``mfcctl``: TTL threshold 1 on each outgoing vif (forward TTL > 1), 0 elsewhere."""
    _check_vif(iif_vif)
    ttls = bytearray(MAXVIFS)
    for vif in oif_vifs:
        _check_vif(vif)
        ttls[vif] = 1
    return MFCCTL.pack(source.packed, group.packed, iif_vif, bytes(ttls), 0, 0, 0, 0)


def _sockaddr_in6(address: IPAddress) -> tuple[int, bytes, int, bytes, int]:
    return (socket.AF_INET6, bytes(2), 0, address.packed, 0)


def pack_mf6cctl(source: IPAddress, group: IPAddress, iif_mif: int, oif_mifs: frozenset[int]) -> bytes:
    """An ``mf6cctl`` with the outgoing mifs as bits of the ``if_set`` bitmap."""
    _check_vif(iif_mif)
    words = [0] * (IF_SETSIZE // 32)
    for mif in oif_mifs:
        _check_vif(mif)
        words[mif // 32] |= 1 << (mif % 32)
    return MF6CCTL.pack(*_sockaddr_in6(source), *_sockaddr_in6(group), iif_mif, *words)


def pack_sioc_sg_req(family: Family, source: IPAddress, group: IPAddress) -> bytearray:
    """The request buffer of ``SIOCGETSGCNT`` / ``SIOCGETSGCNT_IN6`` (counters zero)."""
    if family is Family.IPV4:
        return bytearray(SIOC_SG_REQ.pack(source.packed, group.packed, 0, 0, 0))
    return bytearray(SIOC_SG_REQ6.pack(*_sockaddr_in6(source), *_sockaddr_in6(group), 0, 0, 0))


def unpack_sioc_sg_req(family: Family, data: bytes) -> tuple[int, int, int]:
    """(packets, bytes, wrong_if) from an answered ``sioc_sg_req`` / ``sioc_sg_req6``."""
    if family is Family.IPV4:
        return SIOC_SG_REQ.unpack(data)[2:]
    return SIOC_SG_REQ6.unpack(data)[10:]


class MrouteSocket:
    """The multicast routing socket of one table and one family.

    Opening it creates the table if needed (``MRT_TABLE``) and makes this socket
    the table's multicast router (``MRT_INIT``); ``EADDRINUSE`` there means
    another router (another daemon) owns the table. ``fileno()`` is for the IO
    layer's reader; ``read_upcalls()`` never blocks. ``table=None`` uses the
    kernel's default table without setting ``MRT_TABLE``.
    """

    def __init__(self, family: Family, table: int | None = RT_TABLE_DEFAULT) -> None:
        self.family = family
        self.table = table
        self.level = socket.IPPROTO_IP if family is Family.IPV4 else socket.IPPROTO_IPV6
        self.malformed_upcalls = 0
        self.ignored_packets = 0
        if family is Family.IPV4:
            domain, proto, what = socket.AF_INET, socket.IPPROTO_IGMP, "socket(AF_INET, SOCK_RAW, IPPROTO_IGMP)"
        else:
            domain, proto, what = socket.AF_INET6, socket.IPPROTO_ICMPV6, "socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)"
        try:
            self._sock: socket.socket | None = socket.socket(domain, socket.SOCK_RAW, proto)
        except OSError as exc:
            raise KernelError(what, exc.errno or errno.EIO) from exc
        try:
            self._initialise()
        except BaseException:
            self._sock.close()
            self._sock = None
            raise
        log.debug("mroute_opened family=%s table=%s", family.name, table)

    def _initialise(self) -> None:
        prefix = "MRT" if self.family is Family.IPV4 else "MRT6"
        if self.table is not None:
            if not 0 <= self.table <= 0x7FFFFFFF:
                raise ValueError(f"multicast routing table {self.table} out of range")
            self.setsockopt(f"{prefix}_TABLE", MRT_TABLE, struct.pack("@I", self.table))
        try:
            self.setsockopt(f"{prefix}_INIT", MRT_INIT, struct.pack("@i", 1))
        except KernelError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise KernelError(
                    exc.op, exc.errno, f"table {self.table} already has a multicast router (another daemon?)"
                ) from exc
            raise
        if self.family is Family.IPV4:
            program = b"".join(struct.pack("@HBBI", *insn) for insn in _BPF_UPCALLS_ONLY)
            holder = ctypes.create_string_buffer(program, len(program))  # sock_fprog points at it
            fprog = struct.pack("@HL", len(_BPF_UPCALLS_ONLY), ctypes.addressof(holder))
            self._setsockopt_at("SO_ATTACH_FILTER", socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
        else:
            # Block every ICMPv6 type: upcalls bypass the filter, MLD goes to the Receiver's socket.
            self._setsockopt_at("ICMP6_FILTER", socket.IPPROTO_ICMPV6, ICMP6_FILTER, b"\xff" * 32)
        self._sock.setblocking(False)

    @property
    def closed(self) -> bool:
        return self._sock is None

    def fileno(self) -> int:
        return self._live().fileno()

    def _live(self) -> socket.socket:
        if self._sock is None:
            raise KernelError("mroute socket", errno.EBADF, "already closed")
        return self._sock

    def _setsockopt_at(self, op: str, level: int, option: int, value: bytes) -> None:
        try:
            self._live().setsockopt(level, option, value)
        except OSError as exc:
            raise KernelError(op, exc.errno or errno.EIO, f"table {self.table}") from exc

    def setsockopt(self, op: str, option: int, value: bytes) -> None:
        """``setsockopt`` at this family's multicast routing level; ``op`` names it in errors."""
        self._setsockopt_at(op, self.level, option, value)

    def ioctl(self, op: str, request: int, buffer: bytearray) -> bytearray:
        """An ioctl that fills ``buffer`` in place (``SIOCGETSGCNT`` and friends)."""
        try:
            fcntl.ioctl(self._live().fileno(), request, buffer, True)
        except OSError as exc:
            raise KernelError(op, exc.errno or errno.EIO, f"table {self.table}") from exc
        return buffer

    def set_assert(self, enabled: bool) -> None:
        """``MRT_ASSERT``: have the kernel report WRONGVIF / WRONGMIF upcalls."""
        prefix = "MRT" if self.family is Family.IPV4 else "MRT6"
        self.setsockopt(f"{prefix}_ASSERT", MRT_ASSERT, struct.pack("@i", 1 if enabled else 0))

    def flush(self, flags: int = MRT_FLUSH_ALL) -> None:
        """``MRT_FLUSH``: drop vifs and MFC entries, static ones included with the default flags."""
        prefix = "MRT" if self.family is Family.IPV4 else "MRT6"
        self.setsockopt(f"{prefix}_FLUSH", MRT_FLUSH, struct.pack("@i", flags))

    def read_upcalls(self, max_messages: int = 64) -> list[upcalls.Upcall]:
        """Read what is queued (at most ``max_messages``) without blocking; return the upcalls.

        A malformed message is logged, counted in ``malformed_upcalls`` and skipped;
        a packet that is not an upcall is counted in ``ignored_packets``.
        """
        sock = self._live()
        found: list[upcalls.Upcall] = []
        for _ in range(max_messages):
            try:
                data = sock.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                raise KernelError("recv(mroute socket)", exc.errno or errno.EIO, f"table {self.table}") from exc
            try:
                upcall = upcalls.parse(self.family, data)
            except MalformedPacket as exc:
                self.malformed_upcalls += 1
                log.warning("upcall_malformed table=%s reason=%s", self.table, exc.reason)
                continue
            if upcall is None:
                self.ignored_packets += 1
                continue
            found.append(upcall)
        return found

    def close(self) -> None:
        """``MRT_DONE`` then close: the kernel drops this table's vifs and MFC entries."""
        if self._sock is None:
            return
        prefix = "MRT" if self.family is Family.IPV4 else "MRT6"
        try:
            self.setsockopt(f"{prefix}_DONE", MRT_DONE, struct.pack("@i", 0))
        finally:
            self._sock.close()
            self._sock = None
            log.debug("mroute_closed family=%s table=%s", self.family.name, self.table)

    def __enter__(self) -> MrouteSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

