"""Runs a scenario end to end and writes the results folder.

Decide the daemons' data plane and with it the plan (``planes``), build the
domain, start a daemon on every LMA and MAG and read back the plane each one
chose, captures on the MAG tunnels, a receiver per subscribed MN and the
sender; drive the handovers on schedule; stop everything; measure, write
``results.json`` (rows, the handover timeline, fault totals; through
``results.write_results``) and ``plot.png``. Everything is torn down on success,
failure and Ctrl-C.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcproxy_pmip_plugins.pmipv6 import peer_pki
from mcproxy_pmip_testbed import capture, planes
from mcproxy_pmip_testbed.build import Testbed
from mcproxy_pmip_testbed.control import ControlClient
from mcproxy_pmip_testbed.daemons import DaemonRole, DaemonSpec, ProxyInstancePlan
from mcproxy_pmip_testbed.driver import HandoverDriver
from mcproxy_pmip_testbed.measure import StreamInfo, fault_totals, measure
from mcproxy_pmip_testbed.payload import parse_arrivals
from mcproxy_pmip_testbed.plan import PREFIX, SOURCE_V4, SOURCE_V6, Plan
from mcproxy_pmip_testbed.plot import plot_run
from mcproxy_pmip_testbed.results import write_results
from mcproxy_pmip_testbed.scenario import Scenario

log = logging.getLogger(__name__)
PEER_PORT = 7411
Progress = Callable[[str], None]


def best_mode(spec: DaemonSpec) -> str:
    return "context" if spec.supports_plugin else "static"


def tunnel_for_lma(plan: Plan, mag: str) -> dict[str, str]:
    """pmipv6 ``tunnel_for_lma`` of ``mag``: each LMA address an MN's binding may name (the LMA's
    underlay address towards any MAG) -> ``mag``'s tunnel to that LMA, where a context pushed by
    the MN's previous MAG prepares the MN."""
    return {str(t.lma_underlay.ip): plan.tunnel(t.lma, mag).mag_tunnel_if for t in plan.tunnels}


def peer_settings(plan: Plan, mag: str, tls_dir: Path | None = None) -> dict[str, Any]:
    """pmipv6 settings of the MAG-to-MAG context channel: listen on the MAG's underlay
    address, every other MAG a peer; mutual TLS with a key and certificate made in
    ``tls_dir`` (one CA per run), plaintext without one."""
    def where(node: str) -> str:
        return f"[{plan.mag_peer_address(node)}]:{PEER_PORT}"
    settings = {"name": mag, "listen": where(mag),
                "peers": {other: where(other) for other in plan.topology.mags if other != mag}}
    if tls_dir is None:
        return {**settings, "insecure_plaintext": True}
    return {**settings, **peer_pki.make_domain(tls_dir, [mag])[mag]}


def daemon_roles(plan: Plan, mode: str, transfer: str = "control",
                 tls_dir: Path | None = None) -> list[DaemonRole]:
    roles = []
    for lma in plan.topology.lmas:
        tunnels = tuple(t.lma_tunnel_if for t in plan.tunnels if t.lma == lma)
        underlays = tuple(t.lma_underlay_if for t in plan.tunnels if t.lma == lma)
        roles.append(DaemonRole(node=lma, kind="lma", mode=mode, instances=(
            ProxyInstancePlan(lma, plan.lma_source_if(), tunnels),),
            other_interfaces=("lo", *underlays)))
    for mag in plan.topology.mags:
        instances = tuple(
            ProxyInstancePlan(f"{mag}{lma}", plan.tunnel(lma, mag).mag_tunnel_if,
                              plan.mag_downstreams(mag, lma))
            for lma in plan.topology.lmas)
        underlays = tuple(plan.tunnel(lma, mag).mag_underlay_if for lma in plan.topology.lmas)
        settings: dict[str, Any] = {}
        if mode == "predictive" or (mode == "context" and transfer != "control"):
            settings = peer_settings(plan, mag, tls_dir)
        if mode == "predictive":
            settings["tunnel_for_lma"] = tunnel_for_lma(plan, mag)
        roles.append(DaemonRole(node=mag, kind="mag", mode=mode, instances=instances,
                                other_interfaces=("lo", *underlays), plugin_settings=settings))
    return roles


def _connect(path: Path, interval: float) -> ControlClient | None:
    """A client of the control socket at ``path`` once it accepts, None after ``interval``.

    The socket file exists from the daemon's bind on, a moment before it listens: a
    connection refused in that moment is tried again.
    """
    deadline_at = time.monotonic() + interval
    while True:
        try:
            return ControlClient(path)
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline_at:
                return None
            time.sleep(0.02)


