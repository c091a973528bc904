"""The PMIPv6 plugin: the MAG's multicast proxy follows the mobile nodes' bindings.

RFC 6224 §4 (MAG as MLD/IGMP proxy, one instance per MAG→LMA tunnel),
RFC 5213 §6.9/§6.13 (bindings and their lifetimes), RFC 7411 (subscription
context transfer payloads). Binding events come from the control command
``binding`` (a PMIPv6 daemon's hook script calls ``mcproxy-pmip-ctl``) or,
with ``event_source: netlink``, from the MN routes a PMIPv6 daemon installs
(netlink_source.py). The binding state machine is bindings.py; the
MAG-to-MAG context channel (RFC 7411 §3.3, ``peers``/``listen``/``tls_*``
settings) is peers.py (its mutual TLS peer_tls.py, its store context_store.py)
and transfer.py. Settings and commands: docs/plugins.md; certificates:
docs/peer-tls.md.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.error import CannotListenError

from mcproxy_pmip.plugin import (
    DOWNSTREAM_REMOVED, INSTANCE_REMOVED, MEMBERSHIP_CHANGED, PMIPV6_TIMERS, Arguments, CommandError, CommandHandler,
    ConfigError, ConfigProblem, ProxyFacade, RateLimitedLog, Timers,
)
from mcproxy_pmip.wire import rfc7411
from mcproxy_pmip_plugins.pmipv6.bindings import BindingTable, parse_binding_event
from mcproxy_pmip_plugins.pmipv6.netlink_source import NetlinkBindingSource
from mcproxy_pmip_plugins.pmipv6.context_store import HOLD_INTERVAL, MAX_BYTES, ContextStore
from mcproxy_pmip_plugins.pmipv6.peer_tls import PeerCredentials, load_credentials
from mcproxy_pmip_plugins.pmipv6.peers import (
    DEFAULT_PEER_PORT, IDLE_INTERVAL, MAX_CONNECTIONS, MAX_MESSAGE, REQUEST_TIMEOUT, ChannelLimits,
    PeerAddress, PeerClient, PeerServerFactory,
)
from mcproxy_pmip_plugins.pmipv6.prepared import (
    BUFFER_BYTES, BUFFER_INTERVAL, PREPARE_INTERVAL, PrepareSettings, PreparedHandovers,
)
from mcproxy_pmip_plugins.pmipv6.tally import EVENT_KINDS, BindingTally
from mcproxy_pmip_plugins.pmipv6.transfer import ContextChannel

__all__ = ["Pmipv6Plugin", "Pmipv6Settings", "parse_settings"]

log = logging.getLogger(__name__)

EVENT_SOURCES = ("control", "netlink")
_PROFILES = {"pmipv6": PMIPV6_TIMERS, "default": Timers()}
_TLS_FILES = ("tls_ca", "tls_cert", "tls_key")
#: numeric channel settings: name -> (default, minimum, integer only)
_CHANNEL_NUMBERS = {"peer_max_connections": (MAX_CONNECTIONS, 1, True),
                    "peer_idle_interval": (IDLE_INTERVAL, 0.1, False),
                    "peer_max_request": (MAX_MESSAGE, 1024, True),
                    "peer_request_timeout": (REQUEST_TIMEOUT, 0.1, False),
                    "context_hold_interval": (HOLD_INTERVAL, 1.0, False),
                    "context_store_bytes": (MAX_BYTES, 4096, True),
                    "prepare_interval": (PREPARE_INTERVAL, 0.1, False),
                    "buffer_interval": (BUFFER_INTERVAL, 0.01, False),
                    "buffer_bytes": (BUFFER_BYTES, 65536, True)}
_KNOWN_SETTINGS = frozenset({"profile", "remove_empty_instance", "event_source",
                             "tunnel_for_access", "tunnel_for_lma", "netns", "peers", "listen", "name",
                             "insecure_plaintext", *_TLS_FILES, *_CHANNEL_NUMBERS})
#: a MAG name is a DNS name: it is the name in the MAG's certificate
_MAG_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


@dataclass(frozen=True, slots=True)
class Pmipv6Settings:
    """The plugin's validated settings (docs/plugins.md)."""

    profile: Timers = PMIPV6_TIMERS
    remove_empty_instance: bool = True
    event_source: str = "control"
    tunnel_for_access: dict[str, str] = field(default_factory=dict)
    netns: str | None = None
    peers: dict[str, PeerAddress] = field(default_factory=dict)
    listen: PeerAddress | None = None
    name: str | None = None
    tls: tuple[str, str, str] | None = None  # (ca, cert, key) paths
    insecure_plaintext: bool = False
    limits: ChannelLimits = ChannelLimits()
    request_timeout: float = REQUEST_TIMEOUT
    hold_interval: float = HOLD_INTERVAL
    store_bytes: int = MAX_BYTES
    tunnel_for_lma: dict[str, str] = field(default_factory=dict)
    prepare: PrepareSettings = PrepareSettings()


