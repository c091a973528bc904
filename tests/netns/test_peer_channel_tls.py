"""The MAG-to-MAG context channel's mutual TLS between real daemons (docs/peer-tls.md).

    hDu1/hDup0 [ mag1 ] hDd1/hDm1      (up: the other ends, unaddressed access peers)
    hDu2/hDup0 [ mag2 ] hDd1/hDm2
    mag1 hDp0 (10.99.0.1) <-- TLS 7411 --> hDp0 (10.99.0.2) mag2

Each MAG's daemon holds a key and certificate from peer_pki. An MN's context
(given at its first attach) goes mag1 -> mag2 by push (handover-prepare, the
attach at mag2 names mag1), then back mag2 -> mag1 by fetch (the attach at
mag1 names mag2 after mag2 processed the detach). Then mag2 is restarted with
a certificate of a foreign CA, and with a certificate of the right CA but
another MAG's name: every transfer either way is refused, mag1 logs the
refusal, and its state is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mcproxy_pmip.control.client import ControlError
from mcproxy_pmip_plugins.pmipv6 import peer_pki
from tests.netns.netns_fixtures import Netns, address, netns_factory, veth  # noqa: F401 (fixture)
from tests.netns.proxy_harness import Daemon, ProxyTopology, wait_for
from tests.unit.plugins.test_pmipv6_transfer import context_entries

pytestmark = pytest.mark.netns

PREFIX = "hD"
ADDRESS = {"mag1": "10.99.0.1", "mag2": "10.99.0.2"}


def config(name: str, own: str, peer: str, tls: dict[str, str]) -> str:
    lines = ["protocols: [IGMPv3, MLDv2]", "plugins:", "  pmipv6:", f"    name: {name}",
             f"    listen: \"{ADDRESS[own]}:7411\"", f"    peers: {{{peer}: \"{ADDRESS[peer]}:7411\"}}",
             *(f"    {key}: {path}" for key, path in tls.items())]
    return "\n".join(lines) + "\n"


@dataclass
class Domain:
    mags: dict[str, Netns]
    harness: ProxyTopology
    pki: dict[str, dict[str, str]]
    daemons: dict[str, Daemon]

    def start(self, mag: str, tls: dict[str, str], name: str | None = None) -> Daemon:
        """The daemon of ``mag`` (its namespace and address), calling itself ``name``."""
        peer = "mag2" if mag == "mag1" else "mag1"
        self.daemons[mag] = self.harness.start_daemon(config(name or mag, mag, peer, tls),
                                                      name=f"{mag}-{len(self.harness.daemons)}",
                                                      ns=self.mags[mag])
        return self.daemons[mag]

    def attach(self, mag: str, mn_id: str, **extra):
        return self.daemons[mag].request("binding", event="attach", mn_id=mn_id, access_if="hDd1",
                                         tunnel_if="hDup0", **extra)


@pytest.fixture
def domain(netns_factory, tmp_path) -> Iterator[Domain]:  # noqa: F811
    up = netns_factory(PREFIX)
    mags = {"mag1": netns_factory(PREFIX), "mag2": netns_factory(PREFIX)}
    for index, mag in enumerate(mags.values(), start=1):
        veth(up, f"hDu{index}", mag, "hDup0")
        address(mag, "hDup0", f"10.1.{index}.2/24", f"fd01:{index}::2/64")
        veth(mag, "hDd1", up, f"hDm{index}")
        address(mag, "hDd1", f"10.2.{index}.1/24", f"fd02:{index}::1/64")
    veth(mags["mag1"], "hDp0", mags["mag2"], "hDp0")
    address(mags["mag1"], "hDp0", "10.99.0.1/24")
    address(mags["mag2"], "hDp0", "10.99.0.2/24")
    for mag in mags.values():
        for name in ("hDup0", "hDd1"):
            wait_for(lambda ns=mag, name=name: "fe80::" in ns.ip("-6", "addr", "show", "dev", name), 5,
                     f"a link-local address on {name} in {mag.name}")
    pki = peer_pki.make_domain(tmp_path / "pki", ["mag1", "mag2", "mag3"])
    pki["foreign-mag2"] = peer_pki.make_domain(tmp_path / "foreign", ["mag2"])["mag2"]
    harness = ProxyTopology(up, mags["mag1"], [], str(tmp_path))
    bed = Domain(mags, harness, pki, {})
    try:
        yield bed
    finally:
        codes = {daemon.log_path: daemon.stop() for daemon in harness.daemons}
        assert set(codes.values()) <= {0}, {p: Path(p).read_text()[-2000:] for p in codes}


def test_a_context_goes_both_ways_over_mutual_tls(domain) -> None:
    mag1, mag2 = domain.start("mag1", domain.pki["mag1"]), domain.start("mag2", domain.pki["mag2"])
    assert "channel=mutual-tls" in mag1.log()
    assert domain.attach("mag1", "mn1", context=context_entries())["context_records"] == 2
    assert mag1.request("handover-prepare", mn_id="mn1", target="mag2")["pushed"] == 2
    mag1.request("binding", event="detach", mn_id="mn1")
    there = domain.attach("mag2", "mn1", previous_mag="mag1")
    assert (there["context"], there["records"]) == ("pushed", 2), there
    assert "context-pushed mn=mn1 peer=mag1 entries=2" in mag2.log()
    mag2.request("binding", event="detach", mn_id="mn1", next_mag="mag1")
    back = domain.attach("mag1", "mn1", previous_mag="mag2")
    assert (back["context"], back["records"]) == ("fetched", 2), back
    assert "context-fetched mn=mn1 peer=mag1 next_mag=mag1" in mag2.log()
    assert len(mag1.request("context-export", mn_id="mn1")["context"]) == 2


@pytest.mark.parametrize(("case", "client_code", "server_reason"), [
    ("foreign-ca", "peer-tls-failed", "tls-failed"),
    ("wrong-name", "peer-tls-failed", "unknown-peer"),
])
def test_a_peer_without_a_valid_certificate_for_its_name_is_refused(domain, case, client_code,
                                                                    server_reason) -> None:
    mag1 = domain.start("mag1", domain.pki["mag1"])
    if case == "foreign-ca":  # a "mag2" certificate, signed by a CA mag1 does not trust
        rogue = domain.start("mag2", domain.pki["foreign-mag2"])
    else:  # a certificate of mag1's CA, for a MAG that is not mag1's peer
        rogue = domain.start("mag2", domain.pki["mag3"], name="mag3")
    domain.attach("mag1", "mn1", context=context_entries())
    with pytest.raises(ControlError) as info:
        mag1.request("handover-prepare", mn_id="mn1", target="mag2")
    assert info.value.code == client_code, info.value
    mag1.request("binding", event="detach", mn_id="mn1")
    stolen = domain.attach("mag2", "mn1", previous_mag="mag1")
    assert (stolen["context"], stolen["records"]) == ("unavailable", 0), stolen
    wait_for(lambda: f"peer_refused reason={server_reason}" in mag1.log(), 5,
             f"mag1's log of the {server_reason} refusal")
    assert "context-fetched" not in mag1.log()
    assert rogue.request("bindings")[0]["mn_id"] == "mn1", "the rogue's attach itself went through"
    assert rogue.stop() == 0
    domain.start("mag2", domain.pki["mag2"])
    assert domain.attach("mag2", "mn1", previous_mag="mag1")["context"] == "fetched", \
        "the refused fetches did not use up the context for the real mag2"
