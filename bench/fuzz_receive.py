"""Fuzz the daemon's receive path: N mutated IGMP / MLD packets, zero escapes expected (no root).

Each packet goes through what the daemon does with a frame from its packet
socket: decode (``kernel.igmp_socket`` / ``kernel.mld_socket``), the
Receiver, the Proxy's delivery to its instance, the membership engine, and
the in-memory data plane and sockets, on ``task.Clock``
(``tests/unit/proxy/receive_fuzz.py``). Prints how many packets were
accepted, how many each counted reason dropped, the escapes (exceptions
other than ``MalformedPacket`` / ``ProtocolViolation``, and ERROR log
records), and the rate in packets per second over chunks of ``--chunk``
packets (median, min, max).

    .venv/bin/python bench/fuzz_receive.py                      # 1,000,000 packets, about 2 minutes
    .venv/bin/python bench/fuzz_receive.py --packets 100000 --seed 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.unit.proxy.receive_fuzz import ReceiveFuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=10_000, help="packets per rate sample")
    args = parser.parse_args()
    fuzz = ReceiveFuzz(args.seed)
    rates = []
    started = time.perf_counter()
    try:
        left = args.packets
        while left > 0:
            count = min(args.chunk, left)
            began = time.perf_counter()
            result = fuzz.feed(count)
            rates.append(count / (time.perf_counter() - began))
            left -= count
    finally:
        fuzz.close()
    elapsed = time.perf_counter() - started
    print(f"seed {args.seed}: {result.packets} packets in {elapsed:.1f} s")
    print(f"accepted {result.accepted}, dropped {result.dropped_total}, escapes {len(result.escapes)}")
    print("dropped by reason:")
    for reason, count in result.dropped.most_common():
        print(f"  {reason:36} {count:9}")
    print(f"packets/s over {len(rates)} chunks of {args.chunk}: median {statistics.median(rates):.0f}, "
          f"min {min(rates):.0f}, max {max(rates):.0f}")
    for escape in result.escapes[:20]:
        print(f"ESCAPE {escape[:500]}")
    return 1 if result.escapes else 0


if __name__ == "__main__":
    sys.exit(main())
