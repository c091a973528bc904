"""Network namespace fixtures for tests against the real kernel (root only).

``netns_factory`` makes uniquely named namespaces (``mpk-`` + random suffix by
default; pass another prefix for your own helper) and always deletes them, and
every process inside them, when the test ends, passing or failing.

Running code inside a namespace -- the chosen approach:

* In-process: ``with ns.entered(): ...`` switches the calling thread into the
  namespace with ``setns(2)`` and back afterwards. Sockets (raw, mroute,
  netlink) opened inside keep that namespace for their whole life, so the test
  can open them inside and use them outside. pytest runs tests on one thread,
  which is what makes this safe; do not enter from several threads at once.
* Out of process: ``ns.popen([...])`` / ``ns.run([...])`` start a command under
  ``ip netns exec``; ``ns.python(code)`` runs this interpreter with the project
  importable. Use it for a process that must die (``kill -9``) or run alongside.

Setup steps use iproute2's ``ip`` (test tooling; library code uses netlink).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from pyroute2 import netns as pyroute2_netns

DEFAULT_PREFIX = "mpk-"


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


@dataclass
class Netns:
    """One network namespace created for a test."""

    name: str
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def ip(self, *args: str, check: bool = True) -> str:
        """``ip -n NAME args...``; its stdout."""
        return _run(["ip", "-n", self.name, *args], check=check).stdout

    def run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "netns", "exec", self.name, *argv], check=check)

    def sysctl(self, key: str, value: str | int) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def read_sysctl(self, key: str) -> str:
        return self.run(["sysctl", "-n", key]).stdout.strip()

    def popen(self, argv: list[str], **kwargs: object) -> subprocess.Popen[str]:
        """A process in the namespace; killed at teardown if still running."""
        process = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], text=True, **kwargs)
        self.processes.append(process)
        return process

    def python(self, code: str, **kwargs: object) -> subprocess.Popen[str]:
        """This interpreter running ``code`` in the namespace."""
        return self.popen([sys.executable, "-c", code], **kwargs)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the ``with`` body in this namespace (calling thread only)."""
        saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            pyroute2_netns.setns(self.name, flags=0)
            try:
                yield
            finally:
                pyroute2_netns.setns(saved, flags=0)
        finally:
            os.close(saved)

    def remove(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        # Processes started by other means are killed by `ip netns pids`.
        pids = _run(["ip", "netns", "pids", self.name], check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        _run(["ip", "netns", "delete", self.name])


@contextlib.contextmanager
def namespaces(default_prefix: str = DEFAULT_PREFIX) -> Iterator[Callable[..., Netns]]:
    """A factory of fresh namespaces (``make()`` or ``make(prefix="xyz-")``), all removed on leaving.

    Each namespace gets IPv6 DAD off (before any link exists), reverse path
    filtering off and its loopback up. Benchmarks use it directly; tests use
    the ``netns_factory`` fixture.
    """
    created: list[Netns] = []

    def make(prefix: str = default_prefix) -> Netns:
        ns = Netns(f"{prefix}{secrets.token_hex(4)}")
        _run(["ip", "netns", "add", ns.name])
        created.append(ns)
        for key in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad",
                    "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"):
            ns.sysctl(key, 0)
        ns.ip("link", "set", "lo", "up")
        return ns

    try:
        yield make
    finally:
        errors = []
        for ns in reversed(created):
            try:
                ns.remove()
            except AssertionError as exc:
                errors.append(str(exc))
        assert not errors, f"namespace cleanup failed: {errors}"


@pytest.fixture
def netns_factory() -> Iterator[Callable[..., Netns]]:
    """Call ``netns_factory()`` (or ``netns_factory(prefix="xyz-")``) for a fresh namespace
    (see ``namespaces``); all are removed at teardown."""
    with namespaces() as make:
        yield make


def veth(a: Netns, a_name: str, b: Netns, b_name: str) -> None:
    """A veth pair ``a_name`` in ``a`` <-> ``b_name`` in ``b``, both up.

    The pair goes away with either namespace.
    """
    _run(["ip", "link", "add", a_name, "netns", a.name, "type", "veth", "peer", "name", b_name, "netns", b.name])
    a.ip("link", "set", a_name, "up")
    b.ip("link", "set", b_name, "up")


def address(ns: Netns, interface: str, *cidrs: str) -> None:
    """Add addresses (IPv4 or IPv6, ``nodad``) to ``interface`` in ``ns``."""
    for cidr in cidrs:
        extra = ["nodad"] if ":" in cidr else []
        ns.ip("address", "add", cidr, "dev", interface, *extra)
