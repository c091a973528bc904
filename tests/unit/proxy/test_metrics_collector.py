"""The Prometheus collector over a real Proxy on the in-memory plane, the metrics settings and
the example Grafana dashboard."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from twisted.internet.task import Clock

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config import parse_config
from mcproxy_pmip.config.model import MetricsConfig
from mcproxy_pmip.errors import ConfigError
from mcproxy_pmip.kernel.igmp_socket import ReceivedIgmp
from mcproxy_pmip.metrics import ProxyCollector
from mcproxy_pmip.plugin import MetricSample, PluginMetric, ProxyEvent
from mcproxy_pmip.wire import igmp
from mcproxy_pmip_plugins.pmipv6.tally import BindingTally
from tests.unit.proxy.memory_proxy import MemoryProxy, exclude_none, include, leave

CONFIG = "protocol IGMPv3;\nprotocol MLDv2;\npinstance p: up0 ==> d1 d2;\n"
ROOT = Path(__file__).resolve().parents[3]


def scrape(collector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name: str, **labels: str) -> float:
    return sum(v for (n, key), v in samples.items() if n == name and set(labels.items()) <= set(key))


@pytest.fixture
def run():
    proxy = MemoryProxy(CONFIG, ["up0", "d1", "d2"])
    yield proxy
    proxy.stop()


def test_groups_and_sources_per_interface_and_family(run) -> None:
    run.igmp_report("d1", [exclude_none("239.1.1.1"), include("239.2.2.2", "10.1.1.1", "10.1.1.2")])
    run.mld_report("d2", [exclude_none("ff3e::1")])
    samples = scrape(ProxyCollector(run.proxy))
    assert value(samples, "mcproxy_pmip_groups", instance="p", interface="d1", family="ipv4") == 2
    assert value(samples, "mcproxy_pmip_sources", instance="p", interface="d1", family="ipv4") == 2
    assert value(samples, "mcproxy_pmip_groups", instance="p", interface="d2", family="ipv6") == 1
    assert value(samples, "mcproxy_pmip_groups", instance="p", interface="d2", family="ipv4") == 0
    run.igmp_report("d1", [leave("239.1.1.1")])
    run.reactor.advance(30)
    assert value(scrape(ProxyCollector(run.proxy)), "mcproxy_pmip_groups", interface="d1", family="ipv4") == 1


def test_messages_per_link_type_and_version(run) -> None:
    run.igmp_report("d1", [exclude_none("239.1.1.1")])
    run.igmp_report("d1", [exclude_none("239.1.1.2")])
    samples = scrape(ProxyCollector(run.proxy))
    assert value(samples, "mcproxy_pmip_messages_received_total", instance="p", interface="d1", family="ipv4",
                 type="report", version="3") == 2
    sent_up = value(samples, "mcproxy_pmip_messages_sent_total", instance="p", interface="up0", family="ipv4",
                    type="report", version="3")
    assert sent_up == len(run.sent_reports(Family.IPV4, "up0")) >= 1
    assert value(samples, "mcproxy_pmip_messages_sent_total", interface="d1", type="query") >= 1


def test_drops_and_rate_limits_by_reason() -> None:
    yaml = ("protocols: [IGMPv3]\ninstances:\n  - name: p\n    upstreams: [up0]\n    downstreams: [d1]\n"
            "    limits: {host_report_rate: 1, host_report_burst: 3}\n")
    run = MemoryProxy(yaml, ["up0", "d1"])
    for index in range(10):
        run.igmp_report("d1", [exclude_none(f"239.1.1.{index + 1}")])
    info = run.host.links["d1"]
    payload = igmp.build(igmp.IgmpV3Report((exclude_none("239.9.9.9"),)))
    run.sockets[Family.IPV4].inject(ReceivedIgmp(info.ifindex, ipaddress.IPv4Address("10.9.9.8"),
                                                 ipaddress.IPv4Address("224.0.0.22"), 4, True, payload))
    run.deliver()
    samples = scrape(ProxyCollector(run.proxy))
    run.stop()
    assert value(samples, "mcproxy_pmip_packets_dropped_total", family="ipv4", stage="receiver",
                 reason="bad_ttl") == 1
    assert value(samples, "mcproxy_pmip_packets_rate_limited_total", family="ipv4", reason="rate_limited_host") == 7
    assert value(samples, "mcproxy_pmip_messages_received_total", interface="d1", type="report") == 3
    assert value(samples, "mcproxy_pmip_packets_rate_limited_total", family="ipv6") == 0


def test_forwarded_traffic_from_the_plane_counters(run) -> None:
    run.igmp_report("d1", [exclude_none("239.1.1.1")])
    samples = scrape(ProxyCollector(run.proxy))
    assert value(samples, "mcproxy_pmip_forwarding_entries", instance="p", family="ipv4") >= 1
    assert ("mcproxy_pmip_forwarded_packets_total", (("family", "ipv4"), ("instance", "p"))) in samples
    off = scrape(ProxyCollector(run.proxy, forwarding=False))
    assert not [key for key in off if key[0].startswith("mcproxy_pmip_forwarded")]


def test_control_requests_and_plugin_metrics(run) -> None:
    class Plugin:
        name = "demo"

        def metrics(self):
            return [PluginMetric("events_total", "counter", "Events.", (MetricSample((("kind", "a"),), 4),)),
                    PluginMetric("wait_seconds", "histogram", "Waits.",
                                 (MetricSample((), 2, ((1.0, 1), (math.inf, 2)), 3.5),))]

    samples = scrape(ProxyCollector(run.proxy, [Plugin()], lambda: {("groups", "ok"): 3, ("-", "x"): 1}))
    assert value(samples, "mcproxy_pmip_control_requests_total", command="groups", result="ok") == 3
    assert value(samples, "mcproxy_pmip_demo_events_total", kind="a") == 4
    assert value(samples, "mcproxy_pmip_demo_wait_seconds_bucket", le="1.0") == 1
    assert value(samples, "mcproxy_pmip_demo_wait_seconds_count") == 2
    assert value(samples, "mcproxy_pmip_demo_wait_seconds_sum") == 3.5


def test_a_failing_plugin_does_not_break_the_scrape(run) -> None:
    class Broken:
        name = "broken"

        def metrics(self):
            raise RuntimeError("boom")

    assert value(scrape(ProxyCollector(run.proxy, [Broken()])), "mcproxy_pmip_instances") == 1


def test_tally_counts_handovers_and_attach_to_report() -> None:
    clock = Clock()
    tally = BindingTally(clock)
    started = tally.attach_started()
    tally.event_done({"event": "attach", "instance": "i", "moved_from": None, "context": "none"}, "attach", started)
    clock.advance(0.2)
    tally.membership_changed(ProxyEvent("membership-changed", "i"))
    started = tally.attach_started()
    tally.event_done({"event": "attach", "instance": "i", "moved_from": None, "context": "unavailable",
                      "reason": "unknown-mn"}, "attach", started)
    tally.event_done({"event": "detach", "reason": "deregistration"}, "attach", started)
    tally.event_done({"event": "attach", "instance": "j", "moved_from": {"access_if": "a"}}, "attach", started)
    metrics = {m.name: m for m in tally.metrics(2)}
    events = {dict(s.labels)["event"]: s.value for s in metrics["binding_events_total"].samples}
    assert events == {"attach": 3, "deregistration": 1}
    modes = {dict(s.labels)["mode"]: s.value for s in metrics["handovers_total"].samples}
    assert modes == {"local": 1, "unavailable": 1}
    transfers = {tuple(v for _, v in s.labels): s.value for s in metrics["context_transfers_total"].samples}
    assert transfers == {("fetch", "unknown-mn"): 1}
    (histogram,) = metrics["attach_to_report_seconds"].samples
    assert histogram.value == 1 and histogram.total == pytest.approx(0.2)
    assert dict(histogram.buckets)[0.1] == 0 and dict(histogram.buckets)[0.25] == 1


@pytest.mark.parametrize("text, host, port", [("127.0.0.1:9730", "127.0.0.1", 9730), ("[::1]:80", "::1", 80)])
def test_metrics_address(text, host, port) -> None:
    assert MetricsConfig.parse(text) == MetricsConfig(host, port)


@pytest.mark.parametrize("text", ["localhost:9730", "127.0.0.1", "127.0.0.1:0", "1.2.3.4:70000"])
def test_bad_metrics_address(text) -> None:
    with pytest.raises(ValueError, match="bad metrics address"):
        MetricsConfig.parse(text)


def test_yaml_metrics_key_with_a_located_error() -> None:
    base = "protocols: [IGMPv3]\ninstances:\n  - name: a\n    upstreams: [u]\n    downstreams: [d]\n"
    config = parse_config(base + "metrics:\n  listen: \"0.0.0.0:9730\"\n  forwarding: false\n", "m.yaml")
    assert config.metrics == MetricsConfig("0.0.0.0", 9730, False)
    assert parse_config(base, "m.yaml").metrics is None
    with pytest.raises(ConfigError) as error:
        parse_config(base + "metrics:\n  listen: \"host:1\"\n", "m.yaml")
    assert [(p.line, p.column) for p in error.value.problems] == [(7, 11)]


def test_grafana_dashboard_uses_existing_metrics(run) -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    run.igmp_report("d1", [exclude_none("239.1.1.1")])

    class Pmipv6:
        name = "pmipv6"

        def metrics(self):
            return BindingTally(Clock()).metrics(0)

    collector = ProxyCollector(run.proxy, [Pmipv6()], lambda: {})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    known = {sample_name for family in families
             for sample_name in (family.name, *(s.name for s in family.samples))}
    known |= {f"{family.name}_total" for family in families if family.type == "counter"}
    known |= {f"{family.name}_bucket" for family in families if family.type == "histogram"}
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs
    for expr in exprs:
        names = set(re.findall(r"\bmcproxy_pmip_[a-z0-9_]+", expr))
        assert names, expr
        assert names <= known, (expr, names - known)


def test_command_line_metrics_flag() -> None:
    from mcproxy_pmip.cli import build_parser
    assert build_parser().parse_args(["--metrics", "[::1]:9730"]).metrics == MetricsConfig("::1", 9730)
    assert build_parser().parse_args([]).metrics is None
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--metrics", "localhost:9730"])
    assert exited.value.code == 2


def test_endpoint_serves_the_registry_and_names_a_busy_port(run) -> None:
    from twisted.internet.error import CannotListenError
    from twisted.web.test.requesthelper import DummyRequest

    from mcproxy_pmip.errors import McproxyError
    from mcproxy_pmip.metrics import MetricsResource, MetricsService

    class BusyReactor:
        def listenTCP(self, port, factory, interface):
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))

    service = MetricsService(MetricsConfig("127.0.0.1", 9730), ProxyCollector(run.proxy), BusyReactor())
    with pytest.raises(McproxyError, match="cannot listen on 127.0.0.1 port 9730"):
        service.startService()
    request = DummyRequest([b""])
    body = MetricsResource(service.registry).render_GET(request)
    assert b"mcproxy_pmip_instances 1.0" in body and b"process_" in body
    assert request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
