"""The netlink binding source against a real kernel routing table in a namespace (prefix mpc-)."""

from __future__ import annotations

import os
import select
import subprocess
import time

import pytest

from mcproxy_pmip_plugins.pmipv6.bindings import MobileNodeAttached, MobileNodeDetached
from mcproxy_pmip_plugins.pmipv6.netlink_source import NetlinkBindingSource

pytestmark = pytest.mark.netns


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


class RecordingReactor:
    def __init__(self) -> None:
        self.readers = set()

    def addReader(self, reader) -> None:
        self.readers.add(reader)

    def removeReader(self, reader) -> None:
        self.readers.discard(reader)


@pytest.fixture
def namespace():
    name = f"mpc-nl{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for link in ("acc1", "acc2"):
            ip(name, "link", "add", link, "type", "veth", "peer", "name", f"{link}p")
            ip(name, "link", "set", link, "up")
            ip(name, "link", "set", f"{link}p", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def pump(source, events, count, timeout=5.0):
    """Feed the source until ``count`` events arrived (bounded)."""
    deadline = time.monotonic() + timeout
    while len(events) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"expected {count} binding events, got {events}")
        ready, _, _ = select.select([source.fileno()], [], [], remaining)
        if ready:
            source.doRead()


def test_hnp_routes_on_access_links_become_attach_and_detach(namespace):
    events = []
    reactor = RecordingReactor()
    ip(namespace, "-6", "route", "add", "2001:db8:1::/64", "dev", "acc1")
    source = NetlinkBindingSource(reactor, {"acc1": "tun0", "acc2": "tun0"},
                                  lambda event: events.append(event) or {}, netns=namespace)
    source.start()
    try:
        assert reactor.readers == {source}
        assert events == [MobileNodeAttached("hnp:2001:db8:1::/64", "acc1", "tun0", hnp=("2001:db8:1::/64",))]
        ip(namespace, "route", "add", "10.20.0.0/24", "dev", "acc2")
        ip(namespace, "-6", "route", "add", "2001:db8:9::/64", "dev", "acc1p")
        ip(namespace, "-6", "route", "del", "2001:db8:1::/64", "dev", "acc1")
        pump(source, events, 3)
        assert events[1:] == [
            MobileNodeAttached("hnp:10.20.0.0/24", "acc2", "tun0", hnp=("10.20.0.0/24",)),
            MobileNodeDetached("hnp:2001:db8:1::/64"),
        ]
    finally:
        source.stop()
    assert reactor.readers == set()
