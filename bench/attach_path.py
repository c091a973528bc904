"""The attach fast path: ``binding attach`` at a MAG that already receives the group -> first packet.

One MAG namespace runs mcproxy-pmip with the pmipv6 plugin; its tunnel is
a veth (``t0``) from a source namespace sending one IPv4 and one IPv6
group at ``--rate`` packet/s each. A first mobile node (``mn0``, its own
point-to-point access link) is attached and joins both groups, so the
tunnel's instance exists and the data already arrives on the tunnel. Then,
``--runs`` times, a new access link (``a<i>``, a veth to the namespace of
the arriving MN) is created, given time to show up in the daemon's interface
monitor, and attached through the real control socket with ``mn0``'s
context (``context-export``); after the measurement the MN is detached and
its link deleted. With ``--bridge`` the access link is one bridge (``acc0``)
shared with ``mn0`` and the new MN's veth becomes a port of it: the bridge
already carries the groups, so the attach changes nothing in the data plane
and the figures show what the attach costs the daemon only. Per repetition:

- request sent -> reply received;
- request sent -> first data packet of each family on the new access link
  (kernel receive timestamps of a packet socket in the MN's namespace);
- the daemon's own step times: the daemon runs under a probe (this script
  with ``--probe``) that wraps the steps of the attach path (control
  request, binding, instance lookup, interface lookup, plane
  ``add_interface``, packet socket ``watch``, the engine's
  ``add_downstream`` and its General Query, the context import, the
  forwarding flush at the end of the reactor turn, every nft batch, each
  log record) and writes every span with CLOCK_MONOTONIC times at exit.

Median and spread (min-max) over the repetitions. The nftables plane always;
the MRT plane where the kernel has multicast routing, else skipped with the
missing option named. Namespaces are named ``afp-<run>-...`` and removed at
the end, on failure and on Ctrl-C. Needs root.

    sudo .venv/bin/python bench/attach_path.py                  # 20 repetitions per plane
    sudo .venv/bin/python bench/attach_path.py -n 40 --planes nftables --bridge
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from capture import HOST_FILTER, SO_TIMESTAMPNS, open_capture, parse_frame  # noqa: E402 (after the path)
from harness import HostMember, wait_for  # noqa: E402
from netns_topology import Registry, install_cleanup, mroute_missing, new_run_id, run  # noqa: E402
from traffic import TrafficSource  # noqa: E402

from mcproxy_pmip.control.client import ControlClient  # noqa: E402

#: (module, class, method, label) of the steps the probe times in the daemon
PROBED = (
    ("mcproxy_pmip.control.server", "ControlProtocol", "lineReceived", "control_request"),
    ("mcproxy_pmip_plugins.pmipv6.bindings", "BindingTable", "_attach", "binding_attach"),
    ("mcproxy_pmip.proxy.api", "ProxyApi", "find_or_create_instance", "instance_lookup"),
    ("mcproxy_pmip.proxy.api", "ProxyApi", "add_downstream", "add_downstream"),
    ("mcproxy_pmip.proxy.proxy", "Proxy", "lookup", "interface_lookup"),
    ("mcproxy_pmip.proxy.attachments", "InterfaceAttachments", "attach", "attachments_attach"),
    ("mcproxy_pmip.dataplane.nft_instance", "NftInstancePlane", "add_interface", "plane_add_interface"),
    ("mcproxy_pmip.dataplane.mroute", "MrouteInstancePlane", "add_interface", "plane_add_interface"),
    ("mcproxy_pmip.kernel.packet_socket", "FamilyPacketSocket", "watch", "packet_watch"),
    ("mcproxy_pmip.membership.instance", "InstanceCore", "add_downstream", "core_add_downstream"),
    ("mcproxy_pmip.proxy.sender", "Sender", "send_query", "send_query"),
    ("mcproxy_pmip.proxy.sender", "Sender", "send_report", "send_report"),
    ("mcproxy_pmip.dataplane.nft_instance", "NftInstancePlane", "refresh", "plane_refresh"),
    ("mcproxy_pmip.dataplane.mroute", "MrouteInstancePlane", "refresh", "plane_refresh"),
    ("mcproxy_pmip.proxy.api", "ProxyApi", "import_records", "context_import"),
    ("mcproxy_pmip.proxy.dispatch", "ActionDispatcher", "_flush_forwarding", "forwarding_flush"),
    ("mcproxy_pmip.dataplane.nft_instance", "NftInstancePlane", "groups_changed", "plane_groups_changed"),
    ("mcproxy_pmip.dataplane.mroute", "MrouteInstancePlane", "groups_changed", "plane_groups_changed"),
    ("mcproxy_pmip.kernel.nft", "NftContext", "run", "nft_batch"),
    ("mcproxy_pmip.kernel.nft_netlink", "NftNetlink", "commit", "nft_netlink_batch"),
    ("mcproxy_pmip.control.server", "ControlProtocol", "_send", "control_reply"),
    ("mcproxy_pmip.proxy.reader", "SocketReader", "doRead", "socket_read"),
    ("mcproxy_pmip.proxy.timer_driver", "TimerDriver", "_fire", "engine_timer"),
    ("logging", "Logger", "handle", "log_record"),
)
GROUPS = {4: "239.7.1.1", 6: "ff3e::7:1"}
SOURCES = {4: "10.71.0.2", 6: "fd71::2"}
SETTLE_INTERVAL = 0.3     # seconds between creating a link and attaching it (the monitor must have seen it)
#: probe labels of the plane's transactions -> how they went to the kernel
BATCHES = {"nft_batch": "nft text", "nft_netlink_batch": "netlink"}
FIRST_PACKET_TIMEOUT = 2.0  # seconds to wait for the first packet of each family


# -- the probe (runs inside the daemon's process) -------------------------------------------------

def run_probed_daemon(out: str, argv: list[str]) -> int:
    """Wrap the PROBED steps with span recorders, run the daemon, write the spans to ``out`` at exit."""
    import functools
    import importlib

    clock = time.clock_gettime_ns
    spans: list[tuple[str, int, int, int]] = []
    handle = open(out, "w")     # opened before the daemon drops its privileges

    def wrap(label: str, method: Callable) -> Callable:
        @functools.wraps(method)
        def timed(*args, **kwargs):
            started = clock(time.CLOCK_MONOTONIC)
            try:
                return method(*args, **kwargs)
            finally:
                size = len(args[1]) if label in BATCHES and not isinstance(args[1], str) else 1
                spans.append((label, started, clock(time.CLOCK_MONOTONIC), size))
        return timed

    missing = []
    for module_name, class_name, method_name, label in PROBED:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
            setattr(cls, method_name, wrap(label, getattr(cls, method_name)))
        except (ImportError, AttributeError):
            missing.append(f"{class_name}.{method_name}")
    from mcproxy_pmip.cli import main
    try:
        return main(argv)
    finally:
        json.dump({"spans": spans, "missing": missing}, handle)
        handle.close()


# -- the bench ------------------------------------------------------------------------------------

def build(registry, run_id: str, bridge: bool):
    """src --t0-- mag --d0-- mn0; returns the namespaces (src, mag, mn0, mn)."""
    base = f"afp-{run_id}-"
    src, mag, mn0, mn = registry.add_namespaces([base + "src", base + "mag", base + "mn0", base + "mn"])
    for ns in (src, mag, mn0, mn):
        for key in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
            ns.write_sysctl(key, 0)
    run(["ip", "-batch", "-"], f"link add t0 netns {mag.name} type veth peer name e0 netns {src.name}\n"
                               f"link add d0 netns {mag.name} type veth peer name e0 netns {mn0.name}\n")
    src.batch(["link set lo up", f"addr add {SOURCES[4]}/24 dev e0", f"addr add {SOURCES[6]}/64 dev e0 nodad",
               "link set e0 up", "route add default via 10.71.0.1", "route add default via fd71::1"])
    access = ["link add acc0 type bridge", "link set acc0 up", "link set d0 master acc0", "link set d0 up",
              "addr add 10.72.0.1/24 dev acc0", "addr add fd72::1/64 dev acc0 nodad"] if bridge else \
        ["addr add 10.72.0.1/24 dev d0", "addr add fd72::1/64 dev d0 nodad", "link set d0 up"]
    mag.batch(["link set lo up", "addr add 10.71.0.1/24 dev t0", "addr add fd71::1/64 dev t0 nodad",
               "link set t0 up", *access])
    mn0.batch(["link set lo up", "addr add 10.72.0.2/24 dev e0", "addr add fd72::2/64 dev e0 nodad",
               "link set e0 up"])
    mn.batch(["link set lo up"])
    return src, mag, mn0, mn


def new_access_link(mag, mn, index: int, bridge: bool) -> str:
    """A fresh access link ``a<index>`` for the arriving MN (its end ``e0`` in ``mn``); the name to attach."""
    run(["ip", "-n", mag.name, "link", "add", f"a{index}", "type", "veth", "peer", "name", "e0",
         "netns", mn.name])
    if bridge:
        mag.batch([f"link set a{index} master acc0", f"link set a{index} up"])
    else:
        mag.batch([f"addr add 10.73.{index}.1/24 dev a{index}", f"addr add fd73:{index:x}::1/64 dev a{index} nodad",
                   f"link set a{index} up"])
    mn.batch(["link set e0 up"])
    return "acc0" if bridge else f"a{index}"


def monotonic_now() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def measure_plane(plane: str, args, registry) -> dict | None:
    """One daemon on ``plane``: the repetitions' figures, or None when the kernel lacks the plane."""
    run_id = new_run_id()
    src, mag, mn0, mn = build(registry, run_id, args.bridge)
    try:
        if plane == "mroute":
            missing = [reason for family in (4, 6) if (reason := mroute_missing(mag, family))]
            if missing:
                print(f"plane mroute skipped: {'; '.join(missing)}", flush=True)
                return None
        workdir = Path(tempfile.mkdtemp(prefix="afp-"))
        config = workdir / "mag.yaml"
        config.write_text("protocols: [IGMPv3, MLDv2]\nplugins:\n  pmipv6: {}\n")
        control, spans_file = workdir / "mag.sock", workdir / "spans.json"
        log_file = open(workdir / "mag.log", "wb")
        argv = [str(Path(sys.executable)), os.path.abspath(__file__), "--probe", str(spans_file), "--",
                "-f", str(config), "--control", str(control), "--data-plane", plane,
                *(["-d"] if args.debug else [])]
        daemon = registry.popen(mag, argv, stdout=log_file, stderr=log_file, stdin=subprocess.DEVNULL)
        if not wait_for(control.exists, 20):
            raise RuntimeError(f"daemon did not open its control socket: {(workdir / 'mag.log').read_text()[-400:]}")
        client = ControlClient(str(control), timeout=10)
        client.request("binding", event="attach", mn_id="mn0", access_if="d0" if not args.bridge else "acc0",
                       tunnel_if="t0")
        members = [HostMember(mn0, family) for family in (4, 6)]
        for member in members:
            member.join(GROUPS[member.family])
        sources = [TrafficSource(registry, src, family) for family in (4, 6)]
        for source, family in zip(sources, (4, 6)):
            source.start(SOURCES[family], [GROUPS[family]], args.rate)
        context = wait_for(lambda: _full_context(client), 10)
        if not context:
            raise RuntimeError("mn0's context never held both groups")
        rows = []
        for index in range(1, args.runs + 1):
            rows.append(_repetition(index, args, client, context, mag, mn))
            print(f"  {plane} {index}/{args.runs}: reply {rows[-1]['reply_ms']:.2f} ms, "
                  f"first packet v4 {_fmt(rows[-1]['first_ms'][4])} v6 {_fmt(rows[-1]['first_ms'][6])} ms",
                  file=sys.stderr, flush=True)
        client.close()
        for source in sources:
            source.close()
        registry.stop_process(daemon)
        log_file.close()
        print(f"  daemon log and spans: {workdir}", file=sys.stderr)
        recorded = json.loads(spans_file.read_text())
        if recorded["missing"]:
            print(f"  probe: not found in this tree: {', '.join(recorded['missing'])}", file=sys.stderr)
        _attribute(rows, recorded["spans"])
        return {"plane": plane, "rows": rows}
    finally:
        registry.remove_namespaces([src, mag, mn0, mn])


