"""Fuzzing the daemon's receive path: mutated IGMP / MLD packets through decode, Receiver, Proxy and engine.

``PacketMaker`` builds valid IGMPv1/v2/v3 and MLDv1/v2 reports and queries
as whole IPv4 / IPv6 packets (IPv4 header with Router Alert; IPv6 header,
Hop-by-Hop Router Alert, ICMPv6), from a seeded ``random.Random``, then
mutates most of them: bit flips, truncation, extension, record and source
counts, record types, aux data lengths, query fields, and the IP header
(TTL / hop limit, lengths, options, protocol); the checksums are mostly
fixed again afterwards so that mutations get past them.

``ReceiveFuzz`` feeds each packet through what the daemon does with a frame
from its packet socket: ``kernel.igmp_socket.decode_packet`` /
``kernel.mld_socket.decode_packet``, then the Proxy's Receiver
(``read_igmp`` / ``read_mld``) over the in-memory packet socket, which hands
it to the instance, the membership engine and the in-memory data plane, and
the reactor's turn (``task.Clock``; time advances a little per packet, so
timers expire state). A packet is accepted when the Receiver delivered it,
dropped when decode or the Receiver counted a ``MalformedPacket`` /
``ProtocolViolation``; any other exception, or a log record at ERROR level,
is an escape.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import struct
from collections import Counter
from dataclasses import dataclass, field

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.kernel import igmp_socket, mld_socket
from mcproxy_pmip.wire import checksum, igmp, mld
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from tests.unit.proxy.memory_proxy import MemoryProxy

LINKS = ("up0", "d1", "d2")
CONFIG = """\
protocols: [IGMPv3, MLDv2]
instances:
  - name: p
    upstreams: [up0]
    downstreams: [d1, d2]
