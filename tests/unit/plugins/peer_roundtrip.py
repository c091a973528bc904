"""Run by test_peers.py in a subprocess (``peer_roundtrip.py DIR``): a real mutual-TLS server
and clients on loopback, one reactor, certificates made by peer_pki in DIR.

The server is "mag2"; its one configured peer is "mag1" at 127.0.0.1. Clients:
mag1 (push, fetch, unknown MN), a dead port, an unconfigured peer name, a
client whose certificate comes from a foreign CA, one whose certificate is
valid but names a MAG the server does not know ("intruder"), one that calls
the server by a wrong name, and a plaintext one. Prints one JSON line.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

from twisted.internet import defer, task

from mcproxy_pmip_plugins.pmipv6 import peer_pki
from mcproxy_pmip_plugins.pmipv6.peer_tls import PeerCredentials, load_credentials
from mcproxy_pmip_plugins.pmipv6.peers import PeerAddress, PeerClient, PeerError, PeerServerFactory, entries_json

CONTEXT = [{"family": "ipv6", "code": 2, "payload": "00000001"}]
LOOPBACK = ipaddress.ip_address("127.0.0.1")


@defer.inlineCallbacks
def main(reactor, directory: str):
    files = peer_pki.make_domain(Path(directory) / "ours", ["mag1", "mag2", "intruder"])
    foreign = peer_pki.make_domain(Path(directory) / "other", ["mag1"])["mag1"]
    creds = {name: load_credentials(*f.values()) for name, f in files.items()}
    stored, held = [], {}

    def on_push(peer, mn_id, entries, lma=None):
        stored.append([peer, mn_id, entries_json(entries)])
        held[mn_id] = (peer, entries)

    def on_fetch(peer, mn_id):
        return held[mn_id][1] if mn_id in held else "unknown-mn"

    factory = PeerServerFactory({"mag1": PeerAddress(LOOPBACK, 1)}, on_push, on_fetch, reactor, creds["mag2"])
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    here = PeerAddress(LOOPBACK, port.getHost().port)
    mag1 = PeerClient(reactor, {"mag2": here, "dead": PeerAddress(LOOPBACK, 1), "mag3": here},
                      timeout=5, credentials=creds["mag1"])
    foreign_own = load_credentials(foreign["tls_ca"], foreign["tls_cert"], foreign["tls_key"]).own
    outsiders = {
        "foreign_ca": PeerClient(reactor, {"mag2": here}, 5, PeerCredentials(creds["mag1"].ca, foreign_own,
                                                                             frozenset({"mag1"}))),
        "wrong_name_at_server": PeerClient(reactor, {"mag2": here}, 5, creds["intruder"]),
        "plaintext_to_tls": PeerClient(reactor, {"mag2": here}, 2, None),
    }
    seen = {}
    yield mag1.push("mag2", "mn1", CONTEXT)
    seen["stored"] = stored
    fetched = yield mag1.fetch("mag2", "mn1")
    seen["fetched"], seen["fetched_by"] = entries_json(fetched), held["mn1"][0]
    calls = {"unknown_mn": lambda: mag1.fetch("mag2", "nobody"),
             "unreachable": lambda: mag1.fetch("dead", "mn1"),
             "unknown_peer": lambda: mag1.fetch("mag9", "mn1"),
             "wrong_server_name": lambda: mag1.fetch("mag3", "mn1"),
             **{name: (lambda c=client: c.fetch("mag2", "mn1")) for name, client in outsiders.items()}}
    for name, call in calls.items():
        try:
            yield call()
            seen[name] = "no error"
        except PeerError as exc:
            seen[name] = exc.code
    for _ in range(100):  # the server's side of the last connections closes after the clients'
        if factory.connections == 0:
            break
        yield task.deferLater(reactor, 0.05, lambda: None)
    seen["connections_left"] = factory.connections
    seen["refusals"] = dict(factory.refusals.counts)
    factory.refusals.close()
    yield port.stopListening()
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    task.react(main, [sys.argv[1]])
