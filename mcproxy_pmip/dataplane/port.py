"""The data-plane port: what the proxy layer asks of the kernel's forwarding, and nothing more.

The proxy layer (Proxy, ProxyInstance, the plugin facade) decides who wants
what; a data plane makes the kernel forward it. Three implementations stand
behind this port, chosen at the top (``daemon``) and passed down:

- ``dataplane.mroute``: the kernel's multicast routing (MRT / MRT6, RFC 4605
  with vifs and (S,G) MFC entries learnt from upcalls); 32 interfaces per table;
- ``dataplane.nftables``: nftables ``dup to <group> device <interface>`` in
  the prerouting hook, group-indexed through verdict maps, source filters as
  sets; no interface limit, no multicast routing needed in the kernel;
- ``dataplane.memory``: a plane in memory that forwards nothing and records
  everything, for tests on ``task.Clock``.

A plane is opened once per daemon (``DataPlane``) and gives one
``InstancePlane`` per proxy instance; the instance hands it a
``ForwardingView`` to read its decisions from. Packet input and output
(``PacketSocket``) is a port of its own, independent of the plane.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.dataplane.route_budget import RouteBudget, RouteQuota  # noqa: F401 (part of the port)
from mcproxy_pmip.errors import PlaneLimitReached, PlaneUnavailable  # noqa: F401 (part of the port)
from mcproxy_pmip.wire.records import FilterMode


class Role(enum.Enum):
    """An interface's role in its instance (RFC 4605 §2)."""

    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"


@dataclass(frozen=True, slots=True)
class SourceFilter:
    """Which sources of a group one output wants: INCLUDE(sources) or EXCLUDE(sources)."""

    mode: FilterMode
    sources: frozenset[IPAddress] = frozenset()

    def passes(self, source: IPAddress) -> bool:
        return (source in self.sources) is (self.mode is FilterMode.INCLUDE)


ANY_SOURCE = SourceFilter(FilterMode.EXCLUDE)


@dataclass(frozen=True, slots=True)
class GroupOutputs:
    """Where one group's data goes, independent of its source (for group-indexed planes).

    Data of ``group`` from source S arriving on interface I goes out on:
    - each downstream ``d`` in ``downstreams`` with ``d != I`` whose filter passes S;
    - when I is a downstream, each interface of ``upstreams`` (RFC 4605 §4.2).
    Data arriving on an upstream never goes to another upstream.
    """

    family: Family
    group: IPAddress
    downstreams: tuple[tuple[str, SourceFilter], ...] = ()
    upstreams: tuple[str, ...] = ()
    #: a prepared handover holds the group (docs/handover.md): keep its entry, with no downstream
    #: yet, so that the mobile node's attach only adds one
    held: bool = False

    @property
    def empty(self) -> bool:
        """No downstream wants the group and none is about to: it needs no entry of its own, the
        plane's default path (``ForwardingView.default_upstreams``) carries data from downstreams
        upstream."""
        return not self.downstreams and not self.held


