"""Read one named nftables counter straight from the kernel (``NFT_MSG_GETOBJ``), without libnftables.

libnftables fills its cache before any ``list`` command, and that cache
holds every element of every set in the table: with a counter set of 50,000
(iif, S, G) entries, listing even one counter takes seconds of CPU, which
``status`` cannot afford. This module asks the kernel for the one object:

    nlmsghdr  type = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETOBJ, flags = NLM_F_REQUEST
    nfgenmsg  family (NFPROTO_IPV4 / NFPROTO_IPV6), version 0, res_id 0
    NFTA_OBJ_TABLE (string), NFTA_OBJ_NAME (string), NFTA_OBJ_TYPE (be32 NFT_OBJECT_COUNTER)

and reads the answer's ``NFTA_OBJ_DATA`` (nested ``NFTA_COUNTER_PACKETS`` /
``NFTA_COUNTER_BYTES``, be64) or the ``NLMSG_ERROR`` errno
(``linux/netfilter/nf_tables.h``, ``linux/netfilter/nfnetlink.h``).
"""

from __future__ import annotations

import errno
import itertools
import socket
import struct

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import KernelError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETOBJ = 19
NFT_MSG_NEWOBJ = 18
NLM_F_REQUEST = 0x1
NLMSG_ERROR = 2
NLA_TYPE_MASK = 0x3FFF
NFTA_OBJ_TABLE, NFTA_OBJ_NAME, NFTA_OBJ_TYPE, NFTA_OBJ_DATA = 1, 2, 3, 4
NFT_OBJECT_COUNTER = 1
NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS = 1, 2
NFPROTO = {Family.IPV4: 2, Family.IPV6: 10}
#: the longest a read waits for the kernel's answer
TIMEOUT = 1.0

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("=BBH")
_NLA = struct.Struct("=HH")


def _attribute(kind: int, value: bytes) -> bytes:
    length = _NLA.size + len(value)
    return _NLA.pack(length, kind) + value + bytes(-length % 4)


def _attributes(data: bytes) -> dict[int, bytes]:
    found = {}
    offset = 0
    while offset + _NLA.size <= len(data):
        length, kind = _NLA.unpack_from(data, offset)
        if length < _NLA.size:
            break
        found[kind & NLA_TYPE_MASK] = data[offset + _NLA.size:offset + length]
        offset += (length + 3) & ~3
    return found


def build_request(family: Family, table: str, name: str, seq: int) -> bytes:
    body = (_NFGENMSG.pack(NFPROTO[family], 0, 0)
            + _attribute(NFTA_OBJ_TABLE, table.encode() + b"\0")
            + _attribute(NFTA_OBJ_NAME, name.encode() + b"\0")
            + _attribute(NFTA_OBJ_TYPE, struct.pack("!I", NFT_OBJECT_COUNTER)))
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETOBJ,
                          NLM_F_REQUEST, seq, 0) + body


def parse_reply(data: bytes, seq: int) -> tuple[int, int] | None:
    """(packets, bytes) from the answer to request ``seq``; None if ``data`` holds no answer to it.

    ``KernelError`` for an error answer (``ENOENT``: no such table or counter).
    """
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _, message_seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        payload = data[offset + _NLMSGHDR.size:offset + length]
        offset += (length + 3) & ~3
        if message_seq != seq:
            continue
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", payload)[0]
            raise KernelError("NFT_MSG_GETOBJ", code, "the kernel refused the counter request")
        if kind == NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWOBJ:
            counter = _attributes(_attributes(payload[_NFGENMSG.size:]).get(NFTA_OBJ_DATA, b""))
            packets = struct.unpack("!Q", counter[NFTA_COUNTER_PACKETS])[0] if NFTA_COUNTER_PACKETS in counter else 0
            octets = struct.unpack("!Q", counter[NFTA_COUNTER_BYTES])[0] if NFTA_COUNTER_BYTES in counter else 0
            return packets, octets
    return None


class NftCounterReader:
    """One netlink socket that reads named counters; ``close`` frees it."""

    def __init__(self) -> None:
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            self._sock.settimeout(TIMEOUT)
            self._sock.bind((0, 0))
        except OSError as exc:
            raise KernelError("socket(NETLINK_NETFILTER)", exc.errno or errno.EIO, str(exc)) from exc
        self._seq = itertools.count(1)

    def read(self, family: Family, table: str, name: str) -> tuple[int, int]:
        """(packets, bytes) of counter ``name`` in table ``family table``."""
        seq = next(self._seq)
        try:
            self._sock.send(build_request(family, table, name, seq))
            while True:
                answer = parse_reply(self._sock.recv(65536), seq)
                if answer is not None:
                    return answer
        except OSError as exc:
            raise KernelError("NFT_MSG_GETOBJ", exc.errno or errno.ETIMEDOUT, str(exc)) from exc

    def close(self) -> None:
        self._sock.close()
