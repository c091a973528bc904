"""Reload: apply a new configuration to a running Proxy all or nothing.

The difference (``config.diff``) is applied one step at a time: instances
removed, instances changed (restarted, or downstreams swapped in place),
instances added. Each step that succeeded records how to undo it. When a
step fails (the plane refuses an interface, the kernel refuses a rule, an
instance cannot start), the steps done so far are undone newest first: what
was added is stopped, what was stopped is started again with its old
configuration and the membership its downstreams held (exported before the
stop, imported after the restart), so the Proxy runs its old configuration
again and ``ReloadFailed`` says which step failed and why. An undo step that
fails in turn is logged and the others still run.

Interfaces that do not exist are no failure: as at start-up they are waited
for, so one file gives the same daemon whether it is loaded at start or on
SIGHUP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config.diff import ConfigDiff, InstanceDiff
from mcproxy_pmip.config.model import Config, InstanceConfig
from mcproxy_pmip.errors import McproxyError
from mcproxy_pmip.wire.records import GroupRecord

if TYPE_CHECKING:
    from mcproxy_pmip.proxy.proxy import Proxy

log = logging.getLogger(__name__)

Membership = dict[str, list[tuple[Family, int, tuple[GroupRecord, ...]]]]


class ReloadFailed(McproxyError):
    """A reload step failed; the old configuration was put back (``rolled_back`` says if wholly)."""

    def __init__(self, step: str, cause: BaseException, rolled_back: bool) -> None:
        self.step = step
        self.cause = cause
        self.rolled_back = rolled_back
        super().__init__(f"{step}: {cause}")


class Reload:
    """One reload of ``proxy`` from ``old`` to ``new``; ``apply()`` raises ``ReloadFailed``."""

    def __init__(self, proxy: Proxy, old: Config, new: Config, difference: ConfigDiff) -> None:
        self._proxy = proxy
        self._old = old
        self._new = new
        self._difference = difference
        self._undo: list[tuple[str, Callable[[], None]]] = []

    def apply(self) -> None:
        step = "reload"
        try:
            for gone in self._difference.instances_removed:
                step = f"remove instance {gone.name}"
                self._stop(gone)
            for change in self._difference.instances_changed:
                step = f"change instance {change.name}"
                self._change(change)
            for added in self._difference.instances_added:
                step = f"add instance {added.name}"
                self._proxy.start_instance(added)
                self._undo.append((f"stop added instance {added.name}",
                                   lambda name=added.name: self._proxy.stop_instance(name)))
        except Exception as exc:
            log.error("reload_step_failed step=%r error=%s", step, exc)
            raise ReloadFailed(step, exc, self._roll_back()) from exc

    # -- steps -------------------------------------------------------------------------

    def _stop(self, old: InstanceConfig) -> None:
        """Stop an instance; its undo starts it again with its old config and membership."""
        held = self._membership(old.name)
        self._proxy.stop_instance(old.name)
        self._undo.append((f"restart instance {old.name}", lambda: self._restore(old, held)))

    def _change(self, change: InstanceDiff) -> None:
        old, new = self._old.instance(change.name), self._new.instance(change.name)
        if change.needs_restart or change.filters_changed:
            self._stop(old)
            self._proxy.start_instance(new)
            self._undo.append((f"stop changed instance {new.name}",
                               lambda: self._proxy.stop_instance(new.name)))
            return
        instance = self._proxy.instances[change.name]
        instance.config = new
        self._undo.append((f"restore settings of instance {old.name}", lambda: setattr(instance, "config", old)))
        for name in change.downstreams_removed:
            held = {name: instance.export_records(name)}
            instance.remove_downstream(name)
            self._undo.append((f"restore downstream {name} of {old.name}",
                               lambda name=name, held=held: self._add_back(instance, name, held, old)))
        for name in change.downstreams_added:
            instance.add_downstream(name)
            self._undo.append((f"remove new downstream {name} of {old.name}",
                               lambda name=name: instance.remove_downstream(name)))

    # -- undo --------------------------------------------------------------------------

    def _roll_back(self) -> bool:
        complete = True
        for what, undo in reversed(self._undo):
            try:
                undo()
            except Exception as exc:
                complete = False
                log.error("reload_rollback_step_failed step=%r error=%s", what, exc)
        self._undo.clear()
        return complete

    def _membership(self, name: str) -> Membership:
        """What each attached downstream of instance ``name`` holds, to import again after a restart."""
        instance = self._proxy.instances[name]
        return {link: instance.export_records(link) for link in instance.downstreams if link in instance.attached}

    def _restore(self, old: InstanceConfig, held: Membership) -> None:
        instance = self._proxy.start_instance(old)
        for link, exported in held.items():
            _import(instance, link, exported)

    def _add_back(self, instance, name: str, held: Membership, old: InstanceConfig) -> None:
        instance.add_downstream(name)
        instance.downstreams[:] = [link for link in old.downstreams if link in instance.downstreams]
        _import(instance, name, held[name])


def _import(instance, link: str, exported: list[tuple[Family, int, tuple[GroupRecord, ...]]]) -> None:
    if link not in instance.attached:
        return
    for family, version, records in exported:
        instance.import_records(link, family, version, records)
