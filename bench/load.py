"""Load scenarios: many groups from many hosts, and the daemon idle.

- ``scale``: ``scale_groups`` groups (2,000 by default) joined in one burst by
  ``scale_hosts`` hosts (30: group k belongs to host k mod 30) while one flow
  sends to all of them round-robin at ``scale_rate`` packets/s (so the data
  figure has a resolution of groups / rate). Measured from the first join
  call: the time until every group was reported on the upstream link, until
  every host received data of each of its groups; then every host closes its
  sockets (the kernel leaves every group) and the time until every group was
  left on the upstream link. The daemon's CPU seconds (``/proc/PID/stat``)
  over the join phase and in total, and its peak RSS (``VmHWM``).
- ``idle``: a few groups joined (4 hosts x 2), no data; after the reports and
  their retransmissions are over, the daemon's CPU time, wakeups (context
  switches) and upstream packets over ``idle_seconds``.
"""

from __future__ import annotations

import time

from capture import JOIN, LEAVE, now
from harness import Bench, ms, stats, wait_for

POLL = 0.05
IDLE_HOSTS = 4
IDLE_GROUPS_PER_HOST = 2
IDLE_QUIET = 3.0        # seconds after the last report before the idle window opens


def _cpu_s(before, after) -> float | None:
    return None if before is None or after is None else round(after[0] - before[0], 3)


def scale(bench: Bench) -> dict:
    options, recorder, daemon = bench.options, bench.recorder, bench.daemon
    hosts = min(options.scale_hosts, bench.topology.hosts)
    total = options.scale_groups
    groups = [bench.group("scale", k) for k in range(total)]
    keys = [bench.packed(g) for g in groups]
    owner = [k % hosts for k in range(total)]
    members = [bench.member(h) for h in range(hosts)]
    flow = bench.source.start(bench.sources[0], groups, options.scale_rate)
    try:
        time.sleep(options.scale_warm)
        cpu0 = daemon.cpu()
        for k in range(total):
            recorder.reset(owner[k], keys[k])
        t0 = now()
        for k in range(total):
            members[owner[k]].join(groups[k])
        join_calls_s = now() - t0
        rss_max = 0
        pending_up, pending_data = set(range(total)), set(range(total))
        deadline = time.monotonic() + options.scale_timeout
        while (pending_up or pending_data) and time.monotonic() < deadline:
            time.sleep(POLL)
            pending_up = {k for k in pending_up if recorder.upstream_after(keys[k], JOIN, t0) is None}
            pending_data = {k for k in pending_data if recorder.arrivals(owner[k], keys[k]).first is None}
            rss_max = max(rss_max, daemon.memory().get("VmRSS", 0))
        cpu1 = daemon.cpu()
        up = [recorder.upstream_after(k, JOIN, t0) for k in keys]
        data = [recorder.arrivals(owner[k], keys[k]).first for k in range(total)]
        first_reports = [recorder.host_report_after(owner[k], keys[k], JOIN, t0) for k in range(total)]
        second_reports = [recorder.host_report_after(owner[k], keys[k], JOIN, t0, nth=1) for k in range(total)]
        tl = now()
        for member in members:
            member.close()
        pending_left = set(range(total))
        deadline = time.monotonic() + options.scale_leave_timeout
        while pending_left and time.monotonic() < deadline:
            time.sleep(POLL)
            pending_left = {k for k in pending_left if recorder.upstream_after(keys[k], LEAVE, tl) is None}
            rss_max = max(rss_max, daemon.memory().get("VmRSS", 0))
        left = [recorder.upstream_after(k, LEAVE, tl) for k in keys]
        cpu2 = daemon.cpu()
        memory = daemon.memory()
    finally:
        bench.source.stop(flow)
        for member in members:
            member.close()
    return {
        "groups": total, "hosts": hosts, "rate_pps": options.scale_rate,
        "data_resolution_ms": round(1e3 * total / options.scale_rate, 1),
        "join_calls_ms": ms(join_calls_s),
        "join_errors": sum(m.errors for m in members),
        "reported": sum(t is not None for t in up),
        "all_reported_ms": ms(max(up) - t0) if None not in up else None,
        "report_to_upstream_ms": stats([ms(u - r) if u and r else None for u, r in zip(up, first_reports)]),
        "upstream_after_host_retransmission": sum(
            1 for u, r2 in zip(up, second_reports) if u is not None and r2 is not None and u > r2),
        "data_received": sum(t is not None for t in data),
        "all_data_ms": ms(max(data) - t0) if None not in data else None,
        "left": sum(t is not None for t in left),
        "all_left_ms": ms(max(left) - tl) if None not in left else None,
        "cpu_join_s": _cpu_s(cpu0, cpu1),
        "cpu_total_s": _cpu_s(cpu0, cpu2),
        "rss_max_kB": rss_max or None,
        "vmhwm_kB": memory.get("VmHWM"),
    }


def idle(bench: Bench) -> dict:
    options, recorder, daemon = bench.options, bench.recorder, bench.daemon
    hosts = min(IDLE_HOSTS, bench.topology.hosts)
    members = [bench.member(h) for h in range(hosts)]
    groups = [bench.group("idle", h * IDLE_GROUPS_PER_HOST + j)
              for h in range(hosts) for j in range(IDLE_GROUPS_PER_HOST)]
    keys = [bench.packed(g) for g in groups]
    try:
        t0 = now()
        for k, group in enumerate(groups):
            members[k // IDLE_GROUPS_PER_HOST].join(group)
        wait_for(lambda: all(recorder.upstream_after(key, JOIN, t0) for key in keys), 10.0, POLL)
        reported = sum(recorder.upstream_after(key, JOIN, t0) is not None for key in keys)
        time.sleep(IDLE_QUIET)
        cpu0, status0, packets0 = daemon.cpu(), daemon.memory(), recorder.upstream_packets
        time.sleep(options.idle_seconds)
        cpu1, status1, packets1 = daemon.cpu(), daemon.memory(), recorder.upstream_packets
    finally:
        for member in members:
            member.close()
    window = options.idle_seconds
    switches = None
    if status0 and status1:
        switches = sum(status1[k] - status0[k] for k in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))
    precise = None if cpu0 is None or cpu1 is None else (cpu1[1] - cpu0[1]) * 1e-9
    return {
        "window_s": window, "groups": len(groups), "reported": reported,
        "cpu_s": _cpu_s(cpu0, cpu1),
        "cpu_runtime_s": None if precise is None else round(precise, 4),
        "cpu_pct": None if precise is None else round(100.0 * precise / window, 4),
        "wakeups_per_s": None if switches is None else round(switches / window, 2),
        "upstream_packets": packets1 - packets0,
    }
