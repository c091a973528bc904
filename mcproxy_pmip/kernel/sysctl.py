"""Reverse-path filter settings (``-r``): set to 0 on the interfaces in use, restore exactly on exit.

The kernel applies the larger of ``conf/all/rp_filter`` and the interface's
own value, so both are changed. Plain file IO under /proc/sys.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable

from mcproxy_pmip.errors import KernelError

log = logging.getLogger(__name__)


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


def disable_rp_filter(interfaces: Iterable[str]) -> dict[str, int]:
    """Set rp_filter 0 on ``all`` and on each existing interface; returns the previous values."""
    previous: dict[str, int] = {}
    for interface in ("all", *interfaces):
        value = _read(interface)
        if value is None or interface in previous:
            continue
        previous[interface] = value
        if value != 0:
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
