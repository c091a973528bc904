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
- every change is ONE nft batch, atomic in the kernel, through one reused
  libnftables context (``kernel.nft``); ``groups_changed`` costs the changed
  groups' outputs, not the number of groups or links: the proxy gives it
  every group that changed in one reactor turn at once.
- the plane keeps the view's decision per group (``_wanted``) and what the
  kernel has (``_installed``, the decision less interfaces the plane does
  not know); ``refresh`` re-reads every decision and reloads only what
  differs. Each interface's output chain (its one ``dup ... device`` rule)
  is loaded when a group first sends to it, and loaded again when the
  interface comes back with another ifindex (``add_interface``), since the
  rule holds the index taken when it was loaded.
- per-(S,G) packet counters live in a dynamic set that the kernel expires
  after ``nft_rules.IDLE_INTERVAL`` idle seconds: ``age`` has nothing to do.
- that set is the plane's data-driven (S,G) state: its size is the
  instance's route cap, reserved from ``routes`` (``route_budget``) when the
  instance opens, split evenly between its families. A (iif, S, G) the full
  set refuses is forwarded by its group all the same; its packets are
  counted (``routes_refused_packets``, one netlink request per family,
  ``kernel.nft_counter``: an nft ``list`` would fetch every set element).
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
from collections.abc import Iterable
from ipaddress import ip_address

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.dataplane import nft_rules as rules
from mcproxy_pmip.dataplane.port import (ForwardingView, GroupOutputs, PlaneCounters, PlaneUnavailable, Reader,
                                         Role, RouteBudget, RouteQuota, RouteRow)
from mcproxy_pmip.errors import KernelError, McproxyError
from mcproxy_pmip.kernel.nft import NftContext, process_alive
from mcproxy_pmip.kernel.nft_counter import NftCounterReader

log = logging.getLogger(__name__)

GroupKey = tuple[Family, IPAddress]

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


