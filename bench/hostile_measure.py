"""What ``hostile_bench`` measures during one phase (attack off or on), and how it sums the phases up.

During a phase the measuring thread, on a fixed schedule:

- makes the member host's kernel join a new group per family every
  ``join_interval`` (RFC 3678 socket options; the kernel sends the report)
  and leave it ``LEAVE_AFTER`` later, so that the member holds a handful of
  groups however long the run;
- asks the daemon's control socket for ``status`` ``status_rate`` times a
  second, timing each answer (a timeout counts as the timeout);
- samples the daemon's RSS (``/proc/PID/status`` VmRSS) and CPU time.

The recorder thread (``capture.Recorder`` with gap tracking) timestamps in
the kernel the member's reports on its link, the proxy's reports on the
upstream link and every data packet arriving at the member. After the phase:
report → upstream latency per join (first upstream join record of the group
at or after the host's first report; a miss when none came by the scoring,
``SCORE_GRACE`` after the phase), the largest gap between data packets per
family, status latencies, peak RSS. The status requests run on a thread of
their own, so a slow answer does not hold up the joins.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from dataclasses import dataclass, field

import capture
import daemons
from capture import JOIN
from mcproxy_pmip.control.client import ControlClient, ControlError

SCORE_GRACE = 2.0       # seconds after a phase before its joins are scored (the last join's report may lag)
STATUS_TIMEOUT = 5.0
SAMPLE_INTERVAL = 0.25
LEAVE_AFTER = 5.0       # seconds a measured group stays joined (the link's group cap must never bite)


class GapRecorder(capture.Recorder):
    """``capture.Recorder`` that also keeps the largest gap between data packets per (host, group)."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[tuple[int, bytes], float] = {}
        self._max_gap: dict[tuple[int, bytes], float] = {}

    def _data(self, host: int, frame: capture.Frame, t: float) -> None:
        super()._data(host, frame, t)
        key = (host, frame.dst)
        with self._lock:
            last = self._last.get(key)
            if last is not None and t - last > self._max_gap.get(key, 0.0):
                self._max_gap[key] = t - last
            self._last[key] = t

    def take_gap(self, host: int, group: bytes, until: float) -> float | None:
        """Largest gap since the previous ``take_gap`` of the key, counting the silence up to ``until``."""
        with self._lock:
            key = (host, group)
            last = self._last.get(key)
            if last is None:
                return None
            gap = max(self._max_gap.pop(key, 0.0), until - last)
            return gap


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class PhaseResult:
    """Everything one phase measured (seconds and kB as measured; the table converts)."""

    name: str
    report_latency: dict[int, list[float]] = field(default_factory=lambda: {4: [], 6: []})
    misses: dict[int, int] = field(default_factory=lambda: {4: 0, 6: 0})
    host_silent: int = 0
    data_gap: dict[int, float | None] = field(default_factory=dict)
    status_latency: list[float] = field(default_factory=list)
    status_failures: int = 0
    rss_kb: list[int] = field(default_factory=list)
    hwm_kb: int | None = None
    cpu_s: float | None = None
    seconds: float = 0.0
    attack: list[dict] = field(default_factory=list)
    counters_grown: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        joins = self.report_latency[4] + self.report_latency[6]
        return {
            "phase": self.name, "seconds": round(self.seconds, 1),
            "report_ms": {"n": len(joins), "p50": _ms(percentile(joins, 50)), "p99": _ms(percentile(joins, 99)),
                          "max": _ms(max(joins, default=None)), "misses": sum(self.misses.values()),
                          "host_silent": self.host_silent,
                          "by_family": {f: [_ms(v) for v in values] for f, values in self.report_latency.items()}},
            "data_gap_ms": {f: _ms(v) for f, v in self.data_gap.items()},
            "status_ms": {"n": len(self.status_latency), "p50": _ms(percentile(self.status_latency, 50)),
                          "p99": _ms(percentile(self.status_latency, 99)),
                          "max": _ms(max(self.status_latency, default=None)), "failures": self.status_failures},
            "rss_mb": {"peak": _mb(max([*self.rss_kb, self.hwm_kb or 0], default=None)),
                       "last": _mb(self.rss_kb[-1] if self.rss_kb else None)},
            "cpu_share": None if self.cpu_s is None or not self.seconds else round(self.cpu_s / self.seconds, 3),
            "attack": self.attack, "counters_grown": self.counters_grown,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 2)


