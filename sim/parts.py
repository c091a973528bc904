"""The simulator's small parts: group addresses and popularity, result rows, timed engine objects."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from mcproxy_pmip.membership.actions import Action
from mcproxy_pmip_testbed.results import HANDOVER_KEYS

SOURCE = IPv4Address("10.255.0.1")
FIRST_GROUP = int(IPv4Address("239.1.0.0"))


def group_address(index: int) -> IPv4Address:
    return IPv4Address(FIRST_GROUP + index)


#: the first groups' addresses, made once (the hot path asks for them at every check)
GROUPS = tuple(group_address(g) for g in range(4096))


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
