"""Scenario model of the testbed: topology, streams, subscriptions, handovers.

A scenario is read from YAML (schema in docs/testbed.md), validated in one
pure pass that lists every problem with its location, and frozen into
dataclasses. Nothing here touches the system. The embedded default scenario is
the PMIPv6 domain of RFC 6224 §4 reduced to one LMA, two MAGs and one mobile
node receiving an IPv6 source-specific and an IPv4 any-source stream.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config.model import DATA_PLANES
from mcproxy_pmip.errors import ConfigError, ConfigProblem

MODES = ("static", "plugin", "context", "predictive")
#: How context mode moves the subscription context: through the driver (control), or over the
#: MAG-to-MAG channel pushed before the handover (predictive) or fetched at attach (reactive).
CONTEXT_TRANSFERS = ("control", "predictive", "reactive")
_NODE_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_SSM_V4 = ipaddress.ip_network("232.0.0.0/8")

DEFAULT_SCENARIO_YAML = """\
# One source, one LMA, two MAGs, one MN with an IPv6 SSM and an IPv4 ASM stream.
# Handovers 11 s apart and an 11 s tail: without context the new MAG waits for
# the MN's answer to its General Query, up to the 10 s Max Response Time.
topology:
  lmas: [lma1]
  mags: [mag1, mag2]
  mns:
    - {name: mn1, lma: lma1, mag: mag1}
streams:
  - {name: v6, family: ipv6, group: "ff3e::8000:1", source_specific: true, rate: 1000}
  - {name: v4, family: ipv4, group: "239.1.1.1", rate: 1000}
subscriptions:
  mn1: [v6, v4]
handovers:
  - {at: 2.0, mn: mn1, to: mag2, l2_outage_ms: 50}
  - {at: 13.0, mn: mn1, to: mag1, l2_outage_ms: 50}
  - {at: 24.0, mn: mn1, to: mag2, l2_outage_ms: 50}
options:
  warmup_s: 2.0
  tail_s: 11.0
"""


@dataclasses.dataclass(frozen=True, slots=True)
class MobileNode:
    """An MN: its anchor LMA and the MAG it is attached to at the start."""

    name: str
    lma: str
    mag: str


@dataclasses.dataclass(frozen=True, slots=True)
class Topology:
    """Every MAG has one tunnel to every LMA; MNs are anchored at one LMA."""

    lmas: tuple[str, ...]
    mags: tuple[str, ...]
    mns: tuple[MobileNode, ...]
    access_bridge: str = "auto"  # "auto" | "always" | "never"


@dataclasses.dataclass(frozen=True, slots=True)
class Stream:
    """A multicast stream sent by the source host (UDP, sequence-numbered)."""

    name: str
    family: Family
    group: ipaddress.IPv4Address | ipaddress.IPv6Address
    source_specific: bool
    rate: float  # packets per second
    port: int
    payload_size: int


@dataclasses.dataclass(frozen=True, slots=True)
class Handover:
    """Move ``mn`` to MAG ``to`` at ``at`` seconds after traffic start."""

    at: float
    mn: str
    to: str
    l2_outage_interval: float  # seconds between detach and attach


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    warmup_interval: float = 2.0  # traffic runs this long before the first handover counts
    tail_interval: float = 3.0  # traffic runs this long after the last handover
    mn_sees_link_change: bool = False
    capture: tuple[str, ...] = ()  # "node:ifname" links to write pcaps of
    binding_lifetime: int = 3600
    context_transfer: str = "control"  # one of CONTEXT_TRANSFERS; context mode only
    data_plane: str = "auto"  # one of DATA_PLANES, passed to every mcproxy-pmip daemon
    prepare_lead_interval: float = 0.1  # predictive mode: handover-prepare this long before detach


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    topology: Topology
    streams: tuple[Stream, ...]
    subscriptions: Mapping[str, tuple[str, ...]]
    handovers: tuple[Handover, ...]
    options: Options
    mode: str | None = None

    def stream(self, name: str) -> Stream:
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise KeyError(name)

    @property
    def duration_interval(self) -> float:
        last = max((h.at + h.l2_outage_interval for h in self.handovers), default=0.0)
        return max(last, self.options.warmup_interval) + self.options.tail_interval


def load_scenario(text: str, file: str = "<scenario>") -> Scenario:
    """Parse and validate scenario YAML; raise ConfigError listing every problem."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(file, 0, 0, f"not YAML: {exc}")]) from exc
    return validate_scenario(document, file)


def default_scenario() -> Scenario:
    return load_scenario(DEFAULT_SCENARIO_YAML)


class _Problems:
    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[ConfigProblem] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(ConfigProblem(self.file, 0, 0, f"{where}: {what}"))


def _mapping(doc: Any, where: str, problems: _Problems) -> Mapping[str, Any]:
    if isinstance(doc, Mapping):
        return doc
    problems.add(where, "must be a mapping")
    return {}


