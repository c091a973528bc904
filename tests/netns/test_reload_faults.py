"""Reload and start-up faults against a real daemon process: SIGHUP is all or nothing, never fatal.

- a broken file: refused with the reason logged, the old instances keep
  answering and forwarding;
- a half-applicable file (one change fine, one new instance whose interface
  the nftables plane cannot take: a name with a double quote, which Linux
  allows and nft cannot write): refused as a whole and rolled back, the log
  names the failed step;
- a burst of SIGHUPs over a good file: reloads run one after another (each
  ``reload_started`` is followed by its end before the next), coalesced,
  and the file's configuration runs at the end;
- SIGHUPs from the moment the process catches them (``SigCgt`` in
  ``/proc/PID/status``) through the whole start-up: the daemon survives,
  applies the held reload, and SIGTERM still leaves no nft table behind.

The half-applicable case relies on nft's quoting, so these tests run on the
nftables plane (the one every kernel here offers).
"""

from __future__ import annotations

import os
import re
import signal

import pytest

from mcproxy_pmip.addresses import Family
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.planes import nft_text
from tests.netns.proxy_harness import build_proxy_topology, send_until, wait_for

pytestmark = pytest.mark.netns

PREFIX = "hF-rl-"
GROUP = "239.1.1.9"
BAD_NAME = 'hF"u'


@pytest.fixture
def topo(netns_factory, tmp_path):  # noqa: F811
    yield from build_proxy_topology(netns_factory, str(tmp_path), PREFIX, "nftables")


def yaml_config(downstreams: list[str], extra: str = "") -> str:
    return ("protocols: [IGMPv3, MLDv2]\ninstances:\n  - name: p\n    upstreams: [up0]\n"
            f"    downstreams: [{', '.join(downstreams)}]\n" + extra)


def rewrite(topo, text: str) -> None:
    with open(os.path.join(topo.tmp, "px.conf"), "w", encoding="utf-8") as handle:
        handle.write(text)


def attached(daemon) -> dict[str, set[str]]:
    return {row["name"]: set(row["attached"]) for row in daemon.request("instances")}


def serving_h1(topo, daemon):
    """h1 joined; data from the upstream router reaches it; returns its socket."""
    receiver = topo.join(topo.hosts[0], Family.IPV4, GROUP)
    send_until(topo.sender(Family.IPV4), GROUP, receiver, 5, "data at h1")
    return receiver


def test_broken_file_is_refused_and_the_old_config_keeps_forwarding(topo) -> None:
    daemon = topo.start_daemon(yaml_config(["d1"]))
    receiver = serving_h1(topo, daemon)
    before = daemon.request("instances")
    rewrite(topo, yaml_config(["d1", "d2"], "  - name: p\n    upstreams: [up0]\n"))
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload_refused" in daemon.log(), 5, "the reload_refused log line")
    assert "defined twice" in daemon.log(), daemon.log()[-2000:]
    assert daemon.process.poll() is None
    assert daemon.request("instances") == before
    send_until(topo.sender(Family.IPV4), GROUP, receiver, 5, "data at h1 after the refused reload")


def test_half_applicable_file_is_refused_whole_and_rolled_back(topo) -> None:
    topo.px.ip("link", "add", BAD_NAME, "type", "veth", "peer", "name", "hFq")
    topo.px.ip("link", "set", BAD_NAME, "up")
    daemon = topo.start_daemon(yaml_config(["d1"]))
    receiver = serving_h1(topo, daemon)
    rewrite(topo, yaml_config(["d1", "d2"], f"  - name: q\n    upstreams: ['{BAD_NAME}']\n"
                                            "    downstreams: [hFq]\n"))
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload_failed" in daemon.log(), 5, "the reload_failed log line")
    line = next(x for x in daemon.log().splitlines() if "reload_failed" in x)
    assert "step='add instance q'" in line and "cannot be written in nft syntax" in line, line
    assert "rolled_back=complete" in line, line
    assert daemon.process.poll() is None
    assert attached(daemon) == {"p": {"up0", "d1"}}, "d2 (the applicable half) should be rolled back"
    assert daemon.request("status")["instances"] == 1
    ruleset = nft_text(topo.px, "list ruleset")
    assert '"d2"' not in ruleset and "hFq" not in ruleset, ruleset
    send_until(topo.sender(Family.IPV4), GROUP, receiver, 5, "data at h1 after the rolled-back reload")


def test_burst_of_sighups_runs_serialised_coalesced_reloads(topo) -> None:
    daemon = topo.start_daemon(yaml_config(["d1"]))
    receiver = serving_h1(topo, daemon)
    rewrite(topo, yaml_config(["d1", "d2"]))
    sent = 200
    for _ in range(sent):
        os.kill(daemon.process.pid, signal.SIGHUP)
    wait_for(lambda: attached(daemon) == {"p": {"up0", "d1", "d2"}}, 5, "d2 attached by the reloads")
    wait_for(lambda: daemon.log().count("reload_started") == daemon.log().count("reload_done"), 5,
             "every started reload to finish")
    assert daemon.process.poll() is None
    events = re.findall(r"reload_(started|done|failed|refused)", daemon.log())
    assert events and len(events) % 2 == 0, events
    assert events[0::2] == ["started"] * (len(events) // 2), f"reloads interleaved: {events}"
    assert set(events[1::2]) == {"done"}, events
    assert len(events) // 2 < sent, "the burst was not coalesced"
    send_until(topo.sender(Family.IPV4), GROUP, receiver, 5, "data at h1 after the burst")


def caught_signals(pid: int) -> int:
    """The process's caught-signal mask (``SigCgt``); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("SigCgt:"):
                    return int(line.split()[1], 16)
    except FileNotFoundError:
        return 0
    return 0


def test_sighups_throughout_start_up_are_held_and_never_fatal(topo) -> None:
    """SIGHUPs from the moment the process catches them, before it touches the kernel and on until
    it answers: it survives, applies one held reload, and exits cleanly on SIGTERM."""
    daemon = topo.start_daemon(yaml_config(["d1"]), ready=False)
    pid = daemon.process.pid
    hup_bit = 1 << (signal.SIGHUP - 1)
    wait_for(lambda: caught_signals(pid) & hup_bit or daemon.process.poll() is not None, 10,
             "the daemon to catch SIGHUP")
    sent = before_table = 0

    def up_and_answering():
        nonlocal sent, before_table
        assert daemon.process.poll() is None, f"SIGHUP #{sent} killed the daemon:\n{daemon.log()[-2000:]}"
        os.kill(pid, signal.SIGHUP)
        sent += 1
        if "mcproxy_pmip" not in nft_text(topo.px, "list ruleset"):
            before_table += 1
        return "daemon_started" in daemon.log() and os.path.exists(daemon.control)
    wait_for(up_and_answering, 15, "the daemon started under SIGHUPs", interval=0.001)
    assert before_table >= 1, "no SIGHUP reached the daemon before its kernel set-up (premise of the test)"
    for _ in range(50):
        os.kill(pid, signal.SIGHUP)
    wait_for(lambda: "reload_done" in daemon.log(), 5, "the held reload applied")
    assert "reload_pending_delivered" in daemon.log(), daemon.log()[-2000:]
    serving_h1(topo, daemon)
    assert daemon.stop(signal.SIGTERM) == 0, daemon.log()[-3000:]
    assert "mcproxy_pmip" not in nft_text(topo.px, "list ruleset")
    assert not os.path.exists(daemon.control)
