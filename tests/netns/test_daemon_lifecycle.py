"""The daemon's life: clean stop, restart after kill -9, two tables, SIGHUP reload, late interfaces, CLI.

docs/scenarios.md items 16 (two instances, two tables) and 17 (SIGTERM leaves nothing
behind; a restart after kill -9 clears the leftovers), the reload contract
of cli.py (SIGHUP applies the difference, a broken file changes nothing), an
interface that appears after start, and the command line against a real
kernel (``-c``, ``-r``, a bad configuration touching nothing).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import time

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.wire import igmp
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from tests.netns.planes import PLANES, nft_text
from tests.netns.netns_fixtures import address, netns_factory  # noqa: F401 (fixture)
from tests.netns.proxy_harness import (
    DAEMON,
    PORT,
    Capture,
    add_upstream_router,
    build_proxy_topology,
    igmp_frame,
    received,
    send_frame,
    send_until,
    wait_for,
)

pytestmark = pytest.mark.netns

PREFIX = "mpl-"
GROUP = {Family.IPV4: "239.1.1.1", Family.IPV6: "ff15::101"}
FAMILIES = (Family.IPV4, Family.IPV6)
QUIET_WINDOW = 0.5


@pytest.fixture(params=PLANES)
def topo(netns_factory, tmp_path, request):  # noqa: F811
    yield from build_proxy_topology(netns_factory, str(tmp_path), PREFIX, request.param)


def yaml_config(downstreams: list[str], table: int | None = None) -> str:
    table_line = f"    table: {table}\n" if table is not None else ""
    return ("protocols: [IGMPv3, MLDv2]\ninstances:\n  - name: p\n" + table_line +
            f"    upstreams: [up0]\n    downstreams: [{', '.join(downstreams)}]\n")


def kernel_state(topo, table: int | None) -> dict[str, str]:
    """Everything the topology's data plane shows in ``px``.

    mroute: MFC entries, rules, vifs (default table); a table the kernel does
    not have yet shows as no entries (the kernel never deletes one).
    nftables: the whole ruleset (the daemon's tables are ``mcproxy_pmip``).
    """
    px = topo.px
    if topo.data_plane == "nftables":
        return {"ruleset": nft_text(px, "list ruleset")}
    which = ["table", str(table)] if table is not None else []
    return {
        "mroute4": px.ip("mroute", "show", *which, check=False),
        "mroute6": px.ip("-6", "mroute", "show", *which, check=False),
        "mrule4": px.ip("mrule", "show"),
        "mrule6": px.ip("-6", "mrule", "show"),
        "vif4": px.run(["cat", "/proc/net/ip_mr_vif"]).stdout,
        "vif6": px.run(["cat", "/proc/net/ip6_mr_vif"]).stdout,
    }


def our_rules(state: dict[str, str], family: Family, table: int) -> list[str]:
    text = state["mrule4" if family is Family.IPV4 else "mrule6"]
    return [line for line in text.splitlines() if f"lookup {table}" in line]


def general_queries(capture: Capture, family: Family) -> list[tuple]:
    """IGMP Membership Queries to 224.0.0.1 / MLD queries to ff02::1 with group 0 / ::."""
    found = []
    for frame in capture.drain():
        _, fam, proto, _, _, payload = frame
        if fam is Family.IPV4 and fam is family and proto == 2 and payload[:1] == b"\x11" \
                and payload[4:8] == bytes(4):
            found.append(frame)
        if fam is Family.IPV6 and fam is family and proto == 58 and payload[:1] == b"\x82" \
                and payload[8:24] == bytes(16):
            found.append(frame)
    return found


def data_frames(capture: Capture, group: str) -> list[tuple]:
    return [f for f in capture.drain() if f[2] == 17 and str(f[4]) == group]


def join_and_receive(topo, families=FAMILIES, host_index: int = 0) -> dict:
    """Each family: the host joins, data from the upstream router arrives; returns the receivers."""
    receivers = {}
    for family in families:
        receivers[family] = topo.join(topo.hosts[host_index], family, GROUP[family])
        send_until(topo.sender(family), GROUP[family], receivers[family], 5, f"{family.name} data at the host")
    return receivers


@pytest.mark.parametrize("table", [None, 10], ids=["default-table", "table-10"])
def test_sigterm_removes_vifs_entries_rules_and_socket(topo, table) -> None:
    """docs/scenarios.md item 17: after SIGTERM the exit status is 0 and the kernel looks as before the start."""
    before = kernel_state(topo, table)
    config = "protocol IGMPv3;\nprotocol MLDv2;\n" + \
        f"pinstance p{f'({table})' if table else ''}: up0 ==> d1 d2;\n"
    daemon = topo.start_daemon(config)
    join_and_receive(topo)
    running = kernel_state(topo, table)
    for family in FAMILIES if topo.data_plane == "nftables" else ():
        nft = "ip" if family is Family.IPV4 else "ip6"
        assert f"table {nft} mcproxy_pmip" in running["ruleset"], running
        assert GROUP[family] in running["ruleset"], f"no {family.name} group entry while running"
    for family in FAMILIES if topo.data_plane == "mroute" else ():
        key = "mroute4" if family is Family.IPV4 else "mroute6"
        assert GROUP[family] in running[key], f"no {family.name} MFC entry while running:\n{running[key]}"
        if table is None:
            vifs = running["vif4" if family is Family.IPV4 else "vif6"]
            assert "up0" in vifs and "d1" in vifs, f"no {family.name} vifs while running:\n{vifs}"
        else:
            assert len(our_rules(running, family, table)) == 6, running
    assert os.path.exists(daemon.control)

    assert daemon.stop(signal.SIGTERM) == 0, daemon.log()[-3000:]
    assert kernel_state(topo, table) == before, daemon.log()[-3000:]
    assert not os.path.exists(daemon.control), "the control socket file is left behind"
    assert "daemon_stopped exit=0" in daemon.log()


def test_restart_after_kill9_clears_leftovers(topo) -> None:
    """docs/scenarios.md item 17: kill -9 leaves rules behind; the next start removes them and forwards again."""
    config = "protocol IGMPv3;\nprotocol MLDv2;\npinstance p(10): up0 ==> d1 d2;\n"
    first = topo.start_daemon(config, name="first")
    receivers = join_and_receive(topo)
    running = kernel_state(topo, 10)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    crashed = kernel_state(topo, 10)
    if topo.data_plane == "nftables":
        assert f"pid {first.process.pid}" in crashed["ruleset"], \
            "kill -9 should leave the tables (the premise of this test)"
        for sock in receivers.values():
            sock.close()
        second = topo.start_daemon(config, name="second")
        assert second.log().count("nft_leftover_table_deleted") == 2, second.log()[-3000:]
        assert f"pid {second.process.pid}" in kernel_state(topo, 10)["ruleset"]
        join_and_receive(topo)
        assert second.stop() == 0
        assert "mcproxy_pmip" not in kernel_state(topo, 10)["ruleset"]
        return
    for family in FAMILIES:
        assert our_rules(crashed, family, 10) == our_rules(running, family, 10), \
            f"kill -9 should leave the {family.name} rules (the premise of this test)"
    for sock in receivers.values():
        sock.close()

    second = topo.start_daemon(config, name="second")
    restarted = kernel_state(topo, 10)
    for family in FAMILIES:
        assert len(our_rules(restarted, family, 10)) == 6, \
            f"{family.name}: old rules not cleared or new ones missing:\n{restarted}"
    assert second.log().count("leftovers_mrule_deleted") == 12, second.log()[-3000:]
    join_and_receive(topo)
    assert second.stop() == 0
    stopped = kernel_state(topo, 10)
    assert not our_rules(stopped, Family.IPV4, 10) and not our_rules(stopped, Family.IPV6, 10), stopped


@pytest.mark.parametrize("family", FAMILIES, ids=["ipv4", "ipv6"])
def test_two_instances_two_tables_keep_streams_apart(netns_factory, topo, family) -> None:  # noqa: F811
    """docs/scenarios.md item 16: the same G in two instances; each router's stream reaches only its own host."""
    second_router = add_upstream_router(topo, netns_factory, PREFIX, index=1)
    config = "protocol IGMPv3;\nprotocol MLDv2;\npinstance a(10): up0 ==> d1;\npinstance b(11): up1 ==> d2;\n"
    reports = [Capture(topo.up, "u0"), Capture(second_router, "u0")]
    topo.start_daemon(config)
    group = GROUP[family]
    at_h1 = topo.join(topo.hosts[0], family, group)
    at_h2 = topo.join(topo.hosts[1], family, group)
    for capture, router in zip(reports, ("up0", "up1")):
        wait_for(lambda c=capture: c.reports(family), 5, f"the {family.protocol} report on {router}")
    from_a, from_b = topo.sender(family), topo.sender(family, ns=second_router)
    send_until(from_a, group, at_h1, 5, "instance a's stream at h1", payload=b"from-a")
    send_until(from_b, group, at_h2, 5, "instance b's stream at h2", payload=b"from-b")
    received(at_h1)
    received(at_h2)
    for _ in range(10):
        from_a.sendto(b"from-a", (group, PORT))
        from_b.sendto(b"from-b", (group, PORT))
    time.sleep(QUIET_WINDOW)
    assert set(received(at_h1)) == {b"from-a"}
    assert set(received(at_h2)) == {b"from-b"}
    if topo.data_plane == "nftables":
        listing = nft_text(topo.px, f"list map {'ip' if family is Family.IPV4 else 'ip6'} mcproxy_pmip ifaces")
        for name, chain in (("up0", "i1"), ("d1", "i1"), ("up1", "i2"), ("d2", "i2")):
            assert f'"{name}" : goto {chain}' in listing, listing
        return
    version = [] if family is Family.IPV4 else ["-6"]
    table_10 = topo.px.ip(*version, "mroute", "show", "table", "10")
    table_11 = topo.px.ip(*version, "mroute", "show", "table", "11")
    assert "up0" in table_10 and "up1" not in table_10 and "d2" not in table_10, table_10
    assert "up1" in table_11 and "up0" not in table_11 and "d1" not in table_11, table_11


def test_sighup_adds_a_downstream_and_keeps_the_others_state(topo) -> None:
    """SIGHUP: a new downstream is queried and served; the unchanged one keeps its group and its data
    without any new report; a broken file is logged and changes nothing."""
    group = GROUP[Family.IPV4]
    daemon = topo.start_daemon(yaml_config(["d1"]))
    conf = os.path.join(topo.tmp, "px.conf")
    report = igmp.build(igmp.IgmpV3Report((GroupRecord(RecordType.CHANGE_TO_EXCLUDE,
                                                       ipaddress.IPv4Address(group), ()),)))
    # h1's membership comes from one injected report: no other report can refresh it.
    send_frame(topo.hosts[0], "e0", igmp_frame("10.2.1.2", report))
    wait_for(lambda: daemon.request("groups", interface="d1"), 5, "h1's group on d1")
    at_h1 = Capture(topo.hosts[0], "e0")
    sender = topo.sender(Family.IPV4)

    def data_at_h1():
        sender.sendto(b"data", (group, PORT))
        return data_frames(at_h1, group)
    wait_for(data_at_h1, 5, "data at h1 before the reload", interval=0.01)
    at_h2 = Capture(topo.hosts[1], "e0")
    at_h1.frames.clear()

    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(yaml_config(["d1", "d2"]))
    daemon.process.send_signal(signal.SIGHUP)
    for family in FAMILIES:
        wait_for(lambda f=family: general_queries(at_h2, f), 5, f"a {family.protocol} General Query on d2")
    receiver = topo.join(topo.hosts[1], Family.IPV4, group)
    send_until(sender, group, receiver, 5, "data at h2 after the reload")
    at_h1.frames.clear()
    wait_for(data_at_h1, 5, "data at h1 after the reload", interval=0.01)
    assert not general_queries(at_h1, Family.IPV4), "the unchanged downstream d1 was queried again"
    rows = daemon.request("groups", interface="d1")
    assert [row["group"] for row in rows] == [group], rows

    instances_before = daemon.request("instances")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write("instances:\n  - name: p\n    upstreams: up0\n    bogus: 1\n")
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload_refused" in daemon.log(), 5, "the log line of the refused reload")
    assert daemon.process.poll() is None, "a broken config on SIGHUP stopped the daemon"
    assert daemon.request("instances") == instances_before
    assert [row["group"] for row in daemon.request("groups", interface="d1")] == [group]
    received(receiver)
    send_until(sender, group, receiver, 5, "data at h2 after the refused reload")


@pytest.mark.parametrize("addresses_first", [True, False], ids=["addresses-then-up", "up-then-addresses"])
def test_missing_interface_is_waited_for_and_attached_when_created(netns_factory, topo,  # noqa: F811
                                                                    addresses_first) -> None:
    """An interface of the config that does not exist yet: logged as waited for, a downstream once
    created, querying from its own addresses whatever order the link and its addresses come in."""
    daemon = topo.start_daemon("protocol IGMPv3;\nprotocol MLDv2;\npinstance p: up0 ==> d1 d3;\n")
    wait_for(lambda: "interface_waiting instance=p interface=d3" in daemon.log(), 5, "the waiting log line")
    assert "d3" not in daemon.request("instances")[0]["attached"]
    host = netns_factory(PREFIX)
    topo.px.ip("link", "add", "d3", "type", "veth", "peer", "name", "e0", "netns", host.name)
    address(host, "e0", "10.2.3.2/24", "fd02:3::2/64")
    host.ip("link", "set", "e0", "up")
    capture = Capture(host, "e0")
    if addresses_first:
        address(topo.px, "d3", "10.2.3.1/24", "fd02:3::1/64")
    topo.px.ip("link", "set", "d3", "up")
    if not addresses_first:
        address(topo.px, "d3", "10.2.3.1/24", "fd02:3::1/64")
    for family in FAMILIES:
        wait_for(lambda f=family: general_queries(capture, f), 5, f"a {family.protocol} General Query on d3")
    assert "d3" in daemon.request("instances")[0]["attached"]
    # The election must use d3's own address, even one that came after the link: a querier
    # with a higher address (RFC 3376 §6.6.2) does not win.
    query = igmp.build(igmp.IgmpQuery(version=3, max_resp_interval=1.0, robustness=2, query_interval=125.0))
    send_frame(host, "e0", igmp_frame("10.2.3.200", query, dst="224.0.0.1"))
    wait_for(lambda: daemon.request("status")["counters"].get("igmp_QueryReceived"), 5, "the query counted")
    time.sleep(QUIET_WINDOW)
    assert "interface=d3 family=IPV4 querier=False" not in daemon.log(), daemon.log()[-2000:]
    host.ip("route", "add", "default", "via", "10.2.3.1")
    receiver = topo.join(host, Family.IPV4, GROUP[Family.IPV4])
    send_until(topo.sender(Family.IPV4), GROUP[Family.IPV4], receiver, 5, "data at the late host")


# -- the command line against a real kernel ------------------------------------------------


def run_cli(topo, *args: str) -> subprocess.CompletedProcess:
    return topo.px.run([*DAEMON, *args], check=False)


def test_bad_config_exits_2_before_touching_the_kernel(topo) -> None:
    before = kernel_state(topo, 10)
    conf = os.path.join(topo.tmp, "bad.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write("pinstance a(10): up0 ==> d1;\npinstance b(10): up0 ==> d2;\n")
    result = run_cli(topo, "-f", conf, "--control", os.path.join(topo.tmp, "bad.sock"))
    assert result.returncode == 2, result.stderr
    assert f"{conf}:2:" in result.stderr, result.stderr
    assert kernel_state(topo, 10) == before
    assert not os.path.exists(os.path.join(topo.tmp, "bad.sock"))


def test_kernel_check_in_a_namespace(topo) -> None:
    """``-c`` in a fresh namespace: exit 0, the packet I/O and the plane under test usable, every row ok."""
    result = run_cli(topo, "-c")
    assert result.returncode == 0, result.stdout + result.stderr
    sections = {}
    for row in result.stdout.splitlines():
        if not row.startswith(" "):
            heading = row.split(":")[0]
            sections[heading] = [row]
        else:
            sections[heading].append(row)
    for part in ("packet I/O", f"{topo.data_plane} plane"):
        assert sections[part][0] == f"{part}: usable", result.stdout
        assert all(row.strip().startswith("ok") for row in sections[part][1:]), result.stdout


def test_reset_rp_filter_and_restore_on_exit(topo) -> None:
    previous = {"all": "1", "up0": "2", "d1": "1", "d2": "0"}
    for name, value in previous.items():
        topo.px.sysctl(f"net.ipv4.conf.{name}.rp_filter", value)
    daemon = topo.start_daemon("protocol IGMPv3;\npinstance p: up0 ==> d1 d2;\n", "-r")
    for name in previous:
        assert topo.px.read_sysctl(f"net.ipv4.conf.{name}.rp_filter") == "0", name
    assert daemon.stop() == 0
    restored = {name: topo.px.read_sysctl(f"net.ipv4.conf.{name}.rp_filter") for name in previous}
    assert restored == previous
