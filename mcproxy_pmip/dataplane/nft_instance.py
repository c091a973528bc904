"""One instance's place in the nftables plane: its interfaces, group chains and output chains.

The plane keeps the view's decision per group (``_wanted``) and what the
kernel has (``_installed``, the decision less interfaces the plane does not
know); ``groups_changed`` applies the decisions of the groups that changed
(the proxy gives it every group that changed in one reactor turn at once),
``refresh`` re-reads every decision and reloads only what differs, each as
ONE transaction whose cost follows the changed groups' outputs, not the
number of groups or links.

- Each interface's output chain (its one ``dup ... device`` rule) is loaded
  when a group first sends to it, and loaded again when the interface comes
  back with another ifindex (``add_interface``), since the rule holds the
  index taken when it was loaded.
- A new downstream's ``ifaces`` element is staged by ``add_interface`` and
  goes with the next transaction (the proxy makes one at the end of the
  attach, with the imported context's groups): an attach costs one.
- A downstream joining a group already forwarded is a jump appended to the
  group's chain (jumps return, their order does not matter); anything else
  writes the chain again.
- A transaction that only adds (staged elements, first loads of output
  chains, appended jumps for any-source downstreams) is written as netlink
  messages of our own (``dataplane.nft_fast``): libnftables lists every
  chain and link before such a batch. Everything else is nft text.
- per-(S,G) packet counters live in a dynamic set that the kernel expires
  after ``nft_rules.IDLE_INTERVAL`` idle seconds: ``age`` has nothing to do.
  A (iif, S, G) the full set refuses is forwarded by its group all the same.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from ipaddress import ip_address
from typing import Protocol

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.dataplane import nft_fast
from mcproxy_pmip.dataplane import nft_rules as rules
from mcproxy_pmip.dataplane.port import (ForwardingView, GroupOutputs, PlaneCounters, Reader, Role, RouteBudget,
                                         RouteQuota, RouteRow, SourceFilter)
from mcproxy_pmip.errors import McproxyError
from mcproxy_pmip.kernel.nft_netlink import Message

log = logging.getLogger(__name__)

GroupKey = tuple[Family, IPAddress]


class TablePlane(Protocol):
    """What an instance needs of ``NftablesPlane``: its tables' transactions and reads."""

    table_name: str
    routes: RouteBudget

    def apply(self, commands: list[str], counters: PlaneCounters | None = None) -> None: ...

    def apply_messages(self, messages: list[Message], counters: PlaneCounters | None = None) -> bool: ...

    def list_json(self, family: Family) -> list[dict]: ...

    def named_counter(self, family: Family, name: str) -> int | None: ...

    def instance_closed(self, name: str) -> None: ...


