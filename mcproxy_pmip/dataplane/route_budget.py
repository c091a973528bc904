"""How many data-driven (S,G) forwarding entries the planes may hold: per instance and daemon-wide.

Every new (S,G) that arrives from any host would otherwise make forwarding
state (an MFC entry on MRT, a counted (iif, S, G) element on nftables), so a
host sending from many sources could fill the kernel and the daemon. One
``RouteBudget`` per daemon holds ``DaemonLimits.max_total_routes`` and each
instance's ``Limits.max_routes``; each instance plane gets a ``RouteQuota``
from it:

- planes that see every new (S,G) (memory, MRT) call ``admit()`` before they
  install one and ``release()`` when it goes, or ``track(part, count)`` with
  the number they hold of one part (a family's MFC table) when entries can
  go in several places. At either cap ``admit`` says no:
  the entry is not installed, the refusal is counted (``routes_refused``) and
  logged at the 1st, 2nd, 4th, 8th... refusal of the instance, never per
  packet. Entries already installed keep their service.
- planes whose (S,G) state lives in a kernel set of fixed size (nftables)
  ``reserve()`` the set's size once, when the instance opens: its
  ``max_routes``, less what the instances opened before have reserved of the
  daemon-wide total. The kernel then refuses elements beyond it.

The daemon calls ``configure_instance`` as it starts each instance (at start
and at reload), before the instance's plane opens; counts stay.
Pure bookkeeping: no IO, no clock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from mcproxy_pmip.config.model import DaemonLimits, Limits

log = logging.getLogger(__name__)


class RouteBudget:
    """The daemon-wide count of (S,G) entries (admitted plus reserved) against ``max_total``."""

    def __init__(self, max_total: int = DaemonLimits().max_total_routes,
                 per_instance: Mapping[str, int] | None = None) -> None:
        self.max_total = max_total
        self._per_instance: dict[str, int] = dict(per_instance or {})
        self.in_use = 0
        self._quotas: dict[str, RouteQuota] = {}

    def configure_instance(self, instance: str, max_routes: int, max_total: int) -> None:
        """Take an instance's ``Limits.max_routes`` and the daemon's ``max_total_routes``."""
        self._per_instance[instance] = max_routes
        self.max_total = max_total

    def max_routes(self, instance: str) -> int:
        return self._per_instance.get(instance, Limits().max_routes)

    def quota(self, instance: str) -> RouteQuota:
        """The quota of a newly opened instance plane (a reopened instance starts from zero)."""
        quota = RouteQuota(self, instance)
        self._quotas[instance] = quota
        return quota

    def closed(self, quota: RouteQuota) -> None:
        """The instance plane is gone: give back everything it held."""
        self.in_use -= quota.in_use
        quota.in_use = 0
        quota._parts.clear()
        if self._quotas.get(quota.instance) is quota:
            del self._quotas[quota.instance]

    @property
    def refused(self) -> int:
        return sum(quota.refused for quota in self._quotas.values())

    def counters(self) -> dict[str, int]:
        """Daemon-wide figures for ``status``."""
        return {"routes_total": self.in_use, "routes_total_max": self.max_total}


class RouteQuota:
    """One instance's share: ``admit``/``release`` per entry, or one ``reserve`` for a fixed-size set."""

    def __init__(self, budget: RouteBudget, instance: str) -> None:
        self.budget = budget
        self.instance = instance
        self.in_use = 0
        self._parts: dict[object, int] = {}
        self.refused = 0
        self.refused_by_instance_cap = 0
        self.refused_by_daemon_cap = 0

    @property
    def max_routes(self) -> int:
        return self.budget.max_routes(self.instance)

    def admit(self, part: object = None) -> bool:
        """Count one new entry (of ``part``); False (counted, logged sparsely) when a cap is reached."""
        if self.in_use >= self.max_routes:
            self.refused_by_instance_cap += 1
            return self._refuse("instance", self.max_routes)
        if self.budget.in_use >= self.budget.max_total:
            self.refused_by_daemon_cap += 1
            return self._refuse("daemon", self.budget.max_total)
        self._add(part, 1)
        return True

    def release(self, part: object = None, count: int = 1) -> None:
        self._add(part, -min(count, self._parts.get(part, 0)))

    def track(self, part: object, count: int) -> None:
        """``part`` holds ``count`` entries now (whatever came and went since)."""
        self._add(part, count - self._parts.get(part, 0))

    def _add(self, part: object, delta: int) -> None:
        self._parts[part] = self._parts.get(part, 0) + delta
        self.in_use += delta
        self.budget.in_use += delta

    def reserve(self) -> int:
        """Reserve this instance's whole share at once; the number granted (0 when none is left)."""
        granted = max(0, min(self.max_routes, self.budget.max_total - self.budget.in_use))
        self._add(None, granted)
        if granted < self.max_routes:
            log.warning("route_reservation_short instance=%s granted=%d max_routes=%d max_total_routes=%d",
                        self.instance, granted, self.max_routes, self.budget.max_total)
        return granted

    def _refuse(self, cap: str, limit: int) -> bool:
        self.refused += 1
        if self.refused & (self.refused - 1) == 0:
            log.warning("route_refused instance=%s cap=%s limit=%d refused=%d", self.instance, cap, limit,
                        self.refused)
        return False

    def counters(self) -> dict[str, int]:
        """This instance's figures for ``status`` (summed over instances by the daemon)."""
        return {"routes": self.in_use, "routes_refused": self.refused,
                "routes_refused_instance_cap": self.refused_by_instance_cap,
                "routes_refused_daemon_cap": self.refused_by_daemon_cap}
