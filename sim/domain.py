"""The simulated PMIPv6 domain: LMAs, MAGs and MNs around the daemon's engine objects.

Every protocol decision is made by the daemon's own code: each MAG's proxy
instances are ``InstanceCore`` objects (one per LMA tunnel, RFC 6224 §4)
managed by the pmipv6 plugin's ``BindingTable`` through ``SimFacade``
(plugin, context and predictive modes) or configured statically (static
mode); each LMA is an ``InstanceCore`` with one downstream per MAG tunnel;
each MN's host stack is an ``UpstreamHost`` (RFC 3376 §5 host behaviour:
unsolicited report and robustness-1 retransmissions, answers after a random
delay in Max Resp). The simulator only carries messages with a delay and a
loss probability, runs the radio (link breaks and L2 outages) and the clock,
and measures when each MN's groups reach its link again (docs/simulation.md).
"""

from __future__ import annotations

import bisect
import random
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config.model import PROTOCOLS
from mcproxy_pmip.membership.actions import Action, ForwardingChanged, SendQuery, SendReport
from mcproxy_pmip.membership.filters import AllowAll
from mcproxy_pmip.membership.host import UpstreamHost
from mcproxy_pmip.membership.instance import InstanceCore
from mcproxy_pmip.membership.query import Query
from mcproxy_pmip.membership.timers import HostOptions, RouterOptions, Timers
from mcproxy_pmip.wire import rfc7411
from mcproxy_pmip.wire.records import FilterMode, RecordType
from mcproxy_pmip_plugins.pmipv6.bindings import (BindingTable, ContextEntry, MobileNodeAttached,
                                                  MobileNodeDetached)
from mcproxy_pmip_sim.events import EventLoop, Progress
from mcproxy_pmip_sim.facade import SimFacade
from mcproxy_pmip_sim.mobility import Move, draw_outage, plan_moves
from mcproxy_pmip_sim.parts import SOURCES, Row, Tally, Timed, group_address, zipf_weights
from mcproxy_pmip_sim.scenario import MODES, Scenario

_JOINING = (RecordType.CHANGE_TO_EXCLUDE, RecordType.ALLOW_NEW_SOURCES)
_NO_SOURCES: frozenset = frozenset()



#: per family: the MAGs' own address on every access link, the LMAs' on every tunnel, the
#: first MN address
_MAG_ADDRESS = {Family.IPV4: IPv4Address("100.64.0.1"), Family.IPV6: IPv6Address("fe80::1")}
_LMA_ADDRESS = {Family.IPV4: IPv4Address("10.0.0.1"), Family.IPV6: IPv6Address("fe80::a")}
_MN_ADDRESSES = {Family.IPV4: int(IPv4Address("100.64.0.0")),
                 Family.IPV6: int(IPv6Address("fe80::1:0"))}


class Mn:
    """One MN: its host stack (one family), its streams (indices into ``Simulator.streams``),
    how it joins them (``source_specific``: INCLUDE {the stream's source}, else EXCLUDE {})."""

    __slots__ = ("index", "name", "lma", "mag", "link_up", "host", "timed", "groups", "address",
                 "receiving", "flow_end_at", "open_rows", "closing", "settled_at", "link",
                 "tunnel", "source_specific")

    def __init__(self, index: int, lma: int, mag: int, host: UpstreamHost,
                 groups: list[int], source_specific: bool) -> None:
        self.index = index
        self.name = f"mn{index + 1}"
        self.lma = lma
        self.mag = mag
        self.link_up = False
        self.host = host
        self.timed: Timed | None = None
        self.groups = groups
        self.address = (IPv4Address if host.family is Family.IPV4 else IPv6Address)(
            _MN_ADDRESSES[host.family] + index + 2)
        self.receiving: set[int] = set()
        self.flow_end_at: dict[int, float] = {}
        #: group -> the open result row of the last handover (None: initial attach)
        self.open_rows: dict[int, Row | None] = {}
        #: (group, row) of its last handover, finished at its next link break or the run's end
        self.closing: list[tuple[int, Row]] = []
        self.settled_at = 0.0
        #: its access link's name at every MAG, and the name of its LMA's tunnel (instance)
        self.link = f"a{index}"
        self.tunnel = f"tun{lma}"
        self.source_specific = source_specific


