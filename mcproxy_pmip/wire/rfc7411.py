"""Payloads of the RFC 7411 Multicast Mobility Option: a listener's records in transit.

RFC 7411 §5.3 carries a mobile node's multicast subscription between access
routers (here: from the previous MAG to the new one) in a Mobility Header
option::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Option-Type  | Option-Length |  Option-Code  |   Reserved    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    ~               MLD or IGMP Report Payload                      ~
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Option-Code: 1 IGMPv3 payload, 2 MLDv2 payload, 3 IGMPv3 payload from
IGMPv2 compatibility mode, 4 MLDv2 payload from MLDv1 compatibility mode.

The payload is the IGMPv3 / MLDv2 Report "after stripping its ICMP (IGMP)
header", i.e. without Type | Reserved | Checksum. It therefore starts with
the second reserved field and the record count (``wire.reportbody``)::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Reserved            |  Number of Records (M)        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    .                       Record [1..M]                           .
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Its length is a multiple of four octets, as the option's length (in 32-bit
words) needs. This module codes the Option-Code and the payload; the
Mobility Header framing belongs to whoever sends the option. IGMPv1
compatibility has no code of its own: it travels as code 3 and comes back
as version 2.
"""

from __future__ import annotations

from collections.abc import Sequence

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.wire import reportbody
from mcproxy_pmip.wire.records import GroupRecord

IGMPV3_PAYLOAD = 1
MLDV2_PAYLOAD = 2
IGMPV2_COMPATIBILITY_PAYLOAD = 3
MLDV1_COMPATIBILITY_PAYLOAD = 4

_CODES = {
    (Family.IPV4, 3): IGMPV3_PAYLOAD,
    (Family.IPV4, 2): IGMPV2_COMPATIBILITY_PAYLOAD,
    (Family.IPV4, 1): IGMPV2_COMPATIBILITY_PAYLOAD,
    (Family.IPV6, 2): MLDV2_PAYLOAD,
    (Family.IPV6, 1): MLDV1_COMPATIBILITY_PAYLOAD,
}
_MEANINGS = {
    IGMPV3_PAYLOAD: (Family.IPV4, 3),
    MLDV2_PAYLOAD: (Family.IPV6, 2),
    IGMPV2_COMPATIBILITY_PAYLOAD: (Family.IPV4, 2),
    MLDV1_COMPATIBILITY_PAYLOAD: (Family.IPV6, 1),
}


def encode_context(
    family: Family, version: int, records: Sequence[GroupRecord]
) -> tuple[int, bytes]:
    """The Option-Code and payload for ``records`` held in compatibility ``version``."""
    code = _CODES.get((family, version))
    if code is None:
        raise ValueError(f"no RFC 7411 payload for {family.protocol} version {version}")
    return code, reportbody.encode_body(records, family)


def decode_context(
    code: int, payload: bytes
) -> tuple[Family, int, tuple[GroupRecord, ...]]:
    """Family, compatibility version and records of a payload; records of unknown type skipped."""
    meaning = _MEANINGS.get(code)
    if meaning is None:
        raise MalformedPacket("unknown_context_code", f"Option-Code {code}")
    family, version = meaning
    records, _ = reportbody.decode_body(bytes(payload), family)
    return family, version, records
