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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from mcproxy_pmip_testbed.build import Testbed
from mcproxy_pmip_testbed.control import ControlClient
from mcproxy_pmip_testbed.measure import HandoverRecord
from mcproxy_pmip_testbed.scenario import Handover

log = logging.getLogger(__name__)


class HandoverDriver:
    def __init__(self, testbed: Testbed, mode: str,
                 controls: Mapping[str, ControlClient], lifetime: int,
                 clock: Callable[[], float] = time.time, transfer: str | None = None) -> None:
        self.testbed = testbed
        self.mode = mode
        self.transfer = transfer or "control"
        self.controls = controls
        self.lifetime = lifetime
        self.clock = clock
        self.records: list[HandoverRecord] = []

    def _attach(self, mag: str, mn_name: str, context: list | None,
                previous_mag: str | None = None) -> None:
        plan = self.testbed.plan
        mn = plan.mn(mn_name)
        tunnel = plan.tunnel(mn.lma, mag)
        access = "acc0" if plan.access_bridge else mn.mag_access_if()
        self.controls[mag].attach(mn.name, access, tunnel.mag_tunnel_if,
                                  str(tunnel.lma_underlay.ip), [str(mn.hnp)], self.lifetime,
                                  context, previous_mag)

    def initial_attach(self, mn_name: str) -> None:
        """Binding for the MN's first MAG (plugin and context modes)."""
        if self.mode != "static":
            self._attach(self.testbed.attached[mn_name], mn_name, None)

    def handover(self, step: Handover) -> HandoverRecord:
        old = self.testbed.attached[step.mn]
        context, previous_mag = None, None
        if self.mode == "context" and self.transfer == "control":
            context = self.controls[old].context_export(step.mn)
        elif self.mode == "context" and self.transfer == "predictive":
            self.controls[old].handover_prepare(step.mn, step.to)
            previous_mag = old  # the new MAG uses a pushed context only from the MN's previous MAG
        elif self.mode == "context":
            previous_mag = old
        detach_at = self.clock()
        self.testbed.radio_detach(step.mn)
        if self.mode != "static":
            self.controls[old].detach(step.mn)
        remaining = detach_at + step.l2_outage_interval - self.clock()
        if remaining > 0:
            time.sleep(remaining)
        self.testbed.radio_attach(step.mn, step.to)
        attach_at = self.clock()
        self.testbed.point_lma_route(step.mn, step.to)
        if self.mode != "static":
            self._attach(step.to, step.mn, context, previous_mag)
        record = HandoverRecord(index=len(self.records), mn=step.mn, from_mag=old,
                                to_mag=step.to, mode=self.mode, detach_at=detach_at,
                                attach_at=attach_at)
        self.records.append(record)
        log.info("handover_done index=%d mn=%s from=%s to=%s outage_ms=%.1f", record.index,
                 step.mn, old, step.to, (attach_at - detach_at) * 1000)
        return record
