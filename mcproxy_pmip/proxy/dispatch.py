"""ActionDispatcher: carries out an instance core's actions on the reactor.

Queries and reports go out through the ``Sender``; querier changes and
traces go to the log, warnings (a limit reached, a querier's values clamped:
driven by hosts on the link) rate-limited per event; ``ForwardingChanged`` is told to ``on_change`` at once
and collected, so that every group changed in one reactor turn reaches the
plane in one ``groups_changed`` call at the end of the turn (a burst of
reports costs the plane one update). A plane that fails the update is
logged (a bug with its traceback); the next change of those groups, or the
next refresh, tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from twisted.internet.interfaces import IReactorTime

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.dataplane.port import InstancePlane
from mcproxy_pmip.errors import McproxyError
from mcproxy_pmip.membership.actions import (Action, ForwardingChanged, QuerierChanged, SendQuery,
                                             SendReport, Trace)
from mcproxy_pmip.proxy.sender import Sender
from mcproxy_pmip.ratelog import RateLimitedLog

log = logging.getLogger(__name__)


class ActionDispatcher:
    """``apply(actions)`` for the instance ``name``; ``forwarding()`` is its plane, None when closed."""

    def __init__(self, name: str, clock: IReactorTime, sender: Sender,
                 forwarding: Callable[[], InstancePlane | None],
                 on_change: Callable[[Family, object], None]) -> None:
        self._name = name
        self._clock = clock
        self._sender = sender
        self._forwarding = forwarding
        self._on_change = on_change
        self._changed_groups: dict[tuple[Family, object], None] = {}
        self._update = False
        self._flush_call = None
        self._warnings = RateLimitedLog(log, clock, summary="engine_warnings")

    def apply(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, SendQuery):
                self._sender.send_query(action)
            elif isinstance(action, SendReport):
                self._sender.send_report(action)
            elif isinstance(action, ForwardingChanged):
                self._changed_groups[(action.family, action.group)] = None
                if self._flush_call is None or not self._flush_call.active():
                    self._flush_call = self._clock.callLater(0, self._flush_forwarding)
                self._on_change(action.family, action.group)
            elif isinstance(action, QuerierChanged):
                log.info("querier_changed instance=%s interface=%s family=%s querier=%s other=%s",
                         self._name, action.interface, action.family.name, action.is_querier,
                         action.other_querier)
            elif isinstance(action, Trace):
                self._trace(action)

    def _trace(self, trace: Trace) -> None:
        if trace.warning:
            self._warnings.event(trace.event, "engine_%s instance=%s %s", trace.event, self._name,
                                 _fields(trace))
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("engine_%s instance=%s %s", trace.event, self._name, _fields(trace))

    def cancel(self) -> None:
        """Drop the groups not yet handed to the plane and the pending warning summaries."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._changed_groups.clear()
        self._update = False
        self._warnings.close()

    def update_soon(self) -> None:
        """Give the plane an update at the end of this turn even if no group changes in it (a downstream
        came: the plane may have staged it; its attach and the context imported with it cost one update)."""
        self._update = True
        if self._flush_call is None or not self._flush_call.active():
            self._flush_call = self._clock.callLater(0, self._flush_forwarding)

    def flush_now(self) -> None:
        """Hand the groups changed so far to the plane now, not at the end of the turn (a
        prepared handover switches to live forwarding at a moment it chooses)."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_forwarding()

    def _flush_forwarding(self) -> None:
        """Hand the groups changed in this reactor turn to the plane, in one call."""
        changed, self._changed_groups = list(self._changed_groups), {}
        update, self._update = self._update, False
        forwarding = self._forwarding()
        if forwarding is None or not (changed or update):
            return
        try:
            forwarding.groups_changed(changed)
        except McproxyError as exc:
            log.error("forwarding_update_failed instance=%s groups=%d error=%s", self._name, len(changed), exc)
        except Exception:
            log.exception("forwarding_update_failed instance=%s groups=%d", self._name, len(changed))


def _fields(trace: Trace) -> str:
    return " ".join(f"{key}={value}" for key, value in trace.fields)
