"""Handover driver: moves an MN's radio attachment and tells the MAGs about it.

One handover (RFC 5213 §5.3.5 / RFC 6224 §4.2): in ``context`` mode the old
MAG's subscription context is exported first (RFC 7411); then the radio port
of the old MAG goes down (detach), the old MAG gets a ``detach`` binding event,
the L2 outage passes, the new MAG's port comes up (attach), the LMA's route
to the HNP is re-pointed into the new tunnel, and the new MAG gets an
``attach`` binding event (with the context in ``context`` mode). In ``static``
mode only the radio and the route change: the baseline.

``transfer`` (context mode) says how the context moves: ``control``, through
this driver (``context-export`` then ``attach --context``); ``predictive``,
``handover-prepare`` at the old MAG before the radio detach pushes it over the
MAG-to-MAG channel; ``reactive``, the attach names ``previous_mag`` and the new
MAG fetches it (RFC 7411 §3.3).

``predictive`` mode (RFC 5949 §3.1 predictive fast handover, for multicast as
RFC 7411 §3.3): ``handover-prepare`` at the old MAG (which pushes the context
to the new MAG; the new MAG joins upstream and buffers), ``lead_interval``
later the old MAG's ``detach`` *before* the radio detach (nothing it forwarded
is lost in the air), the outage, the radio attach, the LMA route, and the new
MAG's ``attach`` naming the old MAG, whose reply may carry what the new MAG
flushed from its buffer (``buffer``).

Every handover's events are recorded with their wall time (``EVENTS``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from mcproxy_pmip_testbed.build import Testbed
from mcproxy_pmip_testbed.control import ControlClient
from mcproxy_pmip_testbed.measure import HandoverRecord
from mcproxy_pmip_testbed.scenario import Handover

log = logging.getLogger(__name__)

#: timeline events, in the order predictive mode takes them: ``radio_detach`` just before the
#: old port goes down (the outage starts), ``radio_attach`` once the new port is up (it ends),
#: ``route_switch`` once the LMA's route is replaced, ``*_sent`` / ``*_answered`` a control
#: request written / its reply read
EVENTS = ("prepare_sent", "prepare_answered", "context_export_sent", "context_export_answered",
          "detach_sent", "detach_answered", "radio_detach", "radio_attach", "route_switch",
          "attach_sent", "attach_answered")


class HandoverDriver:
    def __init__(self, testbed: Testbed, mode: str,
                 controls: Mapping[str, ControlClient], lifetime: int,
                 clock: Callable[[], float] = time.time, transfer: str | None = None,
                 lead_interval: float = 0.1) -> None:
        self.testbed = testbed
        self.mode = mode
        self.transfer = transfer or "control"
        self.lead_interval = lead_interval
        self.controls = controls
        self.lifetime = lifetime
        self.clock = clock
        self.records: list[HandoverRecord] = []

    def _attach(self, mag: str, mn_name: str, context: list | None,
                previous_mag: str | None = None) -> Any:
        plan = self.testbed.plan
        mn = plan.mn(mn_name)
        tunnel = plan.tunnel(mn.lma, mag)
        access = "acc0" if plan.access_bridge else mn.mag_access_if()
        return self.controls[mag].attach(mn.name, access, tunnel.mag_tunnel_if,
                                         str(tunnel.lma_underlay.ip), [str(mn.hnp)],
                                         self.lifetime, context, previous_mag)

    def initial_attach(self, mn_name: str) -> None:
        """Binding for the MN's first MAG (every mode but static)."""
        if self.mode != "static":
            self._attach(self.testbed.attached[mn_name], mn_name, None)

    def handover(self, step: Handover) -> HandoverRecord:
        old = self.testbed.attached[step.mn]
        events: list[tuple[str, float]] = []

        def mark(event: str) -> float:
            at = self.clock()
            events.append((event, at))
            return at

        context, previous_mag = None, None
        predictive = self.mode == "predictive"
        if self.mode == "context" and self.transfer == "control":
            mark("context_export_sent")
            context = self.controls[old].context_export(step.mn)
            mark("context_export_answered")
        elif predictive or (self.mode == "context" and self.transfer == "predictive"):
            mark("prepare_sent")
            self.controls[old].handover_prepare(step.mn, step.to)
            prepared_at = mark("prepare_answered")
            previous_mag = old  # the new MAG uses a pushed context only from the MN's previous MAG
            if predictive:
                self._sleep_until(prepared_at + self.lead_interval)
        elif self.mode == "context":
            previous_mag = old
        if predictive:  # the old MAG stops forwarding before the link breaks
            self._detach(old, step.mn, mark)
        detach_at = mark("radio_detach")
        self.testbed.radio_detach(step.mn)
        if self.mode not in ("static", "predictive"):
            self._detach(old, step.mn, mark)
        self._sleep_until(detach_at + step.l2_outage_interval)
        self.testbed.radio_attach(step.mn, step.to)
        attach_at = mark("radio_attach")
        self.testbed.point_lma_route(step.mn, step.to)
        mark("route_switch")
        buffer = None
        if self.mode != "static":
            mark("attach_sent")
            reply = self._attach(step.to, step.mn, context, previous_mag)
            mark("attach_answered")
            if isinstance(reply, dict) and isinstance(reply.get("buffer"), dict):
                buffer = reply["buffer"]
        record = HandoverRecord(index=len(self.records), mn=step.mn, from_mag=old,
                                to_mag=step.to, mode=self.mode, detach_at=detach_at,
                                attach_at=attach_at, events=tuple(events), buffer=buffer)
        self.records.append(record)
        log.info("handover_done index=%d mn=%s from=%s to=%s outage_ms=%.1f", record.index,
                 step.mn, old, step.to, (attach_at - detach_at) * 1000)
        return record

    def _detach(self, mag: str, mn_name: str, mark: Callable[[str], float]) -> None:
        mark("detach_sent")
        self.controls[mag].detach(mn_name)
        mark("detach_answered")

    def _sleep_until(self, at: float) -> None:
        remaining = at - self.clock()
        if remaining > 0:
            time.sleep(remaining)
