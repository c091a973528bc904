"""A data plane and packet sockets in memory: the whole proxy without a kernel.

For tests on ``twisted.internet.task.Clock`` (and simulations): ``MemoryPlane``
keeps what a kernel plane would install (interfaces, each group's
``GroupOutputs``) and answers ``forward(family, source, group, iif)`` the way
the kernel would forward one packet, from the same view the real planes read.
``MemoryPacketSocket`` queues what a test ``inject``s for ``read_packets`` and
records what the daemon ``send``s. Nothing here touches a socket.

Data-driven state: ``data(...)`` is one packet of (S,G) arriving, as the
kernel would see it. A new (S,G) gets an entry with a packet counter when
the instance's ``RouteQuota`` admits it (``max_routes``, the daemon-wide
``max_total_routes``); a refused one is counted, not recorded, and still
forwarded by group (as on nftables). Entries idle for ``IDLE_INTERVAL`` are
swept in steps (``SteppedAgeing``); ``failing_reads`` makes chosen counter
reads raise, as a kernel read can.
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.dataplane.port import (ForwardingView, GroupOutputs, PlaneLimitReached, Reader, Role,
                                         RouteBudget, RouteQuota, RouteRow)
from mcproxy_pmip.errors import KernelError

#: an (S,G) entry whose packet counter did not move for this long is forgotten
IDLE_INTERVAL = 180.0

SgKey = tuple[Family, IPAddress, IPAddress]


@dataclass(slots=True)
class MemoryRoute:
    """One (S,G) entry: where its data came in, its packet counter, when the counter last moved."""

    iif: str
    packets: int
    seen_packets: int
    last_active_at: float


class MemoryInstancePlane:
    """``InstancePlane`` in memory; ``max_interfaces`` imitates a kernel limit."""

    def __init__(self, name: str, families: frozenset[Family], table: int | None, view: ForwardingView,
                 max_interfaces: int | None, quota: RouteQuota | None = None) -> None:
        self.name = name
        self.quota = quota if quota is not None else RouteBudget().quota(name)
        self.sg: dict[SgKey, MemoryRoute] = {}
        #: (family, source, group) whose counter reads raise KernelError (a test's injected fault)
        self.failing_reads: set[SgKey] = set()
        self.read_failures = 0
        self.aged_out = 0
        self._sweep_at: float | None = None
        self._cursor: list[SgKey] = []
        self.families = families
        self.table = table
        self.view = view
        self.max_interfaces = max_interfaces
        self.roles: dict[str, Role] = {}
        self._handles: dict[str, int] = {}
        self.groups: dict[tuple[Family, IPAddress], GroupOutputs] = {}
        self.changes: list[tuple[Family, IPAddress]] = []
        #: each groups_changed call: the keys it carried, in order
        self.batches: list[list[tuple[Family, IPAddress]]] = []
        self.aged_at: list[float] = []
        self.closed = False

    def add_interface(self, name: str, ifindex: int, role: Role) -> None:
        if name in self.roles:
            return
        if self.max_interfaces is not None and len(self.roles) >= self.max_interfaces:
            raise PlaneLimitReached("memory", name, f"{self.max_interfaces} interfaces per instance")
        self.roles[name] = role
        self._handles[name] = ifindex

    def remove_interface(self, name: str) -> None:
        self.roles.pop(name, None)
        self._handles.pop(name, None)
        self.refresh()

    def interfaces(self) -> dict[str, int]:
        return dict(self._handles)

    def groups_changed(self, keys: Iterable[tuple[Family, IPAddress]]) -> None:
        keys = list(keys)
        self.batches.append(keys)
        for family, group in keys:
            self.changes.append((family, group))
            outputs = self.view.group_outputs(family, group)
            if outputs.empty:
                self.groups.pop((family, group), None)
            else:
                self.groups[(family, group)] = outputs

    def refresh(self) -> None:
        self.groups_changed(list(self.groups))

    # -- data-driven (S,G) state ------------------------------------------------------

    def data(self, family: Family, source: IPAddress, group: IPAddress, iif: str, now: float) -> frozenset[str]:
        """One packet of (source, group) arrives on ``iif``: count it (a new (S,G) if admitted); where it goes."""
        key = (family, source, group)
        entry = self.sg.get(key)
        if entry is not None:
            entry.packets += 1
        elif iif in self.roles and self.quota.admit():
            self.sg[key] = MemoryRoute(iif, 1, 1, now)
        return self.forward(family, source, group, iif)

    def read_packets(self, key: SgKey) -> int:
        """An entry's packet counter, as a kernel counter read (``KernelError`` for ``failing_reads``)."""
        if key in self.failing_reads:
            raise KernelError("memory-counter-read", errno.EIO, f"counter of {key[1]},{key[2]} unreadable")
        return self.sg[key].packets

    def age(self, now: float) -> None:
        """A whole sweep at once."""
        self.begin_ageing(now)
        self.age_step(max(1, len(self._cursor)))

    def begin_ageing(self, now: float) -> None:
        self.aged_at.append(now)
        self._sweep_at = now
        self._cursor = list(self.sg)
        self._cursor.reverse()

    def age_step(self, budget: int) -> bool:
        """Look at up to ``budget`` entries of the sweep; forget those idle for ``IDLE_INTERVAL``."""
        now = self._sweep_at
        for _ in range(min(budget, len(self._cursor))):
            key = self._cursor.pop()
            entry = self.sg.get(key)
            if entry is None:
                continue
            try:
                packets = self.read_packets(key)
            except KernelError:
                self.read_failures += 1
                continue
            if packets != entry.seen_packets:
                entry.seen_packets, entry.last_active_at = packets, now
            elif now - entry.last_active_at >= IDLE_INTERVAL:
                del self.sg[key]
                self.quota.release()
                self.aged_out += 1
        return not self._cursor

    def forward(self, family: Family, source: IPAddress, group: IPAddress, iif: str) -> frozenset[str]:
        """Where the kernel would send one (S,G) packet arriving on ``iif``."""
        if iif not in self.roles:
            return frozenset()
        return frozenset(name for name in self.view.outputs(family, source, group, iif) if name in self.roles)

    def routes(self) -> list[RouteRow]:
        groups = [RouteRow(family, group, None, None,
                           tuple(name for name, _ in outputs.downstreams) + outputs.upstreams, 0, 0)
                  for (family, group), outputs in sorted(self.groups.items(), key=lambda item: str(item[0][1]))]
        return groups + [RouteRow(family, group, source, entry.iif,
                                  tuple(sorted(self.forward(family, source, group, entry.iif))), entry.packets)
                         for (family, source, group), entry in self.sg.items()]

    def readers(self) -> list[Reader]:
        return []

    def counters(self) -> dict[str, int]:
        return {"memory_group_changes": len(self.changes), "routes_aged": self.aged_out,
                "route_counter_read_failures": self.read_failures, **self.quota.counters()}

    def close(self) -> None:
        self.closed = True
        self.sg.clear()
        self._cursor.clear()
        self.quota.budget.closed(self.quota)
        self.roles.clear()
        self._handles.clear()
        self.groups.clear()


