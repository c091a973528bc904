"""Pure tests of the kernel layer: struct layouts, upcall parsing, source ageing, feature rows."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.kernel import counters, mroute, upcalls

S4, G4 = ipaddress.ip_address("10.1.0.2"), ipaddress.ip_address("239.1.2.3")
S6, G6 = ipaddress.ip_address("fd01::2"), ipaddress.ip_address("ff15::4242")


def test_struct_sizes_match_the_uapi_headers_on_64_bit():
    assert struct.calcsize("@L") == 8, "these sizes are for LP64"
    assert mroute.VIFCTL.size == 16
    assert mroute.MIF6CTL.size == 12
    assert mroute.MFCCTL.size == 60
    assert mroute.MF6CCTL.size == 92
    assert mroute.SIOC_SG_REQ.size == 32
    assert mroute.SIOC_SG_REQ6.size == 80


def test_vifctl_uses_ifindex():
    vif, flags, threshold, rate, ifindex, remote = mroute.VIFCTL.unpack(mroute.pack_vifctl(3, 17))
    assert (vif, flags, threshold, rate, ifindex, remote) == (3, mroute.VIFF_USE_IFINDEX, 1, 0, 17, bytes(4))


def test_mif6ctl_rejects_an_ifindex_beyond_u16():
    assert mroute.MIF6CTL.unpack(mroute.pack_mif6ctl(2, 9)) == (2, 0, 1, 9, 0)
    with pytest.raises(ValueError):
        mroute.pack_mif6ctl(2, 70000)


def test_mfcctl_ttls_mark_the_outputs():
    origin, group, parent, ttls, *zero = mroute.MFCCTL.unpack(mroute.pack_mfcctl(S4, G4, 0, frozenset({1, 31})))
    assert (origin, group, parent) == (S4.packed, G4.packed, 0)
    assert [i for i, ttl in enumerate(ttls) if ttl] == [1, 31] and set(ttls) == {0, 1}
    assert zero == [0, 0, 0, 0]
    with pytest.raises(ValueError):
        mroute.pack_mfcctl(S4, G4, 0, frozenset({32}))


def test_mf6cctl_if_set_bitmap():
    fields = mroute.MF6CCTL.unpack(mroute.pack_mf6cctl(S6, G6, 2, frozenset({0, 5, 31})))
    assert fields[0] == socket.AF_INET6 and fields[3] == S6.packed
    assert fields[5] == socket.AF_INET6 and fields[8] == G6.packed
    assert fields[10] == 2
    assert fields[11:] == ((1 << 0) | (1 << 5) | (1 << 31), 0, 0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize("family, source, group", [(Family.IPV4, S4, G4), (Family.IPV6, S6, G6)])
def test_sioc_sg_req_round_trip(family, source, group):
    request = mroute.pack_sioc_sg_req(family, source, group)
    assert mroute.unpack_sioc_sg_req(family, bytes(request)) == (0, 0, 0)
    answered = bytes(request[:-24]) + struct.pack("@LLL", 7, 700, 2)
    assert mroute.unpack_sioc_sg_req(family, answered) == (7, 700, 2)


def igmpmsg(kind: int, vif: int, source=S4, group=G4, mbz: int = 0, tail: bytes = bytes(8)) -> bytes:
    header = bytes([0x45, 0, 0, 28, 0, 0, 0, 0, kind, mbz, vif & 0xFF, vif >> 8]) + source.packed + group.packed
    return header + tail


def mrt6msg(kind: int, mif: int, tail: bytes = b"") -> bytes:
    return struct.pack("=BBH4x", 0, kind, mif) + S6.packed + G6.packed + tail


def test_igmpmsg_nocache_and_wrongvif():
    assert upcalls.parse(Family.IPV4, igmpmsg(1, 3)) == upcalls.NoCache(Family.IPV4, 3, S4, G4)
    assert upcalls.parse(Family.IPV4, igmpmsg(2, 0x102)) == upcalls.WrongVif(Family.IPV4, 0x102, S4, G4)


def test_igmpmsg_wholepacket_keeps_the_packet():
    inner = b"\x45original packet"
    assert upcalls.parse(Family.IPV4, igmpmsg(3, 4, tail=inner)) == upcalls.WholePacket(
        Family.IPV4, 4, S4, G4, inner, wrong_vif=False
    )
    assert upcalls.parse(Family.IPV4, igmpmsg(4, 1, tail=inner)).wrong_vif


def test_igmp_packet_is_not_an_upcall():
    assert upcalls.parse(Family.IPV4, igmpmsg(1, 3, mbz=2)) is None


def test_mrt6msg_kinds():
    assert upcalls.parse(Family.IPV6, mrt6msg(1, 2)) == upcalls.NoCache(Family.IPV6, 2, S6, G6)
    assert upcalls.parse(Family.IPV6, mrt6msg(2, 1)) == upcalls.WrongVif(Family.IPV6, 1, S6, G6)
    assert upcalls.parse(Family.IPV6, mrt6msg(4, 1, b"pkt")) == upcalls.WholePacket(
        Family.IPV6, 1, S6, G6, b"pkt", wrong_vif=True
    )
    assert upcalls.parse(Family.IPV6, b"\x82\x00rest-of-an-mld-query") is None


@pytest.mark.parametrize(
    "family, data, reason",
    [
        (Family.IPV4, igmpmsg(9, 0), "upcall-unknown-type"),
        (Family.IPV4, igmpmsg(1, 0)[:19], "upcall-too-short"),
        (Family.IPV6, mrt6msg(1, 0)[:39], "upcall-too-short"),
        (Family.IPV6, b"", "upcall-too-short"),
        (Family.IPV6, mrt6msg(0, 0), "upcall-unknown-type"),
    ],
)
def test_malformed_upcalls(family, data, reason):
    with pytest.raises(MalformedPacket) as error:
        upcalls.parse(family, data)
    assert error.value.reason == reason


@given(st.sampled_from([Family.IPV4, Family.IPV6]), st.binary(max_size=120))
def test_parse_raises_only_malformed_packet(family, data):
    try:
        result = upcalls.parse(family, data)
    except MalformedPacket as error:
        assert error.reason.startswith("upcall-")
    else:
        assert result is None or result.family is family


class FakeCounters:
    def __init__(self):
        self.packets: dict[tuple, int] = {}

    def read(self, source, group) -> counters.SgCounters:
        return counters.SgCounters(self.packets[(source, group)], 0, 0)


def test_source_ageing_names_entries_whose_counter_stood_still():
    kernel = FakeCounters()
    a, b = (S4, G4), (ipaddress.ip_address("10.1.0.3"), G4)
    kernel.packets = {a: 0, b: 0}
    ageing = counters.SourceAgeing(kernel.read)
    assert ageing.sweep(0.0, [a, b], idle_interval=10.0) == []
    kernel.packets[a] = 5
    assert ageing.sweep(9.0, [a, b], idle_interval=10.0) == []
    assert ageing.sweep(10.0, [a, b], idle_interval=10.0) == [b]
    assert ageing.last_active_at(*a) == 9.0
    assert ageing.sweep(19.0, [a, b], idle_interval=10.0) == [a, b]
    assert ageing.sweep(20.0, [a], idle_interval=10.0) == [a]
    assert ageing.last_active_at(*b) is None, "an entry not listed is forgotten"