"""
UNKNOWN_IFINDEX = 99
TIME_STEP = 0.004
"""Seconds of reactor time per packet: 10^6 packets span about 67 minutes, so group timers expire."""

ALL_ROUTERS_V3 = {Family.IPV4: ipaddress.IPv4Address("224.0.0.22"), Family.IPV6: ipaddress.IPv6Address("ff02::16")}
ALL_NODES = {Family.IPV4: ipaddress.IPv4Address("224.0.0.1"), Family.IPV6: ipaddress.IPv6Address("ff02::1")}
ROUTER_ALERT_V4 = b"\x94\x04\x00\x00"
HOP_BY_HOP_ROUTER_ALERT = b"\x3a\x00\x05\x02\x00\x00\x01\x00"  # next header ICMPv6, RA(MLD), PadN


@dataclass(frozen=True, slots=True)
class FuzzPacket:
    """One IP packet as the packet socket would hand it to decode, and the link it came in on."""

    family: Family
    ifindex: int
    data: bytes


def _ipv4_header(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address, payload_length: int,
                 ttl: int = 1, options: bytes = ROUTER_ALERT_V4, protocol: int = 2) -> bytearray:
    length = 20 + len(options)
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | length // 4, 0xC0, length + payload_length, 0, 0,
                                   ttl, protocol, 0, src.packed, dst.packed) + options)
    header[10:12] = checksum.internet_checksum(bytes(header)).to_bytes(2, "big")
    return header


def _ipv6_header(src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, payload_length: int,
                 hop_limit: int = 1) -> bytearray:
    return bytearray(struct.pack("!IHBB16s16s", 0x60000000, len(HOP_BY_HOP_ROUTER_ALERT) + payload_length,
                                 0, hop_limit, src.packed, dst.packed) + HOP_BY_HOP_ROUTER_ALERT)


class PacketMaker:
    """Valid and mutated IGMP / MLD packets for the links of a ``MemoryProxy``, from one seed."""

    def __init__(self, rng: random.Random, ifindexes: dict[str, int]) -> None:
        self.rng = rng
        self.ifindexes = ifindexes

    # -- addresses ---------------------------------------------------------------------

    def _group(self, family: Family) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        rng = self.rng
        if family is Family.IPV4:
            if rng.random() < 0.05:
                return ipaddress.IPv4Address(rng.getrandbits(32))
            return ipaddress.IPv4Address(0xEF010000 + rng.randrange(64))
        if rng.random() < 0.05:
            return ipaddress.IPv6Address(rng.getrandbits(128))
        return ipaddress.IPv6Address((0xFF3E << 112) + 0x8000_0000 + rng.randrange(64))

    def _source(self, family: Family) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        if family is Family.IPV4:
            return ipaddress.IPv4Address(0x0A630000 + self.rng.randrange(32))
        return ipaddress.IPv6Address((0x20010DB8 << 96) + self.rng.randrange(32))

    def _sender(self, family: Family, ifindex: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """A host on the link mostly; sometimes 0.0.0.0 / ::, off-link, global, or the proxy's own address."""
        roll = self.rng.random()
        if family is Family.IPV4:
            if roll < 0.8:
                return ipaddress.IPv4Address((10 << 24) + (ifindex << 8) + 2 + self.rng.randrange(8))
            if roll < 0.88:
                return ipaddress.IPv4Address(0)
            if roll < 0.96:
                return ipaddress.IPv4Address(0xC0000200 + self.rng.randrange(256))
            return ipaddress.IPv4Address((10 << 24) + (ifindex << 8) + 1)
        if roll < 0.85:
            return ipaddress.IPv6Address((0xFE80 << 112) + 0x100 + self.rng.randrange(8))
        if roll < 0.9:
            return ipaddress.IPv6Address(0)
        if roll < 0.95:
            return ipaddress.IPv6Address((0x20010DB8 << 96) + 1)
        return ipaddress.IPv6Address((0xFE80 << 112) + (ifindex << 16) + 1)

    # -- messages ----------------------------------------------------------------------

    def _records(self, family: Family) -> tuple[GroupRecord, ...]:
        rng = self.rng
        return tuple(GroupRecord(RecordType(rng.randint(1, 6)), self._group(family),
                                 tuple(self._source(family) for _ in range(rng.choice((0, 0, 1, 2, 4, 9)))))
                     for _ in range(rng.randint(1, 6)))

    def _igmp(self) -> tuple[bytes, bool]:
        """An IGMP message and whether it is a query."""
        rng = self.rng
        kind = rng.randrange(7)
        if kind == 0:
            return igmp.build(igmp.IgmpV1Report(self._group(Family.IPV4))), False
        if kind == 1:
            return igmp.build(igmp.IgmpV2Report(self._group(Family.IPV4))), False
        if kind == 2:
            return igmp.build(igmp.IgmpV2Leave(self._group(Family.IPV4))), False
        if kind in (3, 4):
            return igmp.build(igmp.IgmpV3Report(self._records(Family.IPV4))), False
        if kind == 5:
            version = rng.choice((1, 2))
            group = self._group(Family.IPV4) if version == 2 and rng.random() < 0.5 else None
            return igmp.build(igmp.IgmpQuery(version, rng.choice((1.0, 10.0)), group)), True
        group = self._group(Family.IPV4) if rng.random() < 0.5 else None
        sources = tuple(self._source(Family.IPV4) for _ in range(rng.randrange(4))) if group else ()
        return igmp.build(igmp.IgmpQuery(3, rng.choice((0.5, 1.0, 10.0)), group, sources,
                                         robustness=rng.randint(1, 7), query_interval=rng.choice((1.0, 125.0)))), True

    def _mld(self, src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address) -> tuple[bytes, bool]:
        rng = self.rng
        kind = rng.randrange(6)
        if kind == 0:
            return mld.build(mld.MldV1Report(self._group(Family.IPV6)), src, dst), False
        if kind == 1:
            return mld.build(mld.MldDone(self._group(Family.IPV6)), src, dst), False
        if kind in (2, 3):
            return mld.build(mld.MldV2Report(self._records(Family.IPV6)), src, dst), False
        if kind == 4:
            group = self._group(Family.IPV6) if rng.random() < 0.5 else None
            return mld.build(mld.MldQuery(1, rng.choice((1.0, 10.0)), group), src, dst), True
        group = self._group(Family.IPV6) if rng.random() < 0.5 else None
        sources = tuple(self._source(Family.IPV6) for _ in range(rng.randrange(4))) if group else ()
        query = mld.MldQuery(2, rng.choice((0.5, 1.0, 10.0)), group, sources, robustness=rng.randint(1, 7),
                             query_interval=rng.choice((1.0, 125.0)))
        return mld.build(query, src, dst), True

    # -- mutation ----------------------------------------------------------------------

    def _mutate_message(self, message: bytearray, is_query: bool, family: Family) -> bytearray:
        rng = self.rng
        for _ in range(rng.randint(1, 3)):
            choice = rng.randrange(10)
            if choice == 0 and message:
                for _ in range(rng.randint(1, 4)):
                    bit = rng.randrange(8 * len(message))
                    message[bit // 8] ^= 1 << (bit % 8)
            elif choice == 1:
                del message[rng.randrange(len(message) + 1):]
            elif choice == 2:
                message += rng.randbytes(rng.randint(1, 64))
            elif choice == 3 and message:
                message[rng.randrange(len(message))] = rng.randrange(256)
            elif choice == 4 and len(message) >= 8 and not is_query:
                message[6:8] = rng.choice((0, 1, 2, 7, 255, 0xFFFF, rng.randrange(0x10000))).to_bytes(2, "big")
            elif choice in (5, 6) and not is_query:
                offset = self._record_offset(message, family)
                if offset is not None and offset + 4 <= len(message):
                    if choice == 5:
                        message[offset + 2:offset + 4] = rng.choice(
                            (0, 1, 63, 64, 65, 1024, 0xFFFF, rng.randrange(0x10000))).to_bytes(2, "big")
                    else:
                        message[offset + rng.choice((0, 1))] = rng.choice((0, 7, 255, rng.randrange(256)))
            elif choice == 7 and is_query:
                tail = 8 if family is Family.IPV4 else 24
                if len(message) >= tail + 4:
                    message[tail + rng.randrange(4)] = rng.randrange(256)
            elif choice == 8 and message:
                message[0] = rng.choice(tuple(_TYPES[family]) + (rng.randrange(256),))
            elif choice == 9 and len(message) >= 2:
                message[1] = rng.randrange(256)
        return message

    def _record_offset(self, message: bytearray, family: Family) -> int | None:
        """The offset of a random record of a report (walking the declared lengths), or None."""
        alen = 4 if family is Family.IPV4 else 16
        offset, count = 8, int.from_bytes(message[6:8], "big") if len(message) >= 8 else 0
        offsets = []
        for _ in range(min(count, 32)):
            if offset + 4 > len(message):
                break
            offsets.append(offset)
            aux, sources = message[offset + 1], int.from_bytes(message[offset + 2:offset + 4], "big")
            offset += 4 + alen * (1 + sources) + 4 * aux
        return self.rng.choice(offsets) if offsets else None

    def _mutate_ipv4(self, header: bytearray) -> bytearray:
        rng = self.rng
        choice = rng.randrange(7)
        if choice == 0:
            header[8] = rng.choice((0, 2, 64, 255))  # TTL
        elif choice == 1:
            header[0] = (header[0] & 0xF0) | rng.randrange(16)  # IHL
        elif choice == 2:
            header[2:4] = rng.randrange(0x10000).to_bytes(2, "big")  # total length
        elif choice == 3:
            header[6] |= rng.choice((0x20, 0x40, 0x1F))  # MF / DF / fragment offset
        elif choice == 4:
            header[9] = rng.choice((1, 17, rng.randrange(256)))  # protocol
        elif choice == 5 and len(header) > 20:
            header[20:] = bytes(rng.randrange(256) for _ in range(len(header) - 20))  # options
        else:
            header[0] = rng.randrange(256)  # version and IHL
        if rng.random() < 0.8:
            length = min(len(header), 4 * (header[0] & 0x0F))
            header[10:12] = b"\0\0"
            header[10:12] = checksum.internet_checksum(bytes(header[:length])).to_bytes(2, "big")
        return header

    def _mutate_ipv6(self, header: bytearray) -> bytearray:
        rng = self.rng
        choice = rng.randrange(6)
        if choice == 0:
            header[7] = rng.choice((0, 2, 64, 255))  # hop limit
        elif choice == 1:
            header[4:6] = rng.randrange(0x10000).to_bytes(2, "big")  # payload length
        elif choice == 2:
            header[6] = rng.choice((58, 17, 43, 44, 60, rng.randrange(256)))  # next header
        elif choice == 3:
            header[40] = rng.choice((0, 17, 58, rng.randrange(256)))  # Hop-by-Hop's next header
        elif choice == 4:
            header[41] = rng.randrange(4)  # Hop-by-Hop length
        else:
            header[42 + rng.randrange(6)] = rng.randrange(256)  # the options
        return header

    def packet(self) -> FuzzPacket:
        """The next packet: valid about one time in five, mutated otherwise."""
        rng = self.rng
        family = Family.IPV4 if rng.random() < 0.5 else Family.IPV6
        link = rng.choice(LINKS)
        ifindex = self.ifindexes[link] if rng.random() < 0.98 else UNKNOWN_IFINDEX
        src = self._sender(family, ifindex)
        if family is Family.IPV4:
            message, is_query = self._igmp()
        else:
            message, is_query = self._mld(src, ALL_NODES[family] if rng.random() < 0.5 else ALL_ROUTERS_V3[family])
        dst = ALL_NODES[family] if is_query else ALL_ROUTERS_V3[family]
        body = bytearray(message)
        mutated = rng.random() < 0.8
        if mutated and rng.random() < 0.85:
            body = self._mutate_message(body, is_query, family)
            if rng.random() < 0.8:
                self._fix_checksum(body, family, src, dst)
        if family is Family.IPV4:
            header = _ipv4_header(src, dst, len(body))
            if mutated and rng.random() < 0.15:
                header = self._mutate_ipv4(header)
        else:
            header = _ipv6_header(src, dst, len(body))
            if mutated and rng.random() < 0.15:
                header = self._mutate_ipv6(header)
        data = bytes(header + body)
        if mutated and rng.random() < 0.05:
            data = data[:rng.randrange(len(data) + 1)]
        return FuzzPacket(family, ifindex, data)

    @staticmethod
    def _fix_checksum(body: bytearray, family: Family, src, dst) -> None:
        if len(body) < 4:
            return
        body[2:4] = b"\0\0"
        if family is Family.IPV4:
            value = checksum.internet_checksum(bytes(body))
        else:
            value = checksum.icmpv6_checksum(bytes(body), src, dst)
        body[2:4] = value.to_bytes(2, "big")


_TYPES = {
    Family.IPV4: (igmp.MEMBERSHIP_QUERY, igmp.V1_MEMBERSHIP_REPORT, igmp.V2_MEMBERSHIP_REPORT, igmp.V2_LEAVE_GROUP,
                  igmp.V3_MEMBERSHIP_REPORT),
    Family.IPV6: (mld.MULTICAST_LISTENER_QUERY, mld.V1_MULTICAST_LISTENER_REPORT, mld.V1_MULTICAST_LISTENER_DONE,
                  mld.V2_MULTICAST_LISTENER_REPORT),
}
_DECODE = {Family.IPV4: igmp_socket.decode_packet, Family.IPV6: mld_socket.decode_packet}


class _ErrorLog(logging.Handler):
    """Counts log records at ERROR and above (a caught-and-logged exception is an escape too)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class FuzzResult:
    """What a run did with its packets."""

    packets: int = 0
    accepted: int = 0
    dropped: Counter = field(default_factory=Counter)
    escapes: list[str] = field(default_factory=list)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


def _delivered(receiver) -> int:
    """Messages the Receiver handed on so far (its ``received`` counters of inbound kinds)."""
    return sum(count for name, count in receiver.received.items() if name.endswith("Received"))


class ReceiveFuzz:
    """A started ``MemoryProxy`` and a ``PacketMaker`` seeded with ``seed``."""

    def __init__(self, seed: int) -> None:
        self.run = MemoryProxy(CONFIG, LINKS, seed=seed)
        ifindexes = {name: info.ifindex for name, info in self.run.host.links.items()}
        self.maker = PacketMaker(random.Random(seed), ifindexes)
        self.result = FuzzResult()

    def feed(self, count: int) -> FuzzResult:
        """Send ``count`` packets through; the result so far."""
        handler = _ErrorLog()
        logging.getLogger().addHandler(handler)
        try:
            for _ in range(count):
                self._one(self.maker.packet())
                if handler.records:
                    self.result.escapes.extend(f"logged: {r.getMessage()}" for r in handler.records)
                    handler.records.clear()
                if self.result.packets % 1024 == 0:
                    self._forget_output()
        finally:
            logging.getLogger().removeHandler(handler)
        return self.result

    def _one(self, packet: FuzzPacket) -> None:
        result = self.result
        result.packets += 1
        receiver = self.run.proxy.receiver
        try:
            decoded = _DECODE[packet.family](packet.data, packet.ifindex)
        except MalformedPacket as exc:
            result.dropped[f"decode_{exc.reason}"] += 1
            return
        except Exception as exc:  # an escape: anything but the counted kinds
            result.escapes.append(f"decode: {type(exc).__name__}: {exc} packet={packet.data.hex()}")
            return
        received_before, drops_before = _delivered(receiver), receiver.drops.copy()
        self.run.sockets[packet.family].inject(decoded)
        try:
            if packet.family is Family.IPV4:
                receiver.read_igmp()
            else:
                receiver.read_mld()
            self.run.reactor.advance(TIME_STEP)
        except Exception as exc:  # an escape: anything but the counted kinds
            result.escapes.append(f"receive: {type(exc).__name__}: {exc} packet={packet.data.hex()}")
            return
        if _delivered(receiver) > received_before:
            result.accepted += 1
        else:
            dropped = receiver.drops - drops_before
            result.dropped[next(iter(dropped), "receiver_silent")] += 1

    def _forget_output(self) -> None:
        """Drop what the memory ports recorded (sent packets, plane batches) so memory stays flat."""
        for sock in self.run.sockets.values():
            sock.sent.clear()
        for plane in self.run.plane.instances.values():
            plane.batches.clear()
            plane.changes.clear()

    def close(self) -> None:
        self.run.stop()
