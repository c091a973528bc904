"""Client of the daemon's control socket (JSON lines), as the handover driver uses it.

Requests and replies are one JSON object per line (docs/control.md):
``{"id": N, "cmd": ...}`` -> ``{"id": N, "ok": true, "result": ...}``.
PMIPv6 binding events follow RFC 5213 §6.9 (attach = a Proxy Binding
Acknowledgement accepted, detach = de-registration or lifetime 0); the
``context`` list carries the RFC 7411 subscription context.
"""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path
from typing import Any


class ControlError(RuntimeError):
    """The daemon refused a request, or the socket failed."""


class ControlClient:
    """One blocking connection; each call sends a request and waits for its reply."""

    def __init__(self, path: Path, timeout_interval: float = 5.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout_interval)
        try:
            self.sock.connect(str(path))
        except OSError:
            self.sock.close()
            raise
        self.reader = self.sock.makefile("rb")
        self.ids = itertools.count(1)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def request(self, cmd: str, **arguments: Any) -> Any:
        request_id = next(self.ids)
        line = json.dumps({"id": request_id, "cmd": cmd, **arguments}) + "\n"
        self.sock.sendall(line.encode())
        while True:
            raw = self.reader.readline()
            if not raw:
                raise ControlError(f"{self.path}: connection closed awaiting reply to {cmd}")
            reply = json.loads(raw)
            if reply.get("id") == request_id:
                break
        if not reply.get("ok"):
            error = reply.get("error", {})
            raise ControlError(f"{cmd}: {error.get('code')}: {error.get('message')}")
        return reply.get("result")

    def attach(self, mn_id: str, access_if: str, tunnel_if: str, lma: str, hnp: list[str],
               lifetime: int, context: list | None = None, previous_mag: str | None = None) -> Any:
        """``binding attach``: the MN's access link joins its tunnel's instance; ``previous_mag``
        makes the new MAG fetch the context from that peer (reactive transfer)."""
        arguments: dict[str, Any] = {"event": "attach", "mn_id": mn_id, "access_if": access_if,
                                     "tunnel_if": tunnel_if, "lma": lma, "hnp": hnp,
                                     "lifetime": lifetime}
        if context is not None:
            arguments["context"] = context
        if previous_mag is not None:
            arguments["previous_mag"] = previous_mag
        return self.request("binding", **arguments)

    def handover_prepare(self, mn_id: str, target: str) -> Any:
        """``handover-prepare``: the old MAG pushes the MN's context to ``target`` (predictive)."""
        return self.request("handover-prepare", mn_id=mn_id, target=target)

    def detach(self, mn_id: str) -> Any:
        """``binding detach``: the MN's binding ends (de-registration)."""
        return self.request("binding", event="detach", mn_id=mn_id)

    def context_export(self, mn_id: str) -> list:
        result = self.request("context-export", mn_id=mn_id)
        return list(result.get("context", [])) if isinstance(result, dict) else []