def _problem(message: str) -> ConfigProblem:
    return ConfigProblem("plugin pmipv6", 0, 0, message)


def _parse_profile(value: Any, problems: list[ConfigProblem]) -> Timers:
    if isinstance(value, str):
        if value in _PROFILES:
            return _PROFILES[value]
        problems.append(_problem(f"profile {value!r} unknown; use {', '.join(_PROFILES)} or a mapping"))
        return PMIPV6_TIMERS
    if isinstance(value, Mapping):
        fields = {"startup_query_interval": PMIPV6_TIMERS.startup_query_interval, **value}
        try:
            return Timers(**fields)
        except (TypeError, ValueError) as exc:
            problems.append(_problem(f"profile: {exc}"))
            return PMIPV6_TIMERS
    problems.append(_problem("profile must be a name or a mapping of timer values"))
    return PMIPV6_TIMERS


def _parse_address(value: Any, where: str, problems: list[ConfigProblem]) -> PeerAddress | None:
    if not isinstance(value, str):
        problems.append(_problem(f'{where} must be "ADDR[:PORT]" (an IP literal, port {DEFAULT_PEER_PORT})'))
        return None
    try:
        return PeerAddress.parse(value)
    except ValueError as exc:
        problems.append(_problem(f"{where} {value!r}: {exc}"))
        return None


def _parse_peers(settings: Mapping[str, Any], problems: list[ConfigProblem]) -> tuple[
        dict[str, PeerAddress], PeerAddress | None, str | None]:
    """``peers`` (name -> address), ``listen`` and ``name``: the context channel's settings."""
    raw_peers = settings.get("peers", {})
    peers: dict[str, PeerAddress] = {}
    if not isinstance(raw_peers, Mapping):
        problems.append(_problem("peers must map peer MAG names to addresses"))
        raw_peers = {}
    for peer, text in raw_peers.items():
        if not isinstance(peer, str) or not _MAG_NAME.fullmatch(peer):
            problems.append(_problem(f"peers: {peer!r} is not a MAG name (a DNS name: letters, digits, '-', '.')"))
            continue
        address = _parse_address(text, f"peers.{peer}", problems)
        if address is not None:
            peers[peer] = address
    listen = None
    if "listen" in settings:
        listen = _parse_address(settings["listen"], "listen", problems)
        if not raw_peers:
            problems.append(_problem("listen without peers: only configured peers may connect"))
    name = settings.get("name")
    if name is not None and (not isinstance(name, str) or not _MAG_NAME.fullmatch(name)):
        problems.append(_problem("name must be this MAG's name"))
        name = None
    if name is not None and name in raw_peers:
        problems.append(_problem(f"peers lists this MAG's own name {name!r}"))
    return peers, listen, name


def _parse_numbers(settings: Mapping[str, Any], problems: list[ConfigProblem]) -> dict[str, float | int]:
    values = {}
    for name, (default, minimum, integer) in _CHANNEL_NUMBERS.items():
        value = settings.get(name, default)
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not minimum <= value < math.inf:
            problems.append(_problem(f"{name} must be {'an integer' if integer else 'a number'} "
                                     f"of at least {minimum:g}"))
            value = default
        values[name] = value
    return values


def _parse_security(settings: Mapping[str, Any], peers: Mapping[str, PeerAddress],
                    problems: list[ConfigProblem]) -> tuple[tuple[str, str, str] | None, bool]:
    """(tls file paths, insecure_plaintext): a channel with peers needs one of them."""
    insecure = settings.get("insecure_plaintext", False)
    if not isinstance(insecure, bool):
        problems.append(_problem("insecure_plaintext must be true or false"))
        insecure = False
    given = [name for name in _TLS_FILES if name in settings]
    if any(not isinstance(settings[name], str) or not settings[name] for name in given):
        problems.append(_problem("tls_ca, tls_cert and tls_key must be file paths"))
        return None, insecure
    if given and len(given) < len(_TLS_FILES):
        problems.append(_problem(f"{', '.join(sorted(set(_TLS_FILES) - set(given)))} missing: "
                                 f"the peer channel's TLS needs tls_ca, tls_cert and tls_key"))
        return None, insecure
    tls = tuple(settings[name] for name in _TLS_FILES) if given else None
    if tls is not None and insecure:
        problems.append(_problem("insecure_plaintext and tls_* settings exclude each other"))
    if peers and tls is None and not insecure:
        problems.append(_problem("the peer channel needs mutual TLS (tls_ca, tls_cert, tls_key; "
                                 "docs/peer-tls.md) or, on a testbed only, insecure_plaintext: true"))
    return tls, insecure


