"""The daemon beside igmpproxy: proxybench's scenarios plus idle CPU, in one table.

Runs the shared harness ``proxybench.py`` (not part of this repository; by
default ``../shared/tools/proxybench.py`` next to the repository) once for our
daemon (IPv4 and IPv6) and igmpproxy (IPv4), then measures what proxybench
lacks: the CPU time each daemon spends over an idle window (no data, a few
groups joined, ``utime+stime`` from ``/proc/PID/stat`` before and after) and
its wakeups (context switches) per second. Then it prints one side-by-side
table and checks our daemon against its targets:

- proxy latency (host report -> our upstream report), median <= 1 ms;
- join -> first data at the host, <= 2 ms after the host's report;
- idle CPU near zero (<= 0.1 % over the window).

The idle testbeds reuse proxybench's own classes (imported from its path);
their namespaces are named ``mpb<random>-...`` and are always removed.

    python bench/daemon_bench.py                 # full: S1-S5, 2,000 groups from 30 hosts, 60 s idle
    python bench/daemon_bench.py --quick         # proxybench --quick, 15 s idle
    python bench/daemon_bench.py --from-json F   # skip proxybench, reuse its results JSON

Needs root, iproute2 and igmpproxy. A benchmark prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import logging
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

log = logging.getLogger("daemon_bench")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PROXYBENCH = REPO.parent / "shared" / "tools" / "proxybench.py"
OURS_CMD = f"{REPO}/.venv/bin/mcproxy-pmip -f {{conf}} --control {{outdir}}/ours-v{{family}}.sock"

#: targets for our daemon (ms, ms, percent of one CPU)
TARGET_PROXY_UP_MS = 1.0
TARGET_PROXY_DATA_MS = 2.0
TARGET_IDLE_CPU_PCT = 0.1

#: how long the idle testbed waits for the joined groups to be reported upstream,
#: and for the daemon's report retransmissions to end before the window opens
IDLE_JOIN_TIMEOUT = 10.0
IDLE_QUIET_BEFORE = 2.0
IDLE_GROUP_BLOCK = 120


@dataclass(frozen=True, slots=True)
class Column:
    """One daemon in one family: the table's column."""

    name: str
    family: int


@dataclass(frozen=True, slots=True)
class IdleResult:
    """CPU and wakeups of one daemon over the idle window."""

    column: Column
    window_s: float
    groups: int
    groups_reported: int
    cpu_s: float | None
    wakeups: int | None
    upstream_packets: int
    rss_kB: int | None
    alive: bool
    error: str | None = None

    @property
    def cpu_pct(self) -> float | None:
        return None if self.cpu_s is None else 100.0 * self.cpu_s / self.window_s

    def as_dict(self) -> dict:
        return {"daemon": self.column.name, "family": self.column.family, "window_s": self.window_s,
                "groups": self.groups, "groups_reported": self.groups_reported, "cpu_s": self.cpu_s,
                "cpu_pct": self.cpu_pct, "wakeups": self.wakeups, "upstream_packets": self.upstream_packets,
                "rss_kB": self.rss_kB, "alive": self.alive, "error": self.error}


# -- proxybench ---------------------------------------------------------------------------


