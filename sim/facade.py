"""The MAG's proxy as the pmipv6 binding table sees it, over the real ``InstanceCore``.

``SimFacade`` implements the plugin's ``ProxyFacade`` for one simulated MAG:
one ``InstanceCore`` per LMA tunnel, created on demand, every engine call
made at the simulator's virtual ``now`` and its actions handed to the MAG
(``Mag.follow``). ``SimClock`` is the small part of ``IReactorTime`` the
binding table uses (bindings here have no lifetime, so it never schedules).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.membership.actions import Action
from mcproxy_pmip.membership.filters import AllowAll
from mcproxy_pmip.membership.instance import InstanceCore
from mcproxy_pmip.membership.timers import HostOptions, RouterOptions, Timers
from mcproxy_pmip.plugin import FamilyRecords, ProxyEvent
from mcproxy_pmip.wire.records import GroupRecord


class Owner(Protocol):
    now: float
    host_options: HostOptions
    #: the families every access link runs
    families: tuple[Family, ...]

    def rng_for(self, name: str) -> random.Random: ...

    def follow(self, core: InstanceCore, actions: list[Action]) -> None: ...

    def link_address(self, interface: str, family: Family) -> Any: ...

    def shared_group(self, group: Any) -> Any: ...


class SimClock:
    def __init__(self, owner: Owner) -> None:
        self._owner = owner

    def seconds(self) -> float:
        return self._owner.now

    def callLater(self, *_args: object, **_kwargs: object) -> None:  # noqa: N802 (IReactorTime)
        raise NotImplementedError("simulated bindings have no lifetime")


class SimFacade:
    """``ProxyFacade`` of one MAG: instances keyed by their upstream (tunnel) name."""

    reactor = None

    def __init__(self, owner: Owner) -> None:
        self._owner = owner
        self.clock = SimClock(owner)
        self.cores: dict[str, InstanceCore] = {}

    def find_or_create_instance(self, upstream_if: str, timers_profile: Timers) -> str:
        if upstream_if not in self.cores:
            self.cores[upstream_if] = InstanceCore(
                upstream_if, [upstream_if], AllowAll(), RouterOptions(timers=timers_profile),
                self._owner.host_options, self._owner.rng_for(upstream_if))
        return upstream_if

    def remove_instance(self, name: str) -> bool:
        core = self.cores.pop(name, None)
        if core is None:
            return False
        self._owner.follow(core, core.remove_upstream(self._owner.now, name))
        return True

    def add_downstream(self, instance: str, interface: str) -> None:
        core = self.cores[instance]
        for family in self._owner.families:
            self._owner.follow(core, core.add_downstream(self._owner.now, interface, family,
                                                         self._owner.link_address(interface, family)))

    def remove_downstream(self, instance: str, interface: str) -> None:
        core = self.cores[instance]
        for family in self._owner.families:
            self._owner.follow(core, core.remove_downstream(self._owner.now, interface, family))

    def export_records(self, instance: str, interface: str) -> list[FamilyRecords]:
        core = self.cores[instance]
        return [(family, *core.export_downstream(self._owner.now, interface, family))
                for family in self._owner.families]

    def import_records(self, instance: str, interface: str, family: Family, version: int,
                       records: Iterable[GroupRecord]) -> None:
        """Records decoded from a context name their groups with new address objects: the
        simulator's shared ones (``Owner.shared_group``) take their place."""
        core = self.cores[instance]
        shared = tuple(GroupRecord(r.record_type, self._owner.shared_group(r.group), r.sources,
                                   r.aux_data) for r in records)
        self._owner.follow(core, core.import_downstream(self._owner.now, interface, family,
                                                        version, shared))

    def commit_forwarding(self, instance: str) -> None:
        """Forwarding changes are followed as the engine makes them: nothing is pending."""

    def subscribe(self, event_name: str,
                  callback: Callable[[ProxyEvent], None]) -> Callable[[], None]:
        return lambda: None