class MemoryPlane:
    """``DataPlane`` in memory; ``instances`` keeps every instance plane it opened, by name."""

    name = "memory"

    def __init__(self, max_interfaces: int | None = None) -> None:
        self.max_interfaces = max_interfaces
        self.routes = RouteBudget()
        self.instances: dict[str, MemoryInstancePlane] = {}
        self.started = False
        self.closed = False

    def start(self, configured_tables: Iterable[int]) -> None:
        self.started = True

    def open_instance(self, name: str, families: frozenset[Family], table: int | None,
                      view: ForwardingView) -> MemoryInstancePlane:
        plane = MemoryInstancePlane(name, families, table, view, self.max_interfaces, self.routes.quota(name))
        self.instances[name] = plane
        return plane

    def close(self) -> None:
        self.closed = True


@dataclass(frozen=True, slots=True)
class SentPacket:
    """One message the daemon sent."""

    ifindex: int
    src: IPAddress | None
    dst: IPAddress
    payload: bytes


class MemoryPacketSocket:
    """``PacketSocket`` in memory: ``inject`` received packets, read ``sent``."""

    def __init__(self, family: Family) -> None:
        self.family = family
        self.drops: Counter[str] = Counter()
        self.watched: set[int] = set()
        self.sent: list[SentPacket] = []
        self._queue: list = []
        self.closed = False

    def inject(self, packet) -> None:
        """Queue a ``ReceivedIgmp`` / ``ReceivedMld`` for the next ``read_packets``."""
        self._queue.append(packet)

    def fileno(self) -> int:
        return -1

    def read_packets(self) -> list:
        packets, self._queue = self._queue, []
        return packets

    def send(self, ifindex: int, src: IPAddress | None, dst: IPAddress, payload: bytes) -> None:
        self.sent.append(SentPacket(ifindex, src, dst, payload))

    def watch(self, ifindex: int) -> None:
        self.watched.add(ifindex)

    def unwatch(self, ifindex: int) -> None:
        self.watched.discard(ifindex)

    def close(self) -> None:
        self.closed = True
