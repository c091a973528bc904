"""The NFT_MSG_GETOBJ request and the parsing of its answers, as bytes (no kernel)."""

from __future__ import annotations

import errno
import struct

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel import nft_counter as nc


def message(kind: int, seq: int, payload: bytes) -> bytes:
    length = 16 + len(payload)
    return struct.pack("=IHHII", length, kind, 0, seq, 0) + payload + bytes(-length % 4)


def test_the_request_names_family_table_counter_and_type():
    request = nc.build_request(Family.IPV6, "mcproxy_pmip", "refused_i1", 7)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", request)
    assert (length, kind, flags, seq) == (len(request), 10 << 8 | 19, 1, 7)
    assert request[16] == 10, "NFPROTO_IPV6"
    attributes = nc._attributes(request[20:])
    assert attributes == {1: b"mcproxy_pmip\0", 2: b"refused_i1\0", 3: struct.pack("!I", 1)}


def test_an_answer_gives_packets_and_bytes_and_other_sequences_are_skipped():
    data = nc._attribute(nc.NFTA_COUNTER_BYTES, struct.pack("!Q", 1500)) + \
        nc._attribute(nc.NFTA_COUNTER_PACKETS, struct.pack("!Q", 3))
    payload = struct.pack("=BBH", 2, 0, 0) + nc._attribute(nc.NFTA_OBJ_NAME, b"refused_i1\0") + \
        nc._attribute(nc.NFTA_OBJ_DATA | 0x8000, data)
    answer = message(10 << 8 | 18, 4, payload)
    assert nc.parse_reply(message(10 << 8 | 18, 3, payload) + answer, 4) == (3, 1500)
    assert nc.parse_reply(answer, 5) is None


def test_an_error_answer_raises_with_its_errno():
    with pytest.raises(KernelError) as info:
        nc.parse_reply(message(nc.NLMSG_ERROR, 9, struct.pack("=i", -errno.ENOENT) + bytes(16)), 9)
    assert info.value.errno == errno.ENOENT
