"""Time from a restart after kill -9 mid-handover to data at the MN again (root).

Each run builds the daemon tests' proxy topology in fresh namespaces
(``hF-rr-…``, removed at the end of the run, also on failure or Ctrl-C),
runs mcproxy-pmip with the pmipv6 plugin, binds the MN on d1, starts its
handover to d2 and kills the daemon with SIGKILL at one step
(``tests/netns/handover_crash.py``). It then starts the daemon again on the
same files, re-sends the attach and times:

- restart -> the control socket answers (leftover clean-up and start-up),
- attach -> first data on the MN's link, with the context the signalling kept
  (``context``) or from the MN's answer to the General Query (``query``,
  Max Response Time 1 s in the configuration),
- their sum: restart -> forwarding again.

Prints median, min and max per kill point and mode over ``--runs`` runs.

    sudo .venv/bin/python bench/restart_recovery.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.netns.handover_crash import KILL_POINTS, crash_during_handover  # noqa: E402
from harness import ms_summary  # noqa: E402
from tests.netns.netns_fixtures import namespaces  # noqa: E402
from tests.netns.proxy_harness import build_proxy_topology  # noqa: E402

PREFIX = "hF-rr-"


def one_run(plane: str, kill_point: str, with_context: bool) -> tuple[float, float]:
    with namespaces(PREFIX) as make, tempfile.TemporaryDirectory(prefix=PREFIX) as tmp:
        topology = build_proxy_topology(make, tmp, PREFIX, plane)
        topo = next(topology)
        try:
            recovery = crash_during_handover(topo, kill_point, with_context=with_context)
        finally:
            next(topology, None)  # the fixture's teardown: stops the daemons
        return recovery.ready_interval, recovery.forwarding_interval


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--plane", default="nftables", choices=("nftables", "mroute"))
    parser.add_argument("--kill-points", nargs="*", default=list(KILL_POINTS), choices=KILL_POINTS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    print(f"plane {args.plane}, {args.runs} runs per row")
    for kill_point in args.kill_points:
        for mode in ("context", "query"):
            samples = [one_run(args.plane, kill_point, mode == "context") for _ in range(args.runs)]
            ready = [r for r, _ in samples]
            data = [d for _, d in samples]
            total = [r + d for r, d in samples]
            print(f"{kill_point:13} {mode:8} restart->answering {ms_summary(ready)}")
            print(f"{'':13} {'':8} attach->data      {ms_summary(data)}")
            print(f"{'':13} {'':8} restart->data     {ms_summary(total)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
