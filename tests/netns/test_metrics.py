"""Prometheus metrics end to end: a real daemon with ``--metrics``, a Linux host joining, a scrape
over HTTP from inside the namespace, parsed with prometheus_client's parser."""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcproxy_pmip.addresses import Family
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.planes import PLANES
from tests.netns.proxy_harness import ProxyTopology, build_proxy_topology, send_until, wait_for

pytestmark = pytest.mark.netns

CONFIG = "protocol IGMPv3;\nprotocol MLDv2;\npinstance p: up0 ==> d1 d2;\n"
GROUP = {Family.IPV4: "239.1.1.1", Family.IPV6: "ff15::101"}
ADDRESS = "127.0.0.1:9730"


@pytest.fixture(params=PLANES)
def topology(netns_factory, tmp_path, request) -> Iterator[ProxyTopology]:  # noqa: F811
    yield from build_proxy_topology(netns_factory, str(tmp_path), "mA-", request.param)


def scrape(topo: ProxyTopology) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape of the daemon, by (name, sorted labels)."""
    with topo.px.entered():
        with urllib.request.urlopen(f"http://{ADDRESS}/metrics", timeout=5) as response:
            assert response.status == 200
            text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name: str, **labels: str) -> float:
    """The sample ``name`` whose labels include ``labels`` (summed over the others); 0 if none."""
    return sum(v for (n, key), v in samples.items() if n == name and set(labels.items()) <= set(key))


@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["igmpv3", "mldv2"])
def test_scrape_shows_the_join_and_the_traffic(topology, family) -> None:
    topo = topology
    topo.start_daemon(CONFIG, "--metrics", ADDRESS)
    fam = family.name.lower()
    before = scrape(topo)
    assert value(before, "mcproxy_pmip_build_info", data_plane=topo.data_plane) == 1
    assert value(before, "mcproxy_pmip_instances") == 1
    assert ("mcproxy_pmip_groups", (("family", fam), ("instance", "p"), ("interface", "d1"))) in before
    receiver = topo.join(topo.hosts[0], family, GROUP[family])
    wait_for(lambda: value(scrape(topo), "mcproxy_pmip_groups", instance="p", interface="d1", family=fam) >= 1,
             10, f"the {family.protocol} group held on d1 in the metrics")
    joined = scrape(topo)
    held = value(joined, "mcproxy_pmip_groups", instance="p", interface="d1", family=fam)
    assert held >= 1, joined
    assert value(joined, "mcproxy_pmip_groups", instance="p", interface="d2", family=fam) == 0
    received = value(joined, "mcproxy_pmip_messages_received_total", interface="d1", family=fam, type="report",
                     version=str(family.newest_version))
    assert received > value(before, "mcproxy_pmip_messages_received_total", interface="d1", family=fam)
    assert value(joined, "mcproxy_pmip_messages_sent_total", instance="p", interface="up0", family=fam,
                 type="report") >= 1
    assert value(joined, "mcproxy_pmip_messages_sent_total", interface="d1", family=fam, type="query") >= 1
    assert value(joined, "mcproxy_pmip_control_requests_total", command="status", result="ok") >= 1
    send_until(topo.sender(family), GROUP[family], receiver, 5, "data at the host")
    wait_for(lambda: value(scrape(topo), "mcproxy_pmip_forwarded_packets_total", instance="p", family=fam) >= 1,
             10, "forwarded packets counted in the metrics")
    after = scrape(topo)
    assert value(after, "mcproxy_pmip_forwarded_bytes_total", instance="p", family=fam) > 0
    assert value(after, "mcproxy_pmip_forwarding_entries", instance="p", family=fam) >= 1


def test_metrics_are_off_by_default(topology) -> None:
    topo = topology
    topo.start_daemon(CONFIG)
    with pytest.raises(urllib.error.URLError):
        scrape(topo)


YAML = """protocols: [IGMPv3, MLDv2]
metrics:
  listen: "127.0.0.1:9731"
instances:
  - name: p
    upstreams: [up0]
    downstreams: [d1, d2]
"""


def test_yaml_listen_and_the_command_line_overrides_it(topology) -> None:
    topo = topology
    topo.start_daemon(YAML, name="yaml")
    with topo.px.entered():
        with urllib.request.urlopen("http://127.0.0.1:9731/metrics", timeout=5) as response:
            assert b"mcproxy_pmip_groups{" in response.read()
    topo.daemons.pop().stop()
    topo.start_daemon(YAML, "--metrics", ADDRESS, name="override")
    assert value(scrape(topo), "mcproxy_pmip_instances") == 1
    with topo.px.entered(), pytest.raises(urllib.error.URLError):
        urllib.request.urlopen("http://127.0.0.1:9731/metrics", timeout=5)


def test_a_busy_metrics_port_fails_the_start_and_leaves_nothing(topology) -> None:
    topo = topology
    with topo.px.entered():
        busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        busy.bind(("127.0.0.1", 9730))
        busy.listen()
        daemon = topo.start_daemon(CONFIG, "--metrics", ADDRESS, ready=False)
        assert daemon.process.wait(timeout=30) == 1, daemon.log()[-3000:]
    finally:
        busy.close()
    assert "cannot listen on 127.0.0.1 port 9730" in daemon.log()
    assert not os.path.exists(daemon.control), "the control socket must go when the start fails"
