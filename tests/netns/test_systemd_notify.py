"""The real daemon under a fake systemd: READY, watchdog pings, RELOADING/READY on SIGHUP, STOPPING on SIGTERM.

The test binds an ``AF_UNIX`` datagram socket, passes its path as
``$NOTIFY_SOCKET`` with ``$WATCHDOG_USEC`` set, and reads what the daemon
(started in a namespace with ``--log-format json``) sends there.
"""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest

from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.proxy_harness import build_proxy_topology

pytestmark = pytest.mark.netns

PREFIX = "mB-"
WATCHDOG_USEC = 1_000_000
CONFIG = ("protocols: [IGMPv3, MLDv2]\ninstances:\n  - name: p\n"
          "    upstreams: [up0]\n    downstreams: [d1, d2]\n")


@pytest.fixture
def topo(netns_factory, tmp_path):  # noqa: F811
    yield from build_proxy_topology(netns_factory, str(tmp_path), PREFIX, "nftables")


@pytest.fixture
def manager(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    yield sock, path
    sock.close()


class Messages:
    """The datagrams the daemon sent, read in order with a bounded wait."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seen: list[dict[str, str]] = []

    def next_with(self, key: str, timeout: float) -> dict[str, str]:
        """The next message holding ``key``; fails naming it (and what came instead) after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {key} within {timeout}s; got {self.seen[-10:]}")
            self.sock.settimeout(remaining)
            try:
                datagram = self.sock.recv(4096)
            except TimeoutError:
                continue
            message = dict(line.split("=", 1) for line in datagram.decode().split("\n"))
            self.seen.append(message)
            if key in message:
                return message


def test_daemon_notifies_systemd(topo, manager, monkeypatch) -> None:
    sock, path = manager
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon = topo.start_daemon(CONFIG, "--log-format", "json", ready=False)
    messages = Messages(sock)

    ready = messages.next_with("READY", 20)
    assert ready["STATUS"].startswith("running, started: 1 instance(s)")
    assert daemon.request("status"), "READY=1 came before the control socket answered"

    first = len([m for m in messages.seen if "WATCHDOG" in m])
    for _ in range(3):
        messages.next_with("WATCHDOG", 5 * WATCHDOG_USEC / 1e6)
    assert len([m for m in messages.seen if "WATCHDOG" in m]) >= first + 3

    daemon.process.send_signal(signal.SIGHUP)
    reloading = messages.next_with("RELOADING", 10)
    assert int(reloading["MONOTONIC_USEC"]) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    after = messages.next_with("READY", 10)
    assert after["STATUS"].startswith("running, reloaded:")
    messages.next_with("WATCHDOG", 5 * WATCHDOG_USEC / 1e6)

    daemon.process.send_signal(signal.SIGTERM)
    assert messages.next_with("STOPPING", 10)["STATUS"] == "stopping"
    assert daemon.stop() == 0

    entries = [json.loads(line) for line in daemon.log().splitlines() if line.strip()]
    events = [entry["event"] for entry in entries]
    assert "watchdog_started" in events and "daemon_started" in events and "daemon_stopped" in events
    started = next(entry for entry in entries if entry["event"] == "daemon_started")
    assert started["instances"] == "1" and started["level"] == "info"
