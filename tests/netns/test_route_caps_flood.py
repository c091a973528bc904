"""Data-driven (S,G) state under a flood of distinct sources, on the nftables plane (namespaces hE-).

The upstream router namespace puts UDP frames from 6,000 distinct sources to
one group on the wire (AF_PACKET). The daemon runs with ``max_routes: 1000``:
the per-(iif, S, G) counter set must never hold more than that, the packets
of refused sources must be counted in ``status``, a host that joined the
group any-source must still get data from refused sources (forwarding by
group is untouched), and ``status`` must keep answering during the flood.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import time

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.dataplane.nftables import NftablesPlane
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.planes import nft_text
from tests.netns.proxy_harness import build_proxy_topology, received, wait_for
from tests.netns.sg_flood import flood_code
from tests.forwarding_views import FixedOutputs

pytestmark = pytest.mark.netns

PREFIX = "hE-"
GROUP = "239.7.7.7"
MAX_ROUTES = 1000
SOURCES = 6000
FLOOD_SECONDS = 4.0
#: generous: the target is 250 ms at the 99th percentile
STATUS_BOUND = 1.0


@pytest.fixture
def topo(netns_factory, tmp_path):  # noqa: F811
    yield from build_proxy_topology(netns_factory, str(tmp_path), PREFIX, "nftables")


def set_elements(topo) -> int:
    text = nft_text(topo.px, "list set ip mcproxy_pmip src_i1")
    return len(re.findall(r"\bcounter packets \d+", text))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        return int(next(line.split()[1] for line in handle if line.startswith("VmRSS:")))


def test_the_route_cap_holds_under_a_flood_of_sources_and_the_daemon_answers(topo):
    config = ("protocols: [IGMPv3]\ndata_plane: nftables\ninstances:\n  - name: p\n    upstreams: [up0]\n"
              f"    downstreams: [d1, d2]\n    limits: {{max_routes: {MAX_ROUTES}}}\n")
    daemon = topo.start_daemon(config)
    host = topo.join(topo.hosts[0], Family.IPV4, GROUP)
    wait_for(lambda: any(g["group"] == GROUP for g in daemon.request("groups")), 5, "the join at the daemon")
    before = daemon.request("status")["counters"]
    assert before["routes_max"] == MAX_ROUTES and before.get("routes_refused_packets", 0) == 0
    rss_before = rss_kib(daemon.process.pid)

    flood = topo.up.python(flood_code("u0", GROUP, SOURCES, FLOOD_SECONDS), stdout=subprocess.PIPE)
    latencies, senders = [], set()
    while flood.poll() is None:
        start = time.monotonic()
        status = daemon.request("status")
        latencies.append(time.monotonic() - start)
        assert status["instances"] == 1
        senders.update(data[:4] for data in received(host))
        time.sleep(0.05)
    sent = int(flood.stdout.read().split()[0])
    flood.stdout.close()
    assert flood.returncode == 0 and sent >= SOURCES

    elements = set_elements(topo)
    assert 0 < elements <= MAX_ROUTES, f"{elements} (S,G) entries with max_routes {MAX_ROUTES}"
    after = wait_for(lambda: (c := daemon.request("status")["counters"])["routes_refused_packets"] > 0 and c,
                     3, "refused packets counted in status")
    assert after["routes_refused_packets"] >= SOURCES - MAX_ROUTES
    # Forwarding by group is untouched: the host got data from sources the set refused.
    senders.update(data[:4] for data in received(host))
    assert len(senders) > MAX_ROUTES + 500, f"data from only {len(senders)} sources reached the host"
    assert latencies and max(latencies) < STATUS_BOUND, \
        f"status took up to {max(latencies):.3f} s during the flood (median {statistics.median(latencies):.3f})"
    assert daemon.process.poll() is None
    rss_after = rss_kib(daemon.process.pid)
    assert rss_after < rss_before + 64 * 1024, f"RSS grew from {rss_before} to {rss_after} KiB"


def test_the_daemon_wide_total_is_reserved_in_opening_order_and_an_instance_without_room_counts_all(
        netns_factory):  # noqa: F811
    ns = netns_factory(prefix=PREFIX)
    plane = NftablesPlane("hE_routes")
    families = frozenset({Family.IPV4, Family.IPV6})
    with ns.entered():
        plane.start([])
        try:
            for name in ("a", "b", "c"):
                plane.routes.configure_instance(name, 600, 1000)
            opened = [plane.open_instance(name, families, None, FixedOutputs()) for name in ("a", "b", "c")]
            assert [p.source_set_size for p in opened] == [300, 200, 0], "per family: 600/2, 400/2, nothing"
            assert plane.routes.in_use == 1000
            counters = [p.counters() for p in opened]
            assert [c["routes_max"] for c in counters] == [600, 400, 0]
            assert all(c["routes_refused_packets"] == 0 for c in counters), "counters unreadable"
        finally:
            listing = plane.nft.run("list table ip hE_routes", terse=True)
            for instance in list(plane._instances.values()):
                instance.close()
            assert plane.routes.in_use == 0, "closed instances keep their reservation"
            plane.close()
    assert "size 300" in listing and "size 200" in listing
    assert "update @src_i3" not in listing and 'counter name "refused_i3"' in listing
