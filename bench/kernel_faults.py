"""Recovery times of interface faults: a downstream re-created, the upstream flapping (root).

Each run builds the daemon tests' proxy topology in fresh namespaces
(``hG-kf-…``, removed at the end of the run, also on failure or Ctrl-C),
starts mcproxy-pmip, lets a host join and receive, then plays one fault
(``tests/netns/kernel_fault_steps.py``) and times from the link's return:

- downstream ``d1`` deleted and created again (the daemon sees the removal
  first, or both at once): the General Query on the new link, data at the
  host that joins again;
- upstream ``up0`` down/up, deleted and created again, or both at once: the
  proxy's report for the group on the router's link, data at the host.

Prints median, min and max per fault and family over ``--runs`` runs.

    sudo .venv/bin/python bench/kernel_faults.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.netns.kernel_fault_steps import (CONFIG, FAMILIES, UPSTREAM_FLAPS, Recovery,  # noqa: E402
                                            recreated_downstream, upstream_flap)
from harness import ms_summary  # noqa: E402
from tests.netns.netns_fixtures import namespaces  # noqa: E402
from tests.netns.proxy_harness import build_proxy_topology  # noqa: E402

PREFIX = "hG-kf-"


def one_run(plane: str, fault: Callable) -> Recovery:
    with namespaces(PREFIX) as make, tempfile.TemporaryDirectory(prefix=PREFIX) as tmp:
        os.environ["MCPROXY_PMIP_STATE_DIR"] = os.path.join(tmp, "state")
        topology = build_proxy_topology(make, tmp, PREFIX, plane)
        topo = next(topology)
        try:
            daemon = topo.start_daemon(CONFIG)
            return fault(topo, daemon)
        finally:
            next(topology, None)  # the fixture's teardown: stops the daemons


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--plane", default="nftables", choices=("nftables", "mroute"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    faults: dict[str, tuple[str, Callable]] = {
        "downstream re-created": ("query", lambda t, d: recreated_downstream(t, d, False)),
        "downstream re-created at once": ("query", lambda t, d: recreated_downstream(t, d, True)),
    }
    for how in UPSTREAM_FLAPS:
        faults[f"upstream {how}"] = ("report", lambda t, d, how=how: upstream_flap(t, d, how))
    print(f"plane {args.plane}, {args.runs} runs per row; times from the link's return")
    for name, (signal_name, fault) in faults.items():
        samples = [one_run(args.plane, fault) for _ in range(args.runs)]
        for family in FAMILIES:
            print(f"{name:32} {family.name} {signal_name:6} {ms_summary([s.signalled[family] for s in samples])}")
            print(f"{'':32} {family.name} {'data':6} {ms_summary([s.data[family] for s in samples])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