def _full_context(client) -> list | None:
    context = client.request("context-export", mn_id="mn0").get("context", [])
    return context if {entry["family"] for entry in context} == {"ipv4", "ipv6"} else None


def _repetition(index: int, args, client: ControlClient, context: list, mag, mn) -> dict:
    """Attach MN ``index`` on a new link with ``context``; its figures (times in ms after the request)."""
    access = new_access_link(mag, mn, index, args.bridge)
    capture = open_capture(mn, "e0", HOST_FILTER)
    try:
        time.sleep(SETTLE_INTERVAL)     # the daemon's interface monitor sees the new link
        _drain(capture)
        sent_mono, sent_real = monotonic_now(), time.time()
        client.request("binding", event="attach", mn_id=f"mn{index}", access_if=access, tunnel_if="t0",
                       context=context)
        reply = time.time() - sent_real
        firsts = {family: None if t is None else (t - sent_real) * 1e3
                  for family, t in _first_data(capture, FIRST_PACKET_TIMEOUT).items()}
    finally:
        capture.close()
    detach_mono = monotonic_now()
    client.request("binding", event="detach", mn_id=f"mn{index}")
    run(["ip", "-n", mag.name, "link", "del", f"a{index}"])
    return {"reply_ms": reply * 1e3, "first_ms": firsts, "sent_mono": sent_mono, "detach_mono": detach_mono}


