"""The table of ``hostile_bench``: one row per figure, one column per phase kind, and the targets.

Columns: ``off`` (no attack), ``reports`` (the report flood alone: the
conditions the latency, gap and status targets are stated for) and
``reports+data`` (the report flood and the (S,G) data spray together: the
memory targets name both). With several repetitions a latency cell pools
the samples of all of them; a per-phase figure (gap, peak RSS, CPU) is the
median with [min-max] over the repetitions. The last column says, per
attack column, whether the target is met.
"""

from __future__ import annotations

from collections.abc import Callable

from hostile_measure import PhaseResult, percentile

OFF, REPORTS, BOTH = "off", "reports", "reports+data"
TARGETS = {"report_p99_ms": 50.0, "data_gap_ms": 500.0, "status_p99_ms": 250.0, "peak_rss_mb": 256.0,
           "memory_back_pct": 10.0}

Row = tuple[str, dict[str, str], str, dict[str, bool | None]]


def _median_cell(values: list[float | None]) -> str:
    present = sorted(v for v in values if v is not None)
    if not present:
        return "-"
    if len(present) == 1:
        return f"{present[0]:.1f}"
    return f"{present[len(present) // 2]:.1f} [{present[0]:.1f}-{present[-1]:.1f}]"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def rows(phases: list[PhaseResult], baseline_mb: float, after_mb: float) -> tuple[list[str], list[Row]]:
    """The column names present and the rows (figure, cell per column, target, met per attack column)."""
    columns = [c for c in (OFF, REPORTS, BOTH) if any(p.name == c for p in phases)]
    attack = [c for c in columns if c != OFF]
    by = {c: [p for p in phases if p.name == c] for c in columns}
    out: list[Row] = []

    def pooled_row(label: str, pick: Callable[[PhaseResult], list[float]], q: float, limit: float | None) -> None:
        values = {c: _ms(percentile([v for p in by[c] for v in pick(p)], q)) for c in columns}
        cells = {c: "-" if v is None else f"{v:.1f}" for c, v in values.items()}
        met = {c: None if limit is None or values[c] is None else values[c] <= limit for c in attack}
        out.append((label, cells, "" if limit is None else f"<= {limit:.0f}", met))

    def joins(p: PhaseResult) -> list[float]:
        return p.report_latency[4] + p.report_latency[6]

    pooled_row("report -> upstream p50, ms", joins, 50, None)
    pooled_row("report -> upstream p99, ms", joins, 99, TARGETS["report_p99_ms"])
    missed = {c: sum(sum(p.misses.values()) + p.host_silent for p in by[c]) for c in columns}
    total = {c: missed[c] + sum(len(joins(p)) for p in by[c]) for c in columns}
    out.append(("joins missed (of joins)", {c: f"{missed[c]} of {total[c]}" for c in columns}, "0",
                {c: missed[c] == 0 for c in attack}))
    for family in (4, 6):
        gaps = {c: [_ms(p.data_gap.get(family)) for p in by[c]] for c in columns}
        worst = {c: max((g for g in gaps[c] if g is not None), default=None) for c in columns}
        out.append((f"largest data gap IPv{family}, ms", {c: _median_cell(gaps[c]) for c in columns},
                    f"<= {TARGETS['data_gap_ms']:.0f}",
                    {c: None if worst[c] is None else worst[c] <= TARGETS["data_gap_ms"] for c in attack}))
    pooled_row("status p50, ms", lambda p: p.status_latency, 50, None)
    pooled_row("status p99, ms", lambda p: p.status_latency, 99, TARGETS["status_p99_ms"])
    peaks = {c: [max([*p.rss_kb, p.hwm_kb or 0]) / 1024 for p in by[c]] for c in columns}
    out.append(("peak RSS, MB", {c: _median_cell(peaks[c]) for c in columns}, f"<= {TARGETS['peak_rss_mb']:.0f}",
                {c: max(peaks[c]) <= TARGETS["peak_rss_mb"] for c in attack}))
    growth = (after_mb - baseline_mb) / baseline_mb * 100
    memory = {c: "" for c in columns}
    memory[OFF] = f"{baseline_mb:.1f} MB"
    memory[attack[-1] if attack else OFF] = f"{after_mb:.1f} MB ({growth:+.1f} %)"
    out.append(("RSS after the attacks vs before", memory, f"within {TARGETS['memory_back_pct']:.0f} %",
                {c: abs(growth) <= TARGETS["memory_back_pct"] if c == attack[-1] else None for c in attack}))
    cpu = {c: [None if p.cpu_s is None else 100 * p.cpu_s / p.seconds for p in by[c]] for c in columns}
    out.append(("daemon CPU, % of one core", {c: _median_cell(cpu[c]) for c in columns}, "", {}))
    return columns, out


def render(phases: list[PhaseResult], baseline_mb: float, after_mb: float) -> str:
    columns, table_rows = rows(phases, baseline_mb, after_mb)
    attack = [c for c in columns if c != OFF]
    header = ["figure", *columns, "target", "met (" + " / ".join(attack) + ")"]
    lines = [header]
    for label, cells, target, met in table_rows:
        verdicts = [met.get(c) for c in attack]
        verdict = "" if all(v is None for v in verdicts) else \
            " / ".join("-" if v is None else ("yes" if v else "NO") for v in verdicts)
        lines.append([label, *(cells[c] for c in columns), target, verdict])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)
