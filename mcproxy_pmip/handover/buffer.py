"""One mobile node's buffered group data at the MAG it is about to reach (docs/handover.md).

From a handover prepare until the MN's attach, the next MAG keeps the data of
the MN's groups that arrives on its tunnel. ``HandoverBuffer`` holds it,
oldest first, bounded by age (``max_interval``) and size (``max_bytes``); what
falls out is counted in ``overflow``. At the attach, ``take`` hands out what
the MN has not received: per group, the packets after the one its previous
MAG forwarded last (the *marker*, named by ``packet_identity``); a group
whose marker is not in the buffer (it fell out, or it came before the
prepare) or that has no marker gives all its packets, as does a take without
markers (the previous MAG said nothing: it may have died); those cases are
counted in ``unmarked``.

A packet is kept only if the MN's subscription wants its source (INCLUDE
lists it, EXCLUDE does not): the tunnel brings what any MN at this MAG asked
for. Sans-IO: ``now`` is given to every call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.wire.datagram import multicast_addresses, packet_identity
from mcproxy_pmip.wire.records import FilterMode, GroupRecord, RecordType

#: (family, group) of a subscription or a marker
GroupKey = tuple[Family, IPAddress]
#: a subscription's filter: (mode, sources)
SourceFilter = tuple[FilterMode, frozenset[IPAddress]]


@dataclass(frozen=True, slots=True)
class BufferedPacket:
    """One packet of the MN's groups as it arrived on the tunnel."""

    key: GroupKey
    identity: bytes
    received_at: float
    packet: bytes


class HandoverBuffer:
    """The MN's packets, oldest first; ``add`` while it is away, ``take`` once at its attach."""

    def __init__(self, subscriptions: Mapping[GroupKey, SourceFilter], max_interval: float,
                 max_bytes: int) -> None:
        self._subscriptions = dict(subscriptions)
        self.max_interval = max_interval
        self.max_bytes = max_bytes
        self._packets: deque[BufferedPacket] = deque()
        self.bytes = 0
        self.buffered = 0
        self.overflow = 0
        self.unmarked = 0

    @property
    def groups(self) -> frozenset[GroupKey]:
        return frozenset(self._subscriptions)

    def __len__(self) -> int:
        return len(self._packets)

    def wanted(self, packet: bytes) -> GroupKey | None:
        """The subscription ``packet`` belongs to, None when the MN did not ask for it."""
        addresses = multicast_addresses(packet)
        if addresses is None:
            return None
        family, source, group = addresses
        wanted = self._subscriptions.get((family, group))
        if wanted is None:
            return None
        mode, sources = wanted
        return (family, group) if (source in sources) == (mode is FilterMode.INCLUDE) else None

    def add(self, now: float, packet: bytes) -> bool:
        """Keep ``packet`` if the MN wants it; older packets fall out past the bounds."""
        key = self.wanted(packet)
        if key is None:
            return False
        self._packets.append(BufferedPacket(key, packet_identity(packet), now, packet))
        self.bytes += len(packet)
        self.buffered += 1
        self._trim(now)
        return True

    def _trim(self, now: float) -> None:
        oldest_kept = now - self.max_interval
        packets = self._packets
        while packets and (self.bytes > self.max_bytes or packets[0].received_at < oldest_kept):
            self.bytes -= len(packets.popleft().packet)
            self.overflow += 1

    def take(self, now: float, markers: Mapping[GroupKey, bytes] | None,
             live: frozenset[GroupKey] = frozenset()) -> tuple[list[BufferedPacket], int]:
        """(the packets the MN has not received, in arrival order; how many it had) — and empty.

        ``markers``: per group, the identity of the last packet the previous MAG
        forwarded to the MN; None when it sent none. ``live``: groups the MN's
        link gets already (another listener there): none of their packets is
        delivered, as they would come late and twice to the others.
        """
        self._trim(now)
        packets, self._packets, self.bytes = list(self._packets), deque(), 0
        start: dict[GroupKey, int] = {key: len(packets) for key in live}
        for key in self._subscriptions.keys() - live:
            marker = None if markers is None else markers.get(key)
            position = None
            if marker is not None:
                position = next((i for i in range(len(packets) - 1, -1, -1)
                                 if packets[i].key == key and packets[i].identity == marker), None)
            if position is None:
                self.unmarked += 1
            start[key] = -1 if position is None else position
        missed = [p for i, p in enumerate(packets) if i > start[p.key]]
        self._subscriptions = {k: v for k, v in self._subscriptions.items() if k not in live}
        return missed, len(packets) - len(missed)


def subscriptions_of(family: Family, records: Iterable[GroupRecord]) -> dict[GroupKey, SourceFilter]:
    """The filters current-state (or change) records leave, per group; empty INCLUDEs left out."""
    wanted: dict[GroupKey, SourceFilter] = {}
    for record in records:
        if record.record_type is RecordType.BLOCK_OLD_SOURCES:
            continue
        exclude = record.record_type in (RecordType.MODE_IS_EXCLUDE, RecordType.CHANGE_TO_EXCLUDE)
        if exclude or record.sources:
            wanted[(family, record.group)] = (FilterMode.EXCLUDE if exclude else FilterMode.INCLUDE,
                                              frozenset(record.sources))
    return wanted
