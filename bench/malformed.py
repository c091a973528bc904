"""Malformed input: crafted and random IGMP / MLD frames from a host, then is the daemon still well?

Host 0 sends, through an AF_PACKET socket on its link, ethernet frames that
its kernel would never send (RFC 3376 §4 / RFC 3810 §5 violations):

- ``bad_checksum``: a TO_EX report whose IGMP / ICMPv6 checksum is wrong;
- ``truncated_records``: a report announcing 5 records that carries 1;
- ``source_overrun``: a record claiming 60,000 sources that carries 1 (this
  is what crashed the C++ mcproxy);
- ``ttl_255``: a valid report with TTL / hop limit 255 (must be 1);
- ``fuzz``: ``fuzz`` random messages of the report/query types and others,
  random lengths and counts, half with a correct checksum.

Each crafted report names a group of its own: it is ``accepted`` when the
proxy reported that group upstream. Afterwards: is the daemon alive, how many
drops did it count (ours: the control socket's counters), how much CPU did the
fuzz cost, how many random well-formed reports were reported upstream, and
does a fresh kernel join (on host 1) still bring data and an upstream report?
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
import time

from mcproxy_pmip.wire import checksum, igmp, mld
from mcproxy_pmip.wire.records import GroupRecord, RecordType

import daemons
from capture import JOIN, now
from harness import Bench, ms, wait_for

ROUTER_ALERT_V4 = b"\x94\x04\x00\x00"
REPORTS_V4 = ipaddress.ip_address("224.0.0.22")
REPORTS_V6 = ipaddress.ip_address("ff02::16")
ACCEPT_WAIT = 1.5
FUZZ_SEED = 1


def _multicast_mac(group: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    packed = group.packed
    if group.version == 4:
        return b"\x01\x00\x5e" + bytes([packed[1] & 0x7F]) + packed[2:]
    return b"\x33\x33" + packed[12:]


def ipv4_frame(mac: bytes, src: ipaddress.IPv4Address, message: bytes, ttl: int = 1) -> bytes:
    """Ethernet + IPv4 (Router Alert, TOS 0xc0) to 224.0.0.22 carrying IGMP ``message``."""
    header = struct.pack("!BBHHHBBH4s4s", 0x46, 0xC0, 24 + len(message), 0, 0, ttl, 2, 0,
                         src.packed, REPORTS_V4.packed) + ROUTER_ALERT_V4
    header = header[:10] + checksum.internet_checksum(header).to_bytes(2, "big") + header[12:]
    return _multicast_mac(REPORTS_V4) + mac + b"\x08\x00" + header + message


def ipv6_frame(mac: bytes, src: ipaddress.IPv6Address, message: bytes, hop_limit: int = 1) -> bytes:
    """Ethernet + IPv6 + hop-by-hop Router Alert to ff02::16 carrying ICMPv6 ``message``."""
    hop_by_hop = bytes([58, 0, 5, 2, 0, 0, 1, 0])
    header = struct.pack("!IHBB16s16s", 0x6 << 28, len(hop_by_hop) + len(message), 0, hop_limit,
                         src.packed, REPORTS_V6.packed)
    return _multicast_mac(REPORTS_V6) + mac + b"\x86\xdd" + header + hop_by_hop + message


class FrameMaker:
    """Report frames from one host, valid or broken on purpose."""

    def __init__(self, family: int, mac: bytes, src: str) -> None:
        self.family = family
        self.mac = mac
        self.src = ipaddress.ip_address(src)

    def _checksummed(self, message: bytes) -> bytes:
        message = message[:2] + b"\0\0" + message[4:]
        if self.family == 4:
            value = checksum.internet_checksum(message)
        else:
            value = checksum.icmpv6_checksum(message, self.src, REPORTS_V6)
        return message[:2] + value.to_bytes(2, "big") + message[4:]

    def report(self, group: str, record_type: RecordType = RecordType.CHANGE_TO_EXCLUDE,
               sources: tuple[str, ...] = ()) -> bytes:
        record = GroupRecord(record_type, ipaddress.ip_address(group), tuple(ipaddress.ip_address(s) for s in sources))
        if self.family == 4:
            return igmp.build(igmp.IgmpV3Report((record,)))
        return mld.build(mld.MldV2Report((record,)), self.src, REPORTS_V6)

    def frame(self, message: bytes, hop_limit: int = 1, fix_checksum: bool = True) -> bytes:
        if fix_checksum:
            message = self._checksummed(message)
        if self.family == 4:
            return ipv4_frame(self.mac, self.src, message, hop_limit)
        return ipv6_frame(self.mac, self.src, message, hop_limit)

    def crafted(self, groups: dict[str, str], source: str) -> dict[str, bytes]:
        """The named broken frames, one group each."""
        bad = bytearray(self._checksummed(self.report(groups["bad_checksum"])))
        bad[2] ^= 0x5A
        truncated = bytearray(self.report(groups["truncated_records"]))
        truncated[6:8] = struct.pack("!H", 5)
        overrun = bytearray(self.report(groups["source_overrun"], RecordType.ALLOW_NEW_SOURCES, (source,)))
        overrun[10:12] = struct.pack("!H", 60000)
        return {
            "bad_checksum": self.frame(bytes(bad), fix_checksum=False),
            "truncated_records": self.frame(bytes(truncated)),
            "source_overrun": self.frame(bytes(overrun)),
            "ttl_255": self.frame(self.report(groups["ttl_255"]), hop_limit=255),
        }

    def fuzz(self, count: int, rng: random.Random) -> list[bytes]:
        """Random messages: mostly report and query types, random bodies and record counts."""
        types = (0x11, 0x12, 0x16, 0x17, 0x22, 0x22, 0x22) if self.family == 4 else (130, 131, 132, 143, 143, 143)
        frames = []
        for _ in range(count):
            kind = rng.choice(types) if rng.random() < 0.9 else rng.randrange(256)
            body = bytearray([kind, rng.randrange(256), 0, 0]) + rng.randbytes(rng.randrange(0, 120))
            if len(body) >= 8 and rng.random() < 0.5:
                body[6:8] = struct.pack("!H", rng.randrange(0, 400))
            frames.append(self.frame(bytes(body), fix_checksum=rng.random() < 0.5))
        return frames


def malformed(bench: Bench) -> dict:
    options, recorder, daemon = bench.options, bench.recorder, bench.daemon
    host = bench.topology.host_ns[0]
    with host.entered():
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        raw.bind(("e0", 0))
    try:
        mac = raw.getsockname()[4]
        src = "10.2.0.2" if bench.family == 4 else host.link_local("e0")
        maker = FrameMaker(bench.family, mac, src)
        names = ("bad_checksum", "truncated_records", "source_overrun", "ttl_255")
        groups = {name: bench.group("malformed", i) for i, name in enumerate(names)}
        counters0 = daemon.counters()
        t0 = now()
        for frame in maker.crafted(groups, bench.sources[0]).values():
            raw.send(frame)
        time.sleep(ACCEPT_WAIT)
        out = {name: {"group": groups[name],
                      "accepted": recorder.upstream_after(bench.packed(groups[name]), JOIN, t0) is not None}
               for name in names}
        frames = maker.fuzz(options.fuzz, random.Random(FUZZ_SEED))
        known = recorder.upstream_groups_after(0.0)
        cpu0 = daemon.cpu()
        t1 = now()
        errors = 0
        for frame in frames:
            try:
                raw.send(frame)
            except OSError:
                errors += 1
        send_s = now() - t1
        time.sleep(ACCEPT_WAIT)
        cpu1 = daemon.cpu()
        counters1 = daemon.counters()
    finally:
        raw.close()
    out["fuzz"] = {
        "frames": len(frames), "send_errors": errors, "send_s": round(send_s, 3),
        "cpu_s": None if cpu0 is None or cpu1 is None else round((cpu1[1] - cpu0[1]) * 1e-9, 3),
        "reported_upstream": len(recorder.upstream_groups_after(t1) - known),
    }
    out["alive"] = daemon.alive()
    out["sent"] = len(names) + len(frames)
    if counters0 is not None and counters1 is not None:
        counted = daemons.drops(counters0, counters1)
        out["drops_counted"] = sum(counted.values())
        out["drop_counters"] = counted
    out["fresh_join"] = _fresh_join(bench)
    return out


def _fresh_join(bench: Bench) -> dict:
    """A kernel join with data flowing, after the abuse: data and an upstream report within 3 s?

    On host 1 when there is one: the random queries from host 0 may have won
    the querier election on host 0's link (a lower IPv6 link-local address),
    and a proxy that is not the querier of a link does not forward onto it.
    """
    recorder = bench.recorder
    host = 1 if bench.topology.hosts > 1 else 0
    group = bench.group("malformed", 10)
    key = bench.packed(group)
    flow = bench.source.start(bench.sources[0], [group], 1000)
    member = bench.member(host)
    try:
        time.sleep(bench.options.warm)
        recorder.reset(host, key)
        t0 = now()
        member.join(group)
        wait_for(lambda: recorder.arrivals(host, key).first and recorder.upstream_after(key, JOIN, t0), 3.0)
    finally:
        bench.source.stop(flow)
        member.close()
    first = recorder.arrivals(host, key).first
    up = recorder.upstream_after(key, JOIN, t0)
    return {"host": host, "pass": bool(bench.daemon.alive() and first and up),
            "data_ms": ms(first - t0) if first else None, "upstream_ms": ms(up - t0) if up else None}
