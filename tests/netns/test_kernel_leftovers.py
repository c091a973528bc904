"""Leftovers of a run killed with -9: found and cleared; other rules and live tables untouched."""

from __future__ import annotations

import select
import signal
import subprocess
import textwrap

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.kernel import leftovers, mrules
from mcproxy_pmip.kernel.mroute import MrouteSocket
from tests.netns.planes import requires_mroute
from tests.netns.netns_fixtures import Netns, netns_factory  # noqa: F401 (fixture)

pytestmark = [pytest.mark.netns, requires_mroute]

CRASHING_DAEMON = textwrap.dedent(
    """
    import ipaddress, sys, time
    from mcproxy_pmip.addresses import Family
    from mcproxy_pmip.kernel import mfc, mrules, vifs
    from mcproxy_pmip.kernel.mroute import MrouteSocket
    sockets = []
    for family, source, group in ((Family.IPV4, "10.0.0.1", "239.0.0.1"), (Family.IPV6, "fd00::1", "ff15::1")):
        sock = MrouteSocket(family, 31)
        table = vifs.VifTable(sock)
        a, b = table.add("la"), table.add("lb")
        mfc.MfcTable(sock).install(ipaddress.ip_address(source), ipaddress.ip_address(group), a.index, {b.index})
        mrules.add_mrule(family, 31, iif="la")
        mrules.add_mrule(family, 31, oif="lb", priority=1001)
        sockets.append(sock)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    assert readable, f"the child said nothing within {timeout}s (exit code {process.poll()})"
    return process.stdout.readline().strip()


def test_killed_run_leaves_mrules_that_clear_removes(netns_factory):  # noqa: F811
    ns: Netns = netns_factory()
    ns.ip("link", "add", "la", "type", "veth", "peer", "name", "lb")
    ns.ip("link", "set", "la", "up")
    ns.ip("link", "set", "lb", "up")
    # The operator's own rule on the same table, and ours for a table not in the config.
    ns.ip("-4", "mrule", "add", "iif", "lb", "lookup", "31", "priority", "900")
    with ns.entered():
        foreign_table_rule = mrules.add_mrule(Family.IPV4, 77, iif="la", priority=902)
    child = ns.python(CRASHING_DAEMON, stdout=subprocess.PIPE)
    assert read_line(child, 10.0) == "ready"
    tables = [(Family.IPV4, 31), (Family.IPV6, 31)]
    with ns.entered():
        alive = leftovers.find(tables)
    assert set(alive.busy_tables) == set(tables), "a live owner makes its tables busy"
    assert alive.mrules == (), "the rules of a live owner are not leftovers"

    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert "iif la lookup 31 proto 201" in ns.ip("-4", "mrule", "show")

    with ns.entered():
        found = leftovers.find(tables)
        assert found.busy_tables == ()
        assert {(r.family, r.iif, r.oif) for r in found.mrules} == {
            (Family.IPV4, "la", None), (Family.IPV4, None, "lb"),
            (Family.IPV6, "la", None), (Family.IPV6, None, "lb"),
        }
        cleared = leftovers.clear(tables)
        assert set(cleared.mrules) == set(found.mrules)
        assert set(cleared.flushed_tables) == set(tables)
        assert leftovers.find(tables).mrules == ()
        assert mrules.list_mrules(Family.IPV4) == [foreign_table_rule]
        for family in (Family.IPV4, Family.IPV6):
            MrouteSocket(family, 31).close()  # the table is free again
    shown4, shown6 = ns.ip("-4", "mrule", "show"), ns.ip("-6", "mrule", "show")
    assert "proto 201" not in shown6, shown6
    assert "iif lb lookup 31" in shown4 and "iif la lookup 77" in shown4 and "lookup 31 proto 201" not in shown4
    assert ns.ip("-4", "mroute", "show", "table", "31").strip() == ""
    assert ns.ip("-6", "mroute", "show", "table", "31").strip() == ""
