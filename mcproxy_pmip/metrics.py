"""Prometheus metrics: a collector over the daemon's live state and the HTTP endpoint serving it.

``ProxyCollector`` reads the state at scrape time (nothing is updated in the
packet paths for it): the membership tables of every instance, the
Receiver's and the Sender's per-link counters, the drop counters, the data
plane's counters, the control server's request counts and what each plugin
reports through its optional ``metrics()`` (``mcproxy_pmip.plugin.PluginMetric``).
Every name starts with ``mcproxy_pmip_``; docs/metrics.md lists them.

``MetricsService`` serves ``/metrics`` over HTTP with twisted.web on the
reactor thread, so a scrape sees one consistent state without locks (the
thread-pool resource of prometheus_client would read the state while the
reactor changes it). Reading per-route counters is the only costly part; the
``metrics.forwarding`` setting turns it off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                    InfoMetricFamily)
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry
from twisted.application import service
from twisted.internet.error import CannotListenError
from twisted.web.resource import Resource
from twisted.web.server import Site

from mcproxy_pmip import __version__
from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config.model import MetricsConfig
from mcproxy_pmip.errors import McproxyError
from mcproxy_pmip.proxy.ratelimit import HOST_LIMITED, LINK_LIMITED, QUERY_LIMITED

log = logging.getLogger(__name__)

PREFIX = "mcproxy_pmip_"
_FAMILY_OF_PREFIX = {family.protocol.lower(): family for family in Family}
#: drop reasons that are rate limits (the rest: malformed, or refused by a rule)
RATE_LIMIT_REASONS = frozenset({HOST_LIMITED, LINK_LIMITED, QUERY_LIMITED})


def _family(family: Family) -> str:
    return family.name.lower()


def _split_prefixed(key: str) -> tuple[str, str] | None:
    """``igmp_bad_ttl`` -> ("ipv4", "bad_ttl"); None for a key of no family."""
    prefix, _, rest = key.partition("_")
    family = _FAMILY_OF_PREFIX.get(prefix)
    return None if family is None or not rest else (_family(family), rest)


class ProxyCollector:
    """A prometheus_client collector of one running ``Proxy``.

    ``plugins``: started plugins (those with a ``metrics()`` method report
    through it); ``control_requests()``: the control server's request counts
    by (command, result), or None without a control socket; ``forwarding``:
    read the data plane's per-route packet and byte counters.
    """

    def __init__(self, proxy, plugins: Iterable = (),
                 control_requests: Callable[[], Mapping[tuple[str, str], int] | None] = lambda: None,
                 forwarding: bool = True) -> None:
        self._proxy = proxy
        self._plugins = tuple(plugins)
        self._control_requests = control_requests
        self.forwarding = forwarding

    def describe(self) -> list:
        """Nothing up front: the registry must not scrape at registration."""
        return []

    def collect(self):
        proxy = self._proxy
        info = InfoMetricFamily(PREFIX + "build", "The daemon's version and data plane.")
        info.add_metric([], {"version": __version__, "data_plane": proxy.plane.name})
        yield info
        uptime = GaugeMetricFamily(PREFIX + "uptime_seconds", "Seconds since the proxy started.")
        uptime.add_metric([], proxy.reactor.seconds() - proxy.started_at)
        yield uptime
        yield from self._membership()
        yield from self._messages()
        yield from self._drops()
        yield from self._plane()
        yield from self._control()
        for plugin in self._plugins:
            yield from _plugin_families(plugin)

    # -- membership ------------------------------------------------------------------

    def _membership(self):
        instances = GaugeMetricFamily(PREFIX + "instances", "Proxy instances running.")
        instances.add_metric([], len(self._proxy.instances))
        yield instances
        labels = ["instance", "interface", "family"]
        groups = GaugeMetricFamily(PREFIX + "groups", "Groups with listeners on a downstream.", labels=labels)
        sources = GaugeMetricFamily(PREFIX + "sources",
                                    "Sources in the downstream's group states (INCLUDE: forwarded, "
                                    "EXCLUDE: blocked).", labels=labels)
        downstreams = GaugeMetricFamily(PREFIX + "downstreams", "Downstream interfaces of an instance.",
                                        labels=["instance"])
        upstreams = GaugeMetricFamily(PREFIX + "upstreams", "Upstream interfaces of an instance.",
                                      labels=["instance"])
        for instance in self._proxy.instances.values():
            downstreams.add_metric([instance.name], len(instance.downstreams))
            upstreams.add_metric([instance.name], len(instance.upstreams))
            core = instance.core
            for name, family in core.downstreams:
                router = core.router(name, family)
                held = source_count = 0
                for group in router.groups():
                    state = router.membership(group)
                    if state is not None:
                        held += 1
                        source_count += len(state[1])
                key = [instance.name, name, _family(family)]
                groups.add_metric(key, held)
                sources.add_metric(key, source_count)
        yield from (downstreams, upstreams, groups, sources)

    # -- messages --------------------------------------------------------------------

    def _owner(self, interface: str) -> str:
        owner = self._proxy.owner_of(interface)
        return owner.name if owner is not None else ""

    def _interface_name(self, ifindex: int) -> str:
        monitor = self._proxy.monitor
        info = monitor.interface(ifindex) if monitor is not None else None
        return info.name if info is not None else f"#{ifindex}"

    def _messages(self):
        labels = ["instance", "interface", "family", "type", "version"]
        received = CounterMetricFamily(PREFIX + "messages_received",
                                       "Valid IGMP/MLD messages handed to the engine, by link, type and "
                                       "version.", labels=labels)
        sent = CounterMetricFamily(PREFIX + "messages_sent", "IGMP/MLD messages sent, by link, type and version.",
                                   labels=labels)
        failures = CounterMetricFamily(PREFIX + "send_failures", "Sends that failed or were retried, by reason.",
                                       labels=["reason"])
        receiver, sender = self._proxy.receiver, self._proxy.sender
        if receiver is not None:
            for (ifindex, family, kind, version), count in sorted(receiver.per_link.items(), key=repr):
                name = self._interface_name(ifindex)
                received.add_metric([self._owner(name), name, _family(family), kind, str(version)], count)
        if sender is not None:
            for (name, family, kind, version), count in sorted(sender.per_link.items(), key=repr):
                sent.add_metric([self._owner(name), name, _family(family), kind, str(version)], count)
            for reason, count in sorted(sender.failures.items()):
                failures.add_metric([reason], count)
        yield from (received, sent, failures)

    def _drops(self):
        dropped = CounterMetricFamily(PREFIX + "packets_dropped",
                                      "IGMP/MLD packets (or records, sources) dropped before the engine, by "
                                      "family, stage and reason.", labels=["family", "stage", "reason"])
        limited = CounterMetricFamily(PREFIX + "packets_rate_limited",
                                      "Packets dropped by a host, link or query rate limit.",
                                      labels=["family", "reason"])
        receiver = self._proxy.receiver
        if receiver is not None:
            for key, count in sorted(receiver.drops.items()):
                split = _split_prefixed(key)
                if split is None:
                    continue
                dropped.add_metric([split[0], "receiver", split[1]], count)
                if split[1] in RATE_LIMIT_REASONS:
                    limited.add_metric(list(split), count)
        for family, sock in sorted(self._proxy.sockets.items()):
            for reason, count in sorted(sock.drops.items()):
                dropped.add_metric([_family(family), "socket", reason], count)
        yield from (dropped, limited)

    # -- data plane ------------------------------------------------------------------

    def _plane(self):
        labels = ["instance", "family"]
        upcalls = CounterMetricFamily(PREFIX + "upcalls", "Kernel multicast-routing upcalls read (MRT plane).",
                                      labels=labels)
        malformed = CounterMetricFamily(PREFIX + "upcalls_malformed",
                                        "Upcalls that could not be parsed (MRT plane).", labels=labels)
        packets = CounterMetricFamily(PREFIX + "forwarded_packets",
                                      "Multicast data packets matched by the instance's forwarding entries.",
                                      labels=labels)
        octets = CounterMetricFamily(PREFIX + "forwarded_bytes",
                                     "Multicast data bytes matched by the instance's forwarding entries.",
                                     labels=labels)
        routes = GaugeMetricFamily(PREFIX + "forwarding_entries",
                                   "Forwarding entries of the instance (per group and per (S,G)).", labels=labels)
        started = time.monotonic()
        per_group = self._proxy.plane.name == "nftables"
        for instance in self._proxy.instances.values():
            plane = instance.forwarding
            if plane is None:
                continue
            for key, value in sorted(plane.counters().items()):
                if key.endswith("_upcalls") or key.endswith("_upcalls_malformed"):
                    split = _split_prefixed(key)
                    if split is not None:
                        target = malformed if split[1].endswith("malformed") else upcalls
                        target.add_metric([instance.name, split[0]], value)
            if self.forwarding:
                for family, (count, packet_sum, octet_sum) in sorted(_traffic(plane.routes(), per_group).items()):
                    key = [instance.name, _family(family)]
                    routes.add_metric(key, count)
                    packets.add_metric(key, packet_sum)
                    octets.add_metric(key, octet_sum)
        yield from (upcalls, malformed)
        if self.forwarding:
            took = GaugeMetricFamily(PREFIX + "forwarding_read_seconds",
                                     "Seconds the last scrape spent reading the data plane's route counters.")
            took.add_metric([], time.monotonic() - started)
            yield from (routes, packets, octets, took)

    def _control(self):
        counts = self._control_requests()
        if counts is None:
            return
        requests = CounterMetricFamily(PREFIX + "control_requests",
                                       "Control socket requests answered, by command and result.",
                                       labels=["command", "result"])
        for (command, result), count in sorted(counts.items()):
            requests.add_metric([command, result], count)
        yield requests


def _traffic(rows, per_group: bool) -> dict[Family, tuple[int, int, int]]:
    """Per family: entries, packets, bytes. ``per_group``: the plane counts every packet once in
    its group's row (source None; nftables), else once in its (S,G) row (MRT, memory)."""
    found: dict[Family, list[int]] = {}
    for row in rows:
        totals = found.setdefault(row.family, [0, 0, 0])
        totals[0] += 1
        if (row.source is None) == per_group:
            totals[1] += row.packets or 0
            totals[2] += row.octets or 0
    return {family: (t[0], t[1], t[2]) for family, t in found.items()}