def _mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


@dataclass
class Phase:
    """Runs one phase; the bench hands it its running pieces."""

    recorder: GapRecorder
    members: dict          # family -> harness.HostMember on the member host
    member_host: int       # the recorder's host index of the member
    data_groups: dict      # family -> group the member receives data of
    control: str
    pid: int
    join_interval: float
    status_rate: float
    next_group: int = 0

    def group(self, family: int, index: int) -> str:
        if family == 4:
            return f"239.78.{index // 250 % 250}.{index % 250 + 1}"
        return f"ff15::78:{index + 1:x}"

    def status(self) -> dict | None:
        try:
            with ControlClient(self.control, timeout=STATUS_TIMEOUT) as client:
                return client.request("status")
        except (ControlError, OSError):
            return None

    def _ask_status(self, result: PhaseResult, stop: threading.Event) -> None:
        interval = 1.0 / self.status_rate
        due = time.monotonic()
        while not stop.wait(max(0.0, due - time.monotonic())):
            asked = time.perf_counter()
            answer = self.status()
            if answer is None:
                result.status_failures += 1
            result.status_latency.append(time.perf_counter() - asked if answer is not None else STATUS_TIMEOUT)
            due = max(due + interval, time.monotonic())

    def run(self, name: str, duration: float) -> PhaseResult:
        result = PhaseResult(name)
        counters0 = (self.status() or {}).get("counters", {})
        for family, group in self.data_groups.items():
            self.recorder.take_gap(self.member_host, ipaddress.ip_address(group).packed, capture.now())
        cpu0 = daemons.read_cpu(self.pid)
        stop = threading.Event()
        asker = threading.Thread(target=self._ask_status, args=(result, stop), name="hhb-status", daemon=True)
        started = time.monotonic()
        asker.start()
        joins: list[tuple[int, str, float]] = []
        joined: list[tuple[float, int, str]] = []
        next_join = next_sample = started
        try:
            while (t := time.monotonic()) < started + duration:
                if t >= next_join:
                    for family, member in self.members.items():
                        group = self.group(family, self.next_group)
                        joins.append((family, group, capture.now()))
                        member.join(group)
                        joined.append((t + LEAVE_AFTER, family, group))
                    self.next_group += 1
                    next_join += self.join_interval
                while joined and joined[0][0] <= t:
                    _, family, group = joined.pop(0)
                    self.members[family].leave(group)
                if t >= next_sample:
                    result.rss_kb.append(daemons.read_status(self.pid).get("VmRSS", 0))
                    next_sample += SAMPLE_INTERVAL
                time.sleep(max(0.0, min(next_join, next_sample) - time.monotonic()))
        finally:
            stop.set()
            asker.join(STATUS_TIMEOUT + 1.0)
            for _, family, group in joined:
                self.members[family].leave(group)
        result.seconds = time.monotonic() - started
        cpu1 = daemons.read_cpu(self.pid)
        if cpu0 and cpu1:
            result.cpu_s = (cpu1[1] - cpu0[1]) * 1e-9
        end = capture.now()
        for family, group in self.data_groups.items():
            result.data_gap[family] = self.recorder.take_gap(self.member_host,
                                                             ipaddress.ip_address(group).packed, end)
        result.hwm_kb = daemons.read_status(self.pid).get("VmHWM")
        time.sleep(SCORE_GRACE)
        self._score_joins(joins, result)
        counters1 = (self.status() or {}).get("counters", {})
        result.counters_grown = {k: v - counters0.get(k, 0) for k, v in counters1.items()
                                 if v != counters0.get(k, 0)}
        return result

    def _score_joins(self, joins: list[tuple[int, str, float]], result: PhaseResult) -> None:
        for family, group, joined_at in joins:
            packed = ipaddress.ip_address(group).packed
            reported = self.recorder.host_report_after(self.member_host, packed, JOIN, joined_at - 0.05)
            if reported is None:
                result.host_silent += 1
                continue
            upstream = self.recorder.upstream_after(packed, JOIN, reported)
            if upstream is None:
                result.misses[family] += 1
                continue
            result.report_latency[family].append(max(0.0, upstream - reported))
