"""Names and addresses of a testbed run, computed purely from the topology.

The plan says which namespaces exist, which links join them, and every
address and route; ``build`` carries it out. Addressing follows RFC 5213:
every MAG's access link to an MN uses the same link-local address (fe80::1)
and MAC, and the MN keeps its home network prefix (HNP) and IPv4 home address
(RFC 5844) whichever MAG it is attached to. Each MAG has one tunnel to each
LMA (RFC 5213 §6.10.3 bi-directional tunnel) over an IPv6 underlay link.

Interface names live inside per-run namespaces, so only the namespace names
carry the run prefix (``mptb<runid>-<node>``, ``Plan.prefix`` for another than
mptb); interface names stay < 16 chars.

Each MN has a point-to-point access link ``a<i>`` on every MAG (the access
link type of RFC 5213). Only a MAG daemon on the mroute data plane is limited
(32 vifs per MRT table, one of them the tunnel): with more than 31 MNs
anchored at one LMA the links become ports of one access bridge ``acc0``
(``access_bridge_needed``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets

from mcproxy_pmip_testbed.scenario import Topology

PREFIX = "mptb"
MAG_ACCESS_MAC = "02:00:00:00:00:01"
MAG_ACCESS_LINK_LOCAL = ipaddress.IPv6Address("fe80::1")
SOURCE_V6 = ipaddress.IPv6Interface("2001:db8:ff::1/64")
SOURCE_V4 = ipaddress.IPv4Interface("10.255.0.1/24")
TUNNEL_MTU = 1460  # underlay 1500 minus the 40-octet outer header (RFC 2473 §6.1)
MAX_VIFS_PER_TABLE = 32  # the kernel's MAXVIFS / MAXMIFS: the mroute plane's limit per table


def new_run_id() -> str:
    return secrets.token_hex(2)


@dataclasses.dataclass(frozen=True, slots=True)
class TunnelPlan:
    """One MAG-LMA tunnel: TUN devices at both ends, over an underlay veth."""

    lma: str
    mag: str
    lma_underlay_if: str
    mag_underlay_if: str
    lma_underlay: ipaddress.IPv6Interface
    mag_underlay: ipaddress.IPv6Interface
    lma_tunnel_if: str
    mag_tunnel_if: str
    lma_inner_v6: ipaddress.IPv6Interface
    mag_inner_v6: ipaddress.IPv6Interface
    lma_link_local: ipaddress.IPv6Interface
    mag_link_local: ipaddress.IPv6Interface
    lma_inner_v4: ipaddress.IPv4Interface
    mag_inner_v4: ipaddress.IPv4Interface


@dataclasses.dataclass(frozen=True, slots=True)
class MnPlan:
    """One MN: its namespace interface, home addresses and radio bridge."""

    name: str
    index: int
    lma: str
    home_v6: ipaddress.IPv6Interface  # an address in the MN's HNP
    hnp: ipaddress.IPv6Network
    home_v4: ipaddress.IPv4Interface
    gateway_v4: ipaddress.IPv4Interface  # the MAG's address on every access link
    mn_if: str  # inside the MN namespace
    radio_bridge: str
    radio_mn_port: str

    def radio_mag_port(self, mag_index: int) -> str:
        return f"g{mag_index}m{self.index}"

    def mag_access_if(self) -> str:
        return f"a{self.index}"


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    run_id: str
    topology: Topology
    tunnels: tuple[TunnelPlan, ...]
    mns: tuple[MnPlan, ...]
    access_bridge: bool  # MNs of a MAG hang off one bridge (a MAG on mroute beyond 31 vifs)
    prefix: str = PREFIX  # of namespace and socket folder names (tests use their own)

    def ns(self, node: str) -> str:
        """The namespace of a node (``src``, ``radio``, an LMA, MAG or MN name)."""
        return f"{self.prefix}{self.run_id}-{node}"

    @property
    def namespaces(self) -> tuple[str, ...]:
        nodes = ["src", "radio", *self.topology.lmas, *self.topology.mags]
        nodes += [m.name for m in self.mns]
        return tuple(self.ns(n) for n in nodes)

    def mag_index(self, mag: str) -> int:
        return self.topology.mags.index(mag) + 1

    def lma_index(self, lma: str) -> int:
        return self.topology.lmas.index(lma) + 1

    def tunnel(self, lma: str, mag: str) -> TunnelPlan:
        for tunnel in self.tunnels:
            if tunnel.lma == lma and tunnel.mag == mag:
                return tunnel
        raise KeyError((lma, mag))

    def mn(self, name: str) -> MnPlan:
        for mn in self.mns:
            if mn.name == name:
                return mn
        raise KeyError(name)

    def lma_source_if(self) -> str:
        return "src0"

    def lma_backbone_v6(self, lma: str) -> ipaddress.IPv6Interface:
        return ipaddress.IPv6Interface(f"2001:db8:ff::{0x10 + self.lma_index(lma):x}/64")

    def lma_backbone_v4(self, lma: str) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"10.255.0.{10 + self.lma_index(lma)}/24")

    def backbone_port(self, lma: str) -> str:
        return f"l{self.lma_index(lma)}"

    def underlay_network(self, lma: str) -> ipaddress.IPv6Network:
        """Every underlay link of ``lma`` (fd00:k:m::/64 for each MAG m)."""
        return ipaddress.IPv6Network(f"fd00:{self.lma_index(lma):x}::/32")

    def mag_peer_address(self, mag: str) -> ipaddress.IPv6Address:
        """Where ``mag`` takes MAG-to-MAG requests: its underlay address towards the first LMA
        (the other MAGs reach it through that LMA, RFC 7411 §3.3 transport)."""
        return self.tunnel(self.topology.lmas[0], mag).mag_underlay.ip

    def mag_downstreams(self, mag: str, lma: str) -> tuple[str, ...]:
        """Access interfaces of MAG for the MNs anchored at LMA (static mode)."""
        if self.access_bridge:
            return ("acc0",)
        return tuple(m.mag_access_if() for m in self.mns if m.lma == lma)


def most_mns_per_lma(topology: Topology) -> int:
    """The most MNs anchored at one LMA: the access links of the largest MAG instance."""
    return max((sum(1 for m in topology.mns if m.lma == lma) for lma in topology.lmas), default=0)


def access_bridge_needed(setting: str, mag_plane: str, topology: Topology) -> bool:
    """Whether the MAGs' access links are ports of ``acc0`` instead of point-to-point links.

    ``setting`` is ``topology.access_bridge``; ``mag_plane`` the data plane the MAG daemons run
    on with point-to-point links. ``auto``: the bridge only where a MAG instance on mroute would
    need more vifs than a table has (the tunnel plus one per MN anchored at its LMA).
    """
    if setting != "auto":
        return setting == "always"
    return mag_plane == "mroute" and most_mns_per_lma(topology) > MAX_VIFS_PER_TABLE - 1


def make_plan(topology: Topology, run_id: str | None = None, mag_plane: str = "nftables",
              prefix: str = PREFIX) -> Plan:
    """Compute every name and address of a run. Raises ValueError past the address plan.

    ``mag_plane``: the data plane the MAG daemons run on (``planes.decide`` predicts it);
    only ``mroute`` limits the number of access links.
    """
    run_id = run_id or new_run_id()
    if len(topology.lmas) > 150 or len(topology.mags) > 250 or len(topology.mns) > 4000:
        raise ValueError("topology too large for the testbed address plan")
    tunnels = []
    for k, lma in enumerate(topology.lmas, start=1):
        for m, mag in enumerate(topology.mags, start=1):
            tunnels.append(TunnelPlan(
                lma=lma, mag=mag,
                lma_underlay_if=f"u{m}", mag_underlay_if=f"u{k}",
                lma_underlay=ipaddress.IPv6Interface(f"fd00:{k:x}:{m:x}::1/64"),
                mag_underlay=ipaddress.IPv6Interface(f"fd00:{k:x}:{m:x}::2/64"),
                lma_tunnel_if=f"t{m}", mag_tunnel_if=f"tun{k}",
                lma_inner_v6=ipaddress.IPv6Interface(f"fd01:{k:x}:{m:x}::1/64"),
                mag_inner_v6=ipaddress.IPv6Interface(f"fd01:{k:x}:{m:x}::2/64"),
                lma_link_local=ipaddress.IPv6Interface("fe80::1/64"),
                mag_link_local=ipaddress.IPv6Interface("fe80::2/64"),
                lma_inner_v4=ipaddress.IPv4Interface(f"10.{100 + k}.{m}.1/24"),
                mag_inner_v4=ipaddress.IPv4Interface(f"10.{100 + k}.{m}.2/24"),
            ))
    mns = []
    for i, mn in enumerate(topology.mns, start=1):
        third, fourth = 64 + i // 256, i % 256
        mns.append(MnPlan(
            name=mn.name, index=i, lma=mn.lma,
            home_v6=ipaddress.IPv6Interface(f"2001:db8:1:{i:x}::2/64"),
            hnp=ipaddress.IPv6Network(f"2001:db8:1:{i:x}::/64"),
            home_v4=ipaddress.IPv4Interface(f"100.{third}.{fourth}.2/24"),
            gateway_v4=ipaddress.IPv4Interface(f"100.{third}.{fourth}.1/24"),
            mn_if="wlan0", radio_bridge=f"r{i}", radio_mn_port=f"m{i}",
        ))
    return Plan(run_id=run_id, topology=topology, tunnels=tuple(tunnels), mns=tuple(mns),
                access_bridge=access_bridge_needed(topology.access_bridge, mag_plane, topology),
                prefix=prefix)