def _plugin_families(plugin):
    """The plugin's ``PluginMetric``s as metric families named ``mcproxy_pmip_<plugin>_<name>``."""
    read = getattr(plugin, "metrics", None)
    if read is None:
        return
    try:
        reported = list(read())
    except Exception:
        log.exception("plugin_metrics_failed plugin=%s", plugin.name)
        return
    for metric in reported:
        name = f"{PREFIX}{plugin.name}_{metric.name}"
        labels = sorted({label for sample in metric.samples for label, _ in sample.labels})
        if metric.kind == "histogram":
            family = HistogramMetricFamily(name, metric.help, labels=labels)
            for sample in metric.samples:
                values = dict(sample.labels)
                family.add_metric([values.get(label, "") for label in labels],
                                  [(_bound(le), count) for le, count in sample.buckets], sample.total)
        else:
            kind = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
            family = kind(name.removesuffix("_total"), metric.help, labels=labels)
            for sample in metric.samples:
                values = dict(sample.labels)
                family.add_metric([values.get(label, "") for label in labels], sample.value)
        yield family


def _bound(le: float) -> str:
    return "+Inf" if le == float("inf") else repr(float(le))


class MetricsResource(Resource):
    """``GET /metrics``: the registry in the format the scraper asks for, built on the reactor thread."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request) -> bytes:
        accept = request.getHeader("accept") or ""
        encoder, content_type = choose_encoder(accept)
        request.setHeader(b"content-type", content_type.encode())
        return encoder(self._registry)


class MetricsService(service.Service):
    """The HTTP endpoint: ``/metrics`` on ``config.host``:``config.port`` while running."""

    def __init__(self, config: MetricsConfig, collector: ProxyCollector, reactor) -> None:
        self.config = config
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        ProcessCollector(registry=self.registry)
        self._reactor = reactor
        self.port = None

    def startService(self) -> None:
        root = Resource()
        root.putChild(b"metrics", MetricsResource(self.registry))
        site = Site(root)
        site.noisy = False
        try:
            self.port = self._reactor.listenTCP(self.config.port, site, interface=self.config.host)
        except CannotListenError as exc:
            raise McproxyError(f"metrics: cannot listen on {self.config.host} port {self.config.port}: "
                               f"{exc.socketError}") from exc
        log.info("metrics_listening address=%s port=%d forwarding=%s", self.config.host,
                 self.port.getHost().port, self.config.forwarding)
        super().startService()

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        return None if port is None else port.stopListening()
