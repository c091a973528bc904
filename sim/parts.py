"""The simulator's small parts: group addresses and popularity, result rows, timed engine objects."""

from __future__ import annotations

from collections.abc import Callable
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


class GroupAddress(_HashedOnce, IPv4Address):
    __slots__ = ("_hash",)


class GroupAddress6(_HashedOnce, IPv6Address):
    __slots__ = ("_hash",)


SOURCE = GroupAddress(int(IPv4Address("10.255.0.1")))
SOURCE6 = GroupAddress6(int(IPv6Address("fd00:ff::1")))
#: the first groups' addresses of each family, made once: the MNs join these very
#: objects, so the engine's lookups mostly meet the key itself (no ``__eq__`` call)
GROUPS = tuple(GroupAddress(FIRST_GROUP + g) for g in range(4096))
GROUPS6 = tuple(GroupAddress6(FIRST_GROUP6 + g) for g in range(4096))


def group_address(index: int, family: Family = Family.IPV4) -> IPv4Address | IPv6Address:
    """Group ``index`` (0: the most popular) of ``family``."""
    if family is Family.IPV4:
        return GROUPS[index] if index < len(GROUPS) else GroupAddress(FIRST_GROUP + index)
    return GROUPS6[index] if index < len(GROUPS6) else GroupAddress6(FIRST_GROUP6 + index)


def group_index(address: IPv4Address | IPv6Address) -> int:
    """The index of a group address (its popularity rank - 1)."""
    return int(address) - (FIRST_GROUP if address.version == 4 else FIRST_GROUP6)


def canonical_group(address: IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
    """The shared object of a group address (one decoded from a transferred context)."""
    return group_address(group_index(address), Family(address.version))


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
