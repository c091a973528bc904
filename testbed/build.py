"""Builds a planned PMIPv6 domain in network namespaces and tears it down.

Order inside each namespace follows docs/design-facts.md: DAD off before any link
exists, forwarding on, rp_filter off; then links (veth, bridge, TUN),
addresses, link up, routes. MAG-LMA tunnels are RFC 2473 IPv6-in-IPv6
tunnels: a kernel ip6tnl where the kernel offers one, otherwise TUN devices
with the userspace ``relay`` (which is what ``tunnel_kind`` reports).

Radio: each MN's ``wlan0`` is a veth whose peer is a port of the MN's bridge in
the ``radio`` namespace, next to one port per MAG (peers of the MAG's access
link ``a<i>``). Exactly one MAG port is up; detaching sets it down (the MAG's
access link loses carrier, as when the MN leaves the AP), attaching sets the
new one up. The MN's own port never changes unless the scenario asks for
``mn_sees_link_change``, so by default the MN sees no carrier loss (RFC 6224
§4: mobile nodes are unaware of mobility).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from mcproxy_pmip.errors import KernelError
from mcproxy_pmip_testbed import nsutil, relay
from mcproxy_pmip_testbed.plan import (MAG_ACCESS_LINK_LOCAL, MAG_ACCESS_MAC, SOURCE_V4,
                                       SOURCE_V6, TUNNEL_MTU, Plan)
from mcproxy_pmip_testbed.processes import ProcessGroup

log = logging.getLogger(__name__)

#: first ifindex of the local ends of veth pairs (peers get small automatic ones)
VETH_INDEX_BASE = 10000

_NS_SYSCTLS = (
    ("net.ipv6.conf.all.accept_dad", 0),
    ("net.ipv6.conf.default.accept_dad", 0),
    ("net.ipv6.conf.all.forwarding", 1),
    ("net.ipv6.conf.default.forwarding", 1),
    ("net.ipv4.ip_forward", 1),
    ("net.ipv4.conf.all.rp_filter", 0),
    ("net.ipv4.conf.default.rp_filter", 0),
)
_MN_SYSCTLS = (  # an MN is a host: no forwarding, accepts router advertisements
    ("net.ipv6.conf.all.accept_dad", 0),
    ("net.ipv6.conf.default.accept_dad", 0),
    ("net.ipv4.conf.all.rp_filter", 0),
    ("net.ipv4.conf.default.rp_filter", 0),
)


def kernel_has_ip6tnl() -> bool:
    """True when the kernel offers ip6tnl (built in or loadable)."""
    if Path("/sys/module/ip6_tunnel").exists():
        return True
    release = os.uname().release
    modules = Path("/lib/modules") / release
    if not modules.is_dir():
        return False
    return any(modules.rglob("ip6_tunnel.ko*"))


class Testbed:
    """A built domain: namespaces, links, relays. Use as a context manager."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, plan: Plan, workdir: Path, mn_sees_link_change: bool = False) -> None:
        self.plan = plan
        self.workdir = workdir
        self.mn_sees_link_change = mn_sees_link_change
        self.tunnel_kind = "tun-relay"
        self.processes = ProcessGroup(workdir)
        self.ipr: dict[str, IPRoute] = {}
        self.attached: dict[str, str] = {m.name: m.mag for m in plan.topology.mns}
        self.build_interval: float | None = None
        self._created: list[str] = []
        self._veth_count = 0
        self._indexes: dict[tuple[str, str], int] = {}  # (node, ifname): links are never deleted

    # -- life cycle -------------------------------------------------------------
    def __enter__(self) -> Testbed:
        try:
            self.build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def build(self) -> None:
        started_at = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tunnel_kind = "tun-relay"  # ip6tnl would need the module; see docs/testbed.md
        if kernel_has_ip6tnl():
            log.info("tunnel_choice ip6tnl_available=yes using=tun-relay reason=uniform_capture")
        for ns in self.plan.namespaces:
            nsutil.create_namespace(ns)
            self._created.append(ns)
            is_mn = any(ns == self.plan.ns(m.name) for m in self.plan.mns)
            with nsutil.inside(ns):
                for key, value in (_MN_SYSCTLS if is_mn else _NS_SYSCTLS):
                    nsutil.write_sysctl(key, value)
                self.ipr[ns] = IPRoute()
        self._build_backbone()
        self._build_tunnels()
        self._build_access()
        self.build_interval = time.monotonic() - started_at
        self._start_relays()
        log.info("testbed_built run=%s namespaces=%d seconds=%.3f tunnel=%s", self.plan.run_id,
                 len(self._created), self.build_interval, self.tunnel_kind)

    def teardown(self) -> None:
        self.processes.stop_all()
        for ipr in self.ipr.values():
            ipr.close()
        self.ipr.clear()
        self._indexes.clear()
        for ns in reversed(self._created):
            nsutil.kill_pids(nsutil.namespace_pids(ns))
            nsutil.remove_namespace(ns)
        self._created.clear()

    # -- helpers ----------------------------------------------------------------
    def _index(self, node: str, ifname: str) -> int:
        """The link's ifindex, looked up once (half the netlink calls of a large build)."""
        key = (node, ifname)
        if key not in self._indexes:
            found = self.ipr[self.plan.ns(node)].link_lookup(ifname=ifname)
            if not found:
                raise KernelError("link_lookup", 19, f"{ifname} in {node}")
            self._indexes[key] = found[0]
        return self._indexes[key]

    def _veth(self, node: str, ifname: str, peer_node: str, peer_ifname: str,
              **attrs: Any) -> None:
        """A veth pair whose two ends never share an ifindex.

        The kernel treats a carrier change of a veth whose ifindex equals its
        peer's (possible across namespaces) as non-urgent and applies it up to
        1 s late (``linkwatch_urgent_event``): the access link would stay
        unusable for ~1 s after every radio attach. The local end therefore
        gets an index from ``VETH_INDEX_BASE`` up, the peer a small automatic one.
        """
        fd = nsutil.namespace_fd(self.plan.ns(peer_node))
        self._veth_count += 1
        try:
            self.ipr[self.plan.ns(node)].link("add", ifname=ifname, kind="veth",
                                              index=VETH_INDEX_BASE + self._veth_count,
                                              peer={"ifname": peer_ifname, "net_ns_fd": fd},
                                              **attrs)
        finally:
            os.close(fd)

    def _bridge(self, node: str, ifname: str, snooping: int, **attrs: Any) -> None:
        self.ipr[self.plan.ns(node)].link("add", ifname=ifname, kind="bridge",
                                          br_mcast_snooping=snooping, br_stp_state=0,
                                          br_forward_delay=0, **attrs)

    def _enslave(self, node: str, port: str, bridge: str) -> None:
        self.ipr[self.plan.ns(node)].link("set", index=self._index(node, port),
                                          master=self._index(node, bridge))

    def _addr(self, node: str, ifname: str,
              iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
        self.ipr[self.plan.ns(node)].addr("add", index=self._index(node, ifname),
                                          address=str(iface.ip), prefixlen=iface.network.prefixlen)

    def _up(self, node: str, ifname: str, up: bool = True) -> None:
        self.ipr[self.plan.ns(node)].link("set", index=self._index(node, ifname),
                                          state="up" if up else "down")

    def _route(self, node: str, dst: str, ifname: str, gateway: str | None = None,
               command: str = "add") -> None:
        family = 10 if ":" in dst else 2
        attrs: dict[str, Any] = {"dst": dst, "oif": self._index(node, ifname), "family": family}
        if gateway is not None:
            attrs["gateway"] = gateway
        self.ipr[self.plan.ns(node)].route(command, **attrs)

    def _sysctl(self, node: str, key: str, value: int) -> None:
        with nsutil.inside(self.plan.ns(node)):
            nsutil.write_sysctl(key, value)

    # -- the parts --------------------------------------------------------------
    def _build_backbone(self) -> None:
        """Source host on a flooding bridge that reaches every LMA's ``src0``."""
        self._bridge("src", "bb0", snooping=0)
        self._addr("src", "bb0", SOURCE_V6)
        self._addr("src", "bb0", SOURCE_V4)
        self._up("src", "lo")
        for lma in self.plan.topology.lmas:
            port = self.plan.backbone_port(lma)
            self._veth(lma, "src0", "src", port)
            self._enslave("src", port, "bb0")
            self._up("src", port)
            self._addr(lma, "src0", self.plan.lma_backbone_v6(lma))
            self._addr(lma, "src0", self.plan.lma_backbone_v4(lma))
            self._up(lma, "src0")
            self._up(lma, "lo")
        self._up("src", "bb0")
        for mn in self.plan.mns:
            self._route("src", str(mn.hnp), "bb0", str(self.plan.lma_backbone_v6(mn.lma).ip))
            self._route("src", str(mn.home_v4.network), "bb0",
                        str(self.plan.lma_backbone_v4(mn.lma).ip))

    def _build_tunnels(self) -> None:
        for tunnel in self.plan.tunnels:
            self._veth(tunnel.lma, tunnel.lma_underlay_if, tunnel.mag, tunnel.mag_underlay_if)
            self._addr(tunnel.lma, tunnel.lma_underlay_if, tunnel.lma_underlay)
            self._addr(tunnel.mag, tunnel.mag_underlay_if, tunnel.mag_underlay)
            self._up(tunnel.lma, tunnel.lma_underlay_if)
            self._up(tunnel.mag, tunnel.mag_underlay_if)
            for node, ifname, inner_v6, link_local, inner_v4 in (
                    (tunnel.lma, tunnel.lma_tunnel_if, tunnel.lma_inner_v6,
                     tunnel.lma_link_local, tunnel.lma_inner_v4),
                    (tunnel.mag, tunnel.mag_tunnel_if, tunnel.mag_inner_v6,
                     tunnel.mag_link_local, tunnel.mag_inner_v4)):
                with nsutil.inside(self.plan.ns(node)):
                    relay.create_tun(ifname)
                self.ipr[self.plan.ns(node)].link("set", index=self._index(node, ifname),
                                                  mtu=TUNNEL_MTU)
                for address in (inner_v6, link_local, inner_v4):
                    self._addr(node, ifname, address)
                self._up(node, ifname)
        for mag in self.plan.topology.mags:
            self._up(mag, "lo")
            first = self.plan.tunnel(self.plan.topology.lmas[0], mag)
            self._route(mag, "::/0", first.mag_tunnel_if)
            self._route(mag, "0.0.0.0/0", first.mag_tunnel_if)
            # the other MAGs (context channel) through the first LMA, outside the tunnel
            self._route(mag, str(self.plan.underlay_network(first.lma)), first.mag_underlay_if,
                        str(first.lma_underlay.ip))

    def _build_access(self) -> None:
        mags = self.plan.topology.mags
        if self.plan.access_bridge:
            for mag in mags:
                # No snooping: an MN arriving on a port must get the groups the MAG already
                # forwards into acc0 (context mode joins without any report from the MN, and a
                # snooping bridge would only feed ports that reported). Each attached MN then
                # receives every group the MAG forwards; its host stack drops the others.
                self._bridge(mag, "acc0", snooping=0, address=MAG_ACCESS_MAC)
                self._sysctl(mag, "net.ipv6.conf.acc0.addr_gen_mode", 1)
                self._addr(mag, "acc0", ipaddress.IPv6Interface(f"{MAG_ACCESS_LINK_LOCAL}/64"))
                self._up(mag, "acc0")
        self._up("radio", "lo")
        for mn in self.plan.mns:
            self._bridge("radio", mn.radio_bridge, snooping=0)
            self._veth(mn.name, mn.mn_if, "radio", mn.radio_mn_port)
            self._enslave("radio", mn.radio_mn_port, mn.radio_bridge)
            self._up("radio", mn.radio_mn_port)
            self._up("radio", mn.radio_bridge)
            for j, mag in enumerate(mags, start=1):
                access = mn.mag_access_if()
                port = mn.radio_mag_port(j)
                self._veth(mag, access, "radio", port, address=MAG_ACCESS_MAC)
                self._enslave("radio", port, mn.radio_bridge)
                self._up("radio", port, up=(mag == self.attached[mn.name]))
                if self.plan.access_bridge:
                    self._sysctl(mag, f"net.ipv6.conf.{access}.disable_ipv6", 1)
                    self._enslave(mag, access, "acc0")
                    downstream = "acc0"
                else:
                    self._sysctl(mag, f"net.ipv6.conf.{access}.addr_gen_mode", 1)
                    self._addr(mag, access,
                               ipaddress.IPv6Interface(f"{MAG_ACCESS_LINK_LOCAL}/64"))
                    downstream = access
                self._addr(mag, downstream, mn.gateway_v4)
                self._up(mag, access)
                self._route(mag, str(mn.hnp), downstream)
            self._up(mn.name, "lo")
            self._addr(mn.name, mn.mn_if, mn.home_v6)
            self._addr(mn.name, mn.mn_if, mn.home_v4)
            self._up(mn.name, mn.mn_if)
            self._route(mn.name, "::/0", mn.mn_if, str(MAG_ACCESS_LINK_LOCAL))
            self._route(mn.name, "0.0.0.0/0", mn.mn_if, str(mn.gateway_v4.ip))
            self.point_lma_route(mn.name, self.attached[mn.name], command="add")

    def _start_relays(self) -> None:
        by_node: dict[str, list[str]] = {}
        for t in self.plan.tunnels:
            by_node.setdefault(t.lma, []).append(
                f"{t.lma_tunnel_if},{t.lma_underlay.ip},{t.mag_underlay.ip}")
            by_node.setdefault(t.mag, []).append(
                f"{t.mag_tunnel_if},{t.mag_underlay.ip},{t.lma_underlay.ip}")
        for node, specs in by_node.items():
            argv = [sys.executable, "-m", "mcproxy_pmip_testbed.relay"]
            for spec in specs:
                argv += ["--tunnel", spec]
            self.processes.start(f"relay-{node}", self.plan.ns(node), argv, ready_line="ready")

    # -- operations used by the driver -----------------------------------------------
    def point_lma_route(self, mn_name: str, mag: str, command: str = "replace") -> None:
        """LMA's route to the MN's HNP and home address goes into the tunnel to ``mag``."""
        mn = self.plan.mn(mn_name)
        tunnel = self.plan.tunnel(mn.lma, mag)
        self._route(mn.lma, str(mn.hnp), tunnel.lma_tunnel_if, command=command)
        self._route(mn.lma, str(mn.home_v4.network), tunnel.lma_tunnel_if, command=command)

    def radio_detach(self, mn_name: str) -> None:
        mn = self.plan.mn(mn_name)
        mag = self.attached[mn_name]
        if self.mn_sees_link_change:
            self._up("radio", mn.radio_mn_port, up=False)
        self._up("radio", mn.radio_mag_port(self.plan.mag_index(mag)), up=False)

    def radio_attach(self, mn_name: str, mag: str) -> None:
        mn = self.plan.mn(mn_name)
        self._up("radio", mn.radio_mag_port(self.plan.mag_index(mag)), up=True)
        if self.mn_sees_link_change:
            self._up("radio", mn.radio_mn_port, up=True)
        self.attached[mn_name] = mag

    def radio_port_up(self, mn_name: str, mag: str) -> bool:
        """Whether the radio port of ``mag`` for this MN is administratively up."""
        mn = self.plan.mn(mn_name)
        index = self._index("radio", mn.radio_mag_port(self.plan.mag_index(mag)))
        link = self.ipr[self.plan.ns("radio")].get_links(index)[0]
        return bool(link["flags"] & 1)

    def run(self, node: str, argv: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess:
        """Run a short command inside a node's namespace and return its result."""
        return subprocess.run(nsutil.netns_argv(self.plan.ns(node), argv), capture_output=True,
                              text=True, timeout=timeout, check=False)

