"""Run by test_peers.py in a subprocess: a real TCP server and client on loopback, one reactor.

Prints one JSON line with what the client saw.
"""

from __future__ import annotations

import ipaddress
import json
import sys

from twisted.internet import defer, task

from mcproxy_pmip_plugins.pmipv6.peers import PeerAddress, PeerClient, PeerError, PeerServerFactory

CONTEXT = [{"family": "ipv6", "code": 2, "payload": "00000001"}]


@defer.inlineCallbacks
def main(reactor):
    stored = {}
    factory = PeerServerFactory({ipaddress.ip_address("127.0.0.1")}, stored.__setitem__, stored.get)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = PeerClient(reactor, {"mag2": PeerAddress(ipaddress.ip_address("127.0.0.1"), port.getHost().port),
                                  "dead": PeerAddress(ipaddress.ip_address("127.0.0.1"), 1)}, timeout=2)
    seen = {}
    yield client.push("mag2", "mn1", CONTEXT)
    seen["stored"] = stored
    seen["fetched"] = yield client.fetch("mag2", "mn1")
    for name, call in (("unknown_mn", lambda: client.fetch("mag2", "nobody")),
                       ("unreachable", lambda: client.fetch("dead", "mn1")),
                       ("unknown_peer", lambda: client.fetch("mag9", "mn1"))):
        try:
            yield call()
            seen[name] = "no error"
        except PeerError as exc:
            seen[name] = exc.code
    yield port.stopListening()
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    task.react(main)
    sys.exit(0)