class NftInstancePlane:
    """``InstancePlane`` of one instance: its interfaces, group chains and counters in our tables."""

    table: int | None = None

    def __init__(self, plane: NftablesPlane, name: str, families: frozenset[Family], names: rules.InstanceNames,
                 view: ForwardingView, quota: RouteQuota, source_set_size: int) -> None:
        self.name = name
        self.quota = quota
        self.source_set_size = source_set_size
        self.families = families
        self.names = names
        self._plane = plane
        self._table = plane.table_name
        self._view = view
        self._roles: dict[str, Role] = {}
        self._ifindex: dict[str, int] = {}
        self._wanted: dict[GroupKey, GroupOutputs] = {}
        self._installed: dict[GroupKey, GroupOutputs] = {}
        self._users: dict[str, set[GroupKey]] = {}
        self._defaults: dict[Family, tuple[str, ...]] = {family: () for family in families}
        self._output_numbers = itertools.count(1)
        #: interface -> its output chain's name (while the interface is known)
        self._output_chains: dict[str, str] = {}
        #: (family, interface) -> the ifindex its loaded output chain's dup rule holds
        self._loaded_outputs: dict[tuple[Family, str], int] = {}
        self._counters = PlaneCounters()
        self._closed = False

    # -- interfaces ---------------------------------------------------------------------------

    def add_interface(self, name: str, ifindex: int, role: Role) -> None:
        """Dispatch ``name`` to this instance; reload its output chains when its ifindex changed."""
        rules.quote(name)
        old_role, old_ifindex = self._roles.get(name), self._ifindex.get(name)
        if old_role is role and old_ifindex == ifindex:
            return
        commands = []
        for family in sorted(self.families):
            syntax = rules.SYNTAX[family]
            if old_role is Role.UPSTREAM and role is not Role.UPSTREAM:
                commands.append(f"delete element {syntax.nft} {self._table} {self.names.upstreams} "
                                f"{{ {rules.quote(name)} }}")
            commands += rules.interface_commands(syntax, self._table, self.names, name, role is Role.UPSTREAM)
        self._roles[name], self._ifindex[name] = role, ifindex
        self._output_chains.setdefault(name, self.names.output_chain(next(self._output_numbers)))
        try:
            self._change(commands, list(self._users.get(name, ())), defaults=True, interface=name)
        except McproxyError:
            self._restore(name, old_role, old_ifindex)
            raise

    def remove_interface(self, name: str) -> None:
        """Take ``name`` out of the interface map, the upstream set and every group chain."""
        old_role, old_ifindex = self._roles.get(name), self._ifindex.get(name)
        if old_role is None:
            return
        commands = []
        for family in sorted(self.families):
            commands += rules.remove_interface_commands(rules.SYNTAX[family], self._table, self.names, name,
                                                        old_role is Role.UPSTREAM)
        del self._roles[name], self._ifindex[name]
        try:
            self._change(commands, list(self._users.get(name, ())), defaults=True, interface=name)
        except McproxyError:
            self._restore(name, old_role, old_ifindex)
            raise
        del self._output_chains[name]

    def _restore(self, name: str, role: Role | None, ifindex: int | None) -> None:
        if role is None or ifindex is None:
            self._roles.pop(name, None)
            self._ifindex.pop(name, None)
            self._output_chains.pop(name, None)
        else:
            self._roles[name], self._ifindex[name] = role, ifindex

    def interfaces(self) -> dict[str, int]:
        return dict(self._ifindex)

    # -- groups -------------------------------------------------------------------------------

    def groups_changed(self, keys: Iterable[GroupKey]) -> None:
        """Apply the view's decisions for these (family, group): one batch, as large as their outputs."""
        keys = [key for key in dict.fromkeys(keys) if key[0] in self.families]
        for key in keys:
            self._want(key, self._view.group_outputs(*key))
        self._change([], keys)

    def refresh(self) -> None:
        """Re-read every group's decision and the default upstreams; reload what differs, in one batch."""
        for key in list(self._wanted):
            self._want(key, self._view.group_outputs(*key))
        self._change([], list(self._wanted), defaults=True)

    def _want(self, key: GroupKey, outputs: GroupOutputs) -> None:
        """Remember the view's decision and which interfaces it names."""
        old = self._wanted.pop(key, None)
        if old is not None:
            for name in _named(old):
                users = self._users.get(name)
                if users is not None:
                    users.discard(key)
                    if not users:
                        del self._users[name]
        if outputs.empty:
            return
        self._wanted[key] = outputs
        for name in _named(outputs):
            self._users.setdefault(name, set()).add(key)

    def _effective(self, key: GroupKey) -> GroupOutputs | None:
        """The decision less interfaces this plane does not have; None when nothing is left."""
        wanted = self._wanted.get(key)
        if wanted is None:
            return None
        known = self._roles
        outputs = GroupOutputs(wanted.family, wanted.group,
                               tuple(item for item in wanted.downstreams if item[0] in known),
                               tuple(name for name in wanted.upstreams if name in known))
        return None if outputs.empty else outputs

    def _change(self, commands: list[str], keys: Iterable[GroupKey], *, defaults: bool = False,
                interface: str | None = None) -> None:
        """Append the updates of ``keys`` (and of the default upstreams) to ``commands``; apply as one batch.

        ``defaults``: re-read the view's default upstreams. ``interface``: one
        that came (its output chains are reloaded if its ifindex changed) or
        went (they are deleted). Output chains are loaded before the rules that
        jump to them, and deleted after them.
        """
        if self._closed:
            return
        updates: list[str] = []
        new_defaults = dict(self._defaults)
        if defaults:
            for family in sorted(self.families):
                wanted = tuple(n for n in self._view.default_upstreams(family) if n in self._roles)
                if wanted != self._defaults[family]:
                    updates += rules.instance_chain_commands(rules.SYNTAX[family], self._table, self.names,
                                                             [self._output_chains[n] for n in wanted],
                                                             count_sources=self.source_set_size > 0)
                    new_defaults[family] = wanted
        installed: dict[GroupKey, GroupOutputs | None] = {}
        for key in keys:
            syntax = rules.SYNTAX[key[0]]
            effective, current = self._effective(key), self._installed.get(key)
            if effective is None:
                if current is not None:
                    updates += rules.remove_group_commands(syntax, self._table, self.names, key[1])
                    installed[key] = None
            elif effective != current:
                updates += rules.install_group_commands(syntax, self._table, self.names, effective,
                                                        self._output_chains)
                installed[key] = effective
        loads, drops = self._output_changes(new_defaults, installed, interface)
        commands = list(commands)
        for family, name in loads:
            commands += rules.output_chain_commands(rules.SYNTAX[family], self._table, self._output_chains[name], name)
        commands += updates
        for family, name in drops:
            commands.append(f"delete chain {rules.SYNTAX[family].nft} {self._table} {self._output_chains[name]}")
        self._plane.apply(commands, self._counters)
        self._defaults = new_defaults
        for key, outputs in installed.items():
            if outputs is None:
                del self._installed[key]
            else:
                self._installed[key] = outputs
        for family, name in loads:
            self._loaded_outputs[(family, name)] = self._ifindex[name]
        for key in drops:
            del self._loaded_outputs[key]

    def _output_changes(self, defaults: dict[Family, tuple[str, ...]],
                        installed: dict[GroupKey, GroupOutputs | None], interface: str | None
                        ) -> tuple[list[tuple[Family, str]], list[tuple[Family, str]]]:
        """Output chains to load (needed, and absent or holding an old ifindex) and to delete (interface gone)."""
        needed = {(family, name) for family, names in defaults.items() for name in names}
        for (family, _), outputs in installed.items():
            if outputs is not None:
                needed.update((family, name) for name in _named(outputs))
        touched = [(family, interface) for family in self.families if (family, interface) in self._loaded_outputs]
        if interface in self._roles:
            needed.update(touched)
        loads = sorted(key for key in needed if self._loaded_outputs.get(key) != self._ifindex[key[1]])
        drops = [] if interface in self._roles else sorted(touched)
        return loads, drops

    # -- reading ------------------------------------------------------------------------------

    def routes(self) -> list[RouteRow]:
        """Per group its counter (source None), then per (iif, S, G) seen its counter; one list call per family."""
        groups: list[RouteRow] = []
        sources: list[RouteRow] = []
        chains = {self.names.group_chain(group): (family, group) for family, group in self._installed}
        for family in sorted(self.families):
            for item in self._plane.list_json(family):
                rule = item.get("rule")
                if rule is not None and rule.get("chain") in chains:
                    counter = _counter(rule.get("expr", ())[:1])
                    if counter is not None:
                        key = chains[rule["chain"]]
                        groups.append(RouteRow(family, key[1], None, None, self._group_oifs(key), *counter))
                found = item.get("set")
                if found is not None and found.get("name") == self.names.sources:
                    sources.extend(self._source_rows(family, found.get("elem", ())))
        rows = sorted(groups, key=lambda r: (r.family, r.group.packed))
        return rows + sorted(sources, key=lambda r: (r.family, r.group.packed, r.source.packed))

    def _source_rows(self, family: Family, elements: Iterable) -> list[RouteRow]:
        rows = []
        for element in elements:
            body = element.get("elem", element) if isinstance(element, dict) else element
            value = body.get("val") if isinstance(body, dict) else None
            concat = value.get("concat") if isinstance(value, dict) else None
            if not concat or len(concat) != 3:
                continue
            iif, source, group = concat[0], ip_address(concat[1]), ip_address(concat[2])
            packets, octets = _counter([body]) or (None, None)
            rows.append(RouteRow(family, group, source, iif, self._oifs((family, group), source, iif),
                                 packets, octets))
        return rows

    def _group_oifs(self, key: GroupKey) -> tuple[str, ...]:
        """Every interface a group's data can go to (upstreams: only for data from a downstream)."""
        outputs = self._installed.get(key)
        if outputs is None:
            return self._defaults.get(key[0], ())
        return tuple(name for name, _ in outputs.downstreams) + outputs.upstreams

    def _oifs(self, key: GroupKey, source: IPAddress, iif: str) -> tuple[str, ...]:
        """Where the rules send (``source``, group) data arriving on ``iif``."""
        from_downstream = self._roles.get(iif) is Role.DOWNSTREAM
        outputs = self._installed.get(key)
        if outputs is None:
            return self._defaults.get(key[0], ()) if from_downstream else ()
        downstreams = tuple(name for name, source_filter in outputs.downstreams
                            if name != iif and source_filter.passes(source))
        return downstreams + (outputs.upstreams if from_downstream else ())

    def age(self, now: float) -> None:
        """Nothing: the kernel expires idle (S,G) entries of the counter set itself."""

    def readers(self) -> list[Reader]:
        return []

    def counters(self) -> dict[str, int]:
        values = dict(self._counters.values)
        values["nft_groups"] = len(self._installed)
        values["routes_max"] = self.source_set_size * len(self.families)
        refused = [self._plane.named_counter(family, self.names.refused) for family in sorted(self.families)]
        values["routes_refused_packets"] = sum(n for n in refused if n is not None)
        return values

    def close(self) -> None:
        """Remove this instance's chains, maps, sets and interface-map elements (one batch)."""
        if self._closed:
            return
        commands = []
        for family in sorted(self.families):
            groups = [group for f, group in self._installed if f is family]
            outputs = [self._output_chains[name] for f, name in self._loaded_outputs if f is family]
            commands += rules.close_instance_commands(rules.SYNTAX[family], self._table, self.names,
                                                      self._roles, groups, outputs)
        self._plane.apply(commands, self._counters)
        self._closed = True
        self._plane.routes.closed(self.quota)
        self._installed.clear()
        self._loaded_outputs.clear()
        self._roles.clear()
        self._ifindex.clear()
        self._plane.instance_closed(self.name)
        log.info("nft_instance_closed instance=%s ident=%s", self.name, self.names.ident)


def _named(outputs: GroupOutputs) -> set[str]:
    return {name for name, _ in outputs.downstreams} | set(outputs.upstreams)


def _counter(expressions: Iterable) -> tuple[int, int] | None:
    """(packets, bytes) of the first ``counter`` among nft JSON expressions or set elements."""
    for expression in expressions:
        counter = expression.get("counter") if isinstance(expression, dict) else None
        if isinstance(counter, dict):
            return int(counter.get("packets", 0)), int(counter.get("bytes", 0))
    return None
