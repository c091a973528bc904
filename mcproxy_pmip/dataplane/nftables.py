"""The nftables data plane: multicast forwarding with ``dup`` in prerouting, no multicast routing needed.

For kernels without ``CONFIG_IP_MROUTE`` / ``CONFIG_IPV6_MROUTE`` and for
instances beyond MRT's 32 vifs. Each packet of a multicast group arriving on
one of an instance's interfaces is copied by ``nf_dup_ipv4`` / ``nf_dup_ipv6``
to every output of its group (RFC 4605 §4.2), the copy's TTL / hop limit
decremented; the rule layout is in ``dataplane.nft_rules``.

State and cost:
- the daemon owns one table per family (``table_name``, comment with its
  pid); ``start`` deletes a leftover whose pid is dead, and refuses a live
  owner. Nothing outside these tables is ever touched.
- every change is ONE transaction, atomic in the kernel: an nft batch
  through one reused libnftables context (``kernel.nft``), or, for an
  attach that only adds, netlink messages of our own (``apply_messages``,
  ``kernel.nft_netlink``, ``dataplane.nft_fast``).
- each instance's state and updates are ``dataplane.nft_instance``.
- the (S,G) counter set of an instance is the plane's data-driven (S,G)
  state: its size is the instance's route cap, reserved from ``routes``
  (``route_budget``) when the instance opens, split evenly between its
  families. Packets the full set refuses are counted
  (``routes_refused_packets``, one netlink request per family,
  ``kernel.nft_counter``: an nft ``list`` would fetch every set element).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
from collections.abc import Iterable

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.dataplane import nft_rules as rules
from mcproxy_pmip.dataplane.nft_instance import NftInstancePlane
from mcproxy_pmip.dataplane.port import ForwardingView, PlaneCounters, PlaneUnavailable, RouteBudget
from mcproxy_pmip.errors import KernelError, McproxyError
from mcproxy_pmip.kernel.nft import NftContext, process_alive
from mcproxy_pmip.kernel.nft_counter import NftCounterReader
from mcproxy_pmip.kernel.nft_netlink import Message, NftNetlink

log = logging.getLogger(__name__)

_OWNER = re.compile(r'comment "' + re.escape(rules.PID_COMMENT).replace(r"\{pid\}", r"(\d+)") + '"')
_KERNEL_OPTION = {Family.IPV4: "CONFIG_NF_DUP_IPV4", Family.IPV6: "CONFIG_NF_DUP_IPV6"}
_PROBE_GROUP = {Family.IPV4: "224.0.0.1", Family.IPV6: "ff02::1"}


class NftablesPlane:
    """``DataPlane`` on nftables: one table per family, one ``NftInstancePlane`` per instance."""

    name = "nftables"
    max_interfaces: int | None = None

    def __init__(self, table_name: str = "mcproxy_pmip") -> None:
        self.table_name = table_name
        self._nft: NftContext | None = None
        self._numbers = itertools.count(1)
        self._instances: dict[str, NftInstancePlane] = {}
        self.routes = RouteBudget()
        self._counter_reader: NftCounterReader | None = None
        self._netlink: NftNetlink | None = None

    def start(self, configured_tables: Iterable[int]) -> None:
        """Open the nft context, delete dead runs' tables and create ours (configured MRT tables: unused)."""
        self._nft = NftContext()
        try:
            commands = self._leftovers()
        except McproxyError:
            self._nft.close()
            raise
        for family in Family:
            commands += rules.table_commands(rules.SYNTAX[family], self.table_name, os.getpid())
        try:
            self.apply(commands)
        except KernelError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
                raise PlaneUnavailable("nftables", f"nf_tables refused the table ({exc.detail})",
                                       "use a kernel with CONFIG_NF_TABLES and CONFIG_NF_TABLES_IPV4/IPV6") from exc
            raise
        self._probe_dup()
        try:
            self._netlink = NftNetlink()
        except KernelError as exc:
            log.warning("nft_netlink_unavailable error=%s (every change goes through libnftables)", exc)
        log.info("nft_tables_created table=%s pid=%d", self.table_name, os.getpid())

    def _leftovers(self) -> list[str]:
        """Commands deleting our tables of a run that is gone; refuses tables of a live process."""
        commands = []
        for family in Family:
            syntax = rules.SYNTAX[family]
            owner = self._owner(syntax)
            if owner is None:
                continue
            if owner != os.getpid() and process_alive(owner):
                raise McproxyError(f"nft table {syntax.nft} {self.table_name} belongs to the running process "
                                   f"{owner}: stop it first, or give this daemon another table name")
            log.warning("nft_leftover_table_deleted family=%s table=%s pid=%d", syntax.nft, self.table_name, owner)
            commands.append(rules.delete_table_command(syntax, self.table_name))
        return commands

    def _owner(self, syntax: rules.FamilySyntax) -> int | None:
        """The pid in the comment of our table of this family; None if there is no such table."""
        try:
            text = self.nft.run(f"list table {syntax.nft} {self.table_name}", terse=True)
        except KernelError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        match = _OWNER.search(text)
        if match is None:
            raise McproxyError(f"nft table {syntax.nft} {self.table_name} exists without this daemon's owner "
                               "comment: it is not ours; delete it or give this daemon another table name")
        return int(match.group(1))

    def _probe_dup(self) -> None:
        """Load a ``dup`` rule into a chain deleted in the same batch: the kernel must know nf_dup."""
        for family in Family:
            syntax = rules.SYNTAX[family]
            t = f"{syntax.nft} {self.table_name}"
            try:
                self.nft.run([f"add chain {t} probe",
                              f'add rule {t} probe dup to {_PROBE_GROUP[family]} device "lo"',
                              f"delete chain {t} probe"])
            except KernelError as exc:
                self.close()
                raise PlaneUnavailable("nftables", f"the kernel refused nf_dup ({exc.detail.splitlines()[0]})",
                                       f"use a kernel with {_KERNEL_OPTION[family]}") from exc

    @property
    def nft(self) -> NftContext:
        if self._nft is None or self._nft.closed:
            raise McproxyError("the nftables plane is not started")
        return self._nft

    def apply(self, commands: list[str], counters: PlaneCounters | None = None) -> None:
        """Run ``commands`` as one transaction, counting it on ``counters``."""
        if not commands:
            return
        try:
            self.nft.run(commands)
        except KernelError:
            if counters is not None:
                counters.add("nft_batches_failed")
            raise
        if counters is not None:
            counters.add("nft_batches")
            counters.add("nft_commands", len(commands))

    def apply_messages(self, messages: list[Message], counters: PlaneCounters | None = None) -> bool:
        """Apply ``messages`` as one transaction over our own netlink socket; False (nothing changed)
        when there is none, the batch is too large for it, or the kernel refused: the caller writes the
        same change as nft text. No answer raises (``KernelError`` ETIMEDOUT)."""
        if not messages:
            return True
        if self._netlink is None:
            return False
        try:
            self._netlink.commit(messages)
        except KernelError as exc:
            if exc.errno == errno.ETIMEDOUT:
                raise   # applied or not, unknown: writing it again as text could double a rule
            if exc.errno != errno.EMSGSIZE:
                log.warning("nft_netlink_refused messages=%d error=%s (written as nft text instead)",
                            len(messages), exc)
            return False
        if counters is not None:
            counters.add("nft_batches")
            counters.add("nft_netlink_batches")
            counters.add("nft_commands", len(messages))
        return True

    def list_json(self, family: Family) -> list[dict]:
        """Our table of ``family`` as nft's JSON items (one list call)."""
        return self.nft.run_json(f"list table {rules.SYNTAX[family].nft} {self.table_name}")

    def open_instance(self, name: str, families: frozenset[Family], table: int | None,
                      view: ForwardingView) -> NftInstancePlane:
        if name in self._instances:
            raise McproxyError(f"nftables plane: instance {name} is already open")
        names = rules.instance_names(next(self._numbers))
        quota = self.routes.quota(name)
        size = quota.reserve() // max(1, len(families))
        quota.track(None, size * len(families))
        commands = [command for family in sorted(families)
                    for command in rules.instance_commands(rules.SYNTAX[family], self.table_name, names, (), size)]
        try:
            self.apply(commands)
        except McproxyError:
            self.routes.closed(quota)
            raise
        plane = NftInstancePlane(self, name, families, names, view, quota, size)
        self._instances[name] = plane
        log.info("nft_instance_opened instance=%s ident=%s max_routes=%d", name, names.ident, size)
        return plane

    def named_counter(self, family: Family, name: str) -> int | None:
        """Packets of one of our named counters, read from the kernel directly (None: unreadable)."""
        try:
            if self._counter_reader is None:
                self._counter_reader = NftCounterReader()
            return self._counter_reader.read(family, self.table_name, name)[0]
        except KernelError as exc:
            log.warning("nft_counter_unreadable family=%s counter=%s error=%s", family.name, name, exc)
            return None

    def instance_closed(self, name: str) -> None:
        self._instances.pop(name, None)

    def identifiers(self) -> dict[str, str]:
        """Instance name -> its nft identifier (``iN``)."""
        return {name: plane.names.ident for name, plane in self._instances.items()}

    def close(self) -> None:
        """Delete our tables (everything every instance left in them) and free the context."""
        if self._nft is None or self._nft.closed:
            return
        try:
            for family in Family:
                try:
                    self.nft.run(rules.delete_table_command(rules.SYNTAX[family], self.table_name))
                except KernelError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
                    log.warning("nft_table_already_gone family=%s table=%s", family.name, self.table_name)
            log.info("nft_tables_deleted table=%s", self.table_name)
        finally:
            self._instances.clear()
            self._nft.close()
            if self._counter_reader is not None:
                self._counter_reader.close()
                self._counter_reader = None
            if self._netlink is not None:
                self._netlink.close()
                self._netlink = None
