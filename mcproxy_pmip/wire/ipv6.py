"""The IPv6 Hop-by-Hop Router Alert option for MLD (RFC 2711, RFC 3810 §5).

MLD messages carry a Router Alert with value 0 ("Multicast Listener
Discovery message", RFC 2711 §2.1) in a Hop-by-Hop Options header
(RFC 8200 §4.3), padded to eight octets::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Next Header  |  Hdr Ext Len  |  Type = 5     |  Opt Len = 2  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |        Value (2 octets)       | PadN (type 1) |  Opt Len = 0  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

``HOP_BY_HOP_ROUTER_ALERT`` is that header for ``IPV6_HOPOPTS`` (the kernel
fills Next Header). ``parse_hop_by_hop`` reads the header as delivered in
``IPV6_HOPOPTS`` ancillary data and reports the Router Alert value.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcproxy_pmip.errors import MalformedPacket

ROUTER_ALERT_MLD = 0
OPTION_PAD1 = 0
OPTION_PADN = 1
OPTION_ROUTER_ALERT = 5

ROUTER_ALERT_OPTION = bytes((OPTION_ROUTER_ALERT, 2)) + ROUTER_ALERT_MLD.to_bytes(2, "big")
"""The Router Alert option TLV alone, value 0 (MLD)."""

HOP_BY_HOP_ROUTER_ALERT = b"\x00\x00" + ROUTER_ALERT_OPTION + bytes((OPTION_PADN, 0))
"""A whole Hop-by-Hop Options header carrying the MLD Router Alert (8 octets)."""


@dataclass(frozen=True, slots=True)
class HopByHopOptions:
    """What a Hop-by-Hop Options header says. ``router_alert``: its value, None if absent."""

    next_header: int
    router_alert: int | None

    @property
    def has_mld_router_alert(self) -> bool:
        return self.router_alert == ROUTER_ALERT_MLD


def parse_hop_by_hop(data: bytes) -> HopByHopOptions:
    """Parse a Hop-by-Hop Options header; raise ``MalformedPacket`` if it does not parse."""
    data = bytes(data)
    if len(data) < 2:
        raise MalformedPacket("bad_hop_by_hop", f"{len(data)} octets")
    length = (data[1] + 1) * 8
    if length > len(data):
        raise MalformedPacket("bad_hop_by_hop", f"header of {length} octets in {len(data)}")
    router_alert = None
    pos = 2
    while pos < length:
        kind = data[pos]
        if kind == OPTION_PAD1:
            pos += 1
            continue
        if pos + 2 > length:
            raise MalformedPacket("bad_hop_by_hop", f"option {kind} without length")
        option_end = pos + 2 + data[pos + 1]
        if option_end > length:
            raise MalformedPacket("bad_hop_by_hop", f"option {kind} overruns the header")
        if kind == OPTION_ROUTER_ALERT and option_end - pos == len(ROUTER_ALERT_OPTION):
            router_alert = int.from_bytes(data[pos + 2 : option_end], "big")
        pos = option_end
    return HopByHopOptions(next_header=data[0], router_alert=router_alert)