def load_proxybench(path: Path) -> ModuleType:
    """Import proxybench from its file (it is a script, not an installed module)."""
    spec = importlib.util.spec_from_file_location("proxybench", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load proxybench from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def proxybench_argv(args: argparse.Namespace, json_path: Path) -> list[str]:
    argv = [sys.executable, str(args.proxybench),
            "--cmd", args.ours_cmd, "--name", "ours", "--conf-template", str(args.conf_template),
            "--families", "4,6",
            "--preset", f"igmpproxy:{args.igmpproxy}",
            "--hosts", str(args.hosts), "--s4-groups", args.s4_groups, "--json", str(json_path)]
    if args.quick:
        argv.append("--quick")
    return argv + args.proxybench_args


def run_proxybench(args: argparse.Namespace, json_path: Path) -> dict:
    argv = proxybench_argv(args, json_path)
    print("$ " + " ".join(shlex.quote(a) for a in argv), flush=True)
    done = subprocess.run(argv, check=False)
    if done.returncode != 0:
        raise SystemExit(f"proxybench failed with exit status {done.returncode}")
    with open(json_path) as f:
        return json.load(f)


# -- idle CPU -----------------------------------------------------------------------------


def context_switches(pid: int) -> int | None:
    """Voluntary + involuntary context switches of ``pid`` (one per wakeup of an idle process)."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(line.split()[1])
    except FileNotFoundError:
        return None
    return total


class IdleBed:
    """One daemon in its own small proxybench testbed, with groups joined and no data."""

    def __init__(self, pb: ModuleType, spec, column: Column, prefix: str, hosts: int,
                 groups_per_host: int, outdir: Path) -> None:
        self.pb = pb
        self.column = column
        self.fam = pb.Fam(column.family)
        self.tb = pb.Testbed(prefix, hosts, {})
        self.daemon = pb.Daemon(spec, self.fam, self.tb, str(outdir), f"idle-{column.name}-v{column.family}")
        self.groups = [self.fam.group(IDLE_GROUP_BLOCK, k) for k in range(hosts * groups_per_host)]
        self.host_socks: list = []
        self.rx = None
        self.sniffer = None

    def start(self, ready_timeout: float) -> None:
        pb = self.pb
        self.tb.build()
        self.rx = pb.Rx(self.fam, 5001)
        self.sniffer = pb.packet_socket(self.tb.up, "e0", pb.BPF_CTRL)
        self.rx.add(self.sniffer, "up")
        self.rx.start()
        self.daemon.start()
        key = "net.ipv4.conf.%s.mc_forwarding" if self.fam.v == 4 else "net.ipv6.conf.%s.mc_forwarding"
        interfaces = ["u0"] + self.tb.downs

        def ready() -> bool:
            if not self.daemon.alive():
                raise RuntimeError(f"daemon exited during start-up (log {self.daemon.log})")
            with pb.netns(self.tb.prx):
                return all(pb.sysctl_r(key % i) not in (None, "0") for i in interfaces)
        if not pb.wait_until(ready, ready_timeout, 0.01):
            raise RuntimeError(f"mc_forwarding not set within {ready_timeout} s")

    def join(self) -> float:
        """Each host joins its groups; returns the time of the first join."""
        pb = self.pb
        self.host_socks = [pb.HostSock(self.fam, h) for h in self.tb.hosts]
        t = time.monotonic()
        for k, group in enumerate(self.groups):
            if not self.host_socks[k % len(self.host_socks)].join(group):
                raise RuntimeError(f"join of {group} failed")
        return t

    def reported(self, since: float) -> int:
        return sum(self.rx.first_up(self.fam.pack(g), "join", since) is not None for g in self.groups)

    def sample(self) -> tuple[float | None, int | None]:
        pid = self.daemon.p.pid
        cpu = self.pb.proc_tree_cpu(pid) if self.daemon.alive() else None
        return cpu, context_switches(pid)

    def close(self) -> None:
        if self.rx is not None:
            self.rx.stop()
        self.daemon.stop()
        for sock in self.host_socks:
            sock.close()
        if self.sniffer is not None:
            self.sniffer.close()
        self.tb.destroy()


def measure_idle(pb: ModuleType, specs: dict, columns: list[Column], args: argparse.Namespace,
                 outdir: Path) -> list[IdleResult]:
    """All daemons idle side by side in their own testbeds over one common window."""
    run = "%06x" % random.SystemRandom().randrange(1 << 24)
    beds = [IdleBed(pb, specs[c.name], c, f"mpb{run}{i}-", args.idle_hosts, args.idle_groups, outdir)
            for i, c in enumerate(columns)]
    atexit.register(pb.emergency_cleanup)
    errors: dict[Column, str] = {}
    try:
        joined_at = {}
        for bed in beds:
            try:
                bed.start(args.ready_timeout)
                joined_at[bed.column] = bed.join()
            except (RuntimeError, OSError) as exc:
                errors[bed.column] = str(exc)
                log.warning("idle_setup_failed daemon=%s family=%d error=%s", bed.column.name,
                            bed.column.family, exc)
        live = [b for b in beds if b.column not in errors]
        pb.wait_until(lambda: all(b.reported(joined_at[b.column]) == len(b.groups) for b in live),
                      IDLE_JOIN_TIMEOUT, 0.05)
        time.sleep(IDLE_QUIET_BEFORE)   # let report retransmissions end: this is about idle, not joins
        before = {b.column: (b.sample(), b.rx.up_pkts) for b in live}
        print(f"idle window: {args.idle_seconds:.0f} s, {len(columns)} daemons side by side", flush=True)
        time.sleep(args.idle_seconds)
        results = [idle_result(b, before.get(b.column), args.idle_seconds, joined_at, errors) for b in beds]
    finally:
        for bed in beds:
            bed.close()
    return results


def idle_result(bed: IdleBed, before, window: float, joined_at: dict, errors: dict) -> IdleResult:
    if before is None:
        return IdleResult(bed.column, window, len(bed.groups), 0, None, None, 0, None, False,
                          errors.get(bed.column))
    (cpu0, sw0), pkts0 = before
    cpu1, sw1 = bed.sample()
    _hwm, rss = bed.daemon.mem()
    return IdleResult(
        bed.column, window, len(bed.groups), bed.reported(joined_at[bed.column]),
        None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
        None if sw0 is None or sw1 is None else sw1 - sw0,
        bed.rx.up_pkts - pkts0, rss, bool(bed.daemon.alive()))


# -- the table ----------------------------------------------------------------------------


def _f(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _stats(s: dict | None, keys: tuple[str, ...] = ("min", "med", "p95", "max")) -> str:
    if not s or s.get("n", 0) == 0:
        return "-"
    return "/".join(_f(s.get(k)) for k in keys)


def _s4_run(run: dict) -> dict | None:
    runs = (run.get("S4") or {}).get("runs") or []
    return max(runs, key=lambda r: r["groups"]) if runs else None


def _pct(n: int, total: int) -> str:
    return f"{n}/{total} ({100.0 * n / total:.1f}%)" if total else "-"


def _s4_line(run: dict, what: str) -> str:
    s4 = _s4_run(run)
    if s4 is None:
        return "-"
    if what == "up":
        return f"{_pct(s4['up_reported'], s4['groups'])} all {_f(s4['up_all_ms'], 0)} ms"
    if what == "data":
        return f"{_pct(s4['data_received'], s4['groups'])} all {_f(s4['data_all_ms'], 0)} ms"
    if what == "leave":
        return f"{_pct(s4['up_left'], s4['groups'])} all {_f(s4['up_all_left_ms'], 0)} ms"
    if what == "cpu":
        return f"{_f(s4['cpu_join_s'])} / {_f(s4['cpu_total_s'])}"
    rss = max(x or 0 for x in (s4["rss_max_kB"], s4["vmhwm_end_kB"]))
    return _f(rss / 1024.0, 1) if rss else "-"


def _s5_line(run: dict) -> str:
    s5 = run.get("S5") or {}
    if "a" not in s5:
        return s5.get("error", "-")[:30]
    rejected = sum(not s5[k]["accepted_upstream"] for k in ("b", "c"))
    alive = "alive" if s5["d"]["alive_after"] else "DEAD"
    fresh = "join ok" if s5["fresh_join"]["pass"] else "join FAIL"
    return f"{alive}, {fresh}, bad-cksum {'acc' if s5['a']['accepted_upstream'] else 'rej'}, {rejected}/2 rej"


def _s3_line(run: dict) -> str:
    s3 = run.get("S3") or {}
    if "include" not in s3:
        return s3.get("error", "-")[:30]
    return "INCLUDE %s, EXCLUDE %s" % tuple("PASS" if s3[k]["pass"] else "FAIL" for k in ("include", "exclude"))


def _get(run: dict, *path):
    for key in path:
        if not isinstance(run, dict) or key not in run:
            return None
        run = run[key]
    return run


def rows(run: dict, idle: IdleResult | None, s4_hosts: int) -> list[tuple[str, str]]:
    s4 = _s4_run(run)
    groups = f"{s4['groups']} groups/{s4_hosts} hosts" if s4 else "S4"
    return [
        ("proxy latency: host rpt -> upstream rpt ms med (min/p95/max)",
         f"{_f(_get(run, 'S1', 'proxy_up_ms', 'med'))} ({_stats(_get(run, 'S1', 'proxy_up_ms'), ('min', 'p95', 'max'))})"),
        ("join -> first data: host rpt -> data ms med (p95/max)",
         f"{_f(_get(run, 'S1', 'proxy_data_ms', 'med'))} ({_stats(_get(run, 'S1', 'proxy_data_ms'), ('p95', 'max'))})"),
        ("join call -> upstream rpt / -> data ms med",
         f"{_f(_get(run, 'S1', 'up_ms', 'med'))} / {_f(_get(run, 'S1', 'data_ms', 'med'))}"),
        ("leave -> last data ms med (p95/max)",
         f"{_f(_get(run, 'S2', 'last_data_ms', 'med'), 0)} ({_stats(_get(run, 'S2', 'last_data_ms'), ('p95', 'max'))})"),
        ("leave -> upstream leave ms med",
         _f(_get(run, 'S2', 'up_leave_ms', 'med'), 0)),
        ("S3 source filters", _s3_line(run)),
        (f"{groups}: reported upstream", _s4_line(run, "up")),
        (f"{groups}: data at hosts", _s4_line(run, "data")),
        (f"{groups}: left upstream", _s4_line(run, "leave")),
        (f"{groups}: CPU s join / total", _s4_line(run, "cpu")),
        (f"{groups}: peak RSS MB", _s4_line(run, "rss")),
        ("S5 malformed input", _s5_line(run)),
        (f"idle CPU s over {idle.window_s:.0f} s (%)" if idle else "idle CPU",
         "-" if idle is None or idle.cpu_s is None else f"{idle.cpu_s:.2f} ({idle.cpu_pct:.3f}%)"),
        ("idle wakeups/s, upstream pkts, groups",
         "-" if idle is None or idle.wakeups is None else
         f"{idle.wakeups / idle.window_s:.2f}, {idle.upstream_packets}, {idle.groups_reported}/{idle.groups}"),
    ]


def table(runs: list[dict], idle: dict[Column, IdleResult], s4_hosts: int) -> str:
    columns = [Column(r["daemon"], r["family"]) for r in runs]
    by_col = [rows(r, idle.get(c), s4_hosts) for r, c in zip(runs, columns)]
    labels = [label for label, _ in by_col[0]]
    heads = [f"{c.name} v{c.family}" for c in columns]
    width = max(len(x) for x in labels)
    cells = [[col[i][1] for col in by_col] for i in range(len(labels))]
    cws = [max(len(heads[j]), *(len(cells[i][j]) for i in range(len(labels)))) for j in range(len(heads))]
    out = ["  ".join([" " * width] + [h.ljust(w) for h, w in zip(heads, cws)])]
    for label, line in zip(labels, cells):
        out.append("  ".join([label.ljust(width)] + [c.ljust(w) for c, w in zip(line, cws)]))
    return "\n".join(x.rstrip() for x in out)


def targets(runs: list[dict], idle: dict[Column, IdleResult]) -> list[str]:
    out = []
    for run in runs:
        if run["daemon"] != "ours":
            continue
        col = Column(run["daemon"], run["family"])
        checks = (
            ("proxy latency median", _get(run, "S1", "proxy_up_ms", "med"), TARGET_PROXY_UP_MS, "ms"),
            ("join -> first data median", _get(run, "S1", "proxy_data_ms", "med"), TARGET_PROXY_DATA_MS, "ms"),
            ("idle CPU", idle[col].cpu_pct if col in idle else None, TARGET_IDLE_CPU_PCT, "%"),
        )
        for what, value, limit, unit in checks:
            verdict = "MISSED" if value is None or value > limit else "met"
            out.append(f"target ours v{col.family}: {what} {_f(value, 3)} {unit} <= {limit} {unit}: {verdict}")
    return out


# -- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--proxybench", type=Path, default=DEFAULT_PROXYBENCH, help="path of proxybench.py")
    p.add_argument("--conf-template", type=Path, help="mcproxy grammar template (default: next to proxybench)")
    p.add_argument("--ours-cmd", default=OURS_CMD, help="our daemon's command template")
    p.add_argument("--igmpproxy", default="igmpproxy", help="igmpproxy binary")
    p.add_argument("--quick", action="store_true", help="proxybench --quick and a 15 s idle window")
    p.add_argument("--hosts", type=int, default=30, help="hosts (downstreams) of the proxybench runs")
    p.add_argument("--s4-groups", default="2000", help="S4 group counts (proxybench --s4-groups)")
    p.add_argument("--idle-seconds", type=float, help="idle window (default 60, --quick 15)")
    p.add_argument("--idle-hosts", type=int, default=4)
    p.add_argument("--idle-groups", type=int, default=2, help="groups joined per idle host")
    p.add_argument("--ready-timeout", type=float, default=10.0)
    p.add_argument("--from-json", type=Path, help="reuse a proxybench results JSON instead of running it")
    p.add_argument("--json", type=Path, help="write proxybench runs + idle results here")
    p.add_argument("proxybench_args", nargs="*", help="after --: more proxybench arguments")
    args = p.parse_args(argv)
    args.conf_template = args.conf_template or args.proxybench.parent / "mcproxy-grammar.conf.in"
    if args.idle_seconds is None:
        args.idle_seconds = 15.0 if args.quick else 60.0
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        raise SystemExit("daemon_bench needs root (network namespaces)")
    if not args.proxybench.is_file():
        raise SystemExit(f"proxybench not found at {args.proxybench} (use --proxybench PATH)")
    pb = load_proxybench(args.proxybench)
    outdir = Path(tempfile.mkdtemp(prefix="mpb-"))
    t0 = time.monotonic()
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
    else:
        results = run_proxybench(args, outdir / "proxybench.json")
    runs = results["runs"]
    ours = pb.Spec("ours", args.ours_cmd, args.conf_template.read_text(), (4, 6), "cmd")
    specs = {"ours": ours, "igmpproxy": pb.make_preset(f"igmpproxy:{args.igmpproxy}")}
    columns = [Column(r["daemon"], r["family"]) for r in runs if r["daemon"] in specs]
    idle = {r.column: r for r in measure_idle(pb, specs, columns, args, outdir)}
    json_path = args.json or outdir / "daemon_bench.json"
    with open(json_path, "w") as f:
        json.dump({"proxybench": results, "idle": [r.as_dict() for r in idle.values()]}, f, indent=1)
    print()
    print(table(runs, idle, args.hosts))
    print()
    print("\n".join(targets(runs, idle)))
    print(f"\nJSON: {json_path}   logs: {outdir} and {results['meta'].get('outdir')}   "
          f"total {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
