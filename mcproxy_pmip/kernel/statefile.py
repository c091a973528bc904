"""Small state files that outlive a crash: what the daemon changed in the kernel, to undo it later.

A daemon killed with ``kill -9`` cannot undo what it did; the next start reads
these files and does it instead (``kernel.sysctl`` for rp_filter values,
``dataplane.mroute`` for the multicast routing tables it used).

Each file is JSON ``{"pid": P, ...}`` in :func:`state_dir` (``/run/mcproxy-pmip``,
or the directory named by the environment variable ``MCPROXY_PMIP_STATE_DIR``),
named ``KIND-NETNS-PID.json``: ``NETNS`` names the daemon's network namespace
(kernel state is per namespace; daemons in other namespaces share /run but
never each other's files), ``PID`` the writing process. The namespace is
named by its cookie (``SO_NETNS_COOKIE``, Linux 5.14; never reused while the
system runs, so a file left by a namespace that is gone matches no later
one), else by its inode, as ``i<inode>``. A file whose
process is gone is a crashed run's. Files are written to a temporary name and
renamed, so a reader never sees half of one. /run is a tmpfs: a reboot, which
also resets the kernel state, clears them.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from mcproxy_pmip.errors import KernelError

log = logging.getLogger(__name__)

STATE_DIR_ENV = "MCPROXY_PMIP_STATE_DIR"
DEFAULT_STATE_DIR = "/run/mcproxy-pmip"
SO_NETNS_COOKIE = 71  # <asm-generic/socket.h>; missing from Python's socket module


@dataclass(frozen=True, slots=True)
class StateFile:
    """One file found: its path, the pid that wrote it, whether that process is alive, its content."""

    path: str
    pid: int
    alive: bool
    data: dict


def state_dir() -> str:
    return os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR


def netns_id() -> str:
    """The calling thread's network namespace: its cookie, else ``i`` and its inode."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            return str(int.from_bytes(probe.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), sys.byteorder))
    except OSError as exc:
        if exc.errno not in (errno.ENOPROTOOPT, errno.EINVAL):
            raise KernelError("getsockopt(SO_NETNS_COOKIE)", exc.errno or errno.EIO) from exc
    try:
        return f"i{os.stat('/proc/thread-self/ns/net').st_ino}"
    except OSError as exc:
        raise KernelError("stat /proc/thread-self/ns/net", exc.errno or errno.EIO) from exc


def process_alive(pid: int) -> bool:
    """True if a process ``pid`` exists (signal 0; the owner check of state files and nft tables)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def own_path(kind: str) -> str:
    """The path of this process's ``kind`` file in this namespace."""
    return os.path.join(state_dir(), f"{kind}-{netns_id()}-{os.getpid()}.json")


def write(kind: str, data: dict) -> str:
    """Write this process's ``kind`` file (replacing it) and return its path."""
    path = own_path(kind)
    temporary = f"{path}.tmp"
    try:
        os.makedirs(state_dir(), mode=0o755, exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({"pid": os.getpid(), **data}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise KernelError(f"write {path}", exc.errno or errno.EIO) from exc
    return path


def remove(path: str) -> None:
    """Delete a state file; one already gone is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise KernelError(f"unlink {path}", exc.errno or errno.EIO) from exc


def found(kind: str) -> Iterator[StateFile]:
    """The ``kind`` files of this namespace, this process's own excepted; unreadable ones are logged."""
    prefix = f"{kind}-{netns_id()}-"
    try:
        names = sorted(os.listdir(state_dir()))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise KernelError(f"listdir {state_dir()}", exc.errno or errno.EIO) from exc
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".json")):
            continue
        path = os.path.join(state_dir(), name)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            pid = int(data["pid"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("state_file_unreadable path=%s error=%s", path, exc)
            continue
        if pid == os.getpid():
            continue
        yield StateFile(path, pid, process_alive(pid), data)
