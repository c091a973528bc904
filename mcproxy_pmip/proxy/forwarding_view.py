"""The forwarding decisions of one instance's engine, as the data plane reads them.

``InstanceView`` implements the port's ``ForwardingView`` over an
``InstanceCore``: the exact per-(S,G) decision (``InstanceCore.outputs``, for
the MRT plane's entries) and the same decision per group for every source at
once (``group_outputs``, for the nftables plane): each downstream that forwards
the group with its source filter (RFC 3376 §6.3 / RFC 3810 §7.2 state, the
querier rule of RFC 4605 §4.1 applied), and the upstreams data from
downstreams goes to (RFC 4605 §4.2).

Filter rules of the configuration (whitelist / blacklist) are applied per
group here: a downstream OUT rule keeps only the INCLUDE sources it allows,
and an upstream OUT rule is asked for the group with any source. Rules whose
outcome depends on a source not in the membership state are applied exactly
only by the MRT plane (docs/dataplanes.md).
"""

from __future__ import annotations

from mcproxy_pmip.addresses import Family, IPAddress, is_link_local_scope_group
from mcproxy_pmip.dataplane.port import GroupOutputs, SourceFilter
from mcproxy_pmip.membership.filters import Direction
from mcproxy_pmip.membership.instance import InstanceCore
from mcproxy_pmip.wire.records import FilterMode


class InstanceView:
    """``ForwardingView`` of one ``InstanceCore``."""

    def __init__(self, core: InstanceCore) -> None:
        self._core = core

    def outputs(self, family: Family, source: IPAddress, group: IPAddress, iif: str) -> frozenset[str]:
        return self._core.outputs(family, source, group, iif)

    def default_upstreams(self, family: Family) -> tuple[str, ...]:
        return self._upstreams_for(None)

    def _upstreams_for(self, group: IPAddress | None) -> tuple[str, ...]:
        core = self._core
        chosen = []
        for interface in core.upstreams:
            if group is None or core.filters.allows(interface, Direction.OUT, group, None):
                chosen.append(interface)
                if core.upstream_selection == "first":
                    break
        return tuple(chosen)

    def group_outputs(self, family: Family, group: IPAddress) -> GroupOutputs:
        if is_link_local_scope_group(group):
            return GroupOutputs(family, group)
        core = self._core
        allows = core.filters.allows
        downstreams = []
        for interface in core.subscribers(family, group):
            router = core.router(interface, family)
            if not (router.is_querier or router.options.forward_when_not_querier):
                continue
            state = router.membership(group)
            if state is None or not allows(interface, Direction.OUT, group, None):
                continue
            mode, sources = state
            if mode is FilterMode.INCLUDE:
                sources = frozenset(s for s in sources if allows(interface, Direction.OUT, group, s))
                if not sources:
                    continue
            downstreams.append((interface, SourceFilter(mode, frozenset(sources))))
        return GroupOutputs(family, group, tuple(sorted(downstreams, key=lambda item: item[0])),
                            self._upstreams_for(group), core.is_held(family, group))
