"""What the PMIPv6 plugin reports as metrics: binding events, handovers, context transfers.

``BindingTally`` watches the results of binding events and context-channel
requests (the plugin passes them through it) and the proxy's
``membership-changed`` events, and turns them into ``PluginMetric``s at
scrape time. Handover modes: ``local`` (the MN moved between two access links
of this MAG), else how its subscription context came (``given`` with the
event, ``pushed`` or ``fetched`` over the channel, ``unavailable``). The
attach-to-report histogram measures from an attach to the next change of the
merged membership of the binding's instance, which is when the proxy sends
its state-change report upstream; an attach with no change within
``REPORT_WAIT_INTERVAL`` is not observed.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from mcproxy_pmip.plugin import MetricSample, PluginMetric, ProxyEvent

#: histogram bounds (seconds) of attach -> upstream report
REPORT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, math.inf)
REPORT_WAIT_INTERVAL = 60.0
_CONTEXT_MODES = ("given", "pushed", "fetched", "prepared", "unavailable")
#: binding event classes (bindings.py) -> the ``event`` label
EVENT_KINDS = {"MobileNodeAttached": "attach", "BindingRefreshed": "refresh", "MobileNodeDetached": "detach"}


class BindingTally:
    """Counters and the attach-to-report histogram of one plugin run (``clock``: ``IReactorTime``)."""

    def __init__(self, clock) -> None:
        self._clock = clock
        self.events: Counter[str] = Counter()
        self.handovers: Counter[str] = Counter()
        self.transfers: Counter[tuple[str, str]] = Counter()
        self._changes = 0
        self._changed_at: dict[str, tuple[int, float]] = {}
        self._waiting: dict[str, list[float]] = {}
        self._bucket_counts = [0] * len(REPORT_BUCKETS)
        self._observed = 0
        self._observed_sum = 0.0

    # -- inputs ----------------------------------------------------------------------

    def attach_started(self) -> tuple[int, float]:
        """The mark of an event about to be handled: (changes seen so far, now)."""
        return self._changes, self._clock.seconds()

    def event_done(self, result: Any, kind: str, started_at: tuple[int, float]) -> Any:
        """One binding event's result (a dict); returns it unchanged."""
        if not isinstance(result, dict):
            return result
        kind = "deregistration" if result.get("reason") == "deregistration" else result.get("event", kind)
        self.events[kind] += 1
        if kind != "attach":
            return result
        context = result.get("context")
        if result.get("moved_from") is not None:
            self.handovers["local"] += 1
        elif context in _CONTEXT_MODES:
            self.handovers[context] += 1
        if context == "fetched":
            self.transfers[("fetch", "ok")] += 1
        elif context == "unavailable":
            self.transfers[("fetch", str(result.get("reason", "-")))] += 1
        instance = result.get("instance")
        if instance is not None:
            self._wait_for_report(instance, started_at)
        return result

    def refused(self, kind: str) -> None:
        self.events[f"{kind}_refused"] += 1

    def transfer(self, role: str, outcome: str) -> None:
        self.transfers[(role, outcome)] += 1

    def membership_changed(self, event: ProxyEvent) -> None:
        now = self._clock.seconds()
        self._changes += 1
        self._changed_at[event.instance] = (self._changes, now)
        for started_at in self._waiting.pop(event.instance, ()):
            self._observe(now - started_at)

    def _wait_for_report(self, instance: str, mark: tuple[int, float]) -> None:
        """Observe now if the instance changed since ``mark`` (a context import), else wait."""
        seen, started_at = mark
        changed = self._changed_at.get(instance)
        if changed is not None and changed[0] > seen:
            self._observe(changed[1] - started_at)
            return
        now = self._clock.seconds()
        for name in list(self._waiting):
            kept = [at for at in self._waiting[name] if now - at <= REPORT_WAIT_INTERVAL]
            if kept:
                self._waiting[name] = kept
            else:
                del self._waiting[name]
        self._waiting.setdefault(instance, []).append(started_at)

    def _observe(self, seconds: float) -> None:
        if seconds > REPORT_WAIT_INTERVAL:
            return
        self._observed += 1
        self._observed_sum += seconds
        for index, bound in enumerate(REPORT_BUCKETS):
            if seconds <= bound:
                self._bucket_counts[index] += 1

    # -- output ----------------------------------------------------------------------

    def metrics(self, bindings: int) -> list[PluginMetric]:
        return [
            PluginMetric("bindings", "gauge", "Mobile node bindings held.", (MetricSample(value=bindings),)),
            PluginMetric("binding_events_total", "counter", "Binding events handled, by event.",
                         tuple(MetricSample((("event", k),), v) for k, v in sorted(self.events.items()))),
            PluginMetric("handovers_total", "counter", "Attaches that moved a mobile node, by mode.",
                         tuple(MetricSample((("mode", k),), v) for k, v in sorted(self.handovers.items()))),
            PluginMetric("context_transfers_total", "counter",
                         "Subscription context transfers, by role and result.",
                         tuple(MetricSample((("role", role), ("result", outcome)), v)
                               for (role, outcome), v in sorted(self.transfers.items()))),
            PluginMetric("attach_to_report_seconds", "histogram",
                         "Seconds from an attach to the upstream report of its instance.",
                         (MetricSample((), self._observed,
                                       tuple(zip(REPORT_BUCKETS, self._bucket_counts)), self._observed_sum),)),
        ]
