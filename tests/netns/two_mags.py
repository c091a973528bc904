"""Two MAGs under one tunnel-side namespace, with the MAG-to-MAG channel between them (mutual TLS).

         up (LMA side) --u1/up0-- [ mag1 ] --d1/e0-- mn at mag1
                       --u2/up0-- [ mag2 ] --d1/e0-- mn at mag2
                      mag1 p0 (fd09::1) <-- TLS 7411 --> p0 (fd09::2) mag2

With ``shared_source`` the tunnel-side ends u1 and u2 are ports of one bridge
``br0`` (10.1.0.1, fd01::1): a packet sent there reaches both MAGs byte for
byte, as an LMA's packet reaches every MAG it tunnels to. ``settings`` adds
lines to both MAGs' pmipv6 plugin settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from mcproxy_pmip_plugins.pmipv6 import peer_pki
from tests.netns.netns_fixtures import Netns, address, veth
from tests.netns.proxy_harness import Daemon, ProxyTopology, wait_for

SHARED_SOURCE = ("10.1.0.1", "fd01::1")


def config(name: str, own: str, peer_name: str, peer: str, tls: dict[str, str],
           settings: Mapping[str, str] = {}) -> str:
    return (f"protocols: [IGMPv3, MLDv2]\n"
            f"plugins:\n"
            f"  pmipv6:\n"
            f"    name: {name}\n"
            f"    listen: \"[{own}]:7411\"\n"
            f"    peers: {{{peer_name}: \"[{peer}]:7411\"}}\n"
            + "".join(f"    {key}: {value}\n" for key, value in {**tls, **settings}.items()))


@dataclass
class TwoMags:
    up: Netns
    mags: dict[str, Netns]
    mns: dict[str, Netns]
    daemons: dict[str, Daemon]
    harness: ProxyTopology  # its start_daemon and join, used in any namespace

    def attach(self, mag: str, mn_id: str, **extra):
        return self.daemons[mag].request("binding", event="attach", mn_id=mn_id, access_if="d1",
                                         tunnel_if="up0", **extra)


def build_two_mags(netns_factory, tmp_path, prefix: str, settings: Mapping[str, str] = {},
                   shared_source: bool = False) -> Iterator[TwoMags]:
    """The topology with both daemons running; stops them after (both must exit 0)."""
    up = netns_factory(prefix)
    mags = {"mag1": netns_factory(prefix), "mag2": netns_factory(prefix)}
    mns = {"mag1": netns_factory(prefix), "mag2": netns_factory(prefix)}
    if shared_source:
        up.ip("link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        up.ip("link", "set", "br0", "up")
        address(up, "br0", "10.1.0.1/16", "fd01::1/16")
    for index, (name, mag) in enumerate(mags.items(), start=1):
        veth(up, f"u{index}", mag, "up0")
        if shared_source:
            up.ip("link", "set", f"u{index}", "master", "br0")
        else:
            address(up, f"u{index}", f"10.1.{index}.1/24", f"fd01:{index}::1/64")
        address(mag, "up0", f"10.1.{index}.2/24", f"fd01:{index}::2/64")
        veth(mag, "d1", mns[name], "e0")
        address(mag, "d1", f"10.2.{index}.1/24", f"fd02:{index}::1/64")
        address(mns[name], "e0", f"10.2.{index}.2/24", f"fd02:{index}::2/64")
        mns[name].ip("route", "add", "default", "via", f"10.2.{index}.1")
        mns[name].ip("-6", "route", "add", "default", "via", f"fd02:{index}::1")
        mag.sysctl("net.ipv6.conf.all.forwarding", 1)
        mag.sysctl("net.ipv4.ip_forward", 1)
    veth(mags["mag1"], "p0", mags["mag2"], "p0")
    address(mags["mag1"], "p0", "fd09::1/64")
    address(mags["mag2"], "p0", "fd09::2/64")
    tunnel_side = ("br0",) if shared_source else ("u1", "u2")
    for ns, name in (*((up, n) for n in tunnel_side), *((m, n) for m in mags.values() for n in ("up0", "d1")),
                     *((mn, "e0") for mn in mns.values())):
        wait_for(lambda ns=ns, name=name: "fe80::" in ns.ip("-6", "addr", "show", "dev", name), 5,
                 f"a link-local address on {name} in {ns.name}")
    # The harness' daemon starter, once per MAG namespace (it stops nothing itself).
    starter = ProxyTopology(up, mags["mag1"], list(mns.values()), str(tmp_path))
    tls = peer_pki.make_domain(tmp_path / "pki", ["mag1", "mag2"])
    daemons = {
        "mag1": starter.start_daemon(config("mag1", "fd09::1", "mag2", "fd09::2", tls["mag1"], settings),
                                     name="mag1", ns=mags["mag1"]),
        "mag2": starter.start_daemon(config("mag2", "fd09::2", "mag1", "fd09::1", tls["mag2"], settings),
                                     name="mag2", ns=mags["mag2"]),
    }
    try:
        yield TwoMags(up, mags, mns, daemons, starter)
    finally:
        codes = {name: daemon.stop() for name, daemon in daemons.items()}
        assert codes == {"mag1": 0, "mag2": 0}, {n: daemons[n].log()[-2000:] for n in codes}
    assert not any(os.path.exists(d.control) for d in daemons.values()), "a control socket was left"
