"""Multicast address records, shared by IGMPv3 (RFC 3376 §4.2.4) and MLDv2 (RFC 3810 §5.2.4).

The codecs produce and consume ``GroupRecord``; the membership engine speaks
the same vocabulary, and IGMPv1/v2 / MLDv1 messages are mapped onto it
(a report is ``MODE_IS_EXCLUDE`` with no sources, a leave/done is
``CHANGE_TO_INCLUDE`` with no sources).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mcproxy_pmip.addresses import IPAddress


class RecordType(enum.IntEnum):
    """Record Type field (RFC 3376 §4.2.12, RFC 3810 §5.2.12)."""

    MODE_IS_INCLUDE = 1
    MODE_IS_EXCLUDE = 2
    CHANGE_TO_INCLUDE = 3
    CHANGE_TO_EXCLUDE = 4
    ALLOW_NEW_SOURCES = 5
    BLOCK_OLD_SOURCES = 6

    @property
    def is_current_state(self) -> bool:
        return self in (RecordType.MODE_IS_INCLUDE, RecordType.MODE_IS_EXCLUDE)

    @property
    def is_filter_change(self) -> bool:
        return self in (RecordType.CHANGE_TO_INCLUDE, RecordType.CHANGE_TO_EXCLUDE)

    @property
    def short(self) -> str:
        """The RFC tables' notation: IS_IN, IS_EX, TO_IN, TO_EX, ALLOW, BLOCK."""
        return _SHORT[self]


_SHORT = {
    RecordType.MODE_IS_INCLUDE: "IS_IN",
    RecordType.MODE_IS_EXCLUDE: "IS_EX",
    RecordType.CHANGE_TO_INCLUDE: "TO_IN",
    RecordType.CHANGE_TO_EXCLUDE: "TO_EX",
    RecordType.ALLOW_NEW_SOURCES: "ALLOW",
    RecordType.BLOCK_OLD_SOURCES: "BLOCK",
}


class FilterMode(enum.Enum):
    """A group's filter mode (RFC 3376 §3.2)."""

    INCLUDE = "INCLUDE"
    EXCLUDE = "EXCLUDE"


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """One Group / Multicast Address Record.

    ``record_type``: a ``RecordType``. ``group``: the multicast address.
    ``sources``: the source list in wire order (may hold duplicates as received;
    the engine treats it as a set). ``aux_data``: auxiliary data, kept verbatim.
    """

    record_type: RecordType
    group: IPAddress
    sources: tuple[IPAddress, ...] = ()
    aux_data: bytes = b""
