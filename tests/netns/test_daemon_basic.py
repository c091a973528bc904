"""The daemon end to end: Linux hosts join, reports go upstream, the kernel forwards data (docs/scenarios.md items 9, 12)."""

from __future__ import annotations

import pytest

from mcproxy_pmip.addresses import Family
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.proxy_harness import proxy_topology, send_until, wait_for  # noqa: F401 (fixture)

pytestmark = pytest.mark.netns

CONFIG = "protocol IGMPv3;\nprotocol MLDv2;\npinstance p: up0 ==> d1 d2;\n"
GROUP = {Family.IPV4: "239.1.1.1", Family.IPV6: "ff15::101"}


@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["igmpv3", "mldv2"])
def test_join_reaches_upstream_and_data_reaches_host(proxy_topology, family) -> None:
    from tests.netns.proxy_harness import Capture
    topo = proxy_topology
    capture = Capture(topo.up, "u0")
    daemon = topo.start_daemon(CONFIG)
    receiver = topo.join(topo.hosts[0], family, GROUP[family])
    wait_for(lambda: [f for f in capture.reports(family) if f[2] != topo.up], 5,
             f"the proxy's {family.protocol} report on the upstream link")
    sender = topo.sender(family)
    send_until(sender, GROUP[family], receiver, 5, "data at the host")
    status = daemon.request("status")
    assert status["data_plane"] == topo.data_plane
    counters = status["counters"]
    if topo.data_plane == "mroute":
        assert counters[f"{family.protocol.lower()}_upcalls"] >= 1, counters
        assert counters[f"{family.protocol.lower()}_upcalls_malformed"] == 0, counters
    routes = [r for r in daemon.request("routes") if r["group"] == GROUP[family] and r["source"] != "*"]
    assert routes and "d1" in routes[0]["oifs"] and routes[0]["packets"] >= 1, routes
