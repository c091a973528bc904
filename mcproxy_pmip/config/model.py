"""The validated configuration model: frozen dataclasses, built only by ``validate``.

Both readers (mcproxy's grammar, YAML) produce the same model, so the rest of
the daemon never knows which format the operator wrote. Filter tables keep
mcproxy's structure (rule boxes, nested tables) and know how to match an
(S,G) pair; ``config.filters`` turns an instance's bindings into the engine's
``FilterPolicy``. RFC 4605 §4 (proxy instances: one upstream set, many
downstreams) and RFC 3376 §8 / RFC 3810 §9 (timers) shape the fields.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.membership.filters import Direction
from mcproxy_pmip.membership.timers import RouterOptions, Timers

#: Protocol names as mcproxy spells them, with their family and version.
PROTOCOLS: Mapping[str, tuple[Family, int]] = MappingProxyType({
    "IGMPv1": (Family.IPV4, 1),
    "IGMPv2": (Family.IPV4, 2),
    "IGMPv3": (Family.IPV4, 3),
    "MLDv1": (Family.IPV6, 1),
    "MLDv2": (Family.IPV6, 2),
})

#: mcproxy's default when no ``protocol`` line is given.
DEFAULT_PROTOCOL = "IGMPv3"

#: the data planes the daemon can forward with; the first is the default (docs/dataplanes.md)
DATA_PLANES = ("auto", "mroute", "nftables")


class Role(enum.Enum):
    """Which side of a proxy instance an interface is on (RFC 4605 §1)."""

    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"


class FilterMode(enum.Enum):
    """whitelist: passes if a rule matches; blacklist: passes if no rule matches."""

    WHITELIST = "whitelist"
    BLACKLIST = "blacklist"


class RuleMatching(enum.Enum):
    """mcproxy's multi-upstream ``rulematching`` choices."""

    ALL = "all"
    FIRST = "first"
    MUTEX = "mutex"


@dataclass(frozen=True, slots=True)
class AddressMatch:
    """One side of a rule box: ``*`` (both bounds None), one address, a range or a prefix.

    A prefix is stored as its first..last range; ``text`` keeps what the operator wrote.
    A None bound of a range is a wildcard on that end (mcproxy's ``a - *``).
    """

    low: IPAddress | None
    high: IPAddress | None
    text: str

    @property
    def family(self) -> Family | None:
        bound = self.low if self.low is not None else self.high
        return None if bound is None else Family(bound.version)

    def matches(self, address: IPAddress) -> bool:
        family = self.family
        if family is None:
            return True
        if address.version != family:
            return False
        if self.low is not None and address < self.low:
            return False
        return self.high is None or address <= self.high


ANY = AddressMatch(None, None, "*")


@dataclass(frozen=True, slots=True)
class AddressRule:
    """A rule box ``IF(GROUP | SOURCE)``; ``interface`` None is ``*`` or no name.

    ``interface`` names the peer interface (mcproxy's input interface: where the
    data or subscription comes from), not the interface the filter is bound to.
    """

    interface: str | None
    group: AddressMatch
    source: AddressMatch

    def matches(self, group: IPAddress, source: IPAddress | None, peer: str | None) -> bool:
        if self.interface is not None and peer is not None and peer != self.interface:
            return False
        if not self.group.matches(group):
            return False
        return source is None or self.source.matches(source)


@dataclass(frozen=True, slots=True)
class Table:
    """A rule table: a named ``table NAME {...}`` or an anonymous ``{...}`` (name None).

    ``rules`` holds ``AddressRule`` and nested ``Table`` entries (a reference to a
    named table is resolved into the table itself during validation).
    """

    name: str | None
    rules: tuple[AddressRule | Table, ...]

    def matches(self, group: IPAddress, source: IPAddress | None, peer: str | None = None) -> bool:
        return any(rule.matches(group, source, peer) for rule in self.rules)


