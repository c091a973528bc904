"""The simulator's small parts: group addresses and popularity, result rows and their
tally, timed engine objects."""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Iterator, Mapping
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.membership.actions import Action
from mcproxy_pmip_testbed.results import HANDOVER_KEYS

FIRST_GROUP = int(IPv4Address("239.1.0.0"))
#: IPv6 any-source groups: transient, global scope (ff1e::/16), outside the SSM range
FIRST_GROUP6 = int(IPv6Address("ff1e::1:0"))


class _HashedOnce:
    """An address whose hash is computed once: the engine keys its state by group
    address, and ``ipaddress`` recomputes the hash (IPv4: of a new hex string) at every
    dict lookup (a tenth of a run's time). Equal to, and hashed like, the plain address."""

    __slots__ = ()

    def __init__(self, address: int) -> None:
        super().__init__(address)  # type: ignore[call-arg]
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined, no-any-return]

    def __repr__(self) -> str:
        return f"{type(self).__mro__[2].__name__}('{self}')"


class HashedIPv4Address(_HashedOnce, IPv4Address):
    __slots__ = ("_hash",)


class HashedIPv6Address(_HashedOnce, IPv6Address):
    __slots__ = ("_hash",)


#: the streams' source, per family
SOURCES = {Family.IPV4: HashedIPv4Address(int(IPv4Address("10.255.0.1"))),
           Family.IPV6: HashedIPv6Address(int(IPv6Address("fd00:ff::1")))}


def group_address(index: int, family: Family) -> IPv4Address | IPv6Address:
    """Group ``index`` (0: the most popular) of ``family``. The simulator makes each once
    and hands the MNs those objects, so the engine's lookups mostly meet the key itself
    (no ``__eq__`` call)."""
    if family is Family.IPV4:
        return HashedIPv4Address(FIRST_GROUP + index)
    return HashedIPv6Address(FIRST_GROUP6 + index)


def zipf_weights(count: int, exponent: float) -> list[float]:
    """Popularity of groups ranked 1..count: proportional to 1 / rank^exponent, summing to 1."""
    raw = [1.0 / (rank ** exponent) for rank in range(1, count + 1)]
    total = sum(raw)
    return [w / total for w in raw]


class Row(Mapping[str, Any]):
    """One result row (handover × group) with the testbed's keys, given in their order.
    Slotted (a long run holds millions) and read as a mapping of those keys, so reports,
    plots and the results writer take it where they take the testbed's dicts."""

    __slots__ = HANDOVER_KEYS

    def __init__(self, *values: Any) -> None:
        for key, value in zip(HANDOVER_KEYS, values, strict=True):
            setattr(self, key, value)

    def __getitem__(self, key: str) -> Any:
        if key not in _ROW_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(HANDOVER_KEYS)

    def __len__(self) -> int:
        return len(HANDOVER_KEYS)


_ROW_KEYS = frozenset(HANDOVER_KEYS)


class Tally:
    """What a mode's aggregates need of its finished rows, kept without the rows: how many,
    their gaps and losses (8 bytes each) and the losses of each stream (sum, count)."""

    __slots__ = ("rows", "gaps_ms", "losses", "lost_by_stream")

    def __init__(self) -> None:
        self.rows = 0
        self.gaps_ms = array("d")
        self.losses = array("q")
        #: stream name -> [packets lost, rows with a loss]
        self.lost_by_stream: dict[str, list[int]] = {}

    def add(self, row: Row) -> None:
        self.rows += 1
        if row.gap_ms is not None:
            self.gaps_ms.append(row.gap_ms)
        if row.lost is not None:
            self.losses.append(row.lost)
            per_stream = self.lost_by_stream.setdefault(row.stream, [0, 0])
            per_stream[0] += row.lost
            per_stream[1] += 1

    def sort(self) -> None:
        """Gaps and losses in ascending order (the order rows finished in means nothing)."""
        self.gaps_ms = in_order(self.gaps_ms)
        self.losses = in_order(self.losses)


def in_order(values: array, chunk: int = 1 << 20) -> array:
    """The contents of ``values`` in ascending order, taken out of it a chunk at a time
    (each sorted, then all merged), so that at most one chunk is Python objects at once and
    the memory held stays near twice the array's (a list of 41 million floats would take
    1.3 GB, their array 330 MB). ``values`` is left empty."""
    runs = []
    while values:
        runs.append(array(values.typecode, sorted(values[-chunk:])))
        del values[-chunk:]
    merged = array(values.typecode)
    merged.extend(heapq.merge(*runs))
    return merged


class Timed:
    """An engine object and the deadline the simulator has an event queued for."""

    __slots__ = ("obj", "armed_at", "deliver", "alive")

    def __init__(self, obj: Any, deliver: Callable[[list[Action]], None],
                 alive: Callable[[], bool] = lambda: True) -> None:
        self.obj = obj
        self.armed_at: float | None = None
        self.deliver = deliver
        self.alive = alive
