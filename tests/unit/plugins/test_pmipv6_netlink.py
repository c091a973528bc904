"""The netlink binding source against a real kernel routing table in a namespace (prefix mpc-): bindings
from routes, and recovery from read errors with a resynchronisation."""

from __future__ import annotations

import errno
import os
import select
import subprocess
import time

import pytest
from twisted.internet.task import Clock

from mcproxy_pmip_plugins.pmipv6.bindings import MobileNodeAttached, MobileNodeDetached
from mcproxy_pmip_plugins.pmipv6.netlink_source import RETRY_INTERVAL, NetlinkBindingSource

pytestmark = pytest.mark.netns


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


class RecordingReactor(Clock):
    """A task.Clock that also records readers, as the source uses the reactor."""

    def __init__(self) -> None:
        super().__init__()
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


# -- recovery ------------------------------------------------------------------------


def attached(prefix: str) -> MobileNodeAttached:
    return MobileNodeAttached(f"hnp:{prefix}", "acc1", "tun0", hnp=(prefix,))


def wait_readable(source, timeout: float = 5.0) -> None:
    ready, _, _ = select.select([source.fileno()], [], [], timeout)
    if not ready:
        pytest.fail(f"no netlink notification within {timeout} s")


def fail_next_read(source, exc: BaseException) -> None:
    """Make the source's current socket raise ``exc`` on its next read, once."""
    sock = source._socket
    real_get = sock.get

    def get(*args, **kwargs):
        sock.get = real_get
        raise exc

    sock.get = get


@pytest.mark.parametrize("error", [RuntimeError("parser bug"), OSError(errno.ENOBUFS, "No buffer space")],
                         ids=["unexpected", "enobufs"])
def test_a_read_error_reopens_and_the_resync_picks_up_what_was_missed(namespace, error):
    events = []
    reactor = RecordingReactor()
    ip(namespace, "-6", "route", "add", "2001:db8:1::/64", "dev", "acc1")
    source = NetlinkBindingSource(reactor, {"acc1": "tun0"}, lambda event: events.append(event) or {},
                                  netns=namespace)
    source.start()
    try:
        assert events == [attached("2001:db8:1::/64")]
        old_socket = source._socket
        # While the source cannot read: one binding comes, one goes; their notifications are lost with the socket.
        ip(namespace, "-6", "route", "add", "2001:db8:2::/64", "dev", "acc1")
        ip(namespace, "-6", "route", "del", "2001:db8:1::/64", "dev", "acc1")
        wait_readable(source)
        fail_next_read(source, error)
        source.doRead()
        assert source.recoveries == 1
        assert source._socket is not None and source._socket is not old_socket, "the socket was not reopened"
        assert reactor.readers == {source}
        assert events[1:] == [attached("2001:db8:2::/64"), MobileNodeDetached("hnp:2001:db8:1::/64")]
        # And it keeps working on the new socket.
        ip(namespace, "route", "add", "10.20.0.0/24", "dev", "acc1")
        deadline = time.monotonic() + 5
        while len(events) < 4 and time.monotonic() < deadline:
            wait_readable(source)
            source.doRead()
        assert events[3:] == [attached("10.20.0.0/24")]
    finally:
        source.stop()
    assert reactor.readers == set()


def test_a_failed_reopen_is_retried_with_backoff_and_then_resynchronises(namespace, caplog):
    events = []
    reactor = RecordingReactor()
    source = NetlinkBindingSource(reactor, {"acc1": "tun0"}, lambda event: events.append(event) or {},
                                  netns=namespace)
    source.start()
    real_open = source._open
    failures = {"left": 2}

    def flaky_open() -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        real_open()

    source._open = flaky_open
    try:
        ip(namespace, "link", "set", "acc1", "mtu", "1400")
        wait_readable(source)
        fail_next_read(source, RuntimeError("boom"))
        source.doRead()
        assert source._socket is None and reactor.readers == set()
        assert source.failed_reopens == 1
        ip(namespace, "-6", "route", "add", "2001:db8:5::/64", "dev", "acc1")
        reactor.advance(RETRY_INTERVAL)
        assert source.failed_reopens == 2, "no retry after RETRY_INTERVAL"
        reactor.advance(RETRY_INTERVAL)
        assert source._socket is None, "the retry did not back off"
        reactor.advance(RETRY_INTERVAL)
        assert reactor.readers == {source}
        assert events == [attached("2001:db8:5::/64")]
        logged = [r for r in caplog.records if r.getMessage().startswith("netlink-source-error")]
        assert logged and logged[0].exc_info is not None
    finally:
        source.stop()
    assert reactor.getDelayedCalls() == []


def test_stop_while_waiting_to_reopen_cancels_the_retry(namespace):
    reactor = RecordingReactor()
    source = NetlinkBindingSource(reactor, {"acc1": "tun0"}, lambda event: {}, netns=namespace)
    source.start()

    def refuse() -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    source._open = refuse
    ip(namespace, "link", "set", "acc1", "mtu", "1300")
    wait_readable(source)
    fail_next_read(source, RuntimeError("boom"))
    source.doRead()
    assert len(reactor.getDelayedCalls()) == 1
    source.stop()
    assert reactor.getDelayedCalls() == [] and reactor.readers == set()
