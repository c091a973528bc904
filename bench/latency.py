"""Latency and filtering scenarios: join while data flows, leave, INCLUDE / EXCLUDE source filters.

All on host 0, all times from kernel timestamps (``capture``):

- ``join_latency`` (repeated ``reps`` times, a new group each time): the
  source already sends to G at ``latency_rate`` packets/s; host 0's kernel
  joins G. Measured from the host's report on its link to (a) the proxy's
  report for G on the upstream link and (b) the first data packet of G on
  the host's link. The host kernel's own part (join call -> its report) is
  kept apart. Data that reached the host link before the join counts as
  flooding.
- ``leave_latency`` (``leave_reps`` groups, leaves spaced ``leave_gap`` apart
  while their data flows): from the host's leave report to the last data
  packet on its link (the querier's last-member queries make up most of
  it), and to the proxy's leave on the upstream link.
- ``source_filter``: sources S1 and S2 send to G; host 0 asks for INCLUDE {S1}
  (an SSM group) or EXCLUDE {S2} (join and block at once: its kernel sends
  one TO_EX {S2}; the host's records are kept to show it); pass when S1
  arrives and S2 never reaches the host's link from the join on.
"""

from __future__ import annotations

import ipaddress
import time

from capture import JOIN, LEAVE, Record, now
from harness import Bench, ms, stats, wait_for


def join_latency(bench: Bench) -> dict:
    options, recorder, source = bench.options, bench.recorder, bench.source
    member = bench.member(0)
    samples = []
    try:
        for i in range(options.reps):
            group = bench.group("latency", i)
            key = bench.packed(group)
            flow = source.start(bench.sources[0], [group], options.latency_rate)
            time.sleep(options.warm)
            flooded = recorder.arrivals(0, key).count
            recorder.reset(0, key)
            t0 = now()
            member.join(group)
            wait_for(lambda: recorder.upstream_after(key, JOIN, t0) is not None
                     and recorder.arrivals(0, key).first is not None, options.timeout)
            sent = source.stop(flow)
            up = recorder.upstream_after(key, JOIN, t0)
            arrivals = recorder.arrivals(0, key)
            report = recorder.host_report_after(0, key, JOIN, t0)
            samples.append({
                "group": group,
                "host_report_ms": ms(report - t0) if report else None,
                "report_to_upstream_ms": ms(up - report) if up and report else None,
                "report_to_data_ms": ms(arrivals.first - report) if arrivals.first and report else None,
                "report_to_first_forwarded_sent_ms":
                    ms(arrivals.first_sent - report) if arrivals.first_sent and report else None,
                "join_to_upstream_ms": ms(up - t0) if up else None,
                "join_to_data_ms": ms(arrivals.first - t0) if arrivals.first else None,
                "flooded_before_join": flooded,
                "skipped_by_source": sent["skipped"],
            })
            time.sleep(options.gap)
    finally:
        member.close()
    return {
        "reps": options.reps, "rate_pps": options.latency_rate,
        "data_resolution_ms": round(1e3 / options.latency_rate, 3),
        **{name: stats([s[name] for s in samples])
           for name in ("report_to_upstream_ms", "report_to_data_ms", "host_report_ms",
                        "report_to_first_forwarded_sent_ms", "join_to_upstream_ms", "join_to_data_ms")},
        "flooded_reps": sum(1 for s in samples if s["flooded_before_join"]),
        "samples": samples,
    }


def leave_latency(bench: Bench) -> dict:
    options, recorder, source = bench.options, bench.recorder, bench.source
    member = bench.member(0)
    groups = [bench.group("leave", i) for i in range(options.leave_reps)]
    keys = [bench.packed(g) for g in groups]
    flows = [source.start(bench.sources[0], [g], options.leave_rate) for g in groups]
    try:
        for group, key in zip(groups, keys):
            recorder.reset(0, key)
            member.join(group)
        wait_for(lambda: all(recorder.arrivals(0, k).first is not None for k in keys), options.timeout * 2)
        joined = [recorder.arrivals(0, k).first is not None for k in keys]
        time.sleep(0.3)
        calls = []
        start = time.monotonic()
        for j, group in enumerate(groups):
            time.sleep(max(0.0, start + j * options.leave_gap - time.monotonic()))
            calls.append(now())
            member.leave(group)

        def settled() -> bool:
            t = now()
            for key, call in zip(keys, calls):
                last = recorder.arrivals(0, key).last
                if last is not None and t - last < options.leave_quiet:
                    return False
                if recorder.upstream_after(key, LEAVE, call) is None:
                    return False
            return True
        wait_for(settled, options.leave_tail, 0.02)
        end = now()
    finally:
        for flow in flows:
            source.stop(flow)
        member.close()
    samples = []
    for group, key, call, ok in zip(groups, keys, calls, joined):
        report = recorder.host_report_after(0, key, LEAVE, call)
        origin = report or call
        last = recorder.arrivals(0, key).last
        still = last is not None and end - last < options.leave_quiet
        up = recorder.upstream_after(key, LEAVE, call)
        samples.append({
            "group": group, "joined": ok, "still_flowing": still, "origin": "host report" if report else "call",
            "leave_to_last_data_ms": ms(last - origin) if ok and last and not still else None,
            "leave_to_upstream_ms": ms(up - origin) if up else None,
        })
    return {
        "reps": options.leave_reps, "rate_pps": options.leave_rate,
        "leave_to_last_data_ms": stats([s["leave_to_last_data_ms"] for s in samples]),
        "leave_to_upstream_ms": stats([s["leave_to_upstream_ms"] for s in samples]),
        "joined": sum(joined), "still_flowing": sum(s["still_flowing"] for s in samples),
        "samples": samples,
    }


def _records(records: list[Record]) -> list[str]:
    """Records as ``TO_EX(S2)`` / ``ALLOW(S1)``, each once, in order."""
    out = []
    for _t, _kind, label, sources in records:
        text = f"{label}({','.join(str(ipaddress.ip_address(s)) for s in sources)})"
        if text not in out:
            out.append(text)
    return out


def _filter_case(bench: Bench, group: str, subscribe) -> dict:
    options, recorder, source = bench.options, bench.recorder, bench.source
    key = bench.packed(group)
    s1, s2 = bench.sources
    flows = [source.start(s, [group], options.filter_rate) for s in (s1, s2)]
    member = bench.member(0)
    try:
        time.sleep(options.warm)
        recorder.reset(0, key)
        t0 = now()
        subscribe(member)
        time.sleep(options.filter_window)
        arrivals = recorder.arrivals(0, key)
    finally:
        for flow in flows:
            source.stop(flow)
        member.close()
    n1 = arrivals.by_source.get(bench.packed(s1), 0)
    n2 = arrivals.by_source.get(bench.packed(s2), 0)
    return {"group": group, "S1": n1, "S2": n2, "pass": n1 > 0 and n2 == 0,
            "first_S1_ms": ms(arrivals.first - t0) if arrivals.first else None,
            "host_reports": _records(recorder.host_records(0, key, t0)),
            "upstream": _records(recorder.upstream_records(key, t0))}


def source_filter(bench: Bench) -> dict:
    s1, s2 = bench.sources
    include = bench.group("filter", 0, ssm=True)
    exclude = bench.group("filter", 1)
    return {
        "sources": [s1, s2], "window_s": bench.options.filter_window, "rate_pps": bench.options.filter_rate,
        "include": _filter_case(bench, include, lambda m: m.join_source(include, s1)),
        "exclude": _filter_case(bench, exclude, lambda m: m.exclude(exclude, [s2])),
    }
