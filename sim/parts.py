"""The simulator's small parts: group addresses and popularity, result rows, timed engine objects."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from mcproxy_pmip.membership.actions import Action
from mcproxy_pmip_testbed.results import HANDOVER_KEYS

FIRST_GROUP = int(IPv4Address("239.1.0.0"))


class GroupAddress(IPv4Address):
    """An ``IPv4Address`` whose hash is computed once: the engine keys its state by group
    address, and ``IPv4Address`` hashes a new hex string at every dict lookup (a tenth of
    a run's time). Equal to, and hashed like, the plain address of the same value."""

    __slots__ = ("_hash",)

    def __init__(self, address: int) -> None:
        super().__init__(address)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"IPv4Address('{self}')"


SOURCE = GroupAddress(int(IPv4Address("10.255.0.1")))
#: the first groups' addresses, made once: the MNs join these very objects, so the
#: engine's lookups mostly meet the key itself (no ``__eq__`` call)
GROUPS = tuple(GroupAddress(FIRST_GROUP + g) for g in range(4096))


def group_address(index: int) -> IPv4Address:
    return GROUPS[index] if index < len(GROUPS) else GroupAddress(FIRST_GROUP + index)


def canonical_group(address: IPv4Address) -> IPv4Address:
    """The shared object of a group address (one decoded from a transferred context)."""
    return group_address(int(address) - FIRST_GROUP)


def zipf_weights(count: int, exponent: float) -> list[float]:
    """Popularity of groups ranked 1..count: proportional to 1 / rank^exponent, summing to 1."""
    raw = [1.0 / (rank ** exponent) for rank in range(1, count + 1)]
    total = sum(raw)
    return [w / total for w in raw]


class Row:
    """One result row (handover × group) with the testbed's keys, given in their order;
    ``as_dict`` for JSON. Slotted: a long run holds millions."""

    __slots__ = HANDOVER_KEYS

    def __init__(self, *values: Any) -> None:
        for key, value in zip(HANDOVER_KEYS, values, strict=True):
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in HANDOVER_KEYS}


class Timed:
    """An engine object and the deadline the simulator has an event queued for."""

    __slots__ = ("obj", "armed_at", "deliver", "alive")

    def __init__(self, obj: Any, deliver: Callable[[list[Action]], None],
                 alive: Callable[[], bool] = lambda: True) -> None:
        self.obj = obj
        self.armed_at: float | None = None
        self.deliver = deliver
        self.alive = alive
