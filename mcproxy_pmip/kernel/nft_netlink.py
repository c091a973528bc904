"""A few nf_tables changes written as netlink messages directly, without libnftables.

libnftables lists every chain of the namespace's tables before a batch that
adds a rule or an element, and every link before a batch with a ``dup ...
device`` rule (milliseconds with thousands of chains or links). The
nftables plane's attach path needs only four kinds of change, which this
module encodes itself (``linux/netfilter/nf_tables.h``, ``nfnetlink.h``):

- ``set_element_goto``: an element ``key : goto chain`` of a verdict map
  keyed by interface name (``ifaces``);
- ``new_chain``: a regular chain (``add chain``: an existing one is kept);
- ``rule_dup``: ``dup to <ip|ip6> daddr device <ifindex>``, the one rule of
  an output chain (payload load, immediate ifindex, ``dup``);
- ``rule_jump_unless_iifname``: ``iifname != "<name>" jump <chain>``.

``NftNetlink.commit`` sends them as ONE nfnetlink batch (begin, messages,
end), which the kernel applies as one transaction while it handles the
send, and reads the answer: an acknowledgement of the last message (the
only one that asks for it) after any refusal of the others. A refusal
raises ``KernelError("nft_netlink", errno)`` and changed nothing; so does a
batch larger than ``MAX_BATCH_OCTETS`` (not sent: a burst, not an attach).
An answer that does not come within ``ANSWER_TIMEOUT`` raises with
ETIMEDOUT: whether the kernel applied the batch is then unknown. Attribute
values are big-endian 32-bit numbers except the device register's ifindex
(host order, as nft writes it) and interface names (16 octets, zero-padded).
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import struct
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import KernelError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFT_MSG_NEWCHAIN = 3
NFT_MSG_NEWRULE = 6
NFT_MSG_NEWSETELEM = 12

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_APPEND = 0x800
NLM_F_CREATE = 0x400
NLMSG_ERROR = 0x2
NLA_F_NESTED = 0x8000

NFPROTO = {Family.IPV4: 2, Family.IPV6: 10}
IFNAMSIZ = 16
#: nft_verdicts
NFT_JUMP, NFT_GOTO = -3, -4
NFT_REG_VERDICT, NFT_REG_1, NFT_REG_2 = 0, 1, 2
NFT_PAYLOAD_NETWORK_HEADER = 1
NFT_META_IIFNAME = 6
NFT_CMP_NEQ = 1
#: (offset, length) of the destination address in the network header
DADDR = {Family.IPV4: (16, 4), Family.IPV6: (24, 16)}

#: larger batches are not sent (EMSGSIZE): far below the socket's send buffer, and the answer to a refused
#: batch (each refused message echoed) fits the receive buffer
MAX_BATCH_OCTETS = 32768
#: seconds to wait for the kernel's answer (it is queued before the send returns)
ANSWER_TIMEOUT = 1.0

_HEADER = struct.Struct("=IHHII")
_RECEIVE_BUFFER = 65536


@dataclass(frozen=True, slots=True)
class Message:
    """One nf_tables message of a batch: its type (NFT_MSG_*), extra flags, family and attributes."""

    kind: int
    flags: int
    family: Family
    attributes: bytes


def _attribute(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + bytes(-len(raw) % 4)


def _nested(kind: int, *parts: bytes) -> bytes:
    return _attribute(kind | NLA_F_NESTED, b"".join(parts))


def _u32(kind: int, value: int) -> bytes:
    return _attribute(kind, struct.pack("!I", value & 0xFFFFFFFF))


def _string(kind: int, value: str) -> bytes:
    return _attribute(kind, value.encode() + b"\0")


def interface_name(name: str) -> bytes:
    """An interface name as nf_tables compares it: 16 octets, zero-padded."""
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ:
        raise KernelError("nft_netlink", errno.EINVAL, f"interface name {name!r} does not fit IFNAMSIZ")
    return raw.ljust(IFNAMSIZ, b"\0")


@functools.lru_cache(maxsize=1024)
def _verdict(code: int, chain: str) -> bytes:
    """NFTA_DATA_VERDICT { NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN }."""
    return _nested(2, _u32(1, code), _string(2, chain))


def _expression(name: str, *data: bytes) -> bytes:
    """NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { ... } }."""
    return _nested(1, _string(1, name), _nested(2, *data))


def set_element_goto(family: Family, table: str, map_name: str, key: str, chain: str) -> Message:
    """``add element <table> <map> { "<key>" : goto <chain> }``."""
    element = _nested(1, _nested(1, _attribute(1, interface_name(key))),      # NFTA_SET_ELEM_KEY / DATA_VALUE
                      _nested(2, _verdict(NFT_GOTO, chain)))                  # NFTA_SET_ELEM_DATA
    return Message(NFT_MSG_NEWSETELEM, NLM_F_CREATE, family,
                   _string(1, table) + _string(2, map_name) + _nested(3, element))


def new_chain(family: Family, table: str, chain: str) -> Message:
    """``add chain <table> <chain>`` (a regular chain; kept if it exists)."""
    return Message(NFT_MSG_NEWCHAIN, NLM_F_CREATE, family, _string(1, table) + _string(3, chain))


def _rule(family: Family, table: str, chain: str, *expressions: bytes) -> Message:
    return Message(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, family,
                   _string(1, table) + _string(2, chain) + _nested(4, *expressions))


@functools.cache
def _constant(name: str, family: Family = Family.IPV4) -> bytes:
    """The expressions that never change: the destination address load, ``dup``, the ``iifname`` load."""
    if name == "daddr":
        offset, length = DADDR[family]
        return _expression("payload", _u32(1, NFT_REG_1), _u32(2, NFT_PAYLOAD_NETWORK_HEADER),
                           _u32(3, offset), _u32(4, length))
    if name == "dup":
        return _expression("dup", _u32(1, NFT_REG_1), _u32(2, NFT_REG_2))
    return _expression("meta", _u32(1, NFT_REG_1), _u32(2, NFT_META_IIFNAME))


def rule_dup(family: Family, table: str, chain: str, ifindex: int) -> Message:
    """``add rule <table> <chain> dup to <ip|ip6> daddr device <ifindex>``."""
    return _rule(family, table, chain, _constant("daddr", family),
                 _expression("immediate", _u32(1, NFT_REG_2),
                             _nested(2, _attribute(1, struct.pack("=I", ifindex)))),
                 _constant("dup"))


def rule_jump_unless_iifname(family: Family, table: str, chain: str, name: str, target: str) -> Message:
    """``add rule <table> <chain> iifname != "<name>" jump <target>``."""
    return _rule(family, table, chain, _constant("iifname"),
                 _expression("cmp", _u32(1, NFT_REG_1), _u32(2, NFT_CMP_NEQ),
                             _nested(3, _attribute(1, interface_name(name)))),
                 _expression("immediate", _u32(1, NFT_REG_VERDICT), _nested(2, _verdict(NFT_JUMP, target))))


def encode_batch(messages: list[Message], first_sequence: int) -> tuple[bytes, list[int]]:
    """The batch (begin, messages, the last asking for an acknowledgement, end) and the messages' sequence
    numbers (refusals are answered whether asked for or not)."""
    def packet(kind: int, flags: int, sequence: int, family: int, resource: int, attributes: bytes) -> bytes:
        body = struct.pack("!BBH", family, 0, resource) + attributes
        return _HEADER.pack(_HEADER.size + len(body), kind, flags, sequence, 0) + body

    sequence = first_sequence
    parts = [packet(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, sequence, 0, NFNL_SUBSYS_NFTABLES, b"")]
    numbers = []
    for index, message in enumerate(messages):
        sequence += 1
        numbers.append(sequence)
        ack = NLM_F_ACK if index == len(messages) - 1 else 0
        parts.append(packet((NFNL_SUBSYS_NFTABLES << 8) | message.kind, NLM_F_REQUEST | ack | message.flags,
                            sequence, NFPROTO[message.family], 0, message.attributes))
    parts.append(packet(NFNL_MSG_BATCH_END, NLM_F_REQUEST, sequence + 1, 0, NFNL_SUBSYS_NFTABLES, b""))
    return b"".join(parts), numbers


def acknowledgements(data: bytes) -> list[tuple[int, int]]:
    """(sequence, error) of every NLMSG_ERROR in ``data`` (error 0: an acknowledgement)."""
    found = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, sequence, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            break
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, offset + _HEADER.size)
            found.append((sequence, -error))
        offset += (length + 3) & ~3
    return found


class NftNetlink:
    """One NETLINK_NETFILTER socket, in the namespace of the thread that made it; ``commit`` a batch."""

    def __init__(self) -> None:
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            self._sock.bind((0, 0))
        except OSError as exc:
            raise KernelError("nft_netlink", exc.errno or errno.EIO, "cannot open a netfilter netlink socket") from exc
        self._sock.settimeout(ANSWER_TIMEOUT)
        self._sequence = int.from_bytes(os.urandom(2), "big") << 8

    def commit(self, messages: list[Message]) -> None:
        """Apply ``messages`` as one transaction; ``KernelError`` with the first refusal's errno (nothing
        applied), EMSGSIZE for a batch too large to send, ETIMEDOUT when no answer came (outcome unknown)."""
        if not messages:
            return
        begin = self._sequence
        batch, numbers = encode_batch(messages, begin)
        self._sequence += len(messages) + 2
        if len(batch) > MAX_BATCH_OCTETS:
            raise KernelError("nft_netlink", errno.EMSGSIZE, f"batch of {len(batch)} octets not sent")
        try:
            self._sock.sendall(batch)
        except OSError as exc:
            raise KernelError("nft_netlink", exc.errno or errno.EIO, f"send failed: {exc}") from exc
        refused: tuple[int, int] | None = None
        answered = False
        try:
            while not answered:
                for sequence, error in acknowledgements(self._sock.recv(_RECEIVE_BUFFER)):
                    if sequence == begin and error and refused is None:
                        refused = (0, error)    # the commit itself failed: answered on the batch's begin
                    if sequence not in numbers:
                        continue    # an answer to an earlier batch
                    if error and refused is None:
                        refused = (numbers.index(sequence) + 1, error)
                    answered = answered or sequence == numbers[-1]
        except TimeoutError as exc:
            raise KernelError("nft_netlink", errno.ETIMEDOUT, "no answer from the kernel") from exc
        except OSError as exc:
            raise KernelError("nft_netlink", errno.ETIMEDOUT, f"answer unreadable: {exc}") from exc
        if refused is not None:
            where = f"message {refused[0]} of {len(numbers)}" if refused[0] else "the commit"
            raise KernelError("nft_netlink", refused[1], f"{where} refused")

    def close(self) -> None:
        self._sock.close()
