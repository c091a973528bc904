"""Multicast data on one link through a packet socket: a copy of what arrives or leaves, and sending.

A prepared handover (docs/handover.md) needs the data of a mobile node's
groups outside the kernel's forwarding path, without taking it out of that
path:

- ``DataTap(interface, outgoing=False)``: copies of the IPv4 / IPv6
  multicast data frames the link delivers to this host (the next MAG's
  tunnel, while it buffers); ``outgoing=True``: copies of those the host
  sends on the link (what the kernel forwarded to the MN: the previous MAG's
  record of the last packet, the next MAG's check of what its live path
  already sent). A ``SOCK_DGRAM`` packet socket of ``ETH_P_ALL`` bound to the
  one interface; a classic BPF program keeps only multicast destinations
  (224/4, ff00::/8) that are not IGMP (protocol 2) nor ICMPv6 after the fixed
  header (MLD, ND) or behind a Hop-by-Hop header, and only the direction
  asked for, so nothing else is ever queued or copied to user space.
  ``read()`` returns the queued packets (network header first), without
  blocking.
- ``LinkSender(interface)``: sends whole IP packets on the link to the
  group's link-layer address (RFC 1112 §6.4: 01:00:5e + the group's low 23
  bits; RFC 2464 §7: 33:33 + its low 32 bits), through a packet socket of
  protocol 0 (it receives nothing), as forwarding would put them there.

Cost: one copy per tapped packet to user space; taps exist only while a
handover is prepared.
"""

from __future__ import annotations

import errno
import socket

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel.rawsock import (
    ACCEPT_WHOLE, ALU_AND_K, JMP_JEQ_K, JMP_JGT_K, LD_B_ABS, LD_W_ABS, RET_K, SKF_AD_PKTTYPE,
    SKF_AD_PROTOCOL, Insn, assemble, attach_filter, open_socket)

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_MULTICAST = 2
PACKET_OUTGOING = 4
_IPPROTO_IGMP = 2
_IPPROTO_ICMPV6 = 58
_HOP_BY_HOP = 0
_MAX_PACKET = 65535
_RECEIVE_BUFFER = 2 * 1024 * 1024
_SO_RCVBUFFORCE = 33


def _program(outgoing: bool) -> tuple[tuple[int, int, int, int], ...]:
    direction = ([Insn(JMP_JEQ_K, PACKET_OUTGOING, jf="drop")] if outgoing
                 else [Insn(JMP_JGT_K, PACKET_MULTICAST, jt="drop")])  # HOST, BROADCAST, MULTICAST
    return assemble([
        Insn(LD_W_ABS, SKF_AD_PKTTYPE),
        *direction,
        Insn(LD_W_ABS, SKF_AD_PROTOCOL),
        Insn(JMP_JEQ_K, ETH_P_IP, jt="ipv4"),
        Insn(JMP_JEQ_K, ETH_P_IPV6, jt="ipv6", jf="drop"),
        "ipv4", Insn(LD_B_ABS, 16),  # first octet of the destination
        Insn(ALU_AND_K, 0xF0),
        Insn(JMP_JEQ_K, 0xE0, jf="drop"),
        Insn(LD_B_ABS, 9),  # protocol
        Insn(JMP_JEQ_K, _IPPROTO_IGMP, jt="drop", jf="accept"),
        "ipv6", Insn(LD_B_ABS, 24),  # first octet of the destination
        Insn(JMP_JEQ_K, 0xFF, jf="drop"),
        Insn(LD_B_ABS, 6),  # next header
        Insn(JMP_JEQ_K, _IPPROTO_ICMPV6, jt="drop"),
        Insn(JMP_JEQ_K, _HOP_BY_HOP, jt="drop", jf="accept"),
        "drop", Insn(RET_K, 0),
        "accept", Insn(RET_K, ACCEPT_WHOLE),
    ])


INCOMING_DATA = _program(outgoing=False)
OUTGOING_DATA = _program(outgoing=True)


class DataTap:
    """Copies of the multicast data packets arriving on (or, ``outgoing``, leaving) ``interface``."""

    def __init__(self, interface: str, outgoing: bool = False, max_packets_per_read: int = 256) -> None:
        self.interface = interface
        self.max_packets_per_read = max_packets_per_read
        what = f"data tap {interface} {'out' if outgoing else 'in'}"
        self._what = what
        self._sock = open_socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0, f"socket(AF_PACKET {what})")
        try:
            self._sock.setblocking(False)
            attach_filter(self._sock, OUTGOING_DATA if outgoing else INCOMING_DATA,
                          f"setsockopt(SO_ATTACH_FILTER {what})")
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RECEIVE_BUFFER)
            except OSError as exc:
                if exc.errno != errno.EPERM:
                    raise KernelError(f"setsockopt(SO_RCVBUFFORCE {what})", exc.errno or errno.EINVAL) from exc
            self._sock.bind((interface, ETH_P_ALL))
        except OSError as exc:
            self._sock.close()
            raise KernelError(f"bind(AF_PACKET {what})", exc.errno or errno.ENODEV) from exc
        except KernelError:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self) -> list[bytes]:
        """The packets queued now (at most ``max_packets_per_read``), oldest first."""
        packets = []
        for _ in range(self.max_packets_per_read):
            try:
                packets.append(self._sock.recv(_MAX_PACKET))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                raise KernelError(f"recv({self._what})", exc.errno or errno.EIO) from exc
        return packets

    def read_all(self) -> list[bytes]:
        """Everything queued now."""
        packets: list[bytes] = []
        while True:
            batch = self.read()
            packets.extend(batch)
            if len(batch) < self.max_packets_per_read:
                return packets

    def close(self) -> None:
        self._sock.close()


def group_mac(family: Family, group: IPAddress) -> bytes:
    """The link-layer destination of ``group`` on Ethernet-like links."""
    packed = group.packed
    if family is Family.IPV4:
        return bytes((0x01, 0x00, 0x5E, packed[1] & 0x7F)) + packed[2:]
    return b"\x33\x33" + packed[12:]


class LinkSender:
    """Whole IP packets out of ``interface``, each to its group's link-layer address."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self._sock = open_socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0, f"socket(AF_PACKET send {interface})")

    def send(self, family: Family, group: IPAddress, packet: bytes) -> None:
        ethertype = ETH_P_IP if family is Family.IPV4 else ETH_P_IPV6
        try:
            self._sock.sendto(packet, (self.interface, ethertype, 0, 0, group_mac(family, group)))
        except OSError as exc:
            raise KernelError(f"sendto(AF_PACKET {self.interface})", exc.errno or errno.EIO) from exc

    def close(self) -> None:
        self._sock.close()