def _sequence(doc: Any, where: str, problems: _Problems) -> Sequence[Any]:
    if isinstance(doc, list):
        return doc
    problems.add(where, "must be a list")
    return []


def _names(doc: Any, where: str, problems: _Problems) -> tuple[str, ...]:
    names = []
    for index, name in enumerate(_sequence(doc, where, problems)):
        if not isinstance(name, str) or not _NODE_NAME.match(name):
            problems.add(f"{where}[{index}]", f"bad node name {name!r} (lowercase, 1-8 chars)")
            continue
        if name in names:
            problems.add(f"{where}[{index}]", f"duplicate name {name!r}")
            continue
        names.append(name)
    return tuple(names)


def _number(doc: Mapping[str, Any], key: str, default: float | None, where: str,
            problems: _Problems, minimum: float = 0.0) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        problems.add(f"{where}.{key}", f"must be a number >= {minimum}")
        return default if default is not None else minimum
    return float(value)


def _topology(doc: Any, problems: _Problems) -> Topology:
    top = _mapping(doc, "topology", problems)
    lmas = _names(top.get("lmas"), "topology.lmas", problems)
    mags = _names(top.get("mags"), "topology.mags", problems)
    if not lmas:
        problems.add("topology.lmas", "needs at least one LMA")
    if not mags:
        problems.add("topology.mags", "needs at least one MAG")
    overlap = set(lmas) & set(mags)
    if overlap:
        problems.add("topology", f"names used twice: {sorted(overlap)}")
    mns: list[MobileNode] = []
    seen: set[str] = set()
    for index, raw in enumerate(_sequence(top.get("mns"), "topology.mns", problems)):
        where = f"topology.mns[{index}]"
        entry = _mapping(raw, where, problems)
        name = entry.get("name")
        if not isinstance(name, str) or not _NODE_NAME.match(name) or name in seen:
            problems.add(f"{where}.name", f"bad or duplicate node name {name!r}")
            continue
        seen.add(name)
        lma = entry.get("lma", lmas[0] if lmas else None)
        mag = entry.get("mag", mags[0] if mags else None)
        if lma not in lmas:
            problems.add(f"{where}.lma", f"unknown LMA {lma!r}")
        if mag not in mags:
            problems.add(f"{where}.mag", f"unknown MAG {mag!r}")
        mns.append(MobileNode(name=name, lma=str(lma), mag=str(mag)))
    if set(m.name for m in mns) & (set(lmas) | set(mags)):
        problems.add("topology.mns", "MN names must differ from LMA and MAG names")
    access_bridge = top.get("access_bridge", "auto")
    if access_bridge not in ("auto", "always", "never"):
        problems.add("topology.access_bridge", "must be auto, always or never")
    return Topology(lmas=lmas, mags=mags, mns=tuple(mns), access_bridge=str(access_bridge))


def _streams(doc: Any, problems: _Problems) -> tuple[Stream, ...]:
    streams: list[Stream] = []
    for index, raw in enumerate(_sequence(doc, "streams", problems)):
        where = f"streams[{index}]"
        entry = _mapping(raw, where, problems)
        name = entry.get("name")
        if not isinstance(name, str) or not name or any(s.name == name for s in streams):
            problems.add(f"{where}.name", f"bad or duplicate stream name {name!r}")
            continue
        family = {"ipv4": Family.IPV4, "ipv6": Family.IPV6}.get(entry.get("family"))
        if family is None:
            problems.add(f"{where}.family", "must be ipv4 or ipv6")
            continue
        try:
            group = ipaddress.ip_address(str(entry.get("group")))
        except ValueError:
            problems.add(f"{where}.group", f"not an address: {entry.get('group')!r}")
            continue
        if group.version != family.value or not group.is_multicast:
            problems.add(f"{where}.group", f"{group} is not an {family.name} multicast group")
            continue
        if (group.version == 4 and group.is_link_local) or (
                group.version == 6 and (group.packed[1] & 0x0F) <= 2):
            problems.add(f"{where}.group", f"{group} is link-local scope; it is never routed")
        source_specific = entry.get("source_specific", False)
        if not isinstance(source_specific, bool):
            problems.add(f"{where}.source_specific", "must be true or false")
            source_specific = False
        if source_specific and not _is_ssm(group):
            problems.add(f"{where}.group", f"{group} is outside the SSM range (232/8, ff3x::/32)")
        rate = _number(entry, "rate", 1000.0, where, problems, minimum=1.0)
        port = int(_number(entry, "port", 5001.0 + index, where, problems, minimum=1.0))
        size = int(_number(entry, "payload_size", 64.0, where, problems, minimum=32.0))
        streams.append(Stream(name=name, family=family, group=group,
                              source_specific=source_specific, rate=rate, port=port,
                              payload_size=size))
    return tuple(streams)


