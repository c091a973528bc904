"""kill -9 in the middle of a handover, then a restart: the steps shared by the test and the bench.

On the proxy topology (``proxy_harness``) the daemon runs with the pmipv6
plugin and a configuration of protocol lines only. The MN is bound on d1
(host h1 joined to the group, data flowing); the handover moves it to d2
(host h2 stands for the MN on its new link, joined before the move as an MN
arrives with its subscriptions): context export and detach at d1, then the
attach at d2 with the context. The daemon is killed with SIGKILL at one
``KILL_POINTS`` step. A second daemon starts on the same files; the binding
signalling re-sends the attach (a MAG's PMIPv6 side re-registers its
bindings), the MN's kernel answers the General Query (or the attach carries
the context the signalling kept), and data reaches it.

``crash_during_handover`` returns what the test asserts and the bench times:
the leftovers seen after the kill and after the restart, the second daemon,
and the durations restart -> control socket answering -> data at the MN.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family
from tests.netns.planes import nft_text
from tests.netns.proxy_harness import PORT, Capture, Daemon, ProxyTopology, send_until

#: the MN's Max Response Time shortened to 1 s (docs/plugins.md), so recovery without context is bounded
CONFIG = ("protocols: [IGMPv3, MLDv2]\nplugins:\n  pmipv6:\n"
          "    profile: {query_response_interval: 1}\n")
GROUP = "239.1.1.7"
KILL_POINTS = ("after-detach", "attach-sent", "attach-done")


@dataclass
class Recovery:
    first_pid: int
    table: int | None
    after_kill: str
    after_restart: str
    second: Daemon
    ready_interval: float
    forwarding_interval: float


def kernel_leftovers(topo: ProxyTopology) -> str:
    """What the data plane shows in the proxy namespace: our nft tables, or MRT rules and vifs."""
    if topo.data_plane == "nftables":
        return nft_text(topo.px, "list tables")
    return "\n".join((topo.px.ip("mrule", "show"), topo.px.ip("-6", "mrule", "show"),
                      topo.px.run(["cat", "/proc/net/ip_mr_vif"]).stdout,
                      topo.px.run(["cat", "/proc/net/ip6_mr_vif"]).stdout))


def attach(daemon: Daemon, access_if: str, context=None):
    return daemon.request("binding", event="attach", mn_id="mn1", access_if=access_if, tunnel_if="up0",
                          lifetime=600, context=context)


def send_line(control: str, body: dict) -> socket.socket:
    """Send one request without waiting for its reply (the connection is returned, still open)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(control)
    sock.sendall(json.dumps(body).encode() + b"\n")
    return sock


def crash_during_handover(topo: ProxyTopology, kill_point: str, *, with_context: bool = False,
                          name: str = "px") -> Recovery:
    """Kill the daemon at ``kill_point``, restart it, re-attach the MN. With ``with_context`` the
    attach carries the context the signalling kept and the MN on d2 is silent (joins nothing);
    else the MN's kernel answers the General Query. Data is seen on the MN's link (a capture)."""
    first = topo.start_daemon(CONFIG, name=name)
    sender = topo.sender(Family.IPV4)
    attach(first, "d1")
    at_old = topo.join(topo.hosts[0], Family.IPV4, GROUP)
    send_until(sender, GROUP, at_old, 5, "data at the MN on d1 before the handover")
    table = first.request("instances")[0]["table"]
    at_new = None if with_context else topo.join(topo.hosts[1], Family.IPV4, GROUP)
    on_new_link = Capture(topo.hosts[1], "e0")
    context = first.request("context-export", mn_id="mn1")["context"]
    first.request("binding", event="detach", mn_id="mn1")
    pending = None
    if kill_point == "attach-sent":
        pending = send_line(first.control, {"id": 1, "cmd": "binding", "event": "attach", "mn_id": "mn1",
                                            "access_if": "d2", "tunnel_if": "up0", "lifetime": 600,
                                            "context": context})
    elif kill_point == "attach-done":
        attach(first, "d2", context)
    first.stop(signal.SIGKILL)
    if pending is not None:
        pending.close()
    at_old.close()
    after_kill = kernel_leftovers(topo)

    restarted_at = time.monotonic()
    second = topo.start_daemon(CONFIG, name=f"{name}-again")
    ready_at = time.monotonic()
    after_restart = kernel_leftovers(topo)
    attach(second, "d2", context if with_context else None)
    on_new_link.frames.clear()
    deadline = time.monotonic() + 10
    while True:
        sender.sendto(b"data", (GROUP, PORT))
        time.sleep(0.002)
        if any(f[2] == 17 and str(f[4]) == GROUP for f in on_new_link.drain()):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"no data at the MN on d2 within 10 s of the restart:\n{second.log()[-3000:]}")
    data_at = time.monotonic()
    sender.close()
    on_new_link.close()
    if at_new is not None:
        at_new.close()
    return Recovery(first.process.pid, table, after_kill, after_restart, second,
                    ready_at - restarted_at, data_at - ready_at)