def parse_settings(settings: Mapping[str, Any]) -> Pmipv6Settings:
    """Validate the plugin's configuration section; ``ConfigError`` lists every problem."""
    problems: list[ConfigProblem] = []
    problems.extend(_problem(f"unknown setting {name!r}") for name in sorted(set(settings) - _KNOWN_SETTINGS))
    profile = _parse_profile(settings.get("profile", "pmipv6"), problems)
    remove_empty = settings.get("remove_empty_instance", True)
    if not isinstance(remove_empty, bool):
        problems.append(_problem("remove_empty_instance must be true or false"))
    source = settings.get("event_source", "control")
    if source not in EVENT_SOURCES:
        problems.append(_problem(f"event_source must be one of {', '.join(EVENT_SOURCES)}"))
    tunnels = settings.get("tunnel_for_access", {})
    if not (isinstance(tunnels, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in tunnels.items())):
        problems.append(_problem("tunnel_for_access must map access interface names to tunnel names"))
        tunnels = {}
    if source == "netlink" and not tunnels:
        problems.append(_problem("event_source netlink needs tunnel_for_access"))
    tunnel_for_lma = _parse_tunnel_for_lma(settings.get("tunnel_for_lma", {}), problems)
    netns = settings.get("netns")
    if netns is not None and not isinstance(netns, str):
        problems.append(_problem("netns must be a namespace name"))
    peers, listen, name = _parse_peers(settings, problems)
    tls, insecure = _parse_security(settings, peers, problems)
    numbers = _parse_numbers(settings, problems)
    if problems:
        raise ConfigError(problems)
    limits = ChannelLimits(numbers["peer_max_connections"], numbers["peer_idle_interval"],
                           numbers["peer_max_request"])
    return Pmipv6Settings(profile, remove_empty, source, dict(tunnels), netns, peers, listen, name,
                          tls, insecure, limits, numbers["peer_request_timeout"],
                          numbers["context_hold_interval"], numbers["context_store_bytes"], tunnel_for_lma,
                          PrepareSettings(numbers["prepare_interval"], numbers["buffer_interval"],
                                          numbers["buffer_bytes"]))


def _parse_tunnel_for_lma(value: Any, problems: list[ConfigProblem]) -> dict[str, str]:
    """``tunnel_for_lma``: LMA address -> this MAG's tunnel to it (where pushed contexts prepare)."""
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        problems.append(_problem("tunnel_for_lma must map LMA addresses to tunnel interface names"))
        return {}
    mapping = {}
    for address, tunnel in value.items():
        try:
            mapping[str(ipaddress.ip_address(address))] = tunnel
        except ValueError:
            problems.append(_problem(f"tunnel_for_lma: {address!r} is not an IP address"))
    return mapping


def load_peer_credentials(config: Pmipv6Settings) -> PeerCredentials | None:
    """The channel's TLS credentials (None in plaintext); ``ConfigError`` when a file is wrong
    or the certificate does not name this MAG."""
    if config.tls is None:
        return None
    try:
        credentials = load_credentials(*config.tls)
    except ValueError as exc:
        raise ConfigError([_problem(str(exc))]) from exc
    if config.name is not None and config.name not in credentials.names:
        raise ConfigError([_problem(f"tls_cert {config.tls[1]} names {sorted(credentials.names)}, "
                                    f"not this MAG ({config.name})")])
    return credentials


