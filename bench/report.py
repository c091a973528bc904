"""The side-by-side table of ``proxybench`` (one column per daemon/plane/family) and the target check.

A cell shows a median with its spread as ``med (min/p95/max)``; a column
that was not run shows ``not run`` in its status row and the reason in a
footnote under the table (e.g. the kernel option it lacks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: our targets (ms): medians of host report -> first data, host report -> upstream report
TARGETS = (("latency", "report_to_data_ms", 0.4, "host report -> first data"),
           ("latency", "report_to_upstream_ms", 0.3, "host report -> upstream report"))


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def spread(s: dict | None, digits: int = 2) -> str:
    """``med (min/p95/max)`` of a ``harness.stats`` dict, with missing samples counted."""
    if not s or not s.get("n"):
        return "none"
    text = f"{_num(s['med'], digits)} ({'/'.join(_num(s[k], digits) for k in ('min', 'p95', 'max'))})"
    return text + (f" {s['missing']} lost" if s.get("missing") else "")


def _of(result: dict, scenario: str) -> dict | None:
    value = result.get(scenario)
    if not isinstance(value, dict) or "error" in value:
        return None
    return value


def _count(n: int, total: int, value: float | None, digits: int = 0) -> str:
    return f"{_num(value, digits)} ms ({n}/{total})"


def _scale_cell(what: str) -> Callable[[dict], str]:
    def cell(s: dict) -> str:
        if what == "up":
            return _count(s["reported"], s["groups"], s["all_reported_ms"])
        if what == "data":
            return _count(s["data_received"], s["groups"], s["all_data_ms"]) + f" res {s['data_resolution_ms']:.0f}"
        if what == "left":
            return _count(s["left"], s["groups"], s["all_left_ms"])
        if what == "cpu":
            return f"{_num(s['cpu_join_s'])} / {_num(s['cpu_total_s'])}"
        peak = max(s.get("vmhwm_kB") or 0, s.get("rss_max_kB") or 0)
        return _num(peak / 1024, 1) if peak else "-"
    return cell


def _filter_cell(case: str) -> Callable[[dict], str]:
    def cell(s: dict) -> str:
        c = s[case]
        return f"{'PASS' if c['pass'] else 'FAIL'} S1={c['S1']} S2={c['S2']}"
    return cell


def _malformed_cell(s: dict) -> str:
    accepted = [name for name in ("bad_checksum", "truncated_records", "source_overrun", "ttl_255")
                if s[name]["accepted"]]
    counted = f", {s['drops_counted']}/{s['sent']} counted" if "drops_counted" in s else ""
    return f"{'alive' if s['alive'] else 'DEAD'}{counted}, accepted: {','.join(accepted) or 'none'}"


def _idle_cell(s: dict) -> str:
    return (f"{_num(s['cpu_runtime_s'], 3)} s ({_num(s['cpu_pct'], 3)}%), "
            f"{_num(s['wakeups_per_s'], 1)} wakeups/s, {s['upstream_packets']} pkts")


ROWS: tuple[tuple[str, str, Callable[[dict], str]], ...] = (
    ("host report -> upstream report ms", "latency", lambda s: spread(s["report_to_upstream_ms"], 3)),
    ("host report -> first data ms", "latency", lambda s: spread(s["report_to_data_ms"], 3)),
    ("  join call -> host report ms", "latency", lambda s: spread(s["host_report_ms"], 3)),
    ("  data at host before join (reps)", "latency", lambda s: f"{s['flooded_reps']}/{s['reps']}"),
    ("leave -> last data ms", "leave", lambda s: spread(s["leave_to_last_data_ms"], 0)),
    ("leave -> upstream leave ms", "leave", lambda s: spread(s["leave_to_upstream_ms"], 0)),
    ("INCLUDE {S1}: only S1 at host", "filter", _filter_cell("include")),
    ("EXCLUDE {S2}: no S2 at host", "filter", _filter_cell("exclude")),
    ("scale: all reported upstream", "scale", _scale_cell("up")),
    ("scale: data at all hosts", "scale", _scale_cell("data")),
    ("scale: all left upstream", "scale", _scale_cell("left")),
    ("scale: daemon CPU s join / total", "scale", _scale_cell("cpu")),
    ("scale: peak RSS MiB (VmHWM)", "scale", _scale_cell("rss")),
    ("malformed input", "malformed", _malformed_cell),
    ("  fresh join afterwards", "malformed",
     lambda s: f"{'PASS' if s['fresh_join']['pass'] else 'FAIL'} data {_num(s['fresh_join']['data_ms'])} ms"),
    ("idle CPU", "idle", _idle_cell),
)


def _status(result: dict, notes: list[str]) -> str:
    if "not_run" in result:
        if result["not_run"] not in notes:
            notes.append(result["not_run"])
        return f"not run ({notes.index(result['not_run']) + 1})"
    if "error" in result:
        if result["error"] not in notes:
            notes.append(result["error"])
        return f"ERROR ({notes.index(result['error']) + 1})"
    return f"ok, exit {result.get('exit_status')}"


def table(results: list[dict[str, Any]], options: Any) -> str:
    notes: list[str] = []
    heads = [r["column"] for r in results]
    scale_label = f"{options.scale_groups} groups / {options.scale_hosts} hosts"
    rows = [("status", [_status(r, notes) for r in results])]
    for label, scenario, cell in ROWS:
        if scenario not in options.scenarios:
            continue
        cells = []
        for result in results:
            data = _of(result, scenario)
            raw = result.get(scenario)
            if data is None:
                error = raw.get("error") if isinstance(raw, dict) else None
                cells.append(f"ERR {error[:30]}" if error else "-")
            else:
                cells.append(cell(data))
        label = label.replace("scale:", scale_label + ":")
        if scenario == "idle":
            label = f"idle CPU over {options.idle_seconds:.0f} s"
        rows.append((label, cells))
    width = max(len(label) for label, _ in rows)
    widths = [max(len(h), *(len(cells[i]) for _, cells in rows)) for i, h in enumerate(heads)]
    lines = ["  ".join([" " * width] + [h.ljust(w) for h, w in zip(heads, widths)]).rstrip()]
    for label, cells in rows:
        lines.append("  ".join([label.ljust(width)] + [c.ljust(w) for c, w in zip(cells, widths)]).rstrip())
    lines += [f"({i + 1}) {note}" for i, note in enumerate(notes)]
    return "\n".join(lines)


def targets(results: list[dict[str, Any]]) -> list[str]:
    """One line per target and column of ours that ran: met or MISSED."""
    out = []
    for result in results:
        if result["daemon"] != "ours" or "not_run" in result or "error" in result:
            continue
        for scenario, key, limit, what in TARGETS:
            data = _of(result, scenario)
            if data is None:
                continue
            median = data[key]["med"]
            verdict = "met" if median is not None and median <= limit else "MISSED"
            out.append(f"target {result['column']}: {what} median {_num(median, 3)} ms <= {limit} ms: {verdict}")
    return out
