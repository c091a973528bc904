"""The pmipv6 plugin's metrics hook over the real facade: binding events, a local handover and the
attach-to-report histogram, read through the daemon's collector as a scrape would."""

from __future__ import annotations

import ipaddress

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.metrics import ProxyCollector
from mcproxy_pmip.plugin import Arguments, CommandError
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from mcproxy_pmip_plugins.pmipv6 import Pmipv6Plugin

G1 = ipaddress.IPv6Address("ff3e::8000:1")


def scrape(memory, plugin) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(memory.proxy, [plugin]))
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def binding(plugin, **arguments):
    return plugin.commands()["binding"](Arguments(arguments))


@pytest.fixture
def plugin(facade):
    plugin = Pmipv6Plugin()
    plugin.start(facade, {})
    yield plugin
    plugin.stop()


def test_binding_events_handover_and_attach_to_report(plugin, memory, facade) -> None:
    assert scrape(memory, plugin)[("mcproxy_pmip_pmipv6_bindings", ())] == 0
    binding(plugin, event="attach", mn_id="mn1", access_if="acc1", tunnel_if="tun0")
    memory.reactor.advance(0.5)
    facade.import_records("pmip-tun0", "acc1", Family.IPV6, 2,
                          (GroupRecord(RecordType.MODE_IS_EXCLUDE, G1, ()),))
    binding(plugin, event="attach", mn_id="mn1", access_if="acc2", tunnel_if="tun0")
    with pytest.raises(CommandError):
        binding(plugin, event="refresh", mn_id="ghost", lifetime=10)
    samples = scrape(memory, plugin)
    assert samples[("mcproxy_pmip_pmipv6_bindings", ())] == 1
    assert samples[("mcproxy_pmip_pmipv6_binding_events_total", (("event", "attach"),))] == 2
    assert samples[("mcproxy_pmip_pmipv6_binding_events_total", (("event", "refresh_refused"),))] == 1
    assert samples[("mcproxy_pmip_pmipv6_handovers_total", (("mode", "local"),))] == 1
    assert samples[("mcproxy_pmip_pmipv6_attach_to_report_seconds_count", ())] == 2
    assert samples[("mcproxy_pmip_pmipv6_attach_to_report_seconds_bucket", (("le", "0.5"),))] == 2
    assert samples[("mcproxy_pmip_pmipv6_attach_to_report_seconds_bucket", (("le", "0.25"),))] == 1
    assert samples[("mcproxy_pmip_pmipv6_attach_to_report_seconds_sum", ())] == pytest.approx(0.5)
