"""sd_notify messages against a real AF_UNIX datagram socket standing in for systemd's, and the watchdog on a Clock."""

from __future__ import annotations

import logging
import os
import socket
import time

import pytest
from twisted.internet.task import Clock

from mcproxy_pmip.notify import Notifier, Watchdog, socket_address, watchdog_interval


def fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n"))


@pytest.fixture
def manager(tmp_path):
    """A bound datagram socket (the fake manager) and its ``$NOTIFY_SOCKET`` value (a path)."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


def test_abstract_names_start_with_a_nul_byte() -> None:
    assert socket_address("@mB-notify") == b"\0mB-notify"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"


def test_ready_on_a_path_socket_carries_the_status(manager) -> None:
    sock, path = manager
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.ready("running, started: 1 instance(s)")
    assert fields(sock.recv(4096)) == {"READY": "1", "STATUS": "running, started: 1 instance(s)"}
    notifier.close()


def test_abstract_socket_receives_stopping() -> None:
    name = f"mB-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert notifier.stopping("stopping")
        assert fields(sock.recv(4096)) == {"STOPPING": "1", "STATUS": "stopping"}
        notifier.close()


def test_reloading_says_when_on_the_monotonic_clock(manager) -> None:
    sock, path = manager
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading("reloading /etc/x.yaml")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    got = fields(sock.recv(4096))
    assert got["RELOADING"] == "1"
    assert before <= int(got["MONOTONIC_USEC"]) <= after
    assert got["STATUS"] == "reloading /etc/x.yaml"
    notifier.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert not notifier.ready("x")


def test_an_unsupported_address_is_logged_and_ignored(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="mcproxy_pmip.notify"):
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert "notify_socket_unsupported" in caplog.text


def test_a_missing_manager_is_logged_once_and_its_return_too(tmp_path, caplog) -> None:
    path = str(tmp_path / "gone")
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    with caplog.at_level(logging.INFO, logger="mcproxy_pmip.notify"):
        results = [notifier.send("WATCHDOG=1") for _ in range(5)]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            assert notifier.send("WATCHDOG=1")
            assert sock.recv(64) == b"WATCHDOG=1"
    assert results == [False] * 5
    assert caplog.text.count("notify_failed") == 1
    assert caplog.text.count("notify_recovered") == 1
    notifier.close()


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "junk"}, None),
    ({"WATCHDOG_USEC": "4000000"}, 4.0),
    ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "77"}, 4.0),
    ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "78"}, None),
])
def test_the_watchdog_is_only_for_the_process_it_names(environ, expected) -> None:
    assert watchdog_interval(environ, 77) == expected


def test_watchdog_pings_every_half_timeout_until_stopped(manager) -> None:
    sock, path = manager
    clock = Clock()
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    dog = Watchdog(notifier, clock, timeout=4.0)
    dog.start()
    assert sock.recv(64) == b"WATCHDOG=1"
    clock.advance(1.9)
    assert dog.pings == 1
    clock.advance(0.1)
    assert dog.pings == 2
    assert sock.recv(64) == b"WATCHDOG=1"
    clock.pump([2.0] * 3)
    assert dog.pings == 5
    dog.stop()
    clock.advance(10)
    assert dog.pings == 5
    assert not clock.getDelayedCalls()
    notifier.close()
