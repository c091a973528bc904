"""The daemons under test: how to configure, start, watch and stop each one in the proxy namespace.

- ``ours``: mcproxy-pmip from this checkout (``.venv/bin/mcproxy-pmip``), data
  plane ``nftables`` or ``mroute`` (``--data-plane``), with a control socket;
- ``mcproxy``: the C++ mcproxy, only when ``--mcproxy-binary`` names it
  (same configuration grammar; multicast routing only);
- ``igmpproxy``: the Debian package, IPv4 only, multicast routing only.

Every daemon gets the column's family only (``protocol IGMPv3;`` or
``protocol MLDv2;``; igmpproxy: IPv4) with ``u0`` upstream and all ``d<i>``
downstream. Readiness: ours answers ``status`` on its control socket with
its instance started; an MRT daemon has set ``mc_forwarding`` on every
interface.

CPU seconds come from ``/proc/PID/stat`` (utime + stime, clock ticks), a
precise CPU time from the threads' ``schedstat`` (ns), peak RSS from
``VmHWM``, wakeups from the context-switch counts in ``/proc/PID/status``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mcproxy_pmip.control.client import ControlClient, ControlError

REPO = Path(__file__).resolve().parent.parent
OURS = REPO / ".venv" / "bin" / "mcproxy-pmip"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROTOCOL = {4: "IGMPv3", 6: "MLDv2"}
#: counters of ours that are not drops (accepted input, sent output, the plane's own)
NOT_DROPS = ("Received", "_report", "_leave", "_query", "_retried", "interface_gone")


@dataclass(frozen=True, slots=True)
class DaemonKind:
    """One daemon under test: which planes and families it has, and its binary."""

    name: str
    planes: tuple[str, ...]
    families: tuple[int, ...]
    binary: str | None

    def missing(self) -> str | None:
        """Why it cannot be run at all (not installed), or None."""
        if self.binary is None:
            return f"{self.name} not given"
        if shutil.which(self.binary) is None:
            return f"{self.binary} not installed"
        return None

    def config(self, family: int, downstreams: list[str]) -> str:
        if self.name == "igmpproxy":
            lines = ["quickleave", "phyint u0 upstream ratelimit 0 threshold 1", "    altnet 10.1.0.0/16"]
            lines += [f"phyint {d} downstream ratelimit 0 threshold 1" for d in downstreams]
            return "\n".join(lines) + "\n"
        return f"protocol {PROTOCOL[family]};\npinstance pxb: u0 ==> {' '.join(downstreams)};\n"

    def argv(self, conf: Path, plane: str, control: Path, debug: bool) -> list[str]:
        if self.name == "ours":
            return [self.binary, "-f", str(conf), "--data-plane", plane, "--control", str(control),
                    *(["-d"] if debug else [])]
        if self.name == "igmpproxy":
            return [self.binary, "-n", str(conf)]
        return [self.binary, "-f", str(conf)]


def daemon_kinds(igmpproxy: str, mcproxy: str | None) -> dict[str, DaemonKind]:
    return {
        "ours": DaemonKind("ours", ("nftables", "mroute"), (4, 6), str(OURS)),
        "igmpproxy": DaemonKind("igmpproxy", ("mroute",), (4,), igmpproxy),
        "mcproxy": DaemonKind("mcproxy", ("mroute",), (4, 6), mcproxy),
    }


def read_cpu(pid: int) -> tuple[float, int] | None:
    """(utime + stime in seconds from /proc/PID/stat, sum of its threads' run time in ns), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        runtime = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as handle:
                runtime += int(handle.read().split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, runtime


def read_status(pid: int) -> dict[str, int]:
    """VmHWM, VmRSS (kB) and the context switch counts of /proc/PID/status ({} if gone)."""
    wanted = ("VmHWM", "VmRSS", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
    values = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in wanted:
                    values[key] = int(rest.split()[0])
    except FileNotFoundError:
        return {}
    return values


class RunningDaemon:
    """One daemon process in the proxy namespace of one column."""

    def __init__(self, kind: DaemonKind, registry, topology, family: int, plane: str, outdir: Path,
                 tag: str, debug: bool) -> None:
        self.kind = kind
        self.registry = registry
        self.topology = topology
        self.family = family
        self.conf = outdir / f"{tag}.conf"
        self.log_path = outdir / f"{tag}.log"
        self.control = outdir / f"{tag}.sock"
        self.conf.write_text(kind.config(family, topology.downstreams))
        self.argv = kind.argv(self.conf, plane, self.control, debug)
        with open(self.log_path, "wb") as log_file:
            self.process = registry.popen(topology.px, self.argv, stdout=log_file, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float) -> str | None:
        """None when ready, else why not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return f"exited during start-up (status {self.process.returncode}): {self.log_tail(3)}"
            if self._ready():
                return None
            time.sleep(0.02)
        return f"not ready within {timeout:.0f} s"

    def _ready(self) -> bool:
        if self.kind.name == "ours":
            status = self.status()
            return bool(status and status.get("instances"))
        key = "net.ipv4.conf.{}.mc_forwarding" if self.family == 4 else "net.ipv6.conf.{}.mc_forwarding"
        interfaces = ["u0", *self.topology.downstreams]
        return all(self.topology.px.read_sysctl(key.format(i)) not in (None, "0") for i in interfaces)

    def status(self) -> dict | None:
        """Ours: the control socket's ``status`` (None if it does not answer); others: None."""
        if self.kind.name != "ours":
            return None
        try:
            with ControlClient(str(self.control), timeout=5) as client:
                return client.request("status")
        except (ControlError, OSError):
            return None

    def counters(self) -> dict[str, int] | None:
        status = self.status()
        return None if status is None else dict(status.get("counters", {}))

    def cpu(self) -> tuple[float, int] | None:
        return read_cpu(self.pid) if self.alive() else None

    def memory(self) -> dict[str, int]:
        return read_status(self.pid) if self.alive() else {}

    def stop(self) -> int:
        self.returncode = self.registry.stop_process(self.process)
        return self.returncode

    def log_tail(self, lines: int) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return " | ".join(text[-lines:])


def drops(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Drop counters of ours that grew between two ``counters`` readings."""
    grown = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    return {k: v for k, v in grown.items() if not k.startswith("nft_") and not k.endswith(NOT_DROPS)}
