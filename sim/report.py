"""What a simulation run writes: results.json (the testbed's handover schema plus
aggregates), the summary lines, and the PNG plots (gap CDF per mode, loss against
group popularity)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcproxy_pmip_sim.parts import Tally
from mcproxy_pmip_testbed.results import write_results

#: the most points a gap CDF is drawn through
_CDF_POINTS = 2000


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile by linear interpolation between order statistics (None when empty)."""
    return _of_sorted(sorted(values), q)


def _of_sorted(ordered: Sequence[float], q: float) -> float | None:
    """``quantile`` of values already in ascending order."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _spread(ordered: Sequence[float]) -> dict[str, float | None]:
    return {"median": _of_sorted(ordered, 0.5), "p95": _of_sorted(ordered, 0.95),
            "max": ordered[-1] if ordered else None}


def aggregate(tally: Tally, counters: Mapping[str, Any]) -> dict[str, Any]:
    """Gap and loss distributions of one mode's rows (its sorted tally) and its upstream
    signalling load."""
    per_mag = list(counters["reports_per_s_per_mag"].values())
    return {
        "rows": tally.rows,
        "rows_without_gap": tally.rows - len(tally.gaps_ms),
        "handovers": counters["handovers"],
        "events": counters["events"],
        "gap_ms": _spread(tally.gaps_ms),
        "lost": _spread(tally.losses),
        "reports_per_s_per_mag": {"median": quantile(per_mag, 0.5), "max": max(per_mag)},
        "reports_per_s_at_lma": counters["reports_per_s_at_lma"],
    }


def loss_by_group(tally: Tally) -> dict[str, float]:
    """Mean packets lost per handover row, per stream (g1 is the most popular)."""
    return {name: lost / rows for name, (lost, rows)
            in sorted(tally.lost_by_stream.items(), key=lambda item: int(item[0][1:]))}


def results_document(run: Mapping[str, Any]) -> dict[str, Any]:
    """The results.json object of a run of one or more modes."""
    rows = [row for mode in run["modes"].values() for row in mode["rows"]]
    return {
        "run_id": f"sim-{run['seed']}", "mode": ",".join(run["modes"]), "context_transfer": None,
        "daemon": "simulator", "data_plane": None, "data_planes": {}, "access_bridge": False,
        "tunnel": "simulated", "build_seconds": None, "started_at": 0.0,
        "ended_at": run["duration_interval"], "seed": run["seed"],
        "aggregates": {mode: data["aggregate"] for mode, data in run["modes"].items()},
        "loss_by_group": {mode: loss_by_group(data["tally"]) for mode, data in run["modes"].items()},
        "handovers": rows,
    }


def summary(document: Mapping[str, Any]) -> str:
    lines = [f"{'mode':<11} {'rows':>6} {'no gap':>6} {'gap ms med':>10} {'p95':>9} "
             f"{'lost med':>8} {'p95':>7} {'rep/s/MAG':>9} {'rep/s LMA':>9}"]

    def cell(value: float | None, width: int, digits: int = 1) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    for mode, agg in document["aggregates"].items():
        lma = sum(agg["reports_per_s_at_lma"].values()) / max(1, len(agg["reports_per_s_at_lma"]))
        lines.append(f"{mode:<11} {agg['rows']:>6} {agg['rows_without_gap']:>6} "
                     f"{cell(agg['gap_ms']['median'], 10)} {cell(agg['gap_ms']['p95'], 9)} "
                     f"{cell(agg['lost']['median'], 8, 0)} {cell(agg['lost']['p95'], 7, 0)} "
                     f"{cell(agg['reports_per_s_per_mag']['median'], 9, 3)} {cell(lma, 9, 3)}")
    return "\n".join(lines)


def cdf_ranks(count: int, points: int = _CDF_POINTS) -> list[int]:
    """The order statistics a CDF is drawn through: all of them, or ``points`` evenly
    spread with the first and the last (a run of millions of rows draws as fast as a short one)."""
    if count <= points:
        return list(range(count))
    return sorted({round(k * (count - 1) / (points - 1)) for k in range(points)})


def write_outputs(out: Path, document: dict[str, Any],
                  gaps_ms: Mapping[str, Sequence[float]]) -> list[Path]:
    """results.json, and the plots when matplotlib is installed (the ``testbed`` extra);
    ``gaps_ms``: each mode's gaps in ascending order, for the CDF."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json"]
    write_results(written[0], document)
    try:
        import matplotlib
    except ImportError:
        return written
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(6, 4))
    for mode, gaps in gaps_ms.items():
        if gaps:
            ranks = cdf_ranks(len(gaps))
            axis.step([gaps[i] for i in ranks], [(i + 1) / len(gaps) for i in ranks],
                      where="post", label=mode)
    axis.set_xscale("log")
    axis.set_xlabel("gap (ms)")
    axis.set_ylabel("share of handover rows")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out / "gap_cdf.png", dpi=100)
    pyplot.close(figure)
    figure, axis = pyplot.subplots(figsize=(6, 4))
    for mode, losses in document["loss_by_group"].items():
        ranks = [int(name[1:]) for name in losses]
        axis.plot(ranks, list(losses.values()), "o-", label=mode)
    axis.set_xlabel("group popularity rank (1 = most popular, Zipf)")
    axis.set_ylabel("mean packets lost per handover")
    axis.set_yscale("symlog")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out / "loss_popularity.png", dpi=100)
    pyplot.close(figure)
    return written + [out / "gap_cdf.png", out / "loss_popularity.png"]
