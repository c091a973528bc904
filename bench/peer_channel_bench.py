"""Memory and CPU of the pmipv6 peer channel's server under large pushes (no root, no network).

Each run feeds ``--pushes`` push requests of about ``--line-bytes`` each (one
per connection, one MN each, from one configured peer) through the real
server protocol (peers.py) into the real context store (context_store.py,
default 8 MiB cap), then one deeply nested request and one with a
5,000-digit number. Printed per figure: median, min and max over the runs:

- bytes Python holds after the pushes (tracemalloc, the request lines themselves
  excluded: they are built before tracing starts), and the store's own count;
- pushes accepted and refused (``store-full``);
- milliseconds to answer one push, and one malformed request.

    .venv/bin/python bench/peer_channel_bench.py --runs 5
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import statistics
import time
import tracemalloc

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mcproxy_pmip_plugins.pmipv6.context_store import ContextStore
from mcproxy_pmip_plugins.pmipv6.peers import PeerAddress, PeerServerFactory

PEER = "192.0.2.2"


def one_run(pushes: int, line_bytes: int) -> dict[str, float]:
    clock = Clock()
    store = ContextStore(clock)
    replies: list[bytes] = []

    def on_push(peer, mn_id, entries):
        return None if store.put((mn_id, peer), entries) else "store-full"

    factory = PeerServerFactory({"mag2": PeerAddress(ipaddress.ip_address(PEER))}, on_push,
                                lambda peer, mn_id: "unknown-mn", clock, None)
    payload = "00" * ((line_bytes - 200) // 2)
    lines = [json.dumps({"op": "push", "mn_id": f"mn{i}", "context": [
        {"family": "ipv6", "code": 2, "payload": payload}]}).encode() + b"\n" for i in range(pushes)]
    malformed = [b"[" * 200_000 + b"\n",
                 b'{"op": "push", "mn_id": "m", "context": [{"family": "ipv4", "code": ' + b"9" * 5000 + b"}]}\n"]

    def send(line: bytes) -> float:
        address = IPv4Address("TCP", PEER, 40000)
        protocol = factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        started = time.perf_counter()
        protocol.dataReceived(line)
        elapsed = time.perf_counter() - started
        protocol.connectionLost(None)
        replies.append(transport.value())
        return elapsed

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    push_times = [send(line) for line in lines]
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    bad_times = [send(line) for line in malformed]
    refused = sum(b'"store-full"' in r for r in replies[:pushes])
    assert all(b'"bad-request"' in r for r in replies[pushes:]), replies[pushes:]
    return {"held_mib": held / 2**20, "store_mib": store.bytes / 2**20, "accepted": pushes - refused,
            "refused": refused, "push_ms": statistics.median(push_times) * 1000,
            "malformed_ms": max(bad_times) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--line-bytes", type=int, default=1 << 20)
    args = parser.parse_args()
    runs = [one_run(args.pushes, args.line_bytes) for _ in range(args.runs)]
    print(f"{args.pushes} pushes of {args.line_bytes} bytes, {args.runs} runs: median (min..max)")
    for key in runs[0]:
        values = [run[key] for run in runs]
        print(f"  {key:13s} {statistics.median(values):10.2f}  ({min(values):.2f}..{max(values):.2f})")


if __name__ == "__main__":
    main()
