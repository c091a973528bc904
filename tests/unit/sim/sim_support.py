"""The hand-computed scenario of the simulator's gap tests: one MN, one group, two MAGs.

Delays: access 1 ms, tunnel 2 ms, LMA processing 1 ms, binding signalling 5 ms,
L2 outage 50 ms, no loss. The MN leaves mag1 for mag2 at 30 s and returns at 60 s.
"""

from __future__ import annotations

from pathlib import Path

from mcproxy_pmip_sim.scenario import Delays, Mobility, Scenario

OUTAGE_MS = 50.0


def scenario(tmp_path: Path) -> Scenario:
    trace = tmp_path / "moves.trace"
    trace.write_text("# time mn cell\n0 0 0\n30 0 1\n60 0 0\n")
    return Scenario(lmas=1, mags=2, grid_columns=2, mns=1, groups=1, groups_per_mn=1,
                    stream_rate=100.0, duration_interval=90.0,
                    l2_outage_min_interval=0.05, l2_outage_max_interval=0.05,
                    prepare_lead_interval=0.1,
                    delays=Delays(access_interval=0.001, tunnel_interval=0.002,
                                  lma_processing_interval=0.001, signalling_interval=0.005),
                    mobility=Mobility(model="trace", trace_file=str(trace)))
