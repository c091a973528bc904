"""kill -9 in the middle of a handover, then a restart on the same configuration (pmipv6 plugin).

The daemon is killed after the MN's detach at the old link, with the attach
at the new link sent but not answered, or just after it was answered
(``handover_crash``). The kill leaves the crashed run's kernel state (the
nft tables with its pid; on MRT kernels its rules); the restarted daemon
finds and clears it, comes up, and once the binding signalling re-sends the
attach the MN gets data again within a bounded wait.
"""

from __future__ import annotations

import re
import signal

import pytest

from tests.netns.handover_crash import KILL_POINTS, crash_during_handover
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.planes import PLANES
from tests.netns.proxy_harness import build_proxy_topology

pytestmark = pytest.mark.netns

PREFIX = "hF-kh-"


@pytest.fixture(params=PLANES)
def topo(netns_factory, tmp_path, request):  # noqa: F811
    yield from build_proxy_topology(netns_factory, str(tmp_path), PREFIX, request.param)


@pytest.mark.parametrize("kill_point", KILL_POINTS)
def test_restart_after_kill9_mid_handover_clears_leftovers_and_serves_the_mn(topo, kill_point) -> None:
    """The crashed run's kernel state is cleared at the restart; the MN, re-attached without
    context, answers the General Query and gets data on its new link."""
    recovery = crash_during_handover(topo, kill_point)
    second = recovery.second
    log = second.log()
    if topo.data_plane == "nftables":
        assert "mcproxy_pmip" in recovery.after_kill, "kill -9 should leave the tables (the premise)"
        assert second.log().count("nft_leftover_table_deleted") == 2, log[-3000:]
    elif recovery.table is not None:
        assert f"lookup {recovery.table}" in recovery.after_kill, "kill -9 should leave the MRT rules"
        assert f"lookup {recovery.table}" not in recovery.after_restart, recovery.after_restart
    if topo.data_plane == "mroute":
        vifs = [line for line in recovery.after_restart.splitlines() if re.search(r"\b(up0|d1|d2)\b", line)]
        assert not [v for v in vifs if "lookup" not in v], f"vifs of the crashed run remain: {vifs}"
    assert second.process.poll() is None
    assert [r["downstreams"] for r in second.request("instances")] == [["d2"]]
    assert [b["access_if"] for b in second.request("bindings")] == ["d2"]
    print(f"\n{topo.data_plane} {kill_point}: restart -> answering {recovery.ready_interval * 1000:.0f} ms, "
          f"attach -> data at the MN {recovery.forwarding_interval * 1000:.0f} ms")
    assert second.stop(signal.SIGTERM) == 0, second.log()[-3000:]


def test_restart_with_the_kept_context_serves_a_silent_mn(topo) -> None:
    """The re-sent attach carries the context the signalling kept: the MN, which joins nothing
    on its new link, gets the data all the same (the restarted daemon joined for it upstream)."""
    recovery = crash_during_handover(topo, "attach-sent", with_context=True)
    rows = recovery.second.request("groups", interface="d2")
    assert [row["group"] for row in rows] == ["239.1.1.7"], rows
    print(f"\n{topo.data_plane} context: restart -> answering {recovery.ready_interval * 1000:.0f} ms, "
          f"attach -> data at the MN {recovery.forwarding_interval * 1000:.0f} ms")
    assert recovery.second.stop(signal.SIGTERM) == 0
