"""Throw-away network-namespace topologies for the benchmarks, and their guaranteed removal.

The proxy topology (``ProxyTopology``)::

    [up] e0 -------- u0 [px] d0 -------- e0 [h0]
    10.1.0.2, .3        10.1.0.1 10.2.0.1     10.2.0.2
    fd01::2, ::3        fd01::1  fd02:0::1    fd02:0::2
                                 d1 -------- e0 [h1]  ...  dN-1 ---- e0 [hN-1]

``up`` is the upstream router with the traffic sources (two addresses per
family, for source filtering), ``px`` runs the daemon under test, each ``h<i>``
is a Linux host whose kernel is the IGMP/MLD host. Every namespace is named
``pxb-<run>-<role>``.

The proxy namespace keeps the kernel's defaults (``igmp_max_memberships`` and
friends are never raised: real MAGs run defaults); only IPv6 DAD is turned off
in every namespace, so link-local addresses are usable at once.

``Registry`` remembers every namespace and process a run creates and removes
them on normal exit, on an exception, on Ctrl-C and on SIGTERM/SIGHUP
(``install_cleanup``). Processes are ended by their pid (a leader that ignores
SIGTERM by its process group: each is started in a session of its own), what
is left in a namespace by the namespace's own pid list; never by name.

Setup uses iproute2's ``ip -batch``; code runs inside a namespace through
pyroute2's ``setns`` on the calling thread (``Namespace.entered``).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import secrets
import signal
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pyroute2 import netns as pyroute2_netns

log = logging.getLogger("bench.netns")

PREFIX = "pxb-"
MRT_INIT = 200      # IPPROTO_IP / IPPROTO_IPV6 option that starts multicast routing (MRT6_INIT is 200 too)
MROUTE_OPTION = {4: "CONFIG_IP_MROUTE", 6: "CONFIG_IPV6_MROUTE"}
STOP_GRACE = 5.0    # seconds a process gets between SIGTERM and SIGKILL


def run(argv: Sequence[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a setup command; raise ``RuntimeError`` with its stderr if it fails and ``check``."""
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def new_run_id() -> str:
    """A short random tag that makes this run's namespace names unique."""
    return secrets.token_hex(3)


@dataclass
class Namespace:
    """One namespace created by this run."""

    name: str

    def batch(self, lines: Sequence[str]) -> None:
        """``ip -n NAME -batch -``."""
        run(["ip", "-n", self.name, "-batch", "-"], "\n".join(lines) + "\n")

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the body with the calling thread in this namespace; sockets opened inside stay in it."""
        saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            pyroute2_netns.setns(self.name, flags=0)
            try:
                yield
            finally:
                pyroute2_netns.setns(saved, flags=0)
        finally:
            os.close(saved)

    def write_sysctl(self, key: str, value: object) -> None:
        with self.entered(), open("/proc/sys/" + key.replace(".", "/"), "w") as handle:
            handle.write(str(value))

    def read_sysctl(self, key: str) -> str | None:
        """The value, or None when the key does not exist in this kernel."""
        with self.entered():
            try:
                with open("/proc/sys/" + key.replace(".", "/")) as handle:
                    return handle.read().strip()
            except FileNotFoundError:
                return None

    def ifindex(self, interface: str) -> int:
        with self.entered():
            return socket.if_nametoindex(interface)

    def link_local(self, interface: str) -> str | None:
        """The interface's IPv6 link-local address (scope 0x20 in if_inet6), if it has one."""
        with self.entered(), open("/proc/thread-self/net/if_inet6") as handle:
            for line in handle:
                fields = line.split()
                if fields[5] == interface and fields[3] == "20":
                    raw = fields[0]
                    return ":".join(raw[i:i + 4] for i in range(0, 32, 4))
        return None


