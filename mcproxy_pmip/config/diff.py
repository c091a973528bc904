"""What changed between two validated configurations, for a SIGHUP reload.

Instances are matched by name. A changed instance lists the interfaces that
came and went; ``needs_restart`` says the change cannot be applied in place
(another kernel table, other upstreams or upstream selection, other timers or
limits), whereas downstreams and filters can be added, removed or swapped on
the running instance. Nothing here touches the running daemon.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcproxy_pmip.config.model import Config, InstanceConfig


@dataclass(frozen=True, slots=True)
class InstanceDiff:
    """The differences of one instance present in both configurations."""

    name: str
    downstreams_added: tuple[str, ...]
    downstreams_removed: tuple[str, ...]
    upstreams_added: tuple[str, ...]
    upstreams_removed: tuple[str, ...]
    filters_changed: bool
    needs_restart: bool


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    """Instances added, removed and changed (by name), and global changes."""

    instances_added: tuple[InstanceConfig, ...]
    instances_removed: tuple[InstanceConfig, ...]
    instances_changed: tuple[InstanceDiff, ...]
    protocols_changed: bool
    control_socket_changed: bool
    data_plane_changed: bool
    plugins_changed: bool
    disabled_changed: bool

    @property
    def is_empty(self) -> bool:
        return not (self.instances_added or self.instances_removed or self.instances_changed
                    or self.protocols_changed or self.control_socket_changed or self.data_plane_changed
                    or self.plugins_changed or self.disabled_changed)


def _gone(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in old if name not in new)


def diff_instance(old: InstanceConfig, new: InstanceConfig) -> InstanceDiff | None:
    """None when ``old`` and ``new`` are equal."""
    if old == new:
        return None
    needs_restart = (old.table != new.table or old.upstreams != new.upstreams
                     or old.timers != new.timers or old.limits != new.limits
                     or old.querier != new.querier
                     or old.upstream_selection != new.upstream_selection
                     or old.upstream_forwarding != new.upstream_forwarding
                     or old.mutex_interval != new.mutex_interval)
    return InstanceDiff(name=new.name,
                        downstreams_added=_gone(new.downstreams, old.downstreams),
                        downstreams_removed=_gone(old.downstreams, new.downstreams),
                        upstreams_added=_gone(new.upstreams, old.upstreams),
                        upstreams_removed=_gone(old.upstreams, new.upstreams),
                        filters_changed=old.filters != new.filters,
                        needs_restart=needs_restart)


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    """Compare two configurations instance by instance (in ``new``'s order)."""
    old_by_name = {instance.name: instance for instance in old.instances}
    new_by_name = {instance.name: instance for instance in new.instances}
    changed = []
    for instance in new.instances:
        previous = old_by_name.get(instance.name)
        if previous is not None:
            difference = diff_instance(previous, instance)
            if difference is not None:
                changed.append(difference)
    return ConfigDiff(
        instances_added=tuple(i for i in new.instances if i.name not in old_by_name),
        instances_removed=tuple(i for i in old.instances if i.name not in new_by_name),
        instances_changed=tuple(changed),
        protocols_changed=old.protocols != new.protocols,
        control_socket_changed=old.control_socket != new.control_socket,
        data_plane_changed=old.data_plane != new.data_plane,
        plugins_changed=old.plugins != new.plugins,
        disabled_changed=old.disabled != new.disabled)
