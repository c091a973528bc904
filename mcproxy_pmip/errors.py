"""The project's error types: who did something wrong, and where.

``MalformedPacket`` and ``ProtocolViolation`` are the peer's fault and become a
counted drop at one catch point in the Receiver. ``ConfigError`` is the
operator's and lists every problem with its location. ``KernelError`` wraps a
failed syscall with the operation that failed. ``PlaneUnavailable`` and
``PlaneLimitReached`` say that a data plane cannot run here or cannot take one
more interface, and what to do instead. Anything else escaping is a bug.
"""

from __future__ import annotations

import errno as _errno
import os
from dataclasses import dataclass


class McproxyError(Exception):
    """Base of every error this project raises on purpose."""


class MalformedPacket(McproxyError):
    """Bytes that do not parse. ``reason`` is a short slug used as a counter name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ProtocolViolation(McproxyError):
    """A well-formed message that the RFCs say must be dropped (bad source, hop limit...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a configuration source, with its location (1-based)."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class ConfigError(McproxyError):
    """A configuration that must not be applied; ``problems`` lists all that was found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class KernelError(McproxyError):
    """A syscall or netlink request failed: ``op`` names it, ``errno`` says why."""

    def __init__(self, op: str, errno: int, detail: str = "") -> None:
        self.op = op
        self.errno = errno
        self.detail = detail
        name = _errno.errorcode.get(errno, str(errno))
        text = f"{op} failed: {name} ({os.strerror(errno)})"
        super().__init__(f"{text}: {detail}" if detail else text)


class PlaneLimitReached(McproxyError):
    """The plane cannot take one more interface (MRT: 32 vifs per table); names the way out."""

    def __init__(self, plane: str, interface: str, detail: str) -> None:
        self.plane = plane
        self.interface = interface
        super().__init__(f"{plane} data plane: cannot add {interface}: {detail}")


class PlaneUnavailable(McproxyError):
    """The kernel lacks what the plane needs; ``remedy`` says what to do (one line)."""

    def __init__(self, plane: str, missing: str, remedy: str) -> None:
        self.plane = plane
        self.missing = missing
        self.remedy = remedy
        super().__init__(f"{plane} data plane unavailable: {missing}; {remedy}")