@dataclass(frozen=True, slots=True)
class FilterBinding:
    """``pinstance NAME ROLE IF DIRECTION MODE table ...``: one filter on one interface."""

    interface: str
    role: Role
    direction: Direction
    mode: FilterMode
    table: Table

    def allows(self, group: IPAddress, source: IPAddress | None, peer: str | None = None) -> bool:
        matched = self.table.matches(group, source, peer)
        return matched if self.mode is FilterMode.WHITELIST else not matched


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-instance bounds on state and on the work one link can cause (docs/limits.md).

    State, per downstream link and family: ``max_groups`` group records,
    ``max_sources`` source records per group, ``max_link_sources`` source
    records over all its groups. Per instance: ``max_instance_groups`` and
    ``max_instance_sources`` over all its downstreams, ``max_routes``
    forwarding entries ((S,G) rows in the data plane). Per packet:
    ``max_records_per_packet`` group records and ``max_sources_per_packet``
    sources are taken, the rest is dropped and counted. Rate: a token bucket
    per link (``report_rate`` reports per second, ``report_burst`` deep) and
    one per reporting host (``host_report_rate``, ``host_report_burst``).
    """

    max_groups: int = 256
    max_sources: int = 64
    max_link_sources: int = 1024
    max_instance_groups: int = 16384
    max_instance_sources: int = 65536
    max_routes: int = 16384
    max_records_per_packet: int = 256
    max_sources_per_packet: int = 1024
    report_rate: float = 50.0
    report_burst: int = 100
    host_report_rate: float = 20.0
    host_report_burst: int = 50


@dataclass(frozen=True, slots=True)
class DaemonLimits:
    """Daemon-wide bounds over all instances (docs/limits.md): group records, source
    records and forwarding entries."""

    max_total_groups: int = 32768
    max_total_sources: int = 131072
    max_total_routes: int = 65536


@dataclass(frozen=True, slots=True)
class QuerierSettings:
    """Router-side behaviour switches of ``membership.timers.RouterOptions``."""

    older_version_queries: bool = True
    querier_election: bool = True
    forward_when_not_querier: bool = False


@dataclass(frozen=True, slots=True)
class InstanceConfig:
    """One proxy instance (RFC 4605): its upstreams, downstreams, kernel table and settings.

    ``table`` is the kernel multicast routing table number (None: the proxy picks one).
    ``upstream_selection`` is mcproxy's ``upstream * in rulematching`` (where merged
    subscriptions go: "first" matching upstream, "all", or "mutex" with
    ``mutex_interval``); ``upstream_forwarding`` is ``upstream * out rulematching``
    (where downstream data goes: "all" or "first").
    """

    name: str
    table: int | None = None
    upstreams: tuple[str, ...] = ()
    downstreams: tuple[str, ...] = ()
    filters: tuple[FilterBinding, ...] = ()
    timers: Timers = field(default_factory=Timers)
    limits: Limits = field(default_factory=Limits)
    querier: QuerierSettings = field(default_factory=QuerierSettings)
    upstream_selection: RuleMatching = RuleMatching.FIRST
    upstream_forwarding: RuleMatching = RuleMatching.ALL
    mutex_interval: float | None = None

    @property
    def interfaces(self) -> tuple[str, ...]:
        return self.upstreams + self.downstreams

    def filter_for(self, interface: str, direction: Direction) -> FilterBinding | None:
        for binding in self.filters:
            if binding.interface == interface and binding.direction is direction:
                return binding
        return None

    def router_options(self) -> RouterOptions:
        """The engine's per-downstream settings for this instance."""
        return RouterOptions(timers=self.timers,
                             older_version_queries=self.querier.older_version_queries,
                             querier_election=self.querier.querier_election,
                             forward_when_not_querier=self.querier.forward_when_not_querier,
                             max_groups=self.limits.max_groups,
                             max_sources=self.limits.max_sources,
                             max_link_sources=self.limits.max_link_sources)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Where the Prometheus endpoint listens (``metrics.listen``, ``--metrics``) and whether a
    scrape reads the data plane's per-route counters (``metrics.forwarding``)."""

    host: str
    port: int
    forwarding: bool = True

    @classmethod
    def parse(cls, text: str, forwarding: bool = True) -> MetricsConfig:
        """``ADDR:PORT`` (``[ADDR]:PORT`` for IPv6); ValueError saying what is wrong."""
        host, colon, port = text.rpartition(":")
        if not colon or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad metrics address {text!r}: expected ADDR:PORT with a port 1-65535")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"bad metrics address {text!r}: {host!r} is not an IP address") from None
        return cls(host, int(port), forwarding)


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """Settings of one plugin, passed to it untouched (read-only mapping)."""

    name: str
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated configuration.

    ``protocols``: one protocol name per family at most (``PROTOCOLS`` keys).
    ``disabled``: the file contains mcproxy's ``disable;`` (the daemon must not start).
    ``control_socket`` None: the daemon's default path. ``data_plane``: one of
    ``DATA_PLANES`` (``--data-plane`` overrides it). ``limits``: daemon-wide state
    bounds. ``metrics``: the Prometheus endpoint, None: off (``--metrics`` overrides it).
    ``source``: where it was read.
    """

    protocols: tuple[str, ...] = (DEFAULT_PROTOCOL,)
    instances: tuple[InstanceConfig, ...] = ()
    control_socket: str | None = None
    data_plane: str = "auto"
    limits: DaemonLimits = field(default_factory=DaemonLimits)
    plugins: tuple[PluginConfig, ...] = ()
    disabled: bool = False
    metrics: MetricsConfig | None = None
    source: str = field(default="<string>", compare=False)

    @property
    def families(self) -> frozenset[Family]:
        return frozenset(PROTOCOLS[name][0] for name in self.protocols)

    def protocol_version(self, family: Family) -> int | None:
        """The configured IGMP / MLD version for ``family``, None if that family is off."""
        for name in self.protocols:
            proto_family, version = PROTOCOLS[name]
            if proto_family is family:
                return version
        return None

    def instance(self, name: str) -> InstanceConfig | None:
        for instance in self.instances:
            if instance.name == name:
                return instance
        return None

    def plugin(self, name: str) -> PluginConfig | None:
        for plugin in self.plugins:
            if plugin.name == name:
                return plugin
        return None
