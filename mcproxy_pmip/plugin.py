"""The plugin API: discovery through entry points, the ``Plugin`` contract and the ``ProxyFacade``.

A plugin is a class registered under the entry point group
``mcproxy_pmip.plugins``; the daemon enables it by name (configuration or
``--plugin NAME``), instantiates it without arguments and calls
``start(facade, settings)``. The plugin sees the daemon only through the
narrow ``ProxyFacade`` below and may add control commands
(``commands()``). Plugins import this module and nothing else of the core
(its names re-export the vocabulary they need). The core never imports a plugin.

Discovery deliberately avoids ``twisted.plugin`` (CONTRIBUTING.md, Style): a plugin that
fails to import is an error that names it, never a silently missing plugin.
See docs/plugins.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol, runtime_checkable

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.control.protocol import Arguments, CommandError, CommandHandler
from mcproxy_pmip.errors import ConfigError, ConfigProblem, McproxyError
from mcproxy_pmip.jsonline import decode as decode_json_line
from mcproxy_pmip.membership.timers import PMIPV6_TIMERS, Timers
from mcproxy_pmip.ratelog import RateLimitedLog
from mcproxy_pmip.wire.records import GroupRecord, RecordType

__all__ = [
    "DOWNSTREAM_REMOVED", "ENTRY_POINT_GROUP", "EVENT_NAMES", "INSTANCE_CREATED", "INSTANCE_REMOVED",
    "INTERFACE_DOWN", "INTERFACE_UP", "MEMBERSHIP_CHANGED", "METRIC_KINDS", "Arguments", "CommandError",
    "CommandHandler", "ConfigError", "ConfigProblem", "Family", "FamilyRecords", "GroupRecord", "McproxyError",
    "MetricSample", "PMIPV6_TIMERS", "Plugin", "PluginError", "PluginMetric", "ProxyEvent", "ProxyFacade",
    "RateLimitedLog", "RecordType", "Timers", "available_plugins", "collect_commands", "decode_json_line",
    "load_plugin",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mcproxy_pmip.plugins"

#: The daemon events a plugin may subscribe to.
MEMBERSHIP_CHANGED = "membership-changed"
INTERFACE_UP = "interface-up"
INTERFACE_DOWN = "interface-down"
INSTANCE_CREATED = "instance-created"
INSTANCE_REMOVED = "instance-removed"
DOWNSTREAM_REMOVED = "downstream-removed"
EVENT_NAMES = frozenset({MEMBERSHIP_CHANGED, INTERFACE_UP, INTERFACE_DOWN,
                         INSTANCE_CREATED, INSTANCE_REMOVED, DOWNSTREAM_REMOVED})


@dataclass(frozen=True, slots=True)
class ProxyEvent:
    """Something that happened in the daemon, delivered to subscribers.

    ``name``: one of ``EVENT_NAMES``. ``instance``: the proxy instance concerned
    (None for interface events not tied to one). ``interface``: the interface
    concerned, if any. ``family`` / ``group``: set for ``membership-changed``
    (the merged membership of ``group`` in ``instance`` changed).
    ``downstream-removed`` names the instance and the interface taken out of
    it by ``remove_downstream``, whoever called it (a plugin or the
    operator's ``del-downstream``).
    """

    name: str
    instance: str | None = None
    interface: str | None = None
    family: Family | None = None
    group: IPAddress | None = None

    def __post_init__(self) -> None:
        if self.name not in EVENT_NAMES:
            raise ValueError(f"unknown proxy event {self.name!r}")


#: The records of one family on one downstream: (family, protocol version, records).
FamilyRecords = tuple[Family, int, tuple[GroupRecord, ...]]


@runtime_checkable
class ProxyFacade(Protocol):
    """What the daemon (``Proxy``) offers plugins. Every method runs on the reactor thread.

    Failures the operator can act on (vif limit, unknown interface, kernel
    refusal) raise ``McproxyError`` subclasses; a method that raises leaves
    the daemon's state as it was before the call.
    """

    #: ``IReactorTime`` for timers (a ``task.Clock`` in tests).
    clock: Any
    #: The reactor, for readers (``addReader``) and connections.
    reactor: Any

    def find_or_create_instance(self, upstream_if: str, timers_profile: Timers) -> str:
        """The name of the instance whose upstream is ``upstream_if``; created if none exists.

        A created instance uses ``timers_profile`` on its downstreams and
        starts with no downstream.
        """

    def remove_instance(self, name: str) -> bool:
        """Stop and remove an instance created by ``find_or_create_instance``.

        Returns False (and changes nothing) for an instance of the configuration
        file or an unknown name; True when it was removed with its kernel state.
        """

    def add_downstream(self, instance: str, interface: str) -> None:
        """Make ``interface`` a downstream of ``instance`` for both families.

        Allocates the vif/mif and sends the General Query at once (RFC 3376
        §7.1 start-up), then the start-up queries of the instance's timers.
        """

    def remove_downstream(self, instance: str, interface: str) -> None:
        """Remove a downstream at once: its membership state, vif and MFC outputs go,
        and the upstream is told (state-change report) if the merged state changed.
        Subscribers of ``downstream-removed`` hear of it before the call returns."""

    def export_records(self, instance: str, interface: str) -> list[FamilyRecords]:
        """The downstream's current state per family as IS_IN / IS_EX records
        (for context transfer); a family with no state may be left out."""

    def import_records(self, instance: str, interface: str, family: Family, version: int,
                       records: Iterable[GroupRecord]) -> None:
        """Install records on a downstream as if its hosts had reported them
        (membership timers run); the upstream report leaves at once if the
        merged state changed."""

    def subscribe(self, event_name: str, callback: Callable[[ProxyEvent], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for each daemon event named ``event_name``;
        returns a function that cancels the subscription."""

    def hold_records(self, instance: str, key: str, family: Family, records: Iterable[GroupRecord]) -> None:
        """Join ``records`` on the instance's upstream for a mobile node that has no downstream
        here yet (a prepared handover); ``key`` names the holding (not an interface name).
        Nothing is forwarded for them. Holding again replaces that family's records."""

    def release_records(self, instance: str, key: str) -> None:
        """Take back what ``hold_records`` joined under ``key`` (the upstream hears it when the
        merged state changes: not when a downstream now wants the same)."""

    def commit_forwarding(self, instance: str) -> None:
        """Hand the instance's forwarding changes of this reactor turn to the data plane now."""

    def open_handover_buffer(self, instance: str, records: Iterable[FamilyRecords], max_interval: float,
                             max_bytes: int) -> Any:
        """Start buffering the data of ``records``' groups arriving on the instance's upstream.

        Returns an object with ``buffer`` (``overflow``, ``buffered``, ``len()``),
        ``deliver(access_if, markers, go_live) -> dict`` and ``close()`` (docs/handover.md).
        """

    def open_forward_recorder(self, interface: str, groups: Iterable[tuple[Family, IPAddress]]) -> Any:
        """Start recording the identity of the last packet of each group the kernel sends on
        ``interface``; the object's ``markers()`` gives them, ``close()`` stops."""


@runtime_checkable
class Plugin(Protocol):
    """The contract of a plugin class (instantiated without arguments)."""

    #: The plugin's name (its entry point name).
    name: str

    def start(self, facade: ProxyFacade, settings: Mapping[str, Any]) -> None:
        """Begin work; ``settings`` is the plugin's section of the configuration.
        Raise ``McproxyError`` (e.g. ``ConfigError``) on settings it cannot use."""

    def stop(self) -> Any:
        """Release what ``start`` acquired; may return a Deferred."""

    def commands(self) -> Mapping[str, CommandHandler]:
        """Control commands the plugin adds, by name (called after ``start``)."""

    # Optional: ``metrics() -> Iterable[PluginMetric]``, read at each Prometheus scrape
    # (docs/metrics.md); a plugin without it reports no metrics of its own.


METRIC_KINDS = ("counter", "gauge", "histogram")


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One labelled value of a ``PluginMetric``.

    Counters and gauges use ``value``. Histograms use ``buckets`` (upper bound,
    cumulative count; the last bound is ``math.inf``), ``value`` (the count)
    and ``total`` (the sum of the observations).
    """

    labels: tuple[tuple[str, str], ...] = ()
    value: float = 0.0
    buckets: tuple[tuple[float, int], ...] = ()
    total: float = 0.0


@dataclass(frozen=True, slots=True)
class PluginMetric:
    """A metric a plugin reports; the daemon exports it as ``mcproxy_pmip_<plugin>_<name>``."""

    name: str
    kind: str
    help: str
    samples: tuple[MetricSample, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in METRIC_KINDS:
            raise ValueError(f"unknown metric kind {self.kind!r}")


class PluginError(McproxyError):
    """A plugin that cannot be enabled: unknown name, failing import, bad class, clashes."""


def available_plugins() -> dict[str, EntryPoint]:
    """The installed plugins by name (nothing is imported)."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_plugin(name: str, available: Mapping[str, EntryPoint] | None = None) -> Plugin:
    """Import and instantiate the plugin called ``name``; ``PluginError`` says why it cannot be."""
    found = available_plugins() if available is None else available
    entry_point = found.get(name)
    if entry_point is None:
        names = ", ".join(sorted(found)) or "none"
        raise PluginError(f"unknown plugin {name!r}; available plugins: {names}")
    try:
        factory = entry_point.load()
    except Exception as exc:
        log.exception("plugin-import-failed name=%s target=%s", name, entry_point.value)
        raise PluginError(f"plugin {name!r} ({entry_point.value}) failed to import: "
                          f"{type(exc).__name__}: {exc}") from exc
    plugin = factory()
    if not isinstance(plugin, Plugin):
        raise PluginError(f"plugin {name!r} ({entry_point.value}) does not implement "
                          "name/start/stop/commands")
    return plugin


def collect_commands(core: Mapping[str, CommandHandler],
                     plugins: Iterable[Plugin]) -> dict[str, CommandHandler]:
    """The control command table: core commands plus each plugin's; a clash is a ``PluginError``."""
    table = dict(core)
    owner = {name: "core" for name in core}
    for plugin in plugins:
        for name, handler in plugin.commands().items():
            if name in table:
                raise PluginError(f"plugin {plugin.name!r} adds command {name!r}, "
                                  f"already provided by {owner[name]}")
            table[name] = handler
            owner[name] = plugin.name
    return table
