"""Kernel state faults against a real daemon, real hosts and the real kernel, on each data plane.

- A downstream deleted and created again (a new ifindex): a General Query
  goes out on it, the host that joins again gets data. Both with the
  daemon seeing the removal first and with removal and creation at once.
- The upstream flaps (down/up, or deleted and created again): the daemon
  reports its groups on it again and data flows again.
- ``-r`` after ``kill -9``: the next run puts rp_filter back first and a
  clean stop leaves the original values.
- Only the daemon's own tables: a foreign nftables table (and, with MRT, a
  foreign protocol-201 rule and its table) survives start, kill -9, restart
  and stop.
- Automatic MRT table numbers skip tables the kernel already uses.

The faults are played by ``tests.netns.kernel_fault_steps``, which bounds each
wait generously; each recovery time is printed (``pytest -s``), and
``bench/kernel_faults.py`` prints median and spread over repeats.
MRT-only tests skip without ``CONFIG_IP_MROUTE`` (``tests.netns.planes``).
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.netns.kernel_fault_steps import (CONFIG, UPSTREAM_FLAPS, join_and_receive, recreated_downstream,
                                            upstream_flap)
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.planes import PLANES, nft_text, requires_mroute
from tests.netns.proxy_harness import add_upstream_router, build_proxy_topology

pytestmark = pytest.mark.netns

PREFIX = "hG-"


@pytest.fixture(params=PLANES)
def topo(netns_factory, tmp_path, request, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MCPROXY_PMIP_STATE_DIR", str(tmp_path / "state"))
    yield from build_proxy_topology(netns_factory, str(tmp_path), PREFIX, request.param)


@pytest.fixture
def nft_topo(netns_factory, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MCPROXY_PMIP_STATE_DIR", str(tmp_path / "state"))
    yield from build_proxy_topology(netns_factory, str(tmp_path), PREFIX, "nftables")


# -- 1. interface delete and re-create -------------------------------------------------------------


@pytest.mark.parametrize("at_once", [False, True], ids=["removal-noticed-first", "removal-and-creation-at-once"])
def test_recreated_downstream_is_queried_and_forwards_again(topo, at_once) -> None:
    daemon = topo.start_daemon(CONFIG)
    recovery = recreated_downstream(topo, daemon, at_once)
    print(f"\nrecreated downstream ({topo.data_plane}, at_once={at_once}): {recovery.line('query')}")
    assert ("interface_recreated instance=p interface=d1" in daemon.log()) is at_once, daemon.log()[-3000:]
    assert "d1" in daemon.request("instances")[0]["attached"]
    if topo.data_plane == "mroute":
        vifs = topo.px.run(["cat", "/proc/net/ip_mr_vif"]).stdout
        assert vifs.count(" d1 ") == 1, vifs
    assert daemon.stop() == 0, daemon.log()[-3000:]


# -- 2. tunnel flap --------------------------------------------------------------------------------


@pytest.mark.parametrize("how", UPSTREAM_FLAPS)
def test_upstream_flap_reports_again_and_forwarding_resumes(topo, how) -> None:
    daemon = topo.start_daemon(CONFIG)
    recovery = upstream_flap(topo, daemon, how)
    print(f"\nupstream flap ({topo.data_plane}, {how}): {recovery.line('report')}")
    if how == "delete-recreate-at-once":
        assert "interface_recreated instance=p interface=up0" in daemon.log(), daemon.log()[-3000:]
    assert daemon.stop() == 0, daemon.log()[-3000:]


# -- 3. rp_filter after kill -9 -----------------------------------------------------------------


def test_rp_filter_is_restored_after_kill9_and_a_restart(nft_topo, tmp_path) -> None:
    topo = nft_topo
    original = {"all": "2", "up0": "1", "d1": "2", "d2": "0"}
    for name, value in original.items():
        topo.px.sysctl(f"net.ipv4.conf.{name}.rp_filter", value)

    def current() -> dict[str, str]:
        return {name: topo.px.read_sysctl(f"net.ipv4.conf.{name}.rp_filter") for name in original}

    first = topo.start_daemon(CONFIG, "-r", name="first")
    assert set(current().values()) == {"0"}
    assert os.listdir(tmp_path / "state"), "no state file while running with -r"
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert set(current().values()) == {"0"}, "kill -9 should leave rp_filter at 0 (the premise)"
    second = topo.start_daemon(CONFIG, "-r", name="second")
    assert f"rp_filter_crashed_run pid={first.process.pid}" in second.log(), second.log()[-3000:]
    assert set(current().values()) == {"0"}
    assert second.stop() == 0, second.log()[-3000:]
    assert current() == original
    assert os.listdir(tmp_path / "state") == [], "a state file outlived a clean stop"


# -- 4. only our own tables -------------------------------------------------------------------------


FOREIGN_NFT = ("add table ip hG_foreign; add chain ip hG_foreign c { type filter hook prerouting priority 0; }; "
               "add rule ip hG_foreign c ip daddr 239.7.7.7 counter; "
               "add table ip6 hG_foreign; add chain ip6 hG_foreign c; "
               "add table inet mcproxy_pmip; add chain inet mcproxy_pmip c")


def test_foreign_nft_tables_survive_start_kill9_restart_and_stop(nft_topo) -> None:
    topo = nft_topo
    nft_text(topo.px, FOREIGN_NFT)

    def foreign() -> str:
        ruleset = nft_text(topo.px, "list ruleset")
        return "\n".join(line for line in ruleset.splitlines() if "hG_foreign" in line or "inet mcproxy_pmip" in line
                         or "239.7.7.7" in line)

    before = foreign()
    assert before.count("table") == 3 and "239.7.7.7" in before, before
    first = topo.start_daemon(CONFIG, name="first")
    join_and_receive(topo)
    assert foreign() == before
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    second = topo.start_daemon(CONFIG, name="second")
    assert second.log().count("nft_leftover_table_deleted") == 2, second.log()[-3000:]
    assert foreign() == before
    assert second.stop() == 0
    assert foreign() == before
    assert "table ip mcproxy_pmip" not in nft_text(topo.px, "list ruleset")


@requires_mroute
def test_foreign_mrule_and_table_survive_start_kill9_restart_and_stop(netns_factory, tmp_path,  # noqa: F811
                                                                       monkeypatch) -> None:
    """A protocol-201 rule for a table this daemon never used, with an entry in it: untouched."""
    monkeypatch.setenv("MCPROXY_PMIP_STATE_DIR", str(tmp_path / "state"))
    topo_iter = build_proxy_topology(netns_factory, str(tmp_path), PREFIX, "mroute")
    topo = next(topo_iter)
    try:
        topo.px.ip("mrule", "add", "iif", "d2", "lookup", "77", "protocol", "201")
        config = "protocol IGMPv3;\nprotocol MLDv2;\npinstance p(10): up0 ==> d1;\n"
        first = topo.start_daemon(config, name="first")
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        second = topo.start_daemon(config, name="second")
        assert second.stop() == 0
        rules = topo.px.ip("mrule", "show")
        assert "lookup 77" in rules, rules
        assert "lookup 10" not in rules, rules
    finally:
        next(topo_iter, None)


# -- 5. automatic table numbers ---------------------------------------------------------------------


@requires_mroute
def test_automatic_table_numbers_skip_tables_in_use(netns_factory, tmp_path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("MCPROXY_PMIP_STATE_DIR", str(tmp_path / "state"))
    topo_iter = build_proxy_topology(netns_factory, str(tmp_path), PREFIX, "mroute")
    topo = next(topo_iter)
    try:
        add_upstream_router(topo, netns_factory, PREFIX)
        topo.px.ip("mrule", "add", "iif", "lo", "lookup", "1000")
        config = "protocol IGMPv3;\nprotocol MLDv2;\npinstance a: up0 ==> d1;\npinstance b: up1 ==> d2;\n"
        daemon = topo.start_daemon(config)
        tables = sorted(i["table"] for i in daemon.request("instances"))
        assert 1000 not in tables and all(t is not None and t > 1000 for t in tables), tables
        assert daemon.stop() == 0
        assert "lookup 1000" in topo.px.ip("mrule", "show")
    finally:
        next(topo_iter, None)
