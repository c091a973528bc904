"""Calibration: testbed handovers replayed in the simulator, gap medians side by side.

    python bench/sim_calibrate.py RESULTS.json... [--delays-from RESULTS.json...]
        [--family ipv4|ipv6|all] [--seeds 20] [--plot FILE]

Each argument is a testbed results.json (read with the shared reader), one
run of one mode. The simulator gets what the testbed measured
(``--delays-from``, default the compared runs themselves), the same for every
mode, nothing fitted:

- access link: the median attach → first packet of rows where the new MAG
  already forwarded the group (no upstream report): the radio path plus the
  packet spacing the testbed's gap includes;
- tunnel: half of (upstream report → first packet − access), the join's
  round trip over the tunnel (no LMA processing);
- signalling: the median attach → upstream report of context-mode rows
  (binding attach, the daemon's processing, the report);
- stream rate: the median (lost + 1) / gap;
- predictive mode, from the run's handover timeline: the prepare lead (the
  prepare's reply → the radio detach: the new MAG joined upstream by then)
  and the detach lead (the old MAG's binding detach sent → the radio detach:
  it stops forwarding before the link breaks);
- per handover, in the replayed run: its moves (times and target MAGs), its
  L2 outages and, for ``--family`` rows, when the MN answered a query (the
  upstream report's time less one access link, ``AnswerReplay``).

Each run is replayed for one MN, one LMA, two MAGs and one group in the run's
mode, once per family with the MN answering at the testbed's times (the
target: the simulator's median within 10 % or 5 ms of the testbed's,
whichever is larger), and over ``--seeds`` seeds with the answer delays drawn
by the daemon's RFC 3376 host, compared with the IPv4 rows (Linux IGMPv3
hosts answer by the same §5.2 rule; Linux MLDv2 hosts draw again at every
General Query). The testbed median's 95 % interval (order statistics) is
printed beside it: where the gap is the MN's random answer delay, ten
handovers fix the median only to within seconds. Exit status 0 when every
mode meets the target with answers as measured.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcproxy_pmip.membership.host import UpstreamHost
from mcproxy_pmip_sim.domain import Simulator
from mcproxy_pmip_sim.scenario import Delays, Mobility, Scenario
from mcproxy_pmip_testbed.results import load_results

#: relative and absolute tolerance of the comparison (the larger applies)
RELATIVE_TOLERANCE = 0.10
ABSOLUTE_TOLERANCE_MS = 5.0
#: defaults when the testbed rows carry no such measurement
DEFAULT_ACCESS_INTERVAL = 0.0005
DEFAULT_RATE = 1000.0
#: modes whose rows measure the binding signalling (attach → upstream report without a query)
SIGNALLING_MODES = ("context",)
MODE_ORDER = ("static", "plugin", "context", "predictive")
#: the replay's moves start this much later than the testbed's (relative to traffic start):
#: the MN's answers to its first MAG's start-up queries (Max Resp 10 s after a query at 0 or
#: 1 s) are over before the first handover, as in the testbed, whose MN attached before the
#: traffic started
WARMUP_INTERVAL = 15.0


@dataclass(frozen=True, slots=True)
class Measured:
    """What the simulator takes from the testbed's rows."""

    delays: Delays
    l2_outage_interval: float
    stream_rate: float
    #: predictive mode: how long before the link break the new MAG joined upstream, and
    #: the old MAG got the binding detach
    prepare_lead_interval: float = 0.1
    detach_lead_interval: float = 0.0


@dataclass(frozen=True, slots=True)
class Comparison:
    """One mode's gap medians (ms), testbed against simulator."""

    mode: str
    testbed_ms: float
    testbed_low_ms: float
    testbed_high_ms: float
    testbed_n: int
    simulated_ms: float
    simulated_n: int

    @property
    def difference_ms(self) -> float:
        return self.simulated_ms - self.testbed_ms

    @property
    def allowed_ms(self) -> float:
        return allowed_ms(self.testbed_ms)

    @property
    def within(self) -> bool:
        return abs(self.difference_ms) <= self.allowed_ms

    @property
    def inside_interval(self) -> bool:
        """The simulator's median inside the testbed median's 95 % interval."""
        return self.testbed_low_ms <= self.simulated_ms <= self.testbed_high_ms