class ForwardingView(Protocol):
    """An instance's forwarding decisions, as a plane reads them (implemented by ProxyInstance)."""

    def outputs(self, family: Family, source: IPAddress, group: IPAddress, iif: str) -> frozenset[str]:
        """Exact decision for one (S,G) arriving on ``iif``; never contains ``iif``."""

    def group_outputs(self, family: Family, group: IPAddress) -> GroupOutputs:
        """The same decision for every source of ``group`` at once."""

    def default_upstreams(self, family: Family) -> tuple[str, ...]:
        """Where data from a downstream goes for a group no downstream wants (RFC 4605 §4.2)."""


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One forwarding entry with its counters, as ``routes`` and ``status`` show it.

    ``source`` None: a group-level entry (all sources, nftables); ``iif`` None:
    any of the instance's interfaces. ``packets`` / ``octets`` None: unreadable.
    """

    family: Family
    group: IPAddress
    source: IPAddress | None
    iif: str | None
    oifs: tuple[str, ...]
    packets: int | None
    octets: int | None = None


@dataclass(frozen=True, slots=True)
class Reader:
    """A file descriptor the plane wants watched, and what to call when it is readable."""

    name: str
    fileno: Callable[[], int]
    on_readable: Callable[[], None]


@dataclass
class PlaneCounters:
    """Plane-wide counters shown in ``status`` (names are counter keys)."""

    values: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, amount: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + amount


class InstancePlane(Protocol):
    """The forwarding state of one instance: its interfaces, outputs per group, counters."""

    #: the kernel table this instance's state lives in, if the plane has such a thing
    table: int | None

    def add_interface(self, name: str, ifindex: int, role: Role) -> None:
        """Make ``name`` usable for forwarding; all or nothing (``PlaneLimitReached``, ``KernelError``).

        A plane may stage what a new downstream needs and write it with its
        next update (``groups_changed``, possibly of no group, or ``refresh``):
        the proxy makes one at the end of the downstream's attach, with the
        groups changed meanwhile (its imported context)."""

    def remove_interface(self, name: str) -> None:
        """Take ``name`` out of every output and forget it. Unknown names are ignored."""

    def interfaces(self) -> dict[str, int]:
        """Interface name -> the plane's handle for it (vif number, ifindex)."""

    def groups_changed(self, keys: Iterable[tuple[Family, IPAddress]]) -> None:
        """The view's decisions for these (family, group) changed: apply them at once, together.

        The proxy hands over every group that changed in one reactor turn in
        one call, so a plane whose updates cost per call (one nft batch) pays
        once for a burst of reports."""

    def refresh(self) -> None:
        """Re-read every decision (after interfaces came or went)."""

    def age(self, now: float) -> None:
        """Forget per-source state idle for longer than the plane's idle interval."""

    def routes(self) -> list[RouteRow]:
        """Every entry with its counters."""

    def readers(self) -> list[Reader]:
        """Descriptors to watch (MRT upcalls); empty for planes that need no notice of sources."""

    def counters(self) -> dict[str, int]:
        """Counters of this instance's plane, for ``status``."""

    def close(self) -> None:
        """Remove everything this instance put in the kernel."""


@runtime_checkable
class SteppedAgeing(Protocol):
    """An instance plane that sweeps its own (S,G) entries a bounded step at a time.

    ``proxy.ageing`` calls ``begin_ageing(now)``, then ``age_step(budget)``
    once per reactor turn until it returns True; each step looks at no more
    than ``budget`` entries, and a failure to read one entry's counter
    affects that entry only.
    """

    def begin_ageing(self, now: float) -> None: ...

    def age_step(self, budget: int) -> bool: ...


class DataPlane(Protocol):
    """One data plane for the whole daemon."""

    #: "mroute", "nftables" or "memory"
    name: str
    #: most interfaces one instance can have (None: no limit)
    max_interfaces: int | None
    #: the caps on data-driven (S,G) entries; the daemon ``configure``s it from the configuration
    routes: RouteBudget

    def start(self, configured_tables: Iterable[int]) -> None:
        """Clear leftovers of a crashed run and set up what the daemon shares."""

    def open_instance(self, name: str, families: frozenset[Family], table: int | None,
                      view: ForwardingView) -> InstancePlane:
        """The plane of one new instance (``table``: a configured number, or None)."""

    def close(self) -> None:
        """Remove the daemon-wide kernel state (after every instance closed)."""


class PacketSocket(Protocol):
    """IGMP (IPv4) or MLD (IPv6) packets in and out, for any number of links.

    ``read_packets`` returns ``kernel.igmp_socket.ReceivedIgmp`` /
    ``kernel.mld_socket.ReceivedMld``-shaped objects (ifindex, src, dst, ttl or
    hop_limit, router_alert, payload). ``watch``/``unwatch`` tell the socket
    which interfaces are downstreams, so that it receives their reports.
    """

    drops: dict[str, int]

    def fileno(self) -> int: ...

    def read_packets(self) -> list: ...

    def send(self, ifindex: int, src: IPAddress | None, dst: IPAddress, payload: bytes) -> None: ...

    def watch(self, ifindex: int) -> None: ...

    def unwatch(self, ifindex: int) -> None: ...

    def close(self) -> None: ...
