"""Network namespaces and the processes inside them: create, enter, run, clean.

Namespaces are created with ``ip netns add`` (a bind mount under /run/netns); the
builder enters one with setns(2) on its own thread only long enough to open a
netlink socket and write per-namespace sysctls, since both stay bound to the
namespace they were opened in. Processes are started with ``ip netns exec`` and
tracked; ``clean_leftovers`` removes every ``mptb*`` namespace and the
processes a killed run left in them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from pyroute2 import netns as pyroute2_netns

from mcproxy_pmip.errors import KernelError

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = Path("/run/netns")
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise KernelError("setns", code)


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run the block in namespace ``ns`` (this thread only), then come back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_RUN_DIR / ns, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def write_sysctl(key: str, value: str | int) -> None:
    """Write a sysctl of the current namespace (``net.ipv6.conf.all.accept_dad``)."""
    path = Path("/proc/sys") / key.replace(".", "/")
    path.write_text(f"{value}\n")


def create_namespace(ns: str) -> None:
    """``ip netns add``: it waits as long as the kernel needs.

    Right after a large teardown the kernel's asynchronous cleanup of the old
    namespaces can hold the rtnl lock for seconds (seen > 2 s after 207 namespaces), and
    pyroute2's ``netns.create`` gives up after 2 s, leaving a half-made one.
    """
    result = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise KernelError("netns_add", errno.EIO, f"{ns}: {result.stderr.strip()}")


def namespace_fd(ns: str) -> int:
    return os.open(NETNS_RUN_DIR / ns, os.O_RDONLY)


def list_namespaces(prefix: str) -> list[str]:
    if not NETNS_RUN_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_RUN_DIR.iterdir() if p.name.startswith(prefix))


def namespace_pids(ns: str) -> list[int]:
    """Processes whose network namespace is ``ns`` (like ``ip netns pids``)."""
    result = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        log.warning("netns_pids_failed ns=%s stderr=%s", ns, result.stderr.strip())
        return []
    return [int(p) for p in result.stdout.split()]


def kill_pids(pids: Sequence[int], grace_interval: float = 2.0) -> None:
    """SIGTERM, wait up to ``grace_interval``, then SIGKILL what is left."""
    alive = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            alive.append(pid)
        except ProcessLookupError:
            continue
    deadline_at = time.monotonic() + grace_interval
    while alive and time.monotonic() < deadline_at:
        alive = [pid for pid in alive if _exists(pid)]
        if alive:
            time.sleep(0.02)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child still "exists"; reap it if it is ours
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return _is_running(pid)
    return reaped == 0


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def remove_namespace(ns: str) -> None:
    try:
        pyroute2_netns.remove(ns)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def clean_leftovers(prefix: str = "mptb") -> list[str]:
    """Kill every process in ``prefix*`` namespaces and delete the namespaces."""
    removed = []
    for ns in list_namespaces(prefix):
        kill_pids(namespace_pids(ns))
        remove_namespace(ns)
        removed.append(ns)
        log.info("netns_removed ns=%s", ns)
    return removed


def netns_argv(ns: str, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]
