"""Testbed scale mode: 40 MNs on one MAG go behind the access bridge, and all get the streams.

Beyond 31 MNs a MAG's access links cannot each be a vif (32 per table, one
is the tunnel), so the plan makes them ports of the bridge ``acc0`` and the
MAG's daemon has that one downstream. A real mcproxy-pmip on the LMA and the
MAG (static mode), the MNs' own host stacks joining an IPv6 SSM and an IPv4
ASM stream, the testbed's sender: every MN must receive both streams, and the
run leaves no namespace or process behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import selectors
import socket
import sys
import time
from pathlib import Path

import pytest

from mcproxy_pmip_testbed import nsutil
from mcproxy_pmip_testbed.build import Testbed
from mcproxy_pmip_testbed.daemons import mcproxy_pmip_spec
from mcproxy_pmip_testbed.payload import unpack
from mcproxy_pmip_testbed.plan import SOURCE_V6, make_plan
from mcproxy_pmip_testbed.receiver import JoinSpec, open_joined
from mcproxy_pmip_testbed.runner import daemon_roles
from mcproxy_pmip_testbed.scenario import MobileNode, Topology

pytestmark = pytest.mark.netns

MNS = 40
STREAMS = (JoinSpec(0, ipaddress.ip_address("ff3e::8000:1"), 5001, SOURCE_V6.ip),
           JoinSpec(1, ipaddress.ip_address("239.1.1.1"), 5002))


def _start_daemons(bed: Testbed, workdir: Path) -> None:
    spec = mcproxy_pmip_spec()
    for role in daemon_roles(bed.plan, "static"):
        config = workdir / f"{role.node}.conf"
        config.write_text(spec.write_config(role))
        control = workdir / f"{role.node}.sock"
        bed.processes.start(f"daemon-{role.node}", bed.plan.ns(role.node),
                            spec.command(role, config, control))
        deadline_at = time.monotonic() + 10.0
        while not control.exists():
            assert time.monotonic() < deadline_at, \
                f"daemon on {role.node} opened no control socket: " \
                f"{bed.processes.log_path('daemon-' + role.node).read_text()[-2000:]}"
            time.sleep(0.02)


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


def test_forty_mns_behind_the_access_bridge_get_both_streams(tmp_path: Path) -> None:
    topology = Topology(lmas=("lma1",), mags=("mag1",), mns=tuple(
        MobileNode(f"mn{i}", "lma1", "mag1") for i in range(1, MNS + 1)))
    plan = make_plan(topology)
    assert plan.access_bridge, "more than 31 MNs on a MAG need the access bridge"
    assert plan.mag_downstreams("mag1", "lma1") == ("acc0",)
    prefix = f"mptb{plan.run_id}"
    try:
        with Testbed(plan, tmp_path) as bed, selectors.DefaultSelector() as selector, \
                contextlib.ExitStack() as sockets:
            ports = bed.run("mag1", ["ip", "-o", "link", "show", "master", "acc0"]).stdout
            assert len(ports.splitlines()) == MNS, ports
            _start_daemons(bed, tmp_path)
            assert "pinstance mag1lma1: tun1 ==> acc0;" in (tmp_path / "mag1.conf").read_text()
            for mn in plan.mns:
                with nsutil.inside(plan.ns(mn.name)):
                    for spec in STREAMS:
                        sock = sockets.enter_context(open_joined(spec, mn.mn_if))
                        selector.register(sock, selectors.EVENT_READ, (mn.name, spec))
            bed.processes.start("sender", plan.ns("src"), [
                sys.executable, "-m", "mcproxy_pmip_testbed.sender", "--iface", "bb0",
                *(arg for spec in STREAMS
                  for arg in ("--stream", f"{spec.stream},{spec.group},{spec.port},50,64"))])
            _await_every_stream(selector, {(mn.name, s.stream) for mn in plan.mns for s in STREAMS},
                                interval=15.0)
            vifs = bed.run("mag1", ["cat", "/proc/net/ip_mr_vif"]).stdout
            assert " acc0 " in vifs and not any(f" {m.mag_access_if()} " in vifs for m in plan.mns), \
                f"the MAG's one downstream vif is the bridge:\n{vifs}"
            dead = bed.processes.check_alive()
            assert dead == [], f"processes exited during the run: {dead}"
        assert nsutil.list_namespaces(prefix) == [], "namespaces left behind"
        assert _processes_with(prefix) == [], "processes left behind"
    finally:
        nsutil.clean_leftovers(prefix)
