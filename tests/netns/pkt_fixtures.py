"""Namespaces, veth links and bounded waits for the packet I/O and netmon tests.

Everything created here is named ``mpp-<random>`` and removed by a finalizer,
also when the test fails. ``in_netns`` runs a block (e.g. socket creation) in a
namespace; a socket stays in the namespace it was created in.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from pyroute2 import netns

PREFIX = "mpp-"
ROUTER_IF = "r0"
HOST_IF = "h0"
ROUTER_V4 = ipaddress.IPv4Interface("10.77.0.1/24")
HOST_V4 = ipaddress.IPv4Interface("10.77.0.2/24")

T = TypeVar("T")


def run(*args: str, input_text: str | None = None) -> str:
    """Run a command; fail with its stderr if it fails."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False,
                            input=input_text)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def ns_run(name: str, *args: str) -> str:
    return run("ip", "netns", "exec", name, *args)


def sysctl(name: str, key: str, value: str) -> None:
    ns_run(name, "sysctl", "-q", "-w", f"{key}={value}")


def new_namespace(request: pytest.FixtureRequest, role: str) -> str:
    """A fresh namespace with DAD off and lo up, deleted at teardown."""
    name = f"{PREFIX}{secrets.token_hex(3)}-{role}"
    run("ip", "netns", "add", name)
    request.addfinalizer(lambda: subprocess.run(("ip", "netns", "del", name), check=False,
                                                capture_output=True, timeout=20))
    sysctl(name, "net.ipv6.conf.all.accept_dad", "0")
    sysctl(name, "net.ipv6.conf.default.accept_dad", "0")
    run("ip", "-n", name, "link", "set", "lo", "up")
    return name


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block in namespace ``name`` (this thread), then return to the previous one."""
    netns.pushns(name)
    try:
        yield
    finally:
        netns.popns()


@dataclass(frozen=True)
class Link:
    """A veth between a router namespace (r0) and a host namespace (h0)."""

    router_ns: str
    host_ns: str
    router_ifindex: int
    host_ifindex: int
    router_link_local: ipaddress.IPv6Address
    host_link_local: ipaddress.IPv6Address


def _ifindex(ns: str, ifname: str) -> int:
    out = run("ip", "-n", ns, "-o", "link", "show", "dev", ifname)
    return int(out.split(":", 1)[0])


def _link_local(ns: str, ifname: str) -> ipaddress.IPv6Address:
    out = run("ip", "-n", ns, "-o", "-6", "addr", "show", "dev", ifname, "scope", "link")
    for word in out.split():
        if word.startswith("fe80::"):
            return ipaddress.IPv6Interface(word).ip
    raise AssertionError(f"no link-local address on {ns}/{ifname}: {out!r}")


@pytest.fixture
def veth_link(request: pytest.FixtureRequest) -> Link:
    """Router namespace r0 (10.77.0.1/24) -- veth -- host namespace h0 (10.77.0.2/24), both up."""
    router_ns = new_namespace(request, "r")
    host_ns = new_namespace(request, "h")
    run("ip", "-n", router_ns, "link", "add", ROUTER_IF, "type", "veth",
        "peer", "name", HOST_IF, "netns", host_ns)
    run("ip", "-n", router_ns, "addr", "add", str(ROUTER_V4), "dev", ROUTER_IF)
    run("ip", "-n", host_ns, "addr", "add", str(HOST_V4), "dev", HOST_IF)
    run("ip", "-n", router_ns, "link", "set", ROUTER_IF, "up")
    run("ip", "-n", host_ns, "link", "set", HOST_IF, "up")
    return Link(
        router_ns=router_ns,
        host_ns=host_ns,
        router_ifindex=_ifindex(router_ns, ROUTER_IF),
        host_ifindex=_ifindex(host_ns, HOST_IF),
        router_link_local=_wait_link_local(router_ns, ROUTER_IF),
        host_link_local=_wait_link_local(host_ns, HOST_IF),
    )


def _wait_link_local(ns: str, ifname: str, timeout: float = 5.0) -> ipaddress.IPv6Address:
    """The link-local address appears when the link comes up; poll `ip` for it, bounded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _link_local(ns, ifname)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """One empty namespace (lo up, DAD off)."""
    return new_namespace(request, "m")


def wait_for(fileno: int, read: Callable[[], list[T]], predicate: Callable[[T], bool],
             timeout: float, what: str) -> tuple[T, list[T]]:
    """Read until an item matches ``predicate``; return it and everything read before it.

    Waits on ``select`` (no sleeps) and fails after ``timeout`` seconds naming
    ``what`` and listing the items that did arrive.
    """
    deadline = time.monotonic() + timeout
    seen: list[T] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {seen!r}")
        readable, _, _ = select.select([fileno], [], [], remaining)
        if not readable:
            continue
        for item in read():
            if predicate(item):
                return item, seen
            seen.append(item)


def drain(fileno: int, read: Callable[[], list[Any]], quiet_interval: float) -> list[Any]:
    """Everything readable until nothing arrives for ``quiet_interval`` seconds."""
    items: list[Any] = []
    while select.select([fileno], [], [], quiet_interval)[0]:
        items.extend(read())
    return items


def inet_checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum (test helper for hand-built IGMP messages)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