class NftInstancePlane:
    """``InstancePlane`` of one instance: its interfaces, group chains and counters in our tables."""

    table: int | None = None

    def __init__(self, plane: TablePlane, name: str, families: frozenset[Family], names: rules.InstanceNames,
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
        #: downstream -> its dispatch commands, not in the kernel yet: they go with the next batch
        self._staged: dict[str, list[str]] = {}

    # -- interfaces ---------------------------------------------------------------------------

    def add_interface(self, name: str, ifindex: int, role: Role) -> None:
        """Dispatch ``name`` to this instance; reload its output chains when its ifindex changed.

        A new downstream that no group sends to yet is staged: its map element
        goes to the kernel with the plane's next batch (the proxy's update at
        the end of the attach), so an attach costs one batch, not two.
        """
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
        if old_role is None and role is Role.DOWNSTREAM and name not in self._users and not self._closed:
            self._staged[name] = commands
            return
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
        if self._staged.pop(name, None) is not None:
            self._restore(name, None, None)
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
                               tuple(name for name in wanted.upstreams if name in known), wanted.held)
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
        appended: list[nft_fast.Appended] = []
        only_additions = not commands and not updates
        for key in keys:
            syntax = rules.SYNTAX[key[0]]
            effective, current = self._effective(key), self._installed.get(key)
            if effective is None:
                if current is not None:
                    updates += rules.remove_group_commands(syntax, self._table, self.names, key[1])
                    installed[key] = None
                    only_additions = False
            elif current is None or replace(effective, held=False) != replace(current, held=False):
                added = _added_downstreams(current, effective)
                if added:
                    updates += rules.downstream_rules(syntax, self._table, self.names, key[1], added,
                                                      self._output_chains)
                    appended.append((key, added))
                else:
                    updates += rules.install_group_commands(syntax, self._table, self.names, effective,
                                                            self._output_chains)
                    only_additions = False
                installed[key] = effective
        loads, drops = self._output_changes(new_defaults, installed, interface)

        def text() -> list[str]:
            batch = [command for staged in self._staged.values() for command in staged] + list(commands)
            for family, name in loads:
                batch += rules.output_chain_commands(rules.SYNTAX[family], self._table, self._output_chains[name],
                                                     name, loaded=(family, name) in self._loaded_outputs)
            batch += updates
            batch += [f"delete chain {rules.SYNTAX[family].nft} {self._table} {self._output_chains[name]}"
                      for family, name in drops]
            return batch

        self._commit(text, loads, appended, only_additions and not drops)
        self._staged.clear()
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

    def _commit(self, text: Callable[[], list[str]], loads: list[tuple[Family, str]],
                appended: list[nft_fast.Appended], additions_only: bool) -> None:
        """One transaction: our own netlink messages when it only adds what an attach needs (``nft_fast``),
        else (or when the kernel refuses the messages) the nft text that ``text()`` writes."""
        first_loads = not any(load in self._loaded_outputs for load in loads)
        if additions_only and first_loads and nft_fast.qualifies(appended):
            messages = nft_fast.attach_messages(self._table, self.names, self.families, self._staged, loads,
                                                appended, self._output_chains, self._ifindex)
            if self._plane.apply_messages(messages, self._counters):
                return
        try:
            self._plane.apply(text(), self._counters)
        except McproxyError:
            self._apply_staged_alone()
            raise

    def _apply_staged_alone(self) -> None:
        """A batch with staged downstreams failed: give them to the kernel on their own, so that a group
        the kernel refuses never holds back the dispatch of other links (they stay staged if this fails too)."""
        staged = [command for commands in self._staged.values() for command in commands]
        if not staged:
            return
        try:
            self._plane.apply(staged, self._counters)
        except McproxyError as exc:
            log.warning("nft_staged_interfaces_failed instance=%s interfaces=%s error=%s", self.name,
                        ",".join(self._staged), exc)
            return
        self._staged.clear()

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
        dispatched = [name for name in self._roles if name not in self._staged]
        for family in sorted(self.families):
            groups = [group for f, group in self._installed if f is family]
            outputs = [self._output_chains[name] for f, name in self._loaded_outputs if f is family]
            commands += rules.close_instance_commands(rules.SYNTAX[family], self._table, self.names,
                                                      dispatched, groups, outputs)
        self._plane.apply(commands, self._counters)
        self._closed = True
        self._plane.routes.closed(self.quota)
        self._installed.clear()
        self._loaded_outputs.clear()
        self._staged.clear()
        self._roles.clear()
        self._ifindex.clear()
        self._plane.instance_closed(self.name)
        log.info("nft_instance_closed instance=%s ident=%s", self.name, self.names.ident)


def _added_downstreams(current: GroupOutputs | None,
                       wanted: GroupOutputs) -> tuple[tuple[str, SourceFilter], ...] | None:
    """The downstreams ``wanted`` adds to the installed ``current`` when it only adds (the chain gets
    rules appended); None when anything else differs (the chain is written again)."""
    if current is None or current.upstreams != wanted.upstreams:
        return None
    have = dict(current.downstreams)
    wanted_filters = dict(wanted.downstreams)
    if any(wanted_filters.get(name) != source_filter for name, source_filter in have.items()):
        return None
    return tuple(item for item in wanted.downstreams if item[0] not in have)


def _named(outputs: GroupOutputs) -> set[str]:
    return {name for name, _ in outputs.downstreams} | set(outputs.upstreams)


def _counter(expressions: Iterable) -> tuple[int, int] | None:
    """(packets, bytes) of the first ``counter`` among nft JSON expressions or set elements."""
    for expression in expressions:
        counter = expression.get("counter") if isinstance(expression, dict) else None
        if isinstance(counter, dict):
            return int(counter.get("packets", 0)), int(counter.get("bytes", 0))
    return None