def allowed_ms(testbed_ms: float) -> float:
    """The allowed difference: 10 % of the testbed's median or 5 ms, whichever is larger."""
    return max(RELATIVE_TOLERANCE * abs(testbed_ms), ABSOLUTE_TOLERANCE_MS)


def median_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median: order statistics x(k) and x(n+1-k),
    k the largest with P(k <= Binomial(n, 1/2) <= n - k) >= ``level`` (the whole range
    when n is too small for that)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("no values")
    k = 0
    for candidate in range(1, n // 2 + 1):
        below = sum(math.comb(n, i) for i in range(candidate)) / 2 ** n
        if 1 - 2 * below < level:
            break
        k = candidate
    if k == 0:
        return ordered[0], ordered[-1]
    return ordered[k - 1], ordered[n - k]


def _median(values: Iterable[float], default: float) -> float:
    values = list(values)
    return statistics.median(values) if values else default


def measured(rows: Sequence[dict[str, Any]],
             timeline: Sequence[dict[str, Any]] = ()) -> Measured:
    """The delays, L2 outage and stream rate the testbed's rows measured, and the
    predictive-mode leads its handover timeline (``timeline`` entries) measured."""
    rows = [r for r in rows if r["gap_ms"] is not None]
    # where the new MAG already forwarded the group (no report; predictive mode's new MAG
    # forwards its buffer only once the attach reaches it)
    access = _median((r["attach_to_first_packet_ms"] / 1000.0 for r in rows
                      if r["attach_to_upstream_report_ms"] is None and r["mode"] != "predictive"
                      and r["attach_to_first_packet_ms"] is not None), DEFAULT_ACCESS_INTERVAL)
    defaults = Delays()
    round_trip = _median(((r["attach_to_first_packet_ms"] - r["attach_to_upstream_report_ms"])
                          / 1000.0 for r in rows
                          if r["mode"] != "predictive"
                          and r["attach_to_upstream_report_ms"] is not None
                          and r["attach_to_upstream_report_ms"] >= 0
                          and r["attach_to_first_packet_ms"] is not None),
                         access + 2 * defaults.tunnel_interval)
    signalling = _median((r["attach_to_upstream_report_ms"] / 1000.0 for r in rows
                          if r["mode"] in SIGNALLING_MODES
                          and r["attach_to_upstream_report_ms"] is not None
                          and r["attach_to_upstream_report_ms"] >= 0),
                         defaults.signalling_interval)
    outage = _median((r["l2_outage_ms"] / 1000.0 for r in rows), 0.05)
    rate = _median(((r["lost"] + 1) * 1000.0 / r["gap_ms"] for r in rows
                    if r["lost"] and r["gap_ms"] > 0), DEFAULT_RATE)
    events = [entry["events"] for entry in timeline if "radio_detach" in entry.get("events", {})]
    scenario = Scenario()
    prepare_lead = _median((e["radio_detach"] - e["prepare_answered"] for e in events
                            if "prepare_answered" in e), scenario.prepare_lead_interval)
    detach_lead = _median((e["radio_detach"] - e["detach_sent"] for e in events
                           if "prepare_sent" in e and "detach_sent" in e
                           and e["detach_sent"] < e["radio_detach"]), 0.0)
    delays = Delays(access_interval=access, tunnel_interval=max(0.0, (round_trip - access) / 2),
                    lma_processing_interval=0.0, signalling_interval=signalling)
    return Measured(delays, outage, rate, max(prepare_lead, detach_lead, 0.0),
                    max(detach_lead, 0.0))


def trace_text(results: dict[str, Any]) -> str:
    """The run's MN moves as a simulator trace (``time mn cell``; mag1 is cell 0), from
    ``WARMUP_INTERVAL`` after the start."""
    origin = results["started_at"] - WARMUP_INTERVAL
    moves = sorted({(r["handover"], r["detach_at"] - origin, r["to_mag"])
                    for r in results["handovers"]})
    first = results["handovers"][0]["from_mag"] if results["handovers"] else "mag1"
    cell = {"mag1": 0, "mag2": 1}
    return f"0 0 {cell[first]}\n" + "".join(f"{at:.6f} 0 {cell[to]}\n" for _, at, to in moves)


class AnswerReplay(random.Random):
    """The simulated MN's random numbers, with its query answers at the testbed's times.

    The daemon's ``UpstreamHost`` draws the delay of a query answer as
    ``interval * (1 - random())``. In a window ``[start, answer_at]`` (a handover's
    link break to the time the testbed's MN answered) this returns the number that
    makes that delay end at ``answer_at``, or, when ``answer_at`` is more than
    ``interval`` away, the latest answer (a later query can still bring it forward:
    Linux MLDv2 hosts draw again at every General Query, RFC 3810 hosts keep the
    earlier answer). The host's own rules still decide which answer stands.
    Elsewhere it draws as ``random.Random`` does.
    """

    def __init__(self, seed: str, clock: Callable[[], float],
                 windows: Sequence[tuple[float, float]], interval: float) -> None:
        super().__init__(seed)
        self.clock = clock
        self.windows = sorted(windows)
        self.interval = interval

    def random(self) -> float:
        now = self.clock()
        for start, answer_at in self.windows:
            if start <= now < answer_at:
                return max(0.0, 1.0 - (answer_at - now) / self.interval)
        return super().random()


class OutageReplay(random.Random):
    """The L2 outages of the replayed moves: the testbed's, one per handover in order
    (the simulator draws one per move with ``uniform``); drawn once they run out."""

    def __init__(self, seed: str, outages: Sequence[float]) -> None:
        super().__init__(seed)
        self.outages = list(outages)
        self.index = 0

    def uniform(self, a: float, b: float) -> float:
        if self.index < len(self.outages):
            self.index += 1
            return self.outages[self.index - 1]
        return super().uniform(a, b)


def outages(results: dict[str, Any]) -> list[float]:
    """The run's measured L2 outage (s) of each handover, in handover order."""
    return [outage / 1000.0 for _, outage in
            sorted({(r["handover"], r["l2_outage_ms"]) for r in results["handovers"]})]


def answer_windows(rows: Sequence[dict[str, Any]], origin: float, measured_: Measured,
                   ) -> list[tuple[float, float]]:
    """(link break, MN answer) per row with an upstream report after the attach, in the
    replay's time: the report left the new MAG ``attach_to_upstream_report_ms`` after the
    attach, one access link after the MN's answer."""
    return [(r["detach_at"] - origin,
             r["detach_at"] - origin + r["l2_outage_ms"] / 1000.0
             + r["attach_to_upstream_report_ms"] / 1000.0 - measured_.delays.access_interval)
            for r in rows if r["attach_to_upstream_report_ms"] is not None
            and r["attach_to_upstream_report_ms"] > 0]


def replay(results: dict[str, Any], measured_: Measured, seeds: int, workdir: Path,
           rows: Sequence[dict[str, Any]] | None = None, first_seed: int = 0) -> list[float]:
    """Gap ms of the run's handovers replayed in its mode over ``seeds`` seeds from
    ``first_seed`` (runs of the same moves need different seeds to draw apart). With
    ``rows`` (the run's rows of one family), the MN answers queries when the testbed's
    did (``AnswerReplay``) instead of after delays its host draws."""
    trace = workdir / f"{results['run_id']}.trace"
    trace.write_text(trace_text(results))
    outage = measured_.l2_outage_interval
    scenario = Scenario(lmas=1, mags=2, grid_columns=2, mns=1, groups=1, groups_per_mn=1,
                        stream_rate=measured_.stream_rate,
                        duration_interval=results["ended_at"] - results["started_at"]
                        + WARMUP_INTERVAL,
                        l2_outage_min_interval=outage, l2_outage_max_interval=outage,
                        prepare_lead_interval=measured_.prepare_lead_interval,
                        detach_lead_interval=measured_.detach_lead_interval,
                        delays=measured_.delays,
                        mobility=Mobility(model="trace", trace_file=str(trace)))
    gaps = []
    for seed in range(first_seed, first_seed + seeds):
        simulator = Simulator(scenario, results["mode"], seed)
        simulator.outage_rng = OutageReplay(f"{seed}:outage", outages(results))
        if rows is not None:
            windows = answer_windows(rows, results["started_at"] - WARMUP_INTERVAL, measured_)
            for mn in simulator.mns:
                mn.host = UpstreamHost(mn.host.interface, mn.host.family, simulator.host_options,
                                       AnswerReplay(f"{seed}:{mn.name}", lambda s=simulator: s.now,
                                                    windows, scenario.query_response_interval))
        gaps.extend(row["gap_ms"] for row in simulator.run().rows if row["gap_ms"] is not None)
    return gaps


def compare(testbed: dict[str, list[float]], simulated: dict[str, list[float]]) -> list[Comparison]:
    """One comparison per mode present in both, in the order static, plugin, context, predictive."""
    modes = sorted(set(testbed) & set(simulated),
                   key=lambda m: (MODE_ORDER.index(m) if m in MODE_ORDER else len(MODE_ORDER), m))
    comparisons = []
    for mode in modes:
        if not testbed[mode] or not simulated[mode]:
            continue
        low, high = median_interval(testbed[mode])
        comparisons.append(Comparison(mode, statistics.median(testbed[mode]), low, high,
                                      len(testbed[mode]), statistics.median(simulated[mode]),
                                      len(simulated[mode])))
    return comparisons


def table(comparisons: Sequence[Comparison]) -> str:
    lines = [f"{'mode':<10} {'testbed gap ms':>14} {'95% interval':>17} {'n':>3} "
             f"{'sim gap ms':>10} {'n':>4} {'diff':>8} {'allowed':>8}  within  in interval"]
    for c in comparisons:
        lines.append(f"{c.mode:<10} {c.testbed_ms:>14.1f} {c.testbed_low_ms:>8.1f}-"
                     f"{c.testbed_high_ms:<8.1f} {c.testbed_n:>3} {c.simulated_ms:>10.1f} "
                     f"{c.simulated_n:>4} {c.difference_ms:>+8.1f} {c.allowed_ms:>8.1f}  "
                     f"{'yes' if c.within else 'NO':<6}  {'yes' if c.inside_interval else 'no'}")
    return "\n".join(lines)


def plot(path: Path, series: Sequence[tuple[str, dict[str, list[float]]]],
         comparisons: Sequence[Comparison], title: str) -> None:
    """Box plots of the gaps per mode, one box per series side by side (log scale); the
    x labels give the first comparison's medians (testbed / simulator)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    modes = [c.mode for c in comparisons]
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    width = 0.8 / len(series)
    figure, axis = pyplot.subplots(figsize=(6.4, 3.8))
    for index, ((label, data), colour) in enumerate(zip(series, colours)):
        offset = (index - (len(series) - 1) / 2) * width
        boxes = axis.boxplot([data.get(m) or [math.nan] for m in modes],
                             positions=[i + offset for i in range(len(modes))],
                             widths=width * 0.85, patch_artist=True,
                             flierprops={"markersize": 3, "markeredgecolor": colour},
                             medianprops={"color": "black"})
        for box in boxes["boxes"]:
            box.set_facecolor(colour)
            box.set_alpha(0.6)
        axis.plot([], [], color=colour, linewidth=6, alpha=0.6, label=label)
    axis.set_yscale("log")
    labels = [f"{c.mode}\n{c.testbed_ms:.0f} / {c.simulated_ms:.0f} ms" for c in comparisons]
    axis.set_xticks(range(len(modes)), labels)
    axis.set_ylabel("gap (ms, log scale)")
    axis.set_xlabel(title, fontsize=8)
    axis.grid(axis="y", which="both", alpha=0.3)
    axis.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(series),
                frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    pyplot.close(figure)


def _gaps(rows: Iterable[dict[str, Any]], family: str) -> list[float]:
    return [r["gap_ms"] for r in rows
            if r["gap_ms"] is not None and family in ("all", r["family"])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="testbed results.json, one per run")
    parser.add_argument("--delays-from", nargs="+", type=Path, metavar="RESULTS",
                        help="testbed runs to take the delays from (default: the compared runs)")
    parser.add_argument("--family", choices=("ipv4", "ipv6", "all"), default="all",
                        help="testbed rows compared with measured answers (default %(default)s)")
    parser.add_argument("--seeds", type=int, default=20,
                        help="seeds of the replay with drawn answers (default %(default)s)")
    parser.add_argument("--plot", type=Path, help="side-by-side box plot (PNG, needs matplotlib)")
    args = parser.parse_args()
    runs = [load_results(path) for path in args.results]
    sources = [load_results(path) for path in args.delays_from] if args.delays_from else runs
    inputs = measured([row for run in sources for row in run["handovers"]],
                      [entry for run in sources for entry in run.get("timeline", ())])
    d = inputs.delays
    print(f"measured by the testbed: access {d.access_interval * 1000:.2f} ms, tunnel "
          f"{d.tunnel_interval * 1000:.2f} ms, signalling {d.signalling_interval * 1000:.1f} ms, "
          f"L2 outage {inputs.l2_outage_interval * 1000:.1f} ms, rate {inputs.stream_rate:.0f}/s, "
          f"prepare lead {inputs.prepare_lead_interval * 1000:.0f} ms, detach lead "
          f"{inputs.detach_lead_interval * 1000:.1f} ms")
    testbed: dict[str, list[float]] = {}
    answered: dict[str, list[float]] = {}
    testbed_v4: dict[str, list[float]] = {}
    drawn: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for index, run in enumerate(runs):
            mode = run["mode"]
            testbed.setdefault(mode, []).extend(_gaps(run["handovers"], args.family))
            testbed_v4.setdefault(mode, []).extend(_gaps(run["handovers"], "ipv4"))
            for family in sorted({r["family"] for r in run["handovers"]}):
                if args.family in ("all", family):
                    rows = [r for r in run["handovers"] if r["family"] == family]
                    answered.setdefault(mode, []).extend(
                        replay(run, inputs, 1, Path(workdir), rows))
            drawn.setdefault(mode, []).extend(
                replay(run, inputs, args.seeds, Path(workdir), first_seed=index * args.seeds))
    comparisons = compare(testbed, answered)
    print(f"MN answers at the testbed's times ({args.family} rows): the target")
    print(table(comparisons))
    print("MN answers drawn by the host (RFC 3376 §5.2) against the testbed's ipv4 rows "
          f"(Linux IGMPv3 answers by the same rule), {args.seeds} seeds")
    print(table(compare(testbed_v4, drawn)))
    if args.plot:
        plot(args.plot, [(f"testbed ({args.family})", testbed),
                         ("simulator, answers as measured", answered),
                         (f"simulator, answers drawn ({args.seeds} seeds)", drawn)],
             comparisons, "mode; median gap testbed / simulator with answers as measured")
    return 0 if comparisons and all(c.within for c in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())
