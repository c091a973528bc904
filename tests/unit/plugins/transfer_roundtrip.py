"""Run by test_pmipv6_transfer.py (``python -m tests.unit.plugins.transfer_roundtrip DIR``): two
pmipv6 plugins, each on the real facade of its own MemoryProxy (real_facade.py; the proxies run
on their Clocks, the peer channel on one real reactor), peers of each other on loopback over
mutual TLS (certificates made by peer_pki in DIR).

mag1 holds mn1 (context given at attach), pushes it to mag2 (handover-prepare),
mag2's attach (naming mag1) uses it; then mn2 leaves mag1 and mag2 fetches its
context (reactive); before that, a push to a peer nobody listens on fails; both plugins stop.
Prints one JSON line with what happened.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

from twisted.internet import defer, task

from mcproxy_pmip.plugin import Arguments, CommandError
from mcproxy_pmip_plugins.pmipv6 import Pmipv6Plugin, peer_pki
from mcproxy_pmip.proxy.api import ProxyApi
from tests.unit.plugins.real_facade import proxy_and_facade
from tests.unit.plugins.test_pmipv6_transfer import context_entries
from tests.unit.proxy.memory_proxy import MemoryProxy


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(reactor, name: str, port: int, peers: dict[str, str],
          tls: dict[str, str]) -> tuple[Pmipv6Plugin, MemoryProxy, ProxyApi]:
    memory, facade = proxy_and_facade(["tun0", "a-mn1", "a-mn2"], reactor=reactor)
    plugin = Pmipv6Plugin()
    plugin.start(facade, {"name": name, "listen": f"127.0.0.1:{port}", "peers": peers, **tls})
    return plugin, memory, facade


def run(plugin: Pmipv6Plugin, cmd: str, **arguments):
    return defer.maybeDeferred(plugin.commands()[cmd], Arguments(arguments))


@defer.inlineCallbacks
def main(reactor, directory: str):
    tls = peer_pki.make_domain(Path(directory), ["mag1", "mag2"])
    port1, port2, dead = free_port(), free_port(), free_port()
    mag1, proxy1, _ = start(reactor, "mag1", port1, {"mag2": f"127.0.0.1:{port2}", "mag3": f"127.0.0.1:{dead}"},
                            tls["mag1"])
    mag2, proxy2, facade2 = start(reactor, "mag2", port2, {"mag1": f"127.0.0.1:{port1}"}, tls["mag2"])
    seen = {}
    for mn_id in ("mn1", "mn2"):
        yield run(mag1, "binding", event="attach", mn_id=mn_id, access_if=f"a-{mn_id}",
                  tunnel_if="tun0", context=context_entries())
    seen["prepare"] = yield run(mag1, "handover-prepare", mn_id="mn1", target="mag2")
    yield run(mag1, "binding", event="detach", mn_id="mn1")
    seen["predictive"] = yield run(mag2, "binding", event="attach", mn_id="mn1", access_if="a-mn1",
                                   tunnel_if="tun0", previous_mag="mag1")
    try:
        yield run(mag1, "handover-prepare", mn_id="mn2", target="mag3")
        seen["unreachable"] = "no error"
    except CommandError as exc:
        seen["unreachable"] = exc.code
    yield run(mag1, "binding", event="detach", mn_id="mn2")
    seen["reactive"] = yield run(mag2, "binding", event="attach", mn_id="mn2", access_if="a-mn2",
                                 tunnel_if="tun0", previous_mag="mag1")
    seen["imports_at_mag2"] = sum(len(records) for link in ("a-mn1", "a-mn2")
                                  for _family, _version, records in facade2.export_records("pmip-tun0", link))
    yield defer.gatherResults([defer.maybeDeferred(mag1.stop), defer.maybeDeferred(mag2.stop)])
    proxy1.stop()
    proxy2.stop()
    seen["stopped"] = True
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    task.react(main, [sys.argv[1]])
