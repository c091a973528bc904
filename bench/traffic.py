"""Multicast data sources for the benchmarks: one paced UDP sender process in the upstream namespace.

The sender runs as its own process (``TrafficSource`` starts it with
``ip netns exec``), so its pacing does not compete with the measuring
process for the GIL, and its CPU time can be read on its own
(``forwarding_cost`` relies on that: the kernel forwards a packet in the
softirq that the sending system call runs).

Each packet is UDP to ``PORT`` with TTL / hop limit ``TTL``; its payload is
``MAGIC``, the flow's sequence number (8 octets) and the send time
(CLOCK_REALTIME in ns, 8 octets). A flow sends round-robin over its groups
at a fixed rate from one source address, one packet at a time or in bursts
of ``burst`` (fewer wakeups: a steadier CPU cost per packet); when the
sender falls behind by more than ``MAX_LAG`` it skips packets instead of
bursting (counted).

Commands are JSON lines on the process's stdin, each answered by one JSON
line on stdout::

    {"op": "start", "flow": "f1", "source": "10.1.0.2", "groups": ["239.1.0.1"], "rate": 1000, "burst": 1}
    {"op": "stop", "flow": "f1"}      -> {"flow": "f1", "sent": 812, "skipped": 0, "errors": 0}
    {"op": "quit"}

    python bench/traffic.py --family 4 --interface e0    # (inside the namespace)
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field

PORT = 5001
PORT_BYTES = PORT.to_bytes(2, "big")
MAGIC = b"PXB1"
TTL = 16
MAX_LAG = 0.005      # seconds of backlog sent at once; beyond that packets are skipped

_HEADER = struct.Struct("!4sQQ")


@dataclass
class Flow:
    """One paced stream from one source address over one or more groups."""

    sock: socket.socket
    destinations: list[tuple]
    rate: float
    started: float
    burst: int = 1
    sent: int = 0
    skipped: int = 0
    errors: int = 0
    position: int = 0

    def next_due(self) -> float:
        """When the next ``burst`` packets are due."""
        return self.started + (self.sent + self.skipped + self.burst - 1) / self.rate

    def send_due(self, t: float) -> None:
        due = int((t - self.started) * self.rate) + 1 - self.sent - self.skipped
        backlog = max(self.burst, int(self.rate * MAX_LAG))
        if due > backlog:
            self.skipped += due - backlog
            due = backlog
        count = len(self.destinations)
        for _ in range(due):
            destination = self.destinations[self.position]
            self.position = (self.position + 1) % count
            try:
                self.sock.sendto(_HEADER.pack(MAGIC, self.sent, time.time_ns()), destination)
            except OSError:
                self.errors += 1
            self.sent += 1


@dataclass
class Sender:
    """The process side: sockets per source address, flows by name."""

    family: int
    interface: str
    flows: dict[str, Flow] = field(default_factory=dict)
    sockets: dict[str, socket.socket] = field(default_factory=dict)

    def source_socket(self, source: str) -> socket.socket:
        sock = self.sockets.get(source)
        if sock is not None:
            return sock
        index = socket.if_nametoindex(self.interface)
        if self.family == 4:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, TTL)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                            struct.pack("4s4si", bytes(4), socket.inet_aton(source), index))
            sock.bind((source, 0))
        else:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, TTL)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            sock.bind((source, 0, 0, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sockets[source] = sock
        return sock

    def command(self, request: dict) -> dict:
        op = request.get("op")
        if op == "start":
            destinations = [(g, PORT) if self.family == 4 else (g, PORT, 0, 0) for g in request["groups"]]
            self.flows[request["flow"]] = Flow(self.source_socket(request["source"]), destinations,
                                               float(request["rate"]), time.monotonic(),
                                               int(request.get("burst", 1)))
            return {"flow": request["flow"], "started": True}
        if op == "stop":
            flow = self.flows.pop(request["flow"])
            return {"flow": request["flow"], "sent": flow.sent, "skipped": flow.skipped, "errors": flow.errors}
        return {"error": f"unknown op {op!r}"}

    def serve(self) -> None:
        pending = b""
        while True:
            t = time.monotonic()
            for flow in self.flows.values():
                if flow.next_due() <= t:
                    flow.send_due(t)
            due = min((f.next_due() for f in self.flows.values()), default=t + 1.0)
            readable, _, _ = select.select([0], [], [], max(0.0, due - time.monotonic()))
            if not readable:
                continue
            chunk = os.read(0, 65536)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                if request.get("op") == "quit":
                    return
                sys.stdout.write(json.dumps(self.command(request)) + "\n")
                sys.stdout.flush()


class TrafficSource:
    """The benchmark side: starts the sender process in ``ns`` and talks to it."""

    def __init__(self, registry, ns, family: int, interface: str = "e0") -> None:
        self._registry = registry
        self.process = registry.popen(ns, [sys.executable, os.path.abspath(__file__), "--family", str(family),
                                           "--interface", interface],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._names = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def _ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"traffic source exited ({self.process.poll()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"traffic source: {reply['error']}")
        return reply

    def start(self, source: str, groups: list[str], rate: float, burst: int = 1) -> str:
        """Start a flow (``burst`` packets at a time); its name, for ``stop``."""
        self._names += 1
        name = f"f{self._names}"
        self._ask({"op": "start", "flow": name, "source": source, "groups": groups, "rate": rate, "burst": burst})
        return name

    def stop(self, flow: str) -> dict:
        """Stop a flow; ``{"sent", "skipped", "errors"}``."""
        return self._ask({"op": "stop", "flow": flow})

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.process.stdin.close()
        self._registry.stop_process(self.process)
        self.process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="paced multicast UDP sender (commands on stdin)")
    parser.add_argument("--family", type=int, choices=(4, 6), required=True)
    parser.add_argument("--interface", default="e0")
    args = parser.parse_args()
    Sender(args.family, args.interface).serve()


if __name__ == "__main__":
    main()
