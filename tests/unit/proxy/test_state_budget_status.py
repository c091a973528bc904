"""State budgets through the whole IO layer on task.Clock: reports on two instances' links
fill the daemon-wide budget built from the top-level ``limits``; refusals and totals show in
``status``; everything given back once the members leave and when instances stop."""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.proxy.api import ProxyApi
from tests.unit.proxy.memory_proxy import MemoryProxy, exclude_none, include, leave

CONFIG = """\
protocols: [IGMPv3, MLDv2]
limits: {max_total_groups: 3, max_total_sources: 100}
instances:
  - name: a
    upstreams: [up0]
    downstreams: [d1]
    limits: {max_groups: 2, max_sources: 2}
  - name: b
    upstreams: [up1]
    downstreams: [d2]
"""


@pytest.fixture
def run():
    proxy = MemoryProxy(CONFIG, ["up0", "d1", "up1", "d2"])
    yield proxy
    proxy.stop()


def counters(run: MemoryProxy) -> dict[str, int]:
    return ProxyApi(run.proxy).status()["counters"]


def group(n: int) -> str:
    return str(ipaddress.IPv4Address("239.4.0.0") + n)


def test_caps_refuse_new_state_and_status_counts_them(run: MemoryProxy) -> None:
    run.igmp_report("d1", [exclude_none(group(1)), exclude_none(group(2)), exclude_none(group(3))])
    assert counters(run)["limit_groups_link"] == 1
    run.igmp_report("d1", [include(group(1), "10.9.0.1", "10.9.0.2", "10.9.0.3")])
    assert counters(run)["limit_sources_group"] == 1
    run.mld_report("d2", [exclude_none("ff3e::8000:1"), exclude_none("ff3e::8000:2")])
    status = counters(run)
    assert status["limit_groups_daemon"] == 1
    assert (status["state_groups"], status["state_sources"]) == (3, 0)
    core_a = run.proxy.instances["a"].core
    assert set(core_a.groups(Family.IPV4)) == {ipaddress.ip_address(group(1)),
                                               ipaddress.ip_address(group(2))}


def test_budget_back_to_zero_after_leaves_and_stop(run: MemoryProxy) -> None:
    run.igmp_report("d1", [exclude_none(group(1))])
    run.mld_report("d2", [exclude_none("ff3e::8000:1")])
    assert counters(run)["state_groups"] == 2
    run.igmp_report("d1", [leave(group(1))])
    run.mld_report("d2", [leave("ff3e::8000:1")])
    for _ in range(30):          # the last member queries go unanswered (LMQT 2 s)
        run.reactor.advance(1.0)
    status = counters(run)
    assert (status["state_groups"], status["state_sources"]) == (0, 0)
    run.igmp_report("d1", [include(group(2), "10.9.0.1")])
    assert counters(run)["state_sources"] == 1
    run.proxy.stop_instance("a")
    assert (run.proxy.budget.groups, run.proxy.budget.sources) == (0, 0)
