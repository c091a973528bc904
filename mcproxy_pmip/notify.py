"""systemd's service notification protocol (sd_notify(3)): readiness, reload, stop, status and watchdog.

A service started by systemd with ``Type=notify`` finds the address of the
manager's notification socket in ``$NOTIFY_SOCKET``: a file-system path, or an
abstract socket name written with a leading ``@`` (a NUL byte on the wire).
Each message is one datagram on an ``AF_UNIX`` ``SOCK_DGRAM`` socket holding
newline-separated ``KEY=VALUE`` lines: ``READY=1``, ``RELOADING=1`` (with
``MONOTONIC_USEC=``, the ``CLOCK_MONOTONIC`` time the reload began, which
systemd 253 and later expect), ``STOPPING=1``, ``STATUS=text`` and
``WATCHDOG=1``. Without ``$NOTIFY_SOCKET`` (not run by systemd) every call
does nothing.

The watchdog: with ``WatchdogSec=`` the manager sets ``$WATCHDOG_USEC`` (and
``$WATCHDOG_PID``, the process meant). ``Watchdog`` sends ``WATCHDOG=1``
every half of that interval from the reactor's clock, so a reactor that is
stuck stops pinging and the manager restarts the service. The socket is
opened once, before the daemon gives up its privileges; a send that fails is
logged when it starts failing and when it works again, not at every ping.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)


def socket_address(value: str) -> str | bytes:
    """``$NOTIFY_SOCKET`` as an ``AF_UNIX`` address: ``@name`` is the abstract ``\\0name``."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """The watchdog timeout in seconds if the manager asks *this* process for pings, else None."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    meant = environ.get("WATCHDOG_PID", "")
    if meant and (not meant.isdigit() or int(meant) != pid):
        return None
    return int(usec) / 1_000_000


class Notifier:
    """Sends notification messages to the manager; a no-op when ``address`` is None."""

    def __init__(self, address: str | bytes | None) -> None:
        self.address = address
        self.sent = 0
        self._failing = False
        self._socket: socket.socket | None = None
        if address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        value = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
        if not value:
            return cls(None)
        if not value.startswith(("/", "@")):
            log.warning("notify_socket_unsupported address=%s reason=only paths and @abstract names "
                        "are supported", value)
            return cls(None)
        return cls(socket_address(value))

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *lines: str) -> bool:
        """One datagram of ``lines``; True if the manager's socket took it."""
        if self._socket is None:
            return False
        try:
            self._socket.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._failing:
                log.warning("notify_failed error=%s message=%s", exc, lines[0])
            self._failing = True
            return False
        if self._failing:
            log.info("notify_recovered")
        self._failing = False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def reloading(self, status: str) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={status}")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class Watchdog:
    """``WATCHDOG=1`` every ``timeout / 2`` seconds on ``clock`` (anything with ``callLater``)."""

    def __init__(self, notifier: Notifier, clock: Any, timeout: float) -> None:
        self.notifier = notifier
        self.clock = clock
        self.ping_interval = timeout / 2
        self.pings = 0
        self._call = None

    def start(self) -> None:
        log.info("watchdog_started ping_interval=%g", self.ping_interval)
        self._ping()

    def _ping(self) -> None:
        self.notifier.send("WATCHDOG=1")
        self.pings += 1
        self._call = self.clock.callLater(self.ping_interval, self._ping)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
