"""Reverse-path filter settings (``-r``): set to 0 on the interfaces in use, restore exactly on exit.

The kernel applies the larger of ``conf/all/rp_filter`` and the interface's
own value, so both are changed. Plain file IO under /proc/sys.

The original values are written to a state file (``kernel.statefile``, kind
``rp_filter``) before anything is changed, and the file is removed once they
are restored. A run killed with ``kill -9`` leaves its file behind: the next
start first puts those values back (:func:`recover_rp_filter`), and only then
reads what it will call "previous", so it never records the 0 a crashed run
left. While another live daemon of the same namespace holds a file, its
originals are taken as ours (its 0 is not an original either).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable

from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel import statefile

log = logging.getLogger(__name__)

STATE_KIND = "rp_filter"


def _path(interface: str) -> str:
    return f"/proc/sys/net/ipv4/conf/{interface}/rp_filter"


def _read(interface: str) -> int | None:
    try:
        with open(_path(interface), encoding="ascii") as handle:
            return int(handle.read().strip())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KernelError(f"read {_path(interface)}", exc.errno or errno.EIO) from exc


def _write(interface: str, value: int) -> None:
    try:
        with open(_path(interface), "w", encoding="ascii") as handle:
            handle.write(f"{value}\n")
    except OSError as exc:
        raise KernelError(f"write {_path(interface)}", exc.errno or errno.EIO) from exc


def recover_rp_filter() -> dict[str, int]:
    """Undo crashed runs (their state files) and return the originals live daemons recorded.

    Each file of a dead process: its values are written back, then the file
    is deleted. Files of live processes are left alone.
    """
    held: dict[str, int] = {}
    for found in statefile.found(STATE_KIND):
        values = {str(k): int(v) for k, v in found.data.get("values", {}).items()}
        if found.alive:
            for interface, value in values.items():
                held.setdefault(interface, value)
            continue
        log.warning("rp_filter_crashed_run pid=%d path=%s interfaces=%d", found.pid, found.path, len(values))
        restore_rp_filter(values)
        statefile.remove(found.path)
    return held


def disable_rp_filter(interfaces: Iterable[str]) -> dict[str, int]:
    """Set rp_filter 0 on ``all`` and on each existing interface; returns the previous values.

    Crashed runs are undone first; the previous values are in this process's
    state file before the first write.
    """
    try:
        held = recover_rp_filter()
    except KernelError as exc:
        log.warning("rp_filter_recovery_failed error=%s", exc)
        held = {}
    previous: dict[str, int] = {}
    for interface in ("all", *interfaces):
        value = _read(interface)
        if value is None or interface in previous:
            continue
        previous[interface] = held.get(interface, value)
    try:
        statefile.write(STATE_KIND, {"values": previous})
    except KernelError as exc:
        log.warning("rp_filter_state_write_failed error=%s consequence=after a crash the old values "
                    "are not restored", exc)
    for interface, value in previous.items():
        if _read(interface) != 0:
            _write(interface, 0)
            log.info("rp_filter_reset interface=%s previous=%d", interface, value)
    return previous


def restore_rp_filter(previous: dict[str, int]) -> None:
    """Write back what ``disable_rp_filter`` found (interfaces gone meanwhile are skipped)."""
    for interface, value in previous.items():
        current = _read(interface)
        if current is not None and current != value:
            _write(interface, value)
            log.info("rp_filter_restored interface=%s value=%d", interface, value)


def finish_rp_filter(previous: dict[str, int]) -> None:
    """Restore ``previous``, then delete this process's state file (nothing is left to undo)."""
    restore_rp_filter(previous)
    try:
        statefile.remove(statefile.own_path(STATE_KIND))
    except KernelError as exc:
        log.warning("rp_filter_state_remove_failed error=%s", exc)
