"""A data plane and packet sockets in memory: the whole proxy without a kernel.

For tests on ``twisted.internet.task.Clock`` (and simulations): ``MemoryPlane``
keeps what a kernel plane would install (interfaces, each group's
``GroupOutputs``) and answers ``forward(family, source, group, iif)`` the way
the kernel would forward one packet, from the same view the real planes read.
``MemoryPacketSocket`` queues what a test ``inject``s for ``read_packets`` and
records what the daemon ``send``s. Nothing here touches a socket.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.dataplane.port import (ForwardingView, GroupOutputs, PlaneLimitReached, Reader, Role,
                                         RouteRow)


class MemoryInstancePlane:
    """``InstancePlane`` in memory; ``max_interfaces`` imitates a kernel limit."""

    def __init__(self, name: str, families: frozenset[Family], table: int | None, view: ForwardingView,
                 max_interfaces: int | None) -> None:
        self.name = name
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

    def age(self, now: float) -> None:
        self.aged_at.append(now)

    def forward(self, family: Family, source: IPAddress, group: IPAddress, iif: str) -> frozenset[str]:
        """Where the kernel would send one (S,G) packet arriving on ``iif``."""
        if iif not in self.roles:
            return frozenset()
        return frozenset(name for name in self.view.outputs(family, source, group, iif) if name in self.roles)

    def routes(self) -> list[RouteRow]:
        return [RouteRow(family, group, None, None,
                         tuple(name for name, _ in outputs.downstreams) + outputs.upstreams, 0, 0)
                for (family, group), outputs in sorted(self.groups.items(), key=lambda item: str(item[0][1]))]

    def readers(self) -> list[Reader]:
        return []

    def counters(self) -> dict[str, int]:
        return {"memory_group_changes": len(self.changes)}

    def close(self) -> None:
        self.closed = True
        self.roles.clear()
        self._handles.clear()
        self.groups.clear()


class MemoryPlane:
    """``DataPlane`` in memory; ``instances`` keeps every instance plane it opened, by name."""

    name = "memory"

    def __init__(self, max_interfaces: int | None = None) -> None:
        self.max_interfaces = max_interfaces
        self.instances: dict[str, MemoryInstancePlane] = {}
        self.started = False
        self.closed = False

    def start(self, configured_tables: Iterable[int]) -> None:
        self.started = True

    def open_instance(self, name: str, families: frozenset[Family], table: int | None,
                      view: ForwardingView) -> MemoryInstancePlane:
        plane = MemoryInstancePlane(name, families, table, view, self.max_interfaces)
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