@dataclass
class Registry:
    """Everything a run created: namespaces and processes, removed by ``cleanup``."""

    namespaces: list[Namespace] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def add_namespaces(self, names: Sequence[str]) -> list[Namespace]:
        run(["ip", "-batch", "-"], "".join(f"netns add {n}\n" for n in names))
        created = [Namespace(n) for n in names]
        self.namespaces.extend(created)
        return created

    def popen(self, ns: Namespace, argv: Sequence[str], **kwargs: object) -> subprocess.Popen:
        """A process in ``ns`` (``ip netns exec`` execs it: the pid is the command's), in its own session."""
        process = subprocess.Popen(["ip", "netns", "exec", ns.name, *argv], start_new_session=True, **kwargs)
        self.processes.append(process)
        return process

    def stop_process(self, process: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
        """Signal ``process``, wait, kill its process group if it lingers; its exit status.

        Anything it left running in its namespace goes with the namespace (``remove_namespaces``).
        """
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                log.warning("process_killed pid=%d reason=ignored_signal_%d", process.pid, sig)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(STOP_GRACE)
        if process in self.processes:
            self.processes.remove(process)
        return process.returncode

    def remove_namespaces(self, namespaces: Sequence[Namespace]) -> None:
        """Kill what still runs in them (their own pids) and delete them."""
        for ns in namespaces:
            pids = run(["ip", "netns", "pids", ns.name], check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        done = run(["ip", "-force", "-batch", "-"], "".join(f"netns delete {ns.name}\n" for ns in namespaces),
                   check=False)
        if done.returncode != 0:
            log.warning("netns_delete_failed error=%s", done.stderr.strip())
        for ns in namespaces:
            if ns in self.namespaces:
                self.namespaces.remove(ns)

    def cleanup(self) -> None:
        for process in list(self.processes):
            self.stop_process(process, signal.SIGKILL)
        if self.namespaces:
            self.remove_namespaces(list(self.namespaces))


def install_cleanup(registry: Registry) -> None:
    """Remove everything at exit, and turn SIGTERM / SIGHUP into KeyboardInterrupt (so ``finally`` runs)."""
    atexit.register(registry.cleanup)

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)


def stale_namespaces() -> list[str]:
    """Namespaces named like ours (``pxb-``) left by an aborted run."""
    listing = run(["ip", "netns", "list"]).stdout.splitlines()
    return [line.split()[0] for line in listing if line.startswith(PREFIX)]


def mroute_missing(ns: Namespace, family: int) -> str | None:
    """Why the kernel cannot route multicast for ``family`` (``MRT_INIT`` probe in ``ns``), or None."""
    if family == 4:
        domain, proto, level = socket.AF_INET, socket.IPPROTO_IGMP, socket.IPPROTO_IP
    else:
        domain, proto, level = socket.AF_INET6, socket.IPPROTO_ICMPV6, socket.IPPROTO_IPV6
    with ns.entered():
        sock = socket.socket(domain, socket.SOCK_RAW, proto)
    try:
        sock.setsockopt(level, MRT_INIT, 1)
    except OSError as exc:
        if exc.errno == errno.ENOPROTOOPT:
            return f"kernel lacks {MROUTE_OPTION[family]}"
        return f"MRT_INIT failed: {os.strerror(exc.errno or 0)}"
    finally:
        sock.close()
    return None


UP_SOURCES = {4: ("10.1.0.2", "10.1.0.3"), 6: ("fd01::2", "fd01::3")}
UP_ADDRESS = {4: "10.1.0.1", 6: "fd01::1"}


def host_address(family: int, index: int) -> str:
    return f"10.2.{index}.2" if family == 4 else f"fd02:{index:x}::2"


@dataclass
class ProxyTopology:
    """up -- px -- N hosts, built by ``build`` and removed by ``remove`` (or the registry)."""

    registry: Registry
    run_id: str
    hosts: int
    up: Namespace = field(init=False)
    px: Namespace = field(init=False)
    host_ns: list[Namespace] = field(init=False, default_factory=list)

    @property
    def downstreams(self) -> list[str]:
        return [f"d{i}" for i in range(self.hosts)]

    def build(self) -> None:
        base = f"{PREFIX}{self.run_id}-"
        names = [base + "up", base + "px"] + [f"{base}h{i}" for i in range(self.hosts)]
        created = self.registry.add_namespaces(names)
        self.up, self.px, self.host_ns = created[0], created[1], created[2:]
        for ns in created:
            for key in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
                ns.write_sysctl(key, 0)
        links = [f"link add u0 netns {self.px.name} type veth peer name e0 netns {self.up.name}"]
        links += [f"link add d{i} netns {self.px.name} type veth peer name e0 netns {h.name}"
                  for i, h in enumerate(self.host_ns)]
        run(["ip", "-batch", "-"], "\n".join(links) + "\n")
        src4, src6 = UP_SOURCES[4], UP_SOURCES[6]
        self.up.batch(["link set lo up", *(f"addr add {a}/24 dev e0" for a in src4),
                       *(f"addr add {a}/64 dev e0 nodad" for a in src6), "link set e0 up",
                       f"route add default via {UP_ADDRESS[4]}", f"route add default via {UP_ADDRESS[6]}"])
        px = ["link set lo up", f"addr add {UP_ADDRESS[4]}/24 dev u0", f"addr add {UP_ADDRESS[6]}/64 dev u0 nodad",
              "link set u0 up"]
        for i in range(self.hosts):
            px += [f"addr add 10.2.{i}.1/24 dev d{i}", f"addr add fd02:{i:x}::1/64 dev d{i} nodad",
                   f"link set d{i} up"]
        self.px.batch(px)
        for i, ns in enumerate(self.host_ns):
            ns.batch(["link set lo up", f"addr add {host_address(4, i)}/24 dev e0",
                      f"addr add {host_address(6, i)}/64 dev e0 nodad", "link set e0 up",
                      f"route add default via 10.2.{i}.1", f"route add default via fd02:{i:x}::1"])

    def remove(self) -> None:
        namespaces = [ns for ns in (getattr(self, "up", None), getattr(self, "px", None), *self.host_ns) if ns]
        self.registry.remove_namespaces(namespaces)


@dataclass
class FanoutTopology:
    """up -- px -- one sink namespace holding the far end of every downstream link (``e<i>``).

    For forwarding-cost runs with many outputs: the sink's kernel is the host
    on every link (it joins per interface), so N outputs need no N namespaces.
    """

    registry: Registry
    run_id: str
    hosts: int
    up: Namespace = field(init=False)
    px: Namespace = field(init=False)
    sink: Namespace = field(init=False)

    @property
    def downstreams(self) -> list[str]:
        return [f"d{i}" for i in range(self.hosts)]

    def build(self) -> None:
        base = f"{PREFIX}{self.run_id}-"
        self.up, self.px, self.sink = self.registry.add_namespaces([base + "up", base + "px", base + "sink"])
        for ns in (self.up, self.px, self.sink):
            for key in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
                ns.write_sysctl(key, 0)
        links = [f"link add u0 netns {self.px.name} type veth peer name e0 netns {self.up.name}"]
        links += [f"link add d{i} netns {self.px.name} type veth peer name e{i} netns {self.sink.name}"
                  for i in range(self.hosts)]
        run(["ip", "-batch", "-"], "\n".join(links) + "\n")
        src4, src6 = UP_SOURCES[4], UP_SOURCES[6]
        self.up.batch(["link set lo up", f"addr add {src4[0]}/24 dev e0", f"addr add {src6[0]}/64 dev e0 nodad",
                       "link set e0 up"])
        px = ["link set lo up", f"addr add {UP_ADDRESS[4]}/24 dev u0", f"addr add {UP_ADDRESS[6]}/64 dev u0 nodad",
              "link set u0 up"]
        sink = ["link set lo up"]
        for i in range(self.hosts):
            px += [f"addr add 10.3.{i}.1/24 dev d{i}", f"addr add fd03:{i:x}::1/64 dev d{i} nodad",
                   f"link set d{i} up"]
            sink += [f"addr add 10.3.{i}.2/24 dev e{i}", f"addr add fd03:{i:x}::2/64 dev e{i} nodad",
                     f"link set e{i} up"]
        self.px.batch(px)
        self.sink.batch(sink)

    def remove(self) -> None:
        namespaces = [ns for ns in (getattr(self, "up", None), getattr(self, "px", None),
                                    getattr(self, "sink", None)) if ns]
        self.registry.remove_namespaces(namespaces)
