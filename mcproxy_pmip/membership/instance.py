"""One proxy instance's membership engine, IPv4 and IPv6 together (RFC 4605 §4).

``InstanceCore`` owns one ``RouterInterface`` per (downstream, family) and one
``UpstreamHost`` per (upstream, family). It:

- filters downstream records through the downstream IN rules before the
  router sees them (mcproxy's whitelist/blacklist semantics, ``FilterPolicy``);
- keeps the membership database of RFC 4605 §4.1: for each group the
  subscriptions of every downstream and their merge; a change on any downstream
  re-merges that group, applies the upstream OUT rules and hands the result to
  the upstream host(s) (RFC 4605 §4.1: the proxy reports the database as a
  host does its interface state), then emits ``ForwardingChanged``;
- answers the forwarding question of RFC 4605 §4.2 (``outputs``);
- keeps link-local scope groups away from the upstream (RFC 4605 §4: those
  groups are never proxied);
- holds the instance's ``StateBudget`` account, under which each downstream
  link's account sits (docs/limits.md);
- merges *held* subscriptions (``hold``/``release``): those of a mobile node
  prepared to arrive on a downstream that has no router here yet (a prepared
  handover, docs/handover.md); they count in the upstream database like a
  downstream's but are forwarded nowhere.

Time is explicit: every entry point takes ``now``; ``get_timer`` is the earliest
deadline of all children and ``handle_timer`` fires the due ones. A child's
deadline only moves when the core calls it, so the core keeps each child's
last known deadline in one heap and asks again only the children it touched.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from mcproxy_pmip.addresses import Family, IPAddress, is_link_local_scope_group
from mcproxy_pmip.membership.actions import (Action, ForwardingChanged, MembershipChanged,
                                             QuerierChanged, Trace, coalesce_reports)
from mcproxy_pmip.membership.budget import StateBudget
from mcproxy_pmip.membership.deadlines import Deadlines
from mcproxy_pmip.membership.filters import AllowAll, Direction, FilterPolicy
from mcproxy_pmip.membership.host import UpstreamHost
from mcproxy_pmip.membership.merge import MembershipState, merge
from mcproxy_pmip.membership.query import Query
from mcproxy_pmip.membership.router import RouterInterface
from mcproxy_pmip.membership.timers import HostOptions, RouterOptions
from mcproxy_pmip.wire.records import FilterMode, GroupRecord, RecordType

UPSTREAM_SELECTIONS = ("all", "first")

_NO_SOURCES: frozenset[IPAddress] = frozenset()
_EXCLUDE_RECORDS = (RecordType.MODE_IS_EXCLUDE, RecordType.CHANGE_TO_EXCLUDE)


class InstanceCore:
    """The sans-IO core of one proxy instance: N downstreams, M upstreams, both families.

    ``upstream_selection`` "all" reports the database to every upstream whose OUT
    rules allow it; "first" only to the first such upstream (mcproxy's
    ``rulematching first``). ``budget`` is the instance's account of group and
    source records (its downstreams' accounts sit below it); None gives an
    unlimited one of its own.
    """

    def __init__(self, name: str, upstreams: Sequence[str], filters: FilterPolicy,
                 router_options: Callable[[str], RouterOptions] | RouterOptions,
                 host_options: HostOptions, rng: random.Random,
                 upstream_selection: str = "all", budget: StateBudget | None = None) -> None:
        if upstream_selection not in UPSTREAM_SELECTIONS:
            raise ValueError(f"upstream_selection must be one of {UPSTREAM_SELECTIONS}, "
                             f"not {upstream_selection!r}")
        self.name = name
        self.filters = filters
        self.upstream_selection = upstream_selection
        self._router_options = router_options
        self._host_options = host_options
        self._rng = rng
        self.budget = budget if budget is not None else StateBudget.daemon()
        self._filters_all = isinstance(filters, AllowAll)
        self._upstreams: list[str] = []
        self._hosts: dict[tuple[str, Family], UpstreamHost] = {}
        self._routers: dict[Family, dict[str, RouterInterface]] = {f: {} for f in Family}
        #: family -> group -> downstream -> its subscription (RFC 4605 §4.1 inputs)
        self._subscriptions: dict[Family, dict[IPAddress, dict[str, MembershipState]]] = {
            f: {} for f in Family}
        #: family -> group -> merged database record
        self._database: dict[Family, dict[IPAddress, MembershipState]] = {f: {} for f in Family}
        #: each child's last known deadline; ``_touched`` children must be asked again (a dict
        #: used as an ordered set: the same run gives the same order in every process)
        self._child_deadlines = Deadlines()
        self._touched: dict[RouterInterface | UpstreamHost, None] = {}
        #: key -> family -> group -> held subscription
        self._held: dict[str, dict[Family, dict[IPAddress, MembershipState]]] = {}
        for interface in upstreams:
            self._create_upstream(interface)

    # -- interfaces ------------------------------------------------------------------

    @property
    def upstreams(self) -> tuple[str, ...]:
        return tuple(self._upstreams)

    @property
    def downstreams(self) -> tuple[tuple[str, Family], ...]:
        return tuple((name, family) for family, routers in self._routers.items() for name in routers)

    def router(self, interface: str, family: Family) -> RouterInterface:
        return self._routers[family][interface]

    def host(self, interface: str, family: Family) -> UpstreamHost:
        return self._hosts[(interface, family)]

    def add_downstream(self, now: float, interface: str, family: Family,
                       own_address: IPAddress | None) -> list[Action]:
        """Start querying on a new downstream (General Query at once, startup queries)."""
        if interface in self._upstreams:
            raise ValueError(f"{interface} is an upstream of instance {self.name}")
        if interface in self._routers[family]:
            raise ValueError(f"{interface} is already a {family.name} downstream of instance {self.name}")
        options = (self._router_options if isinstance(self._router_options, RouterOptions)
                   else self._router_options(interface))
        router = RouterInterface(interface, family, own_address, options, self.budget)
        self._routers[family][interface] = router
        self._touched[router] = None
        return self._follow(now, router.start(now))

    def restart_downstream(self, now: float, interface: str, family: Family) -> list[Action]:
        """The downstream's link came back (carrier regained): General Query at once, then
        the startup queries (RFC 3376 §7.1 / RFC 3810 §7.7 start-up); its state is kept."""
        router = self._routers[family][interface]
        self._touched[router] = None
        return self._follow(now, router.start(now))

    def remove_downstream(self, now: float, interface: str, family: Family) -> list[Action]:
        """Drop a downstream and all its state; the database and the upstream follow at once."""
        router = self._routers[family].pop(interface)
        self._forget_child(router)
        actions = router.stop(now)
        mentioned = {a.group for a in actions if isinstance(a, MembershipChanged)}
        actions.extend(MembershipChanged(interface, family, group)
                       for group, per_group in self._subscriptions[family].items()
                       if interface in per_group and group not in mentioned)
        return self._follow(now, actions)

    def add_upstream(self, now: float, interface: str) -> list[Action]:
        """Add an upstream (both families) and report the current database on it."""
        if interface in self._upstreams:
            raise ValueError(f"{interface} is already an upstream of instance {self.name}")
        if any(interface in routers for routers in self._routers.values()):
            raise ValueError(f"{interface} is a downstream of instance {self.name}")
        self._create_upstream(interface)
        return coalesce_reports(self._refresh_all_upstreams(now))

    def remove_upstream(self, now: float, interface: str) -> list[Action]:
        """Leave every group on an upstream, drop it, and move reports where selection says."""
        self._upstreams.remove(interface)
        actions: list[Action] = []
        for family in Family:
            host = self._hosts.pop((interface, family))
            self._forget_child(host)
            for group in list(host.groups()):
                actions.extend(host.set_membership(now, group, FilterMode.INCLUDE, _NO_SOURCES))
        actions.extend(self._refresh_all_upstreams(now))
        return coalesce_reports(actions)

    def _create_upstream(self, interface: str) -> None:
        if interface in self._upstreams:
            raise ValueError(f"{interface} is listed twice as an upstream of instance {self.name}")
        self._upstreams.append(interface)
        for family in Family:
            self._hosts[(interface, family)] = UpstreamHost(interface, family, self._host_options,
                                                            self._rng)

    def _refresh_all_upstreams(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for family, database in self._database.items():
            for group, state in list(database.items()):
                actions.extend(self._update_upstreams(now, family, group, state))
                actions.append(ForwardingChanged(family, group))
        return actions

    # -- the membership database (RFC 4605 §4.1) ------------------------------------------

    def groups(self, family: Family) -> Iterable[IPAddress]:
        """Groups of the merged database (those wanted by some downstream)."""
        return list(self._database[family])

    def membership(self, family: Family, group: IPAddress) -> MembershipState | None:
        """The merged database record of ``group`` (before upstream OUT rules)."""
        return self._database[family].get(group)

    def _follow(self, now: float, actions: list[Action]) -> list[Action]:
        """Re-merge every group a router reported changed; append what that causes."""
        changed: dict[tuple[Family, IPAddress], None] = {}
        for action in actions:
            if isinstance(action, MembershipChanged):
                self._note_subscription(action.interface, action.family, action.group)
                changed[(action.family, action.group)] = None
            elif isinstance(action, QuerierChanged):
                router = self._routers[action.family].get(action.interface)
                for group in (router.groups() if router is not None else ()):
                    changed[(action.family, group)] = None
        for family, group in changed:
            actions.extend(self._remerge(now, family, group))
        return coalesce_reports(actions)

    def subscribers(self, family: Family, group: IPAddress) -> tuple[str, ...]:
        """The downstreams whose membership of ``group`` is not empty (querier rule not applied);
        held subscriptions are no downstreams."""
        per_group = self._subscriptions[family].get(group, ())
        if self._held:
            return tuple(name for name in per_group if name not in self._held)
        return tuple(per_group)

    def _note_subscription(self, interface: str, family: Family, group: IPAddress) -> None:
        router = self._routers[family].get(interface)
        state = router.membership(group) if router is not None else None
        subscriptions = self._subscriptions[family]
        if state is None or (state[0] is FilterMode.INCLUDE and not state[1]):
            per_group = subscriptions.get(group)
            if per_group is not None:
                per_group.pop(interface, None)
                if not per_group:
                    del subscriptions[group]
            return
        per_group = subscriptions.get(group)
        if per_group is None:
            per_group = subscriptions[group] = {}
        per_group[interface] = state

    def _remerge(self, now: float, family: Family, group: IPAddress) -> list[Action]:
        database = self._database[family]
        merged = None
        if not is_link_local_scope_group(group):
            per_group = self._subscriptions[family].get(group)
            merged = merge(per_group.values()) if per_group else None
        actions: list[Action] = []
        if merged != database.get(group):
            if merged is None:
                del database[group]
            else:
                database[group] = merged
            actions.extend(self._update_upstreams(now, family, group, merged))
        actions.append(ForwardingChanged(family, group))
        return actions

    def _update_upstreams(self, now: float, family: Family, group: IPAddress,
                          merged: MembershipState | None) -> list[Action]:
        actions: list[Action] = []
        selected = False
        for interface in self._upstreams:
            desired = None
            if merged is not None and not (selected and self.upstream_selection == "first"):
                desired = self._upstream_allowed(interface, group, merged)
                selected = selected or desired is not None
            mode, sources = desired if desired is not None else (FilterMode.INCLUDE, _NO_SOURCES)
            host = self._hosts[(interface, family)]
            self._touched[host] = None
            actions.extend(host.set_membership(now, group, mode, sources))
        return actions

    def _upstream_allowed(self, interface: str, group: IPAddress,
                          state: MembershipState) -> MembershipState | None:
        """The upstream OUT rules applied to a database record.

        INCLUDE keeps the allowed sources; EXCLUDE (all sources but some) is
        reported only if the group itself, any source, is allowed.
        """
        if self._filters_all:
            return state
        mode, sources = state
        allows = self.filters.allows
        if mode is FilterMode.INCLUDE:
            kept = frozenset(s for s in sources if allows(interface, Direction.OUT, group, s))
            return (mode, kept) if kept else None
        return state if allows(interface, Direction.OUT, group, None) else None

    # -- held subscriptions (prepared handovers) -------------------------------------------

    @property
    def held(self) -> tuple[str, ...]:
        return tuple(self._held)

    def hold(self, now: float, key: str, family: Family, records: Sequence[GroupRecord]) -> list[Action]:
        """Merge ``records`` (current-state or change records; the mode and sources they leave)
        into the database under ``key``, a name no interface of the instance has; the upstream
        hears the change at once. Holding again under a key replaces that family's records."""
        if key in self._upstreams or any(key in routers for routers in self._routers.values()):
            raise ValueError(f"{key} is an interface of instance {self.name}")
        held = self._held.setdefault(key, {})
        previous = held.pop(family, {})
        wanted: dict[IPAddress, MembershipState] = {}
        for record in records:
            if record.record_type is RecordType.BLOCK_OLD_SOURCES or is_link_local_scope_group(record.group):
                continue
            mode = FilterMode.EXCLUDE if record.record_type in _EXCLUDE_RECORDS else FilterMode.INCLUDE
            if mode is FilterMode.INCLUDE and not record.sources:
                continue
            wanted[record.group] = (mode, frozenset(record.sources))
        if wanted:
            held[family] = wanted
        if not held:
            del self._held[key]
        return self._set_held(now, key, family, previous.keys() | wanted.keys(), wanted)

    def is_held(self, family: Family, group: IPAddress) -> bool:
        """True when some holding wants ``group``."""
        return any(group in held.get(family, ()) for held in self._held.values())

    def release(self, now: float, key: str) -> list[Action]:
        """Take the subscriptions held under ``key`` out of the database (nothing if none)."""
        actions: list[Action] = []
        for family, previous in self._held.pop(key, {}).items():
            actions.extend(self._set_held(now, key, family, previous.keys(), {}))
        return actions

    def _set_held(self, now: float, key: str, family: Family, groups: Iterable[IPAddress],
                  wanted: dict[IPAddress, MembershipState]) -> list[Action]:
        subscriptions = self._subscriptions[family]
        actions: list[Action] = []
        for group in groups:
            state = wanted.get(group)
            if state is not None:
                subscriptions.setdefault(group, {})[key] = state
            elif group in subscriptions:
                subscriptions[group].pop(key, None)
                if not subscriptions[group]:
                    del subscriptions[group]
            actions.extend(self._remerge(now, family, group))
        return coalesce_reports(actions)

    # -- messages ------------------------------------------------------------------

    def handle_report(self, now: float, interface: str, family: Family, version: int,
                      records: Sequence[GroupRecord], source: IPAddress) -> list[Action]:
        """A report received on ``interface``; only downstream reports carry subscriptions."""
        router = self._routers[family].get(interface)
        if router is None:
            return [Trace("report_not_on_downstream",
                          (("instance", self.name), ("interface", interface), ("source", source)))]
        actions: list[Action] = []
        records = self._downstream_allowed(interface, records, actions)
        self._touched[router] = None
        actions.extend(router.handle_report(now, version, records, source))
        return self._follow(now, actions)

    def _downstream_allowed(self, interface: str, records: Sequence[GroupRecord],
                            traces: list[Action]) -> Sequence[GroupRecord]:
        """The downstream IN rules: drop disallowed sources, or EXCLUDE records of a disallowed group."""
        if self._filters_all:
            return records
        allows = self.filters.allows
        kept: list[GroupRecord] = []
        for record in records:
            if record.record_type in _EXCLUDE_RECORDS:
                if allows(interface, Direction.IN, record.group, None):
                    kept.append(record)
                else:
                    traces.append(Trace("record_filtered", (("interface", interface),
                                                            ("group", record.group))))
                continue
            if record.record_type is RecordType.BLOCK_OLD_SOURCES or not record.sources:
                kept.append(record)
                continue
            sources = tuple(s for s in record.sources
                            if allows(interface, Direction.IN, record.group, s))
            if len(sources) != len(record.sources):
                traces.append(Trace("sources_filtered", (("interface", interface),
                                                         ("group", record.group),
                                                         ("dropped", len(record.sources) - len(sources)))))
                record = replace(record, sources=sources)
            kept.append(record)
        return kept

    def handle_query(self, now: float, interface: str, family: Family,
                     query: Query) -> list[Action]:
        """A query on an upstream goes to the host side; on a downstream, to the election."""
        if interface in self._upstreams:
            host = self._hosts[(interface, family)]
            self._touched[host] = None
            return host.handle_query(now, query)
        router = self._routers[family].get(interface)
        if router is None:
            return [Trace("query_on_unknown_interface",
                          (("instance", self.name), ("interface", interface),
                           ("source", query.source)))]
        self._touched[router] = None
        return self._follow(now, router.handle_query(now, query))

    # -- context transfer ---------------------------------------------------------------

    def export_downstream(self, now: float, interface: str,
                          family: Family) -> tuple[int, tuple[GroupRecord, ...]]:
        """A downstream's subscriptions as current-state records (RFC 7411 context)."""
        return self._routers[family][interface].export_records(now)

    def import_downstream(self, now: float, interface: str, family: Family, version: int,
                          records: Sequence[GroupRecord]) -> list[Action]:
        """Install transferred records as if reported; the upstream hears only real changes."""
        router = self._routers[family][interface]
        actions: list[Action] = []
        records = self._downstream_allowed(interface, records, actions)
        self._touched[router] = None
        actions.extend(router.import_records(now, version, records))
        return self._follow(now, actions)

    # -- time ------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        self._refresh_deadlines()
        return self._child_deadlines.earliest()

    def handle_timer(self, now: float) -> list[Action]:
        """Fire the due deadlines of every router, re-merge, then the upstream hosts'."""
        self._refresh_deadlines()
        due = self._child_deadlines.pop_due(now)
        self._touched.update(dict.fromkeys(due))
        actions: list[Action] = []
        for child in due:
            if isinstance(child, RouterInterface):
                actions.extend(child.handle_timer(now))
        actions = self._follow(now, actions)
        for child in due:
            if isinstance(child, UpstreamHost):
                actions.extend(child.handle_timer(now))
        return coalesce_reports(actions)

    def _refresh_deadlines(self) -> None:
        for child in self._touched:
            at = child.get_timer()
            if at is None:
                self._child_deadlines.cancel(child)
            elif at != self._child_deadlines.get(child):
                self._child_deadlines.set(child, at)
        self._touched.clear()

    def _forget_child(self, child: RouterInterface | UpstreamHost) -> None:
        self._touched.pop(child, None)
        self._child_deadlines.cancel(child)

    # -- forwarding (RFC 4605 §4.2) ----------------------------------------------------------

    def outputs(self, family: Family, source: IPAddress, group: IPAddress,
                iif: str) -> frozenset[str]:
        """The interfaces (S, G) data arriving on ``iif`` goes out on; never ``iif``."""
        if is_link_local_scope_group(group):
            return frozenset()
        allows = self.filters.allows
        routers = self._routers[family]
        outputs: set[str] = set()
        if iif in self._upstreams:
            if not allows(iif, Direction.IN, group, source):
                return frozenset()
        elif iif in routers:
            for interface in self._upstreams:
                if allows(interface, Direction.OUT, group, source):
                    outputs.add(interface)
                    if self.upstream_selection == "first":
                        break
        else:
            return frozenset()
        for interface, router in routers.items():
            if interface != iif and router.forwards(group, source) \
                    and allows(interface, Direction.OUT, group, source):
                outputs.add(interface)
        return frozenset(outputs)
