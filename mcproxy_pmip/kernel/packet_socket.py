"""IGMP and MLD packets in from every link through one packet socket per family, out through raw sockets.

Why a packet socket: reading reports through a raw IGMP / ICMPv6 socket needs
that socket to join 224.0.0.22 and 224.0.0.2 (ff02::16 and ff02::2) on every
downstream, and the kernel limits memberships per socket
(``net.ipv4.igmp_max_memberships``, 20 by default: the 11th IPv4 downstream
fails; IPv6 by ``optmem_max``). Without multicast routing in the kernel,
IGMPv2 reports sent to the group itself never reach a raw socket at all. An
``AF_PACKET`` socket sees every frame of every interface of the namespace
before the IP layer, needs no IP membership and no sysctl raised.

Receiving, one ``SOCK_DGRAM`` packet socket per family (``ETH_P_IP`` /
``ETH_P_IPV6``), bound to no interface, non-blocking:

- a classic BPF program accepts only IGMP (IPv4 protocol 2), resp. ICMPv6 of
  the MLD types 130, 131, 132 and 143 directly after the IPv6 header or after
  one Hop-by-Hop options header (MLD carries Router Alert in one, RFC 3810
  §5), and only frames the link delivered to this host (packet type HOST,
  BROADCAST, MULTICAST): not those for other hosts (``PACKET_OTHERHOST``,
  seen in promiscuous mode and on veths), and never ``PACKET_OUTGOING``, so
  the daemon does not read its own sends (the kernel gives outgoing copies
  only to ``ETH_P_ALL`` sockets, and looped-back multicast to no packet
  socket: the filter holds even if that changes); the program is attached
  before the socket is bound to its protocol, so nothing unfiltered is ever
  queued;
- the receive buffer is enlarged with ``SO_RCVBUFFORCE`` (``CAP_NET_ADMIN``;
  ``SO_RCVBUF``, bounded by ``net.core.rmem_max``, without it) so a burst of
  reports from a thousand links is not dropped; the kernel's drops are read
  from ``PACKET_STATISTICS`` and counted as ``receive_queue_full``;
- ``watch(ifindex)`` asks the interface for all multicast frames
  (``PACKET_ADD_MEMBERSHIP``, ``PACKET_MR_ALLMULTI``): real NICs filter
  multicast MAC addresses nobody joined; ``unwatch`` takes that back.
  Closing the socket takes back all of them;
- each frame is decoded by ``kernel.igmp_socket.decode_packet`` /
  ``kernel.mld_socket.decode_packet`` (header and ICMPv6 checksums verified:
  the IP layer has not seen the frame yet) with the interface index of its
  ``sockaddr_ll``, read through libc's ``recvfrom`` because Python's socket
  module turns that index into a name. What does not decode is counted in
  ``drops`` by reason and logged at debug level.

Sending goes through ``kernel.igmp_socket.IgmpSendSocket`` /
``kernel.mld_socket.MldSendSocket`` (TTL / hop limit 1, Router Alert,
TOS 0xc0, link-local MLD source), which receive nothing.

No reactor here: the IO layer registers ``fileno()`` (the packet socket's)
and calls the non-blocking ``read_packets()`` when it is readable. One read
is at most ``max_packets_per_read`` frames; how many of them are handled in
one reactor turn is the Receiver's budget (``proxy.receiver``), which reads
again only when it has handled what it read before.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import socket
import struct
from collections import Counter
from collections.abc import Callable
from typing import ClassVar

from mcproxy_pmip.errors import KernelError, MalformedPacket
from mcproxy_pmip.kernel import igmp_socket, mld_socket
from mcproxy_pmip.kernel.rawsock import (
    ACCEPT_WHOLE, ALU_ADD_K, ALU_LSH_K, JMP_JA, JMP_JEQ_K, JMP_JGT_K, LD_B_ABS, LD_B_IND, LD_W_ABS,
    LDX_IMM, MISC_TAX, RET_K, SKF_AD_PKTTYPE, Insn, assemble, attach_filter, open_socket, setsockopt)
from mcproxy_pmip.wire.checksum import ICMPV6_NEXT_HEADER
from mcproxy_pmip.wire.ipv4 import IPPROTO_IGMP
from mcproxy_pmip.wire.ipv6 import FIXED_HEADER_LENGTH, NEXT_HEADER_HOP_BY_HOP

log = logging.getLogger(__name__)

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD

# <linux/if_packet.h>
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_STATISTICS = 6
PACKET_MR_ALLMULTI = 2
PACKET_HOST = 0
PACKET_BROADCAST = 1
PACKET_MULTICAST = 2
PACKET_OUTGOING = 4

SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>; missing from Python's socket module

RECEIVE_BUFFER = 4 * 1024 * 1024
"""Requested receive buffer (the kernel doubles it): thousands of queued reports."""

DEFAULT_MAX_PACKETS_PER_READ = 64
FRAME_CAPACITY = 65536  # as large as any IP packet but a jumbogram

_RECEIVE_FLAGS = int(socket.MSG_DONTWAIT | socket.MSG_TRUNC)  # MSG_TRUNC: the frame's real length
_PACKET_MREQ = struct.Struct("=iHH8s")  # mr_ifindex, mr_type, mr_alen, mr_address
_TPACKET_STATS = struct.Struct("=II")  # tp_packets, tp_drops

IGMP_FILTER = assemble([
    Insn(LD_W_ABS, SKF_AD_PKTTYPE),
    Insn(JMP_JGT_K, PACKET_MULTICAST, jt="drop"),  # OTHERHOST, OUTGOING, LOOPBACK...
    Insn(LD_B_ABS, 9),  # IPv4 protocol
    Insn(JMP_JEQ_K, IPPROTO_IGMP, jf="drop"),
    Insn(RET_K, ACCEPT_WHOLE),
    "drop", Insn(RET_K, 0),
])
"""IGMP delivered to this host (RFC 791 §3.1: the protocol is octet 9)."""

MLD_FILTER = assemble([
    Insn(LD_W_ABS, SKF_AD_PKTTYPE),
    Insn(JMP_JGT_K, PACKET_MULTICAST, jt="drop"),  # OTHERHOST, OUTGOING, LOOPBACK...
    Insn(LD_B_ABS, 6),  # IPv6 Next Header
    Insn(JMP_JEQ_K, ICMPV6_NEXT_HEADER, jt="icmpv6_after_fixed_header"),
    Insn(JMP_JEQ_K, NEXT_HEADER_HOP_BY_HOP, jf="drop"),
    Insn(LD_B_ABS, FIXED_HEADER_LENGTH),  # the Hop-by-Hop header's Next Header
    Insn(JMP_JEQ_K, ICMPV6_NEXT_HEADER, jf="drop"),
    Insn(LD_B_ABS, FIXED_HEADER_LENGTH + 1),  # Hdr Ext Len, in 8 octets beyond the first 8
    Insn(ALU_LSH_K, 3),
    Insn(ALU_ADD_K, FIXED_HEADER_LENGTH + 8),
    Insn(MISC_TAX),
    Insn(JMP_JA, "icmpv6_type"),
    "icmpv6_after_fixed_header", Insn(LDX_IMM, FIXED_HEADER_LENGTH),
    "icmpv6_type", Insn(LD_B_IND, 0),
    *(Insn(JMP_JEQ_K, kind, jt="accept") for kind in mld_socket.MLD_TYPES),
    "drop", Insn(RET_K, 0),
    "accept", Insn(RET_K, ACCEPT_WHOLE),
])
"""MLD delivered to this host: ICMPv6 of an MLD type after the fixed header or one Hop-by-Hop header."""


class _SockaddrLl(ctypes.Structure):
    """``struct sockaddr_ll`` (<linux/if_packet.h>)."""

    _fields_ = [
        ("sll_family", ctypes.c_ushort),
        ("sll_protocol", ctypes.c_uint16),  # network byte order
        ("sll_ifindex", ctypes.c_int),
        ("sll_hatype", ctypes.c_ushort),
        ("sll_pkttype", ctypes.c_ubyte),
        ("sll_halen", ctypes.c_ubyte),
        ("sll_addr", ctypes.c_ubyte * 8),
    ]


_SOCKADDR_LL_SIZE = ctypes.sizeof(_SockaddrLl)

_libc = ctypes.CDLL(None, use_errno=True)
_recvfrom = _libc.recvfrom
_recvfrom.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p,
                      ctypes.POINTER(ctypes.c_uint32))
_recvfrom.restype = ctypes.c_ssize_t
_bind = _libc.bind
_bind.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32)
_bind.restype = ctypes.c_int


def check_pkttype(pkttype: int) -> None:
    """``MalformedPacket`` unless the link delivered the frame to this host (unicast, broadcast, multicast)."""
    if pkttype not in (PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST):
        raise MalformedPacket("not_for_host", f"pkttype {pkttype}")


class FamilyPacketSocket:
    """Packets of one family in from every interface of the namespace, out per packet through a raw socket.

    ``watch`` makes a link hand up all its multicast frames (where the NIC
    filters them). Subclasses name the family (``what``, ``ethertype``,
    ``program``, ``decode``, ``sender``). ``drops`` counts what could not be
    handed over, by reason slug.
    """

    what: ClassVar[str]
    ethertype: ClassVar[int]
    program: ClassVar[tuple[tuple[int, int, int, int], ...]]
    decode: ClassVar[Callable[[bytes, int], object]]
    sender: ClassVar[Callable[[], igmp_socket.IgmpSendSocket | mld_socket.MldSendSocket]]

    def __init__(self, max_packets_per_read: int = DEFAULT_MAX_PACKETS_PER_READ,
                 receive_buffer: int = RECEIVE_BUFFER) -> None:
        self.max_packets_per_read = max_packets_per_read
        self.drops: Counter[str] = Counter()
        self._watched: set[int] = set()
        self._frame = ctypes.create_string_buffer(FRAME_CAPACITY)
        self._address = _SockaddrLl()
        self._address_length = ctypes.c_uint32()
        self._recvfrom_arguments = (self._frame, FRAME_CAPACITY, _RECEIVE_FLAGS, ctypes.byref(self._address),
                                    ctypes.byref(self._address_length))
        # Protocol 0 receives nothing until bind() names ours, after the filter is on.
        self._sock = open_socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0, f"socket(AF_PACKET {self.what})")
        try:
            self._sock.setblocking(False)
            attach_filter(self._sock, self.program, f"setsockopt(SO_ATTACH_FILTER {self.what})")
            self.receive_buffer = self._enlarge_receive_buffer(receive_buffer)
            self._bind_all_interfaces()
            self._sender = self.sender()
        except KernelError:
            self._sock.close()
            raise
        log.debug("packet_socket_opened socket=%s receive_buffer=%d", self.what, self.receive_buffer)

    def _enlarge_receive_buffer(self, size: int) -> int:
        """Set the receive buffer (forced past rmem_max when permitted); the size the kernel granted."""
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except OSError as exc:
            if exc.errno != errno.EPERM:
                raise KernelError(f"setsockopt(SO_RCVBUFFORCE {self.what})", exc.errno or errno.EINVAL) from exc
            setsockopt(self._sock, socket.SOL_SOCKET, socket.SO_RCVBUF, size,
                       f"setsockopt(SO_RCVBUF {self.what})")
        try:
            granted = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        except OSError as exc:
            raise KernelError(f"getsockopt(SO_RCVBUF {self.what})", exc.errno or errno.EINVAL) from exc
        if granted < size:
            log.warning("receive_buffer_limited socket=%s requested=%d granted=%d "
                        "limit=net.core.rmem_max reason=no_CAP_NET_ADMIN", self.what, size, granted)
        return granted

    def _bind_all_interfaces(self) -> None:
        """bind() to our protocol on every interface (ifindex 0), which Python's bind cannot express."""
        address = _SockaddrLl(sll_family=socket.AF_PACKET, sll_protocol=socket.htons(self.ethertype),
                              sll_ifindex=0)
        if _bind(self._sock.fileno(), ctypes.byref(address), ctypes.sizeof(address)) != 0:
            raise KernelError(f"bind(AF_PACKET {self.what})", ctypes.get_errno())

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        """Close both sockets; the kernel drops every ALLMULTI request of the packet socket."""
        self._sock.close()
        self._sender.close()
        self._watched.clear()

    def watch(self, ifindex: int) -> None:
        """Receive every multicast frame of ``ifindex`` (ALLMULTI); a second call changes nothing."""
        if ifindex in self._watched:
            return
        setsockopt(self._sock, SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                   _PACKET_MREQ.pack(ifindex, PACKET_MR_ALLMULTI, 0, b""),
                   f"setsockopt(PACKET_ADD_MEMBERSHIP {self.what} ifindex={ifindex})")
        self._watched.add(ifindex)

    def unwatch(self, ifindex: int) -> None:
        """Take back ``watch``; nothing for an unwatched interface or one that has gone away.

        The kernel forgets the requests of a vanished interface by itself and
        answers a drop of an unknown request with success.
        """
        if ifindex not in self._watched:
            return
        self._watched.discard(ifindex)
        setsockopt(self._sock, SOL_PACKET, PACKET_DROP_MEMBERSHIP,
                   _PACKET_MREQ.pack(ifindex, PACKET_MR_ALLMULTI, 0, b""),
                   f"setsockopt(PACKET_DROP_MEMBERSHIP {self.what} ifindex={ifindex})")

    def send(self, ifindex: int, src, dst, payload: bytes) -> None:
        """Send one message out of ``ifindex`` through the raw socket (see its ``send``)."""
        self._sender.send(ifindex, src, dst, payload)

    def read_packets(self) -> list:
        """Read what is queued, up to ``max_packets_per_read`` frames, without blocking."""
        packets = []
        for _ in range(self.max_packets_per_read):
            length = self._receive()
            if length is None:
                break
            ifindex = self._address.sll_ifindex
            try:
                if length > FRAME_CAPACITY:
                    raise MalformedPacket("truncated", f"{length} octets")
                check_pkttype(self._address.sll_pkttype)
                packets.append(self.decode(ctypes.string_at(self._frame, length), ifindex))
            except MalformedPacket as exc:
                self.drops[exc.reason] += 1
                log.debug("packet_dropped socket=%s reason=%s ifindex=%d %s",
                          self.what, exc.reason, ifindex, exc.detail)
        self._count_kernel_drops()
        return packets

    def _receive(self) -> int | None:
        """One frame into the buffer: its full length (MSG_TRUNC), or None when nothing is queued."""
        self._address_length.value = _SOCKADDR_LL_SIZE
        length = _recvfrom(self._sock.fileno(), *self._recvfrom_arguments)
        if length >= 0:
            return length
        error = ctypes.get_errno()
        if error in (errno.EAGAIN, errno.EINTR):
            return None
        raise KernelError(f"recvfrom(AF_PACKET {self.what})", error)

    def _count_kernel_drops(self) -> None:
        """Add the frames the kernel dropped for a full receive queue since the last read (it resets them)."""
        try:
            stats = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size)
        except OSError as exc:
            raise KernelError(f"getsockopt(PACKET_STATISTICS {self.what})", exc.errno or errno.EINVAL) from exc
        dropped = _TPACKET_STATS.unpack(stats)[1]
        if dropped:
            self.drops["receive_queue_full"] += dropped
            log.debug("packet_dropped socket=%s reason=receive_queue_full count=%d", self.what, dropped)


class IgmpPacketSocket(FamilyPacketSocket):
    """IGMP in from every watched link, out with ``IgmpSendSocket.send`` semantics."""

    what = "IGMP"
    ethertype = ETH_P_IP
    program = IGMP_FILTER
    decode = staticmethod(igmp_socket.decode_packet)
    sender = igmp_socket.IgmpSendSocket


class MldPacketSocket(FamilyPacketSocket):
    """MLD in from every watched link, out with ``MldSendSocket.send`` semantics."""

    what = "MLD"
    ethertype = ETH_P_IPV6
    program = MLD_FILTER
    decode = staticmethod(mld_socket.decode_packet)
    sender = mld_socket.MldSendSocket
