"""Testbed scale: 40 MNs on one MAG, on point-to-point links or behind the access bridge.

With more than 31 MNs a MAG on the mroute data plane cannot give each access
link a vif (32 per table, one is the tunnel), so the plan makes them ports of
the bridge ``acc0`` and the MAG's daemon has that one downstream; on nftables
(what ``auto`` picks there) every MN keeps its point-to-point link. A real
mcproxy-pmip on the LMA and the MAG (static mode), the MNs' own host stacks
joining an IPv6 SSM and an IPv4 ASM stream, the testbed's sender: every MN
must receive both streams, the daemon's ``instances`` reply must show the
interfaces the plan gave it, and the run leaves no namespace or process behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import selectors
import sys
import time
from pathlib import Path

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip_testbed import nsutil
from mcproxy_pmip_testbed.build import Testbed
from mcproxy_pmip_testbed.control import ControlClient
from mcproxy_pmip_testbed.daemons import mcproxy_pmip_spec
from mcproxy_pmip_testbed.payload import unpack
from mcproxy_pmip_testbed.plan import SOURCE_V6
from mcproxy_pmip_testbed.planes import decide, kernel_missing_mroute
from mcproxy_pmip_testbed.receiver import JoinSpec, open_joined
from mcproxy_pmip_testbed.runner import daemon_roles
from mcproxy_pmip_testbed.scenario import MobileNode, Topology

pytestmark = pytest.mark.netns

MNS = 40
STREAMS = (JoinSpec(0, ipaddress.ip_address("ff3e::8000:1"), 5001, SOURCE_V6.ip),
           JoinSpec(1, ipaddress.ip_address("239.1.1.1"), 5002))


def _start_daemons(bed: Testbed, workdir: Path, data_plane: str,
                   clients: contextlib.ExitStack) -> dict[str, ControlClient]:
    spec = mcproxy_pmip_spec()
    controls = {}
    for role in daemon_roles(bed.plan, "static"):
        config = workdir / f"{role.node}.conf"
        config.write_text(spec.write_config(role))
        control = workdir / f"{role.node}.sock"
        bed.processes.start(f"daemon-{role.node}", bed.plan.ns(role.node),
                            spec.command(role, config, control, data_plane))
        deadline_at = time.monotonic() + 10.0
        while not control.exists():
            assert time.monotonic() < deadline_at, \
                f"daemon on {role.node} opened no control socket: " \
                f"{bed.processes.log_path('daemon-' + role.node).read_text()[-2000:]}"
            time.sleep(0.02)
        controls[role.node] = ControlClient(control)
        clients.callback(controls[role.node].close)
    return controls


def _await_every_stream(selector: selectors.BaseSelector, wanted: set[tuple[str, int]],
                        interval: float) -> None:
    """Read until each (mn, stream) got a packet of its stream, or fail naming the missing."""
    deadline_at = time.monotonic() + interval
    while wanted and time.monotonic() < deadline_at:
        for key, _ in selector.select(0.2):
            mn, spec = key.data
            while True:
                try:
                    data = key.fileobj.recv(2048)
                except BlockingIOError:
                    break
                parsed = unpack(data)
                if parsed is not None and parsed[0] == spec.stream:
                    wanted.discard((mn, spec.stream))
    missing = sorted(wanted)
    assert not missing, f"{len(missing)} (mn, stream) pairs got nothing in {interval}s: " \
                        f"{missing[:10]}"


def _processes_with(prefix: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if prefix in cmdline:
                found.append(f"{pid}: {cmdline}")
    return found


@pytest.mark.parametrize(("data_plane", "access_bridge", "bridged"), [
    ("auto", "auto", False),      # nftables: a point-to-point link per MN (RFC 5213)
    ("auto", "always", True),     # the bridge on whatever plane auto picks
    ("mroute", "auto", True),     # MRT: 31 MNs per table at most, so the bridge
], ids=["auto-point-to-point", "auto-bridge", "mroute-bridge"])
def test_forty_mns_on_one_mag_get_both_streams(tmp_path: Path, data_plane: str,
                                               access_bridge: str, bridged: bool) -> None:
    lacks = kernel_missing_mroute(frozenset({Family.IPV4, Family.IPV6}))
    if data_plane == "mroute" and lacks is not None:
        pytest.skip(f"the mroute data plane needs CONFIG_IP_MROUTE and CONFIG_IPV6_MROUTE ({lacks})")
    topology = Topology(lmas=("lma1",), mags=("mag1",), mns=tuple(
        MobileNode(f"mn{i}", "lma1", "mag1") for i in range(1, MNS + 1)),
        access_bridge=access_bridge)
    decision = decide(data_plane, mcproxy_pmip_spec(), topology,
                      lambda plan: daemon_roles(plan, "static"))
    plan = decision.plan
    assert plan.access_bridge is bridged
    access = {"acc0"} if bridged else {m.mag_access_if() for m in plan.mns}
    assert set(plan.mag_downstreams("mag1", "lma1")) == access
    prefix = f"mptb{plan.run_id}"
    try:
        with Testbed(plan, tmp_path) as bed, selectors.DefaultSelector() as selector, \
                contextlib.ExitStack() as closing:
            ports = bed.run("mag1", ["ip", "-o", "link", "show", "master", "acc0"]).stdout
            assert len(ports.splitlines()) == (MNS if bridged else 0), ports
            controls = _start_daemons(bed, tmp_path, data_plane, closing)
            config = (tmp_path / "mag1.conf").read_text()
            assert f"pinstance mag1lma1: tun1 ==> {' '.join(plan.mag_downstreams('mag1', 'lma1'))};" \
                in config
            plane = controls["mag1"].request("status")["data_plane"]
            assert plane == decision.expected["mag1"].name, \
                f"mag1 runs on {plane}, the testbed expected {decision.expected['mag1']}"
            if data_plane == "mroute" or not bridged:
                assert plane == ("mroute" if data_plane == "mroute" else "nftables")
            for mn in plan.mns:
                with nsutil.inside(plan.ns(mn.name)):
                    for spec in STREAMS:
                        sock = closing.enter_context(open_joined(spec, mn.mn_if))
                        selector.register(sock, selectors.EVENT_READ, (mn.name, spec))
            bed.processes.start("sender", plan.ns("src"), [
                sys.executable, "-m", "mcproxy_pmip_testbed.sender", "--iface", "bb0",
                *(arg for spec in STREAMS
                  for arg in ("--stream", f"{spec.stream},{spec.group},{spec.port},50,64"))])
            _await_every_stream(selector, {(mn.name, s.stream) for mn in plan.mns for s in STREAMS},
                                interval=15.0)
            rows = {row["name"]: row for row in controls["mag1"].request("instances")}
            interfaces = rows["mag1lma1"]["interfaces"]
            assert set(interfaces) == {"tun1", *access}, \
                f"the MAG's instance has the interfaces of the plan on {plane}: {interfaces}"
            if plane == "mroute":  # handles are vif numbers, one table
                assert sorted(interfaces.values()) == list(range(len(interfaces)))
            dead = bed.processes.check_alive()
            assert dead == [], f"processes exited during the run: {dead}"
        assert nsutil.list_namespaces(prefix) == [], "namespaces left behind"
        assert _processes_with(prefix) == [], "processes left behind"
    finally:
        nsutil.clean_leftovers(prefix)
