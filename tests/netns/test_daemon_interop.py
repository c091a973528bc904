"""The daemon with other routers: a chain of two of our proxies, and igmpproxy on either side of ours.

    up (source) --u0/up0-- [ first ] --d1/up0-- [ second ] --d1/e0-- host

Each box is a namespace running one proxy; the one further out is the
other's upstream router. The host joins with its kernel stack at the far
end; data from the source must cross both proxies. igmpproxy (IPv4 only, the
Debian package) is an independent implementation: our reports must make it
forward, and its kernel joins must make us forward.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from mcproxy_pmip.addresses import Family
from tests.netns.netns_fixtures import address, netns_factory, veth  # noqa: F401 (fixture)
from tests.netns.planes import mroute_missing
from tests.netns.proxy_harness import Capture, ProxyTopology, send_until, wait_for

pytestmark = pytest.mark.netns

PREFIX = "mpl-"
IGMPPROXY = "/usr/sbin/igmpproxy"
GROUP = {Family.IPV4: "239.1.1.1", Family.IPV6: "ff15::101"}
OURS = "protocol IGMPv3;\nprotocol MLDv2;\npinstance p: up0 ==> d1;\n"
IGMPPROXY_CONFIG = ("quickleave\n"
                    "phyint up0 upstream ratelimit 0 threshold 1\n"
                    "  altnet 0.0.0.0/0\n"
                    "phyint d1 downstream ratelimit 0 threshold 1\n"
                    "phyint lo disabled\n")


class Chain(ProxyTopology):
    """``px`` is the first proxy, ``hosts[0]`` the second, ``hosts[1]`` the listening host."""

    @property
    def first(self):
        return self.px

    @property
    def second(self):
        return self.hosts[0]

    @property
    def host(self):
        return self.hosts[1]

    def start_igmpproxy(self, ns) -> subprocess.Popen:
        conf = os.path.join(self.tmp, f"igmpproxy-{ns.name}.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write(IGMPPROXY_CONFIG)
        log_path = os.path.join(self.tmp, f"igmpproxy-{ns.name}.log")
        with open(log_path, "w", encoding="utf-8") as log_file:
            process = ns.popen([IGMPPROXY, "-d", conf], stdout=log_file, stderr=subprocess.STDOUT)

        def vifs_up():
            if process.poll() is not None:
                with open(log_path, encoding="utf-8", errors="replace") as handle:
                    raise AssertionError(f"igmpproxy exited {process.returncode}:\n{handle.read()[-3000:]}")
            table = ns.run(["cat", "/proc/net/ip_mr_vif"]).stdout
            return "up0" in table and "d1" in table
        wait_for(vifs_up, 10, "igmpproxy's vifs")
        return process


@pytest.fixture
def chain(netns_factory, tmp_path):  # noqa: F811
    up, first, second, host = (netns_factory(PREFIX) for _ in range(4))
    links = ((up, "u0", first, "up0", "1:0"), (first, "d1", second, "up0", "2:1"),
             (second, "d1", host, "e0", "4:1"))
    for a, a_name, b, b_name, net in links:
        v4 = "10." + net.replace(":", ".")
        veth(a, a_name, b, b_name)
        address(a, a_name, f"{v4}.1/24", f"fd0{net}::1/64")
        address(b, b_name, f"{v4}.2/24", f"fd0{net}::2/64")
    for ns, v4, v6 in ((up, "10.1.0.2", "fd01::2"), (second, "10.2.1.1", "fd02:1::1"),
                       (host, "10.4.1.1", "fd04:1::1")):
        ns.ip("route", "add", "default", "via", v4)
        ns.ip("-6", "route", "add", "default", "via", v6)
    for ns in (first, second):
        ns.sysctl("net.ipv4.ip_forward", 1)
        ns.sysctl("net.ipv6.conf.all.forwarding", 1)
    for ns, names in ((up, ("u0",)), (first, ("up0", "d1")), (second, ("up0", "d1")), (host, ("e0",))):
        for name in names:
            wait_for(lambda ns=ns, name=name: "fe80::" in ns.ip("-6", "addr", "show", "dev", name), 5,
                     f"a link-local address on {name}")
    topology = Chain(up, first, [second, host], str(tmp_path))
    yield topology
    for daemon in topology.daemons:
        assert daemon.stop() == 0, daemon.log()[-3000:]


@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["igmpv3", "mldv2"])
def test_chain_of_two_proxies_forwards_end_to_end(chain, family) -> None:
    upstream_reports = Capture(chain.up, "u0")
    chain.start_daemon(OURS, name="first", ns=chain.first)
    chain.start_daemon(OURS, name="second", ns=chain.second)
    receiver = chain.join(chain.host, family, GROUP[family])
    wait_for(lambda: upstream_reports.reports(family), 5,
             f"the first proxy's {family.protocol} report on the source's link")
    send_until(chain.sender(family), GROUP[family], receiver, 5, "data at the host through both proxies")


_igmpproxy_missing = shutil.which(IGMPPROXY) is None and not os.path.exists(IGMPPROXY)
needs_igmpproxy = pytest.mark.skipif(
    _igmpproxy_missing or mroute_missing() is not None,
    reason=f"igmpproxy is not installed ({IGMPPROXY})" if _igmpproxy_missing
    else f"igmpproxy forwards with kernel multicast routing, missing here ({mroute_missing()})")


@needs_igmpproxy
def test_ours_downstream_of_igmpproxy(chain) -> None:
    """igmpproxy is our upstream router: our IGMPv3 report must make it forward to us."""
    chain.start_igmpproxy(chain.first)
    chain.start_daemon(OURS, name="ours", ns=chain.second)
    receiver = chain.join(chain.host, Family.IPV4, GROUP[Family.IPV4])
    send_until(chain.sender(Family.IPV4), GROUP[Family.IPV4], receiver, 10, "data at the host via igmpproxy and us")


@needs_igmpproxy
def test_igmpproxy_downstream_of_ours(chain) -> None:
    """We are igmpproxy's upstream router: its kernel's join on its upstream must make us forward."""
    chain.start_daemon(OURS, name="ours", ns=chain.first)
    chain.start_igmpproxy(chain.second)
    receiver = chain.join(chain.host, Family.IPV4, GROUP[Family.IPV4])
    send_until(chain.sender(Family.IPV4), GROUP[Family.IPV4], receiver, 10, "data at the host via us and igmpproxy")
