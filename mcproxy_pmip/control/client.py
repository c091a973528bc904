"""A blocking client of the control socket (no Twisted): for the CLI, scripts and tests.

``ControlClient(path).request(cmd, **args)`` sends one request line, waits for
the reply with the same id and returns its result, or raises ``ControlError``
carrying the reply's error code and message. Argument names are the
protocol's (``mn_id``, ``access_if``); see docs/control.md.
"""

from __future__ import annotations

import itertools
import json
import socket
from typing import Any

from mcproxy_pmip.control.protocol import DEFAULT_SOCKET_PATH, MAX_LINE_LENGTH


class ControlError(Exception):
    """An error reply (``code`` from the daemon) or a broken connection (code "connection")."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class ControlClient:
    """One connection to the daemon, opened on first use; usable as a context manager."""

    def __init__(self, path: str = DEFAULT_SOCKET_PATH, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file = None
        self._ids = itertools.count(1)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise ControlError("connection", f"cannot connect to {self.path}: {exc.strerror or exc}") from exc
        self._sock = sock
        self._file = sock.makefile("rb")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def send_raw(self, line: bytes) -> dict[str, Any]:
        """Send one raw line (newline added) and return the next reply object (for tests)."""
        if self._sock is None:
            self._connect()
        try:
            self._sock.sendall(line + b"\n")
        except OSError as exc:
            self.close()
            raise ControlError("connection", f"send failed: {exc}") from exc
        return self._read_reply()

    def _read_reply(self) -> dict[str, Any]:
        try:
            line = self._file.readline(MAX_LINE_LENGTH + 2)
        except OSError as exc:
            self.close()
            raise ControlError("connection", f"no reply: {exc}") from exc
        if not line.endswith(b"\n"):
            self.close()
            raise ControlError("connection", "the daemon closed the connection")
        try:
            reply = json.loads(line)
        except json.JSONDecodeError as exc:
            self.close()
            raise ControlError("connection", f"unparsable reply: {exc}") from exc
        if not isinstance(reply, dict):
            self.close()
            raise ControlError("connection", "reply is not an object")
        return reply

    def request(self, cmd: str, **arguments: Any) -> Any:
        """Run ``cmd`` with ``arguments`` (None values are left out); return its result."""
        request_id = next(self._ids)
        body = {"id": request_id, "cmd": cmd}
        body.update((key, value) for key, value in arguments.items() if value is not None)
        reply = self.send_raw(json.dumps(body, separators=(",", ":")).encode())
        while reply.get("id") != request_id:
            reply = self._read_reply()
        if reply.get("ok"):
            return reply.get("result")
        error = reply.get("error") or {}
        raise ControlError(str(error.get("code", "unknown")), str(error.get("message", "")))