class Mag:
    """One MAG: its facade (the proxy instances), the binding table, its counters."""

    def __init__(self, sim: Simulator, index: int) -> None:
        self.sim = sim
        self.index = index
        self.name = f"mag{index + 1}"
        self.facade = SimFacade(self)
        self.host_options = sim.host_options
        self.table: BindingTable | None = None
        self.timed: dict[int, Timed] = {}
        self.reports_sent = 0
        #: (lma, group) -> times of joining reports sent on that tunnel
        self.join_times: dict[tuple[int, int], list[float]] = {}
        #: (tunnel, group) -> MNs of that tunnel's LMA attached here waiting for the group
        self.pending: dict[tuple[str, int], set[int]] = {}

    @property
    def now(self) -> float:
        return self.sim.now

    def rng_for(self, name: str) -> random.Random:
        return random.Random(f"{self.sim.seed}:{self.name}:{name}")

    @property
    def families(self) -> tuple[Family, ...]:
        return self.sim.families

    def link_address(self, interface: str, family: Family) -> IPv4Address | IPv6Address:
        return _MAG_ADDRESS[family]

    def shared_group(self, group: IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
        return self.sim.shared_group(group)

    def follow(self, core: InstanceCore, actions: list[Action]) -> None:
        timed = self.timed.get(id(core))
        if timed is None or timed.obj is not core:
            timed = self.timed[id(core)] = Timed(
                core, lambda acts, core=core: self.sim.mag_actions(self, core, acts),
                lambda core=core: self.facade.cores.get(core.name) is core)
        self.sim.mag_actions(self, core, actions)
        self.sim.rearm(timed)


class Lma:
    def __init__(self, sim: Simulator, index: int, timers: Timers) -> None:
        self.index = index
        self.name = f"lma{index + 1}"
        #: the name of its tunnel (and so of the instance) at every MAG
        self.tunnel = f"tun{index}"
        self.core = InstanceCore(self.name, ["src"], AllowAll(), RouterOptions(timers=timers),
                                 sim.host_options, random.Random(f"{sim.seed}:{self.name}"))
        self.timed = Timed(self.core, lambda acts: sim.lma_actions(self, acts))
        self.reports_received = 0
        #: (mag, group) -> since when the LMA forwards the group into that MAG's tunnel
        self.on_since: dict[tuple[int, int], float] = {}
        #: group -> the MAGs whose tunnel the LMA forwards it into
        self.forwarding: dict[int, set[int]] = {}


class Simulator(EventLoop):
    """One run of one mode. After ``run()``: ``tally`` (what the aggregates need),
    ``counters()``, and ``row_objects``, the result rows, when ``keep_rows`` (a long run's
    rows take most of its memory: 350 bytes each, two per handover at two groups per MN)."""

    def __init__(self, scenario: Scenario, mode: str, seed: int,
                 progress: Progress | None = None, keep_rows: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        super().__init__(seed, progress)
        self.scenario, self.mode = scenario, mode
        self.delays = scenario.delays
        self.host_options = HostOptions(scenario.robustness, scenario.unsolicited_report_interval)
        self.timers = Timers(robustness=scenario.robustness, query_interval=scenario.query_interval,
                             query_response_interval=scenario.query_response_interval,
                             unsolicited_report_interval=scenario.unsolicited_report_interval)
        self.plugin_timers = replace(self.timers, startup_query_interval=1.0)
        protocols = scenario.mn_protocols
        #: the families of the MNs' protocols: every access link and tunnel runs these
        self.families = tuple(sorted({PROTOCOLS[name][0] for name in protocols}))
        self.lmas = [Lma(self, k, self.timers) for k in range(scenario.lmas)]
        self.mags = [Mag(self, m) for m in range(scenario.mags)]
        #: per MAG: its tunnel's name at the LMAs and its address there
        self._tunnels = [f"t{m}" for m in range(scenario.mags)]
        self._mag_addresses = {Family.IPV4: [IPv4Address(0x0B000000 + m) for m in range(scenario.mags)],
                               Family.IPV6: [IPv6Address(0xFE80 << 112 | 0xB0000 | m)
                                             for m in range(scenario.mags)]}
        self._mag_by_tunnel = {name: m for m, name in enumerate(self._tunnels)}
        self._lma_by_tunnel = {lma.tunnel: lma for lma in self.lmas}
        self.keep_rows = keep_rows
        self.row_objects: list[Row] = []
        self.tally = Tally()
        self._handovers = 0
        self.group_rng = random.Random(f"{seed}:groups")
        starts, self._moves = plan_moves(scenario, random.Random(f"{seed}:mobility"))
        weights = zipf_weights(scenario.groups, scenario.zipf_exponent)
        #: stream index -> its group: the IPv4 groups by popularity, then the IPv6 ones
        self.streams = [group_address(g, family) for family in (Family.IPV4, Family.IPV6)
                        for g in range(scenario.groups)]
        self._stream_of = {group: s for s, group in enumerate(self.streams)}
        host_protocols = self._host_protocols(scenario, seed)
        channel_rng = random.Random(f"{seed}:channels")
        self.mns: list[Mn] = []
        for i in range(scenario.mns):
            family, options = host_protocols[i]
            source_specific = (options.newest_version == family.newest_version
                               and channel_rng.random() < scenario.source_specific_share)
            offset = 0 if family is Family.IPV4 else scenario.groups
            groups: list[int] = []
            while len(groups) < scenario.groups_per_mn:
                g = self.group_rng.choices(range(scenario.groups), weights)[0] + offset
                if g not in groups:
                    groups.append(g)
            host = UpstreamHost("wlan0", family, options, random.Random(f"{seed}:mn{i}"))
            self.mns.append(Mn(i, i % scenario.lmas, starts[i], host, groups, source_specific))
        self._mn_by_link = {mn.link: mn for mn in self.mns}
        #: per stream: its name (by popularity rank), address and family as rows give them
        self._stream_names = [(f"g{s % scenario.groups + 1}", str(group),
                               Family(group.version).name.lower())
                              for s, group in enumerate(self.streams)]
        self.outage_rng = random.Random(f"{seed}:outage")

    def shared_group(self, group: IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
        """The stream's own address object for an equal one (decoded from a context)."""
        s = self._stream_of.get(group)
        return group if s is None else self.streams[s]

    def _host_protocols(self, scenario: Scenario, seed: int) -> list[tuple[Family, HostOptions]]:
        """Each MN's family and host options, drawn by the ``mn_protocols`` shares (from a
        stream of their own: other draws stay as they are with the default, all IGMPv3)."""
        names = list(scenario.mn_protocols)
        options = {name: (PROTOCOLS[name][0], replace(self.host_options,
                                                      newest_version=PROTOCOLS[name][1]))
                   for name in names}
        if len(names) == 1:
            return [options[names[0]]] * scenario.mns
        rng = random.Random(f"{seed}:protocols")
        shares = [scenario.mn_protocols[name] for name in names]
        return [options[name] for name in rng.choices(names, shares, k=scenario.mns)]

    # -- the run ---------------------------------------------------------------------

    def run(self) -> Simulator:
        duration = self.scenario.duration_interval
        for lma in self.lmas:
            for mag in self.mags:
                for family in self.families:
                    lma.timed.deliver(lma.core.add_downstream(0.0, self._tunnels[mag.index],
                                                              family, _LMA_ADDRESS[family]))
            self.rearm(lma.timed)
        for mag in self.mags:
            if self.mode == "static":
                for k in range(len(self.lmas)):
                    mag.facade.find_or_create_instance(self.lmas[k].tunnel, self.timers)
            else:
                mag.table = BindingTable(mag.facade, self.plugin_timers, True, rfc7411)
        for mn in self.mns:
            mn.timed = Timed(mn.host, lambda acts, mn=mn: self.mn_actions(mn, acts))
            self._link_up(mn)
            start_at = self.group_rng.uniform(0.0, 1.0)
            self.at(start_at, self._join_groups, mn)
        self._next_move()
        self.run_events(duration)
        for mn in self.mns:
            self._close_rows(mn)
        self.tally.sort()
        return self

    def _join_groups(self, mn: Mn) -> None:
        actions: list[Action] = []
        if mn.source_specific:
            mode, sources = FilterMode.INCLUDE, frozenset((SOURCES[mn.host.family],))
        else:
            mode, sources = FilterMode.EXCLUDE, _NO_SOURCES
        for g in mn.groups:
            mn.open_rows[g] = None
            self.mags[mn.mag].pending.setdefault((mn.tunnel, g), set()).add(mn.index)
            actions.extend(mn.host.set_membership(self.now, self.streams[g], mode, sources))
        self.mn_actions(mn, actions)
        self.rearm(mn.timed)

    # -- mobility --------------------------------------------------------------------

    def _next_move(self) -> None:
        """Queue the next move a prepare lead ahead (moves are queued one at a time, so
        the queue holds the next move only, not the whole run's)."""
        move = next(self._moves, None)
        if move is not None and move.at < self.scenario.duration_interval:
            self.at(max(move.at - self.scenario.prepare_lead_interval, self.now), self._move, move)

    def _move(self, move: Move) -> None:
        self._next_move()
        mn = self.mns[move.mn]
        if move.at < mn.settled_at:
            return
        s = self.scenario
        outage = draw_outage(s, self.outage_rng)
        mn.settled_at = move.at + outage + self.delays.signalling_interval
        if self.mode == "predictive":
            self._prepare(mn, move.cell)
            if s.detach_lead_interval:  # the old MAG stops forwarding before the link breaks
                self.at(max(move.at - s.detach_lead_interval, self.now), self._binding_detach,
                        mn.mag, mn)
        self.at(move.at, self._detach, mn, move.cell, outage)

    def _export(self, mn: Mn) -> tuple[ContextEntry, ...]:
        table = self.mags[mn.mag].table
        if table is None or mn.name not in table:
            return ()
        exported = table.export_context(mn.name)["context"]
        return tuple(ContextEntry(Family[e["family"].upper()], e["code"], bytes.fromhex(e["payload"]))
                     for e in exported)

    def _binding_attach(self, mn: Mn, mag: int, context: tuple[ContextEntry, ...]) -> None:
        table = self.mags[mag].table
        if table is not None and mn.name not in table:
            table.handle(MobileNodeAttached(mn.name, mn.link, mn.tunnel,
                                            context=context))
            self._check_mn(mn)

    def _binding_detach(self, mag: int, mn: Mn) -> None:
        table = self.mags[mag].table
        if table is not None and mn.name in table:
            table.handle(MobileNodeDetached(mn.name))

    def _prepare(self, mn: Mn, cell: int) -> None:
        self._binding_attach(mn, cell, self._export(mn))

    def _detach(self, mn: Mn, cell: int, outage: float) -> None:
        old = mn.mag
        context = self._export(mn) if self.mode == "context" else ()
        mn.link_up = False
        self._close_rows(mn)
        flow_end_at = self.now - (self.scenario.detach_lead_interval
                                  if self.mode == "predictive" else 0.0)
        for g in mn.groups:
            if g in mn.receiving:
                mn.receiving.discard(g)
                mn.flow_end_at[g] = flow_end_at
            waiting = self.mags[old].pending.get((mn.tunnel, g))
            if waiting:
                waiting.discard(mn.index)
            row = self._row(mn, g, self.mags[old].name, self.mags[cell].name, outage)
            mn.open_rows[g] = row
            mn.closing.append((g, row))
            if self.keep_rows:
                self.row_objects.append(row)
        self._handovers += 1
        if self.mode != "static":
            self.at(self.now + self.delays.signalling_interval, self._binding_detach, old, mn)
        mn.mag = cell
        self.at(self.now + outage, self._attach, mn, context)

    def _attach(self, mn: Mn, context: tuple[ContextEntry, ...]) -> None:
        self._link_up(mn)
        if self.mode in ("plugin", "context"):
            self.at(self.now + self.delays.signalling_interval, self._binding_attach, mn, mn.mag,
                    context)

    def _link_up(self, mn: Mn) -> None:
        mn.link_up = True
        mag = self.mags[mn.mag]
        for g in mn.groups:
            if g in mn.open_rows:
                mag.pending.setdefault((mn.tunnel, g), set()).add(mn.index)
        if self.mode == "static":
            core = mag.facade.cores[mn.tunnel]
            link = mn.link
            for family in self.families:
                if (link, family) in core.downstreams:
                    mag.follow(core, core.restart_downstream(self.now, link, family))
                else:
                    mag.follow(core, core.add_downstream(self.now, link, family,
                                                         mag.link_address(link, family)))
        elif self.now == 0.0:
            self._binding_attach(mn, mn.mag, ())
        self._check_mn(mn)

    # -- message delivery --------------------------------------------------------------

    def mag_actions(self, mag: Mag, core: InstanceCore, actions: list[Action]) -> None:
        d = self.delays
        now = self.now
        for action in actions:
            kind = type(action)
            if kind is ForwardingChanged:
                g = self._stream_of.get(action.group)
                waiting = mag.pending.get((core.name, g))
                if waiting:
                    for i in list(waiting):
                        self._check(self.mns[i], g)
            elif kind is SendQuery:
                mn = self._mn_by_link[action.interface]
                if mn.link_up and mn.mag == mag.index and action.family is mn.host.family \
                        and not self.lost(d.access_loss, f"{mn.link}>"):
                    query = Query(action.version, _MAG_ADDRESS[mn.host.family], action.max_resp_interval,
                                  action.group, action.sources,
                                  action.suppress_router_processing, action.robustness,
                                  action.query_interval)
                    self.at(now + d.access_interval, self._query_to_mn, mn, mag.index, query)
            elif kind is SendReport:
                lma = self._lma_by_tunnel[action.interface]
                mag.reports_sent += 1
                for record in action.records:
                    if record.record_type in _JOINING:
                        mag.join_times.setdefault((lma.index, self._stream_of[record.group]),
                                                  []).append(now)
                if not self.lost(d.tunnel_loss, f"{lma.tunnel}:{self._tunnels[mag.index]}<"):
                    self.at(now + d.tunnel_interval + d.lma_processing_interval,
                            self._report_to_lma, lma, mag.index, action)

    def lma_actions(self, lma: Lma, actions: list[Action]) -> None:
        d = self.delays
        for action in actions:
            if isinstance(action, SendQuery) and action.interface != "src":
                if not self.lost(d.tunnel_loss, f"{lma.tunnel}:{action.interface}>"):
                    self.at(self.now + d.tunnel_interval, self._query_to_mag,
                            self._mag_by_tunnel[action.interface], lma.index, action)
            elif type(action) is ForwardingChanged and action.group in self._stream_of:
                self._lma_forwarding(lma, self._stream_of[action.group])

    def _lma_forwarding(self, lma: Lma, g: int) -> None:
        """Follow which MAG tunnels the LMA forwards ``g`` into: its downstreams with a
        membership of the group (the MAGs never query, so the LMA is querier on every
        tunnel; every stream has one source, so a non-empty membership is one that
        wants it: EXCLUDE {} from any-source MNs, INCLUDE {S} from source-specific ones)."""
        group = self.streams[g]
        now_on = {int(name[1:]) for name in lma.core.subscribers(Family(group.version), group)}
        was_on = lma.forwarding.get(g, set())
        for m in was_on - now_on:
            del lma.on_since[(m, g)]
        for m in sorted(now_on - was_on):
            lma.on_since[(m, g)] = self.now
            for i in list(self.mags[m].pending.get((lma.tunnel, g), ())):
                self._check(self.mns[i], g)
        lma.forwarding[g] = now_on

    def mn_actions(self, mn: Mn, actions: list[Action]) -> None:
        for action in actions:
            if type(action) is SendReport and mn.link_up \
                    and not self.lost(self.delays.access_loss, f"{mn.link}<"):
                self.at(self.now + self.delays.access_interval, self._report_to_mag, mn, mn.mag,
                        action)

    def _query_to_mn(self, mn: Mn, mag: int, query: Query) -> None:
        if mn.link_up and mn.mag == mag:
            self.mn_actions(mn, mn.host.handle_query(self.now, query))
            self.rearm(mn.timed)

    def _report_to_mag(self, mn: Mn, mag_index: int, report: SendReport) -> None:
        if not mn.link_up or mn.mag != mag_index:
            return
        mag = self.mags[mag_index]
        core = mag.facade.cores.get(mn.tunnel)
        if core is not None:
            mag.follow(core, core.handle_report(self.now, mn.link, mn.host.family, report.version,
                                                report.records, mn.address))

    def _report_to_lma(self, lma: Lma, mag: int, report: SendReport) -> None:
        lma.reports_received += 1
        lma.timed.deliver(lma.core.handle_report(self.now, self._tunnels[mag], report.family,
                                                 report.version, report.records,
                                                 self._mag_addresses[report.family][mag]))
        self.rearm(lma.timed)

    def _query_to_mag(self, mag_index: int, lma: int, action: SendQuery) -> None:
        mag = self.mags[mag_index]
        core = mag.facade.cores.get(self.lmas[lma].tunnel)
        if core is None:
            return
        query = Query(action.version, _LMA_ADDRESS[action.family], action.max_resp_interval,
                      action.group, action.sources, action.suppress_router_processing,
                      action.robustness, action.query_interval)
        mag.follow(core, core.handle_query(self.now, core.name, action.family, query))

    # -- data path and measurement -------------------------------------------------------

    def _check_mn(self, mn: Mn) -> None:
        for g in list(mn.open_rows):
            self._check(mn, g)

    def _check(self, mn: Mn, g: int) -> None:
        """Whether group ``g`` reaches the MN's link now; if so close its open row."""
        if not mn.link_up or g not in mn.open_rows:
            return
        since = self.lmas[mn.lma].on_since.get((mn.mag, g))
        if since is None:
            return
        mag = self.mags[mn.mag]
        core = mag.facade.cores.get(mn.tunnel)
        if core is None:
            return
        try:
            router = core.router(mn.link, mn.host.family)
        except KeyError:
            return
        if not router.forwards(self.streams[g], SOURCES[mn.host.family]):
            return
        resume_at = max(self.now, since + self.delays.tunnel_interval) + self.delays.access_interval
        row = mn.open_rows.pop(g)
        mag.pending[(mn.tunnel, g)].discard(mn.index)
        mn.receiving.add(g)
        if row is not None:
            start = mn.flow_end_at.get(g)
            gap = None if start is None else resume_at - start
            row.gap_ms = None if gap is None else round(gap * 1000.0, 3)
            row.lost = None if gap is None else round(self._unbuffered(start, since, resume_at) * self.scenario.stream_rate)
            row.attach_to_first_packet_ms = round((resume_at - row.attach_at) * 1000.0, 3)

    def _unbuffered(self, start: float, since: float, resume_at: float) -> float:
        """Seconds of the gap [start, resume_at) whose data the MN never gets: all of it, but in
        predictive mode the new MAG delivers what its buffer holds, the data that reached it
        (from ``since`` on) within ``buffer_interval`` before the MN's link resumes."""
        if self.mode != "predictive":
            return resume_at - start
        buffered_from = max(since + self.delays.tunnel_interval, resume_at - self.scenario.buffer_interval)
        return max(0.0, min(resume_at, buffered_from) - start)

    def _row(self, mn: Mn, g: int, from_mag: str, to_mag: str, outage: float) -> Row:
        stream, group, family = self._stream_names[g]
        return Row(self._handovers, mn.name, from_mag, to_mag, self.mode, stream, family, group,
                   self.now, self.now + outage, round(outage * 1000.0, 3), None, None, 0, None,
                   None)

    def _close_rows(self, mn: Mn) -> None:
        """Finish the rows of the MN's last handover now that their end is known (its next
        link break, or the end of the run) and count them: attach → upstream report is the
        first joining report on the new MAG's tunnel toward the MN's LMA in [attach, end); a
        group back only after the end has no gap."""
        end = self.now
        join_times = self.mags[mn.mag].join_times
        for g, row in mn.closing:
            times = join_times.get((mn.lma, g), ())
            first = bisect.bisect_left(times, row.attach_at)
            if first < len(times) and times[first] < end:
                row.attach_to_upstream_report_ms = round((times[first] - row.attach_at) * 1000.0, 3)
            if row.gap_ms is not None and row.attach_at + row.gap_ms / 1000.0 > end:
                row.gap_ms = row.lost = row.attach_to_first_packet_ms = None
            self.tally.add(row)
        mn.closing = []

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The result rows as the testbed's dicts (made at each call)."""
        return [dict(row) for row in self.row_objects]

    def counters(self) -> dict[str, Any]:
        duration = self.scenario.duration_interval
        return {
            "events": self.events,
            "handovers": self._handovers,
            "reports_per_s_per_mag": {m.name: m.reports_sent / duration for m in self.mags},
            "reports_per_s_at_lma": {lma.name: lma.reports_received / duration for lma in self.lmas},
        }