def _is_ssm(group: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if group.version == 4:
        return group in _SSM_V4
    return group.packed[0] == 0xFF and (group.packed[1] >> 4) == 3 and group.packed[2:4] == b"\0\0"


def validate_scenario(document: Any, file: str = "<scenario>") -> Scenario:
    """Turn a parsed YAML document into a Scenario or raise ConfigError."""
    problems = _Problems(file)
    doc = _mapping(document, "scenario", problems)
    unknown = set(doc) - {"topology", "streams", "subscriptions", "handovers", "options", "mode"}
    if unknown:
        problems.add("scenario", f"unknown keys {sorted(unknown)}")
    topology = _topology(doc.get("topology"), problems)
    streams = _streams(doc.get("streams", []), problems)
    stream_names = {s.name for s in streams}
    mn_names = {m.name for m in topology.mns}
    subscriptions: dict[str, tuple[str, ...]] = {}
    for mn, wanted in _mapping(doc.get("subscriptions", {}), "subscriptions", problems).items():
        if mn not in mn_names:
            problems.add(f"subscriptions.{mn}", "unknown MN")
            continue
        names = tuple(_sequence(wanted, f"subscriptions.{mn}", problems))
        for name in names:
            if name not in stream_names:
                problems.add(f"subscriptions.{mn}", f"unknown stream {name!r}")
        subscriptions[mn] = names
    handovers: list[Handover] = []
    where_is = {m.name: m.mag for m in topology.mns}
    raw_handovers = _sequence(doc.get("handovers", []), "handovers", problems)
    for index, raw in enumerate(raw_handovers):
        where = f"handovers[{index}]"
        entry = _mapping(raw, where, problems)
        at = _number(entry, "at", None, where, problems)
        outage = _number(entry, "l2_outage_ms", 0.0, where, problems) / 1000.0
        mn, to = entry.get("mn"), entry.get("to")
        if mn not in mn_names:
            problems.add(f"{where}.mn", f"unknown MN {mn!r}")
            continue
        if to not in topology.mags:
            problems.add(f"{where}.to", f"unknown MAG {to!r}")
            continue
        if where_is[mn] == to:
            problems.add(f"{where}.to", f"{mn} is already attached to {to}")
        if handovers and at < handovers[-1].at:
            problems.add(f"{where}.at", "handovers must be in time order")
        where_is[mn] = to
        handovers.append(Handover(at=at, mn=mn, to=to, l2_outage_interval=outage))
    for index in range(1, len(handovers)):
        earlier = [h for h in handovers[:index] if h.mn == handovers[index].mn]
        if earlier and earlier[-1].at + earlier[-1].l2_outage_interval > handovers[index].at:
            problems.add(f"handovers[{index}]", "starts before the same MN's previous handover ends")
    opts = _mapping(doc.get("options", {}), "options", problems)
    unknown = set(opts) - {"warmup_s", "tail_s", "mn_sees_link_change", "capture",
                           "binding_lifetime", "context_transfer", "data_plane", "prepare_lead_s"}
    if unknown:
        problems.add("options", f"unknown keys {sorted(unknown)}")
    link_change = opts.get("mn_sees_link_change", False)
    if not isinstance(link_change, bool):
        problems.add("options.mn_sees_link_change", "must be true or false")
        link_change = False
    capture = tuple(str(c) for c in _sequence(opts.get("capture", []), "options.capture", problems))
    for item in capture:
        if item.count(":") != 1:
            problems.add("options.capture", f"{item!r} is not node:ifname")
    transfer = opts.get("context_transfer", "control")
    if transfer not in CONTEXT_TRANSFERS:
        problems.add("options.context_transfer", f"must be one of {CONTEXT_TRANSFERS}")
        transfer = "control"
    data_plane = opts.get("data_plane", "auto")
    if data_plane not in DATA_PLANES:
        problems.add("options.data_plane", f"must be one of {DATA_PLANES}")
        data_plane = "auto"
    options = Options(
        warmup_interval=_number(opts, "warmup_s", 2.0, "options", problems),
        tail_interval=_number(opts, "tail_s", 3.0, "options", problems),
        mn_sees_link_change=link_change,
        capture=capture,
        binding_lifetime=int(_number(opts, "binding_lifetime", 3600.0, "options", problems, 1.0)),
        context_transfer=transfer,
        data_plane=data_plane,
        prepare_lead_interval=_number(opts, "prepare_lead_s", 0.1, "options", problems),
    )
    if handovers and handovers[0].at < options.warmup_interval:
        problems.add("handovers[0].at", "must not be earlier than options.warmup_s")
    mode = doc.get("mode")
    if mode is not None and mode not in MODES:
        problems.add("mode", f"must be one of {MODES}")
    if problems.items:
        raise ConfigError(problems.items)
    return Scenario(topology=topology, streams=streams, subscriptions=subscriptions,
                    handovers=tuple(handovers), options=options, mode=mode)