def _drain(capture) -> None:
    """Forget what the capture holds already (the MN's own link set-up)."""
    while True:
        try:
            capture.recv(2048)
        except BlockingIOError:
            return


def _first_data(capture, timeout: float) -> dict[int, float | None]:
    """Kernel receive time (CLOCK_REALTIME) of the first packet of each family's group on the capture."""
    wanted = {ipaddress.ip_address(group).packed: family for family, group in GROUPS.items()}
    found: dict[int, float | None] = {family: None for family in GROUPS}
    deadline = time.monotonic() + timeout
    while None in found.values() and time.monotonic() < deadline:
        select.select([capture], [], [], max(0.0, deadline - time.monotonic()))
        while True:
            try:
                frame, cmsgs, _flags, _address = capture.recvmsg(2048, socket.CMSG_SPACE(16))
            except BlockingIOError:
                break
            parsed = parse_frame(frame)
            family = wanted.get(parsed.dst) if parsed is not None and parsed.proto == 17 else None
            if family is None or found[family] is not None:
                continue
            for level, kind, data in cmsgs:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = struct.unpack("qq", data[:16])
                    found[family] = seconds + nanoseconds * 1e-9
    return found


def _attribute(rows: list[dict], spans: Sequence) -> None:
    """Per repetition (from its attach request to its detach): each probed step's total time, count and
    first start, and when the last nft batch ended."""
    for row in rows:
        start, end = row["sent_mono"], row["detach_mono"]
        steps: dict[str, list[float]] = collections.defaultdict(list)
        starts: dict[str, float] = {}
        batch_ends = []
        request_at = None
        batches = []
        for label, begun, ended, size in spans:
            if not start <= begun < end:
                continue
            if label == "control_request" and request_at is None:
                request_at = begun
            steps[label].append((ended - begun) / 1e6)
            starts.setdefault(label, (begun - start) / 1e6)
            if label in BATCHES:
                batch_ends.append((ended - start) / 1e6)
                batches.append((BATCHES[label], size, (ended - begun) / 1e6))
        row["steps"] = {label: (sum(times), len(times), starts[label]) for label, times in steps.items()}
        row["request_received_ms"] = None if request_at is None else (request_at - start) / 1e6
        row["last_batch_end_ms"] = max(batch_ends) if batch_ends else None
        row["nft_batches"] = batches


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def spread(values: Sequence[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    return f"{statistics.median(present):7.2f} [{min(present):.2f}-{max(present):.2f}]" + (
        f" ({len(values) - len(present)} missing)" if len(present) < len(values) else "")


def report(result: dict) -> str:
    rows = result["rows"]
    lines = [f"plane {result['plane']}, {len(rows)} attaches: median [min-max], ms"]
    lines.append(f"  request -> reply                {spread([r['reply_ms'] for r in rows])}")
    for family in (4, 6):
        lines.append(f"  request -> first packet IPv{family}    {spread([r['first_ms'][family] for r in rows])}")
    lines.append(f"  request -> daemon reads it      {spread([r['request_received_ms'] for r in rows])}")
    lines.append(f"  request -> last nft batch ends  {spread([r['last_batch_end_ms'] for r in rows])}")
    for position in range(max(len(r["nft_batches"]) for r in rows)):
        batches = [r["nft_batches"][position] for r in rows if len(r["nft_batches"]) > position]
        commands = statistics.median(size for _, size, _ in batches)
        kinds = "/".join(sorted({kind for kind, _, _ in batches}))
        lines.append(f"  nft batch {position + 1} ({kinds}, {commands:g} changes) {spread([t for _, _, t in batches])}")
    labels = sorted({label for r in rows for label in r["steps"]}, key=lambda name: [p[3] for p in PROBED].index(name))
    lines.append("  daemon steps: total time per attach, calls, first call's start after the request")
    for label in labels:
        times = [r["steps"].get(label, (0.0, 0, None))[0] for r in rows]
        calls = statistics.median([r["steps"].get(label, (0.0, 0, None))[1] for r in rows])
        if not calls:
            continue    # a step most attaches do not take (a read that happened to fall in the window)
        begins = [r["steps"].get(label, (0.0, 0, None))[2] for r in rows]
        lines.append(f"    {label:22s} {spread(times)}  x{calls:<3g} at {spread(begins)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--probe"]:
        return run_probed_daemon(argv[1], argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=20)
    parser.add_argument("--planes", default="nftables,mroute")
    parser.add_argument("--rate", type=float, default=1000.0, help="packet/s per family")
    parser.add_argument("--bridge", action="store_true", help="access links are ports of one bridge")
    parser.add_argument("--debug", action="store_true", help="run the daemon with -d")
    parser.add_argument("--json", type=Path, help="write every repetition here")
    args = parser.parse_args(argv)
    registry = Registry()
    install_cleanup(registry)
    results = []
    for plane in [p for p in args.planes.split(",") if p]:
        result = measure_plane(plane, args, registry)
        if result is not None:
            results.append(result)
            print(report(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