class Pmipv6Plugin:
    """Entry point ``pmipv6``: bindings in, downstreams and context transfer out.

    ``client_type`` makes the peer requests (tests put a fake in its place).
    """

    name = "pmipv6"
    client_type: Callable[..., PeerClient] = PeerClient

    def __init__(self) -> None:
        self._table: BindingTable | None = None
        self._channel: ContextChannel | None = None
        self._port = None
        self._source: NetlinkBindingSource | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._refusals: RateLimitedLog | None = None
        self._tally: BindingTally | None = None

    @property
    def table(self) -> BindingTable | None:
        return self._table

    def start(self, facade: ProxyFacade, settings: Mapping[str, Any]) -> None:
        config = parse_settings(settings)
        credentials = load_peer_credentials(config)
        table = BindingTable(facade, config.profile, config.remove_empty_instance, rfc7411)
        refusals = RateLimitedLog(logging.getLogger("mcproxy_pmip_plugins.pmipv6.peers"), facade.clock,
                                   summary="peer_refusals")
        channel = ContextChannel(
            table, facade.clock, self.client_type(facade.reactor, config.peers, config.request_timeout, credentials),
            ContextStore(facade.clock, config.hold_interval, config.store_bytes),
            ContextStore(facade.clock, config.hold_interval, config.store_bytes), refusals,
            PreparedHandovers(facade, table, config.prepare), config.tunnel_for_lma)
        self._table, self._channel, self._tally = table, channel, BindingTally(facade.clock)
        if config.listen is not None:
            self._port = self._listen(facade, config, channel, credentials, refusals, self._tally)
        self._refusals = refusals
        self._unsubscribe.append(facade.subscribe(MEMBERSHIP_CHANGED, self._tally.membership_changed))
        self._unsubscribe.append(facade.subscribe(INSTANCE_REMOVED, table.forget_instance))
        self._unsubscribe.append(facade.subscribe(DOWNSTREAM_REMOVED, table.forget_downstream))
        if config.event_source == "netlink":
            self._source = NetlinkBindingSource(facade.reactor, config.tunnel_for_access,
                                                self._handle, config.netns)
            self._source.start()
        security = "mutual-tls" if credentials is not None else "plaintext" if config.peers else "-"
        log.info("pmipv6-started name=%s event_source=%s remove_empty_instance=%s listen=%s peers=%s "
                 "channel=%s", config.name or "-", config.event_source, config.remove_empty_instance,
                 config.listen or "-", ",".join(f"{n}={a}" for n, a in config.peers.items()) or "-", security)
        if config.insecure_plaintext and config.peers:
            log.warning("pmipv6-insecure-channel reason=insecure_plaintext peers are identified by "
                        "source address only; for testbeds")

    @staticmethod
    def _listen(facade: ProxyFacade, config: Pmipv6Settings, channel: ContextChannel,
                credentials: PeerCredentials | None, refusals: RateLimitedLog, tally: BindingTally):
        """The peer server on ``listen``, open to the configured peers only (its answers counted)."""
        def push_received(peer, mn_id, entries, lma):
            refused = channel.push_received(peer, mn_id, entries, lma)
            tally.transfer("accept-push", refused or "ok")
            return refused

        def fetch_requested(peer, mn_id):
            found = channel.fetch_requested(peer, mn_id)
            tally.transfer("serve-fetch", found if isinstance(found, str) else "ok")
            return found

        factory = PeerServerFactory(config.peers, push_received, fetch_requested,
                                    facade.clock, credentials, config.limits, refusals, channel.markers_received)
        try:
            return facade.reactor.listenTCP(config.listen.port, factory, interface=str(config.listen.host))
        except CannotListenError as exc:
            raise ConfigError([_problem(f"listen {config.listen}: {exc.socketError}")]) from exc

    def stop(self):
        """Stops the event source and the channel; the Deferred fires once the peer port is closed."""
        if self._source is not None:
            self._source.stop()
            self._source = None
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self._channel is not None:
            self._channel.close()
        if self._table is not None:
            self._table.close()
        if self._refusals is not None:
            self._refusals.close()
        port, self._port = self._port, None
        return None if port is None else port.stopListening()

    def commands(self) -> dict[str, CommandHandler]:
        return {"binding": self._binding, "bindings": self._bindings,
                "context-export": self._context_export, "handover-prepare": self._handover_prepare}

    def _running_table(self) -> BindingTable:
        if self._table is None:
            raise CommandError("not-running", "the pmipv6 plugin is not started")
        return self._table

    def _running_channel(self) -> ContextChannel:
        if self._channel is None:
            raise CommandError("not-running", "the pmipv6 plugin is not started")
        return self._channel

    def _binding(self, args: Arguments):
        return self._handle(parse_binding_event(args))

    def _handle(self, event):
        """Hand a binding event to the channel; its result (or refusal) is counted for ``metrics``."""
        channel, tally = self._running_channel(), self._tally
        kind = EVENT_KINDS.get(type(event).__name__, "other")
        started_at = tally.attach_started()
        try:
            result = channel.handle(event)
        except CommandError:
            tally.refused(kind)
            raise
        if isinstance(result, defer.Deferred):
            return result.addCallback(tally.event_done, kind, started_at)
        return tally.event_done(result, kind, started_at)

    def _handover_prepare(self, args: Arguments):
        mn_id = args.string("mn_id")
        target = args.string("target")
        args.finish()
        pushing = self._running_channel().prepare(mn_id, target)
        tally = self._tally

        def failed(failure):
            tally.transfer("push", failure.value.code if isinstance(failure.value, CommandError) else "error")
            return failure

        def pushed(result):
            tally.transfer("push", "ok")
            return result

        return pushing.addCallbacks(pushed, failed)

    def metrics(self) -> list:
        """The plugin's ``PluginMetric``s (read at each Prometheus scrape; docs/metrics.md)."""
        if self._tally is None or self._table is None or self._channel is None:
            return []
        return self._tally.metrics(len(self._table.rows())) + self._channel.prepared.metrics()

    def _bindings(self, args: Arguments) -> list[dict[str, Any]]:
        args.finish()
        return self._running_table().rows()

    def _context_export(self, args: Arguments) -> dict[str, Any]:
        mn_id = args.string("mn_id")
        args.finish()
        return self._running_table().export_context(mn_id)
