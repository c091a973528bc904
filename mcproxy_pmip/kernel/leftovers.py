"""Find and clear what a crashed run left in the kernel: our mrules and table contents.

When the daemon dies, even by ``kill -9``, the kernel closes its mroute
sockets and drops the non-static vifs and MFC entries of their tables. What
stays behind:

* our multicast rules (``ip mrule``), recognised by ``FRA_PROTOCOL`` =
  ``mrules.MRULE_PROTOCOL`` *and* a table number the caller names as ours
  (the configured ones and those a crashed run recorded,
  ``dataplane.mroute``), so the rules of another instance with other tables
  and the operator's rules are never touched;
* the tables themselves (the kernel never deletes one; they are empty and
  cheap) and any static entries in them, which :func:`clear` flushes with
  ``MRT_FLUSH``.

A table whose ``MRT_INIT`` answers ``EADDRINUSE`` belongs to a live process:
it is reported as busy and neither it nor its rules are touched.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel import mrules
from mcproxy_pmip.kernel.mroute import MrouteSocket

log = logging.getLogger(__name__)

TableId = tuple[Family, int]


@dataclass(frozen=True, slots=True)
class Leftovers:
    """What was found (or cleared) for a set of tables."""

    mrules: tuple[mrules.Mrule, ...]
    busy_tables: tuple[TableId, ...]
    flushed_tables: tuple[TableId, ...] = ()


def _busy(table: TableId, *, flush: bool) -> bool:
    family, number = table
    try:
        sock = MrouteSocket(family, number)
    except KernelError as exc:
        if exc.errno == errno.EADDRINUSE:
            return True
        raise
    try:
        if flush:
            sock.flush()
    finally:
        sock.close()
    return False


def _ours(tables: list[TableId], busy: set[TableId]) -> list[mrules.Mrule]:
    found = []
    for family in sorted({family for family, _ in tables}):
        for rule in mrules.list_mrules(family):
            table = (family, rule.table)
            if table in tables and table not in busy:
                found.append(rule)
    return found


def find(tables: Iterable[TableId]) -> Leftovers:
    """Our mrules for ``tables`` that no live process owns, and the busy tables.

    Probing a table opens it for a moment (``MRT_TABLE`` creates it if missing).
    """
    wanted = list(dict.fromkeys(tables))
    busy = {table for table in wanted if _busy(table, flush=False)}
    return Leftovers(tuple(_ours(wanted, busy)), tuple(t for t in wanted if t in busy))


def clear(tables: Iterable[TableId]) -> Leftovers:
    """Flush every table of ``tables`` that no live process owns and delete our mrules for them."""
    wanted = list(dict.fromkeys(tables))
    busy: set[TableId] = set()
    flushed: list[TableId] = []
    for table in wanted:
        if _busy(table, flush=True):
            busy.add(table)
            log.warning("leftovers_table_busy family=%s table=%d", table[0].name, table[1])
        else:
            flushed.append(table)
    removed = _ours(wanted, busy)
    for rule in removed:
        mrules.delete_mrule(rule)
        log.info("leftovers_mrule_deleted %s", rule)
    return Leftovers(tuple(removed), tuple(t for t in wanted if t in busy), tuple(flushed))