class ScenarioRun:
    def __init__(self, scenario: Scenario, mode: str, out: Path, spec: DaemonSpec,
                 progress: Progress, prefix: str = PREFIX) -> None:
        self.scenario = scenario
        self.mode = mode
        self.out = out
        self.spec = spec
        self.progress = progress
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"results folder {out} is not empty; choose another --out")
        self.transfer = scenario.options.context_transfer if mode == "context" else None
        self.data_plane = scenario.options.data_plane
        decision = planes.decide(self.data_plane, spec, scenario.topology,
                                 lambda plan: daemon_roles(plan, mode, self.transfer or "control"),
                                 prefix=prefix)
        self.plan = decision.plan
        self.expected_planes = decision.expected
        self.planes: dict[str, str | None] = {}  # node -> the plane its daemon runs on
        self.sockdir = Path(tempfile.mkdtemp(prefix=f"{prefix}{self.plan.run_id}-"))
        self.controls: dict[str, ControlClient] = {}
        self.streams = {i: StreamInfo(i, s.name, "ipv4" if s.family.value == 4 else "ipv6",
                                      str(s.group))
                        for i, s in enumerate(scenario.streams)}
        self.captures: dict[str, Path] = {}

    def _start_daemons(self, testbed: Testbed) -> None:
        for role in daemon_roles(self.plan, self.mode, self.transfer or "control", self.sockdir / "peer-tls"):
            config = self.out / f"{role.node}.conf"
            config.write_text(self.spec.write_config(role))
            control = self.sockdir / f"{role.node}.sock"
            testbed.processes.start(f"daemon-{role.node}", self.plan.ns(role.node),
                                    self.spec.command(role, config, control, self.data_plane))
            if self.spec.has_control:
                client = _connect(control, 10.0)
                if client is None:
                    raise RuntimeError(f"{self.spec.name} on {role.node} opened no control "
                                       f"socket (log: {testbed.processes.log_path('daemon-' + role.node)})")
                self.controls[role.node] = client
            self.planes[role.node] = self._running_plane(role.node)
        transfer = f", context transfer {self.transfer}" if self.transfer else ""
        self.progress(f"daemons: {self.spec.name} on {len(self.plan.topology.lmas)} LMA(s) and "
                      f"{len(self.plan.topology.mags)} MAG(s), mode {self.mode}{transfer}, "
                      f"data plane {planes.plane_summary(self.planes)}")

    def _running_plane(self, node: str) -> str | None:
        """The plane the node's daemon runs on: its ``status`` says; without a control socket,
        the one its spec allows. A plane other than the one expected is logged."""
        expected = self.expected_planes[node]
        if node not in self.controls:
            return expected.name
        plane = self.controls[node].request("status").get("data_plane")
        if plane != expected.name:
            log.warning("data_plane_unexpected node=%s plane=%s expected=%s reason=%s", node, plane,
                        expected.name, expected.reason)
        return plane

    def _start_captures(self, testbed: Testbed) -> None:
        wanted = {(t.mag, t.mag_tunnel_if): capture.REPORTS_ONLY for t in self.plan.tunnels}
        for item in self.scenario.options.capture:  # chosen links: every packet
            wanted[tuple(item.split(":", 1))] = None
        for (node, ifname), bpf_filter in wanted.items():
            path = self.out / f"{node}-{ifname}.pcap"
            testbed.processes.start(f"tcpdump-{node}-{ifname}", self.plan.ns(node),
                                    capture.tcpdump_argv(ifname, str(path),
                                                         bpf_filter=bpf_filter))
            self.captures[f"{node}:{ifname}"] = path
        deadline_at = time.monotonic() + 5.0
        for path in self.captures.values():  # tcpdump writes the pcap header once listening
            while not (path.exists() and path.stat().st_size >= 24):
                if time.monotonic() > deadline_at:
                    raise RuntimeError(f"tcpdump did not start: {path}")
                time.sleep(0.02)

    def _start_traffic(self, testbed: Testbed) -> None:
        for mn in self.plan.mns:
            joins = []
            for name in self.scenario.subscriptions.get(mn.name, ()):
                index = next(i for i, s in self.streams.items() if s.name == name)
                stream = self.scenario.stream(name)
                spec = f"{index},{stream.group},{stream.port}"
                if stream.source_specific:
                    spec += f",{SOURCE_V4.ip if stream.family.value == 4 else SOURCE_V6.ip}"
                joins += ["--join", spec]
            if joins:
                testbed.processes.start(
                    f"receiver-{mn.name}", self.plan.ns(mn.name),
                    [sys.executable, "-m", "mcproxy_pmip_testbed.receiver", "--iface", mn.mn_if,
                     "--log", str(self.out / f"{mn.name}.arrivals"), *joins], ready_line="ready")
        argv = [sys.executable, "-m", "mcproxy_pmip_testbed.sender", "--iface", "bb0",
                "--summary", str(self.out / "sender.json")]
        for index, stream in enumerate(self.scenario.streams):
            argv += ["--stream", f"{index},{stream.group},{stream.port},{stream.rate},"
                                 f"{stream.payload_size}"]
        testbed.processes.start("sender", self.plan.ns("src"), argv)

    def execute(self) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        options = self.scenario.options
        with Testbed(self.plan, self.out, options.mn_sees_link_change) as testbed:
            self.progress(f"built {len(self.plan.namespaces)} namespaces in "
                          f"{testbed.build_interval:.2f}s (run {self.plan.run_id}, tunnel "
                          f"{testbed.tunnel_kind})")
            try:
                self._start_daemons(testbed)
                self._start_captures(testbed)
                driver = HandoverDriver(testbed, self.mode, self.controls,
                                        options.binding_lifetime, transfer=self.transfer,
                                        lead_interval=options.prepare_lead_interval)
                for mn in self.plan.mns:
                    driver.initial_attach(mn.name)
                self._start_traffic(testbed)
                origin_at = time.time()
                started = time.monotonic()
                for step in self.scenario.handovers:
                    delay = started + step.at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    dead = testbed.processes.check_alive()
                    if dead:
                        raise RuntimeError(f"processes exited early: {dead}")
                    record = driver.handover(step)
                    self.progress(f"[{time.monotonic() - started:6.2f}s] handover "
                                  f"{record.index}: {step.mn} {record.from_mag} -> {step.to}")
                lead = options.prepare_lead_interval if self.mode == "predictive" else 0.0
                remaining = started + self.scenario.duration_interval + lead - time.monotonic()
                if remaining > 0:
                    time.sleep(remaining)
                end_at = time.time()
            finally:
                for client in self.controls.values():
                    client.close()
                testbed.processes.stop_all()
                shutil.rmtree(self.sockdir, ignore_errors=True)
        return self._results(driver.records, origin_at, end_at, testbed.tunnel_kind,
                             testbed.build_interval)

    def _results(self, records, origin_at: float, end_at: float, tunnel_kind: str,
                 build_interval: float | None) -> dict[str, Any]:
        arrivals = {}
        for mn in self.plan.mns:
            path = self.out / f"{mn.name}.arrivals"
            if path.exists():
                with path.open() as lines:
                    arrivals[mn.name] = list(parse_arrivals(lines))
        reports: dict[tuple[str, str], list[float]] = {}
        for key, path in self.captures.items():
            node = key.split(":")[0]
            if node not in self.plan.topology.mags or not path.exists():
                continue
            for seen in capture.reports_in_pcap(path.read_bytes()):
                for group in seen.joined:
                    reports.setdefault((node, group), []).append(seen.at)
        subscriptions = {
            mn: [i for i, s in self.streams.items() if s.name in names]
            for mn, names in self.scenario.subscriptions.items()}
        rows = measure(records, self.streams, subscriptions, arrivals, end_at, reports)
        results = {
            "run_id": self.plan.run_id, "mode": self.mode, "context_transfer": self.transfer,
            "daemon": self.spec.name, "data_plane": self.data_plane, "data_planes": self.planes,
            "access_bridge": self.plan.access_bridge,
            "tunnel": tunnel_kind, "build_seconds": build_interval, "started_at": origin_at,
            "ended_at": end_at, "handovers": rows,
            "timeline": [record.timeline() for record in records], **fault_totals(rows),
        }
        write_results(self.out / "results.json", results)
        plot_run(self.out / "plot.png", arrivals, self.streams, records, origin_at)
        return results


def run_scenario(scenario: Scenario, mode: str, out: Path, spec: DaemonSpec,
                 progress: Progress = lambda _text: None, prefix: str = PREFIX) -> dict[str, Any]:
    return ScenarioRun(scenario, mode, out, spec, progress, prefix).execute()
