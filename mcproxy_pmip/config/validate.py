"""The one pure validation: ``RawConfig`` (either reader) -> frozen ``Config`` or ``ConfigError``.

Every problem is collected with its location before raising, so the operator
sees all of them at once. The live system (interfaces, kernel tables) is never
consulted: an interface is checked for a plausible Linux name only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import fields, replace
from types import MappingProxyType
from typing import Any

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.errors import ConfigError, ConfigProblem
from mcproxy_pmip.membership.filters import Direction
from mcproxy_pmip.membership.timers import Timers
from mcproxy_pmip.config.model import (DATA_PLANES, DEFAULT_PROTOCOL, PROTOCOLS, AddressMatch, AddressRule,
                                       Config, DaemonLimits, FilterBinding, FilterMode, InstanceConfig,
                                       Limits, MetricsConfig, PluginConfig, QuerierSettings, Role, RuleMatching,
                                       Table)
from mcproxy_pmip.config.syntax import (Loc, Located, RawConfig, RawInstance, RawMatch, RawRule,
                                        RawTable, RawTableRef)

#: Kernel routing table ids: 0 is unspecified, 253-255 are default/main/local.
TABLE_MIN = 1
TABLE_MAX = 2**32 - 1
RESERVED_TABLES = frozenset({253, 254, 255})
IFNAMSIZ = 16

_PROTOCOL_BY_LOWER = {name.lower(): name for name in PROTOCOLS}
_TIMER_FIELDS = {f.name: f.type for f in fields(Timers)}
_INTEGER_TIMERS = frozenset({"robustness", "last_member_query_count", "startup_query_count"})


class _Validator:
    def __init__(self, raw: RawConfig) -> None:
        self.raw = raw
        self.problems: list[ConfigProblem] = list(raw.problems)
        self.families: frozenset[Family] = frozenset()
        self.named_tables: dict[str, RawTable] = {}
        self.resolved: dict[str, Table | None] = {}
        self.resolving: set[str] = set()

    def report(self, loc: Loc, message: str) -> None:
        self.problems.append(loc.problem(message))

    # -- protocols -----------------------------------------------------------------
    def protocols(self) -> tuple[str, ...]:
        chosen: dict[Family, Located] = {}
        names: list[str] = []
        for item in self.raw.protocols:
            name = _PROTOCOL_BY_LOWER.get(str(item.value).lower())
            if name is None:
                self.report(item.loc, f"unknown protocol {item.value!r}: expected IGMPv1, IGMPv2, "
                            "IGMPv3, MLDv1 or MLDv2")
                continue
            family = PROTOCOLS[name][0]
            if family in chosen:
                first = chosen[family]
                self.report(item.loc, f"second {family.protocol} protocol {name}: expected one "
                            f"protocol per family ({first.value} at line {first.loc.line})")
                continue
            chosen[family] = item
            names.append(name)
        if not self.raw.protocols:
            names.append(DEFAULT_PROTOCOL)
        if names:
            self.families = frozenset(PROTOCOLS[name][0] for name in names)
        else:
            self.families = frozenset(Family)  # only bad protocol lines: no cascade of problems
        return tuple(names)

    # -- tables and rules ----------------------------------------------------------
    def collect_tables(self) -> None:
        for table in self.raw.tables:
            if table.name is None:
                continue
            name = str(table.name.value)
            if name in self.named_tables:
                first = self.named_tables[name]
                self.report(table.name.loc, f"table {name!r} defined twice "
                            f"(first at line {first.loc.line})")
                continue
            self.named_tables[name] = table

    def named_table(self, ref: Located) -> Table | None:
        name = str(ref.value)
        if name in self.resolving:
            self.report(ref.loc, f"table {name!r} refers to itself")
            return None
        if name in self.resolved:
            return self.resolved[name]
        raw = self.named_tables.get(name)
        if raw is None:
            self.report(ref.loc, f"unknown table {name!r}")
            return None
        self.resolving.add(name)
        table = self.table(raw)
        self.resolving.discard(name)
        self.resolved[name] = table
        return table

    def table(self, raw: RawTable | RawTableRef) -> Table | None:
        if isinstance(raw, RawTableRef):
            return self.named_table(raw.name)
        rules: list[AddressRule | Table] = []
        complete = True
        for box in raw.rules:
            rule = self.rule(box) if isinstance(box, RawRule) else self.table(box)
            if rule is None:
                complete = False
            else:
                rules.append(rule)
        if not complete:
            return None
        return Table(None if raw.name is None else str(raw.name.value), tuple(rules))

    def rule(self, raw: RawRule) -> AddressRule | None:
        interface = None
        if raw.interface is not None:
            interface = self.interface_name(raw.interface)
        group = self.address_match(raw.group, "group")
        source = self.address_match(raw.source, "source")
        if group is None or source is None:
            return None
        if group.family is not None and source.family is not None and group.family != source.family:
            self.report(raw.source.loc, f"source {source.text} is not of the group's family "
                        f"({group.text})")
            return None
        return AddressRule(interface, group, source)

    def address_match(self, raw: RawMatch, what: str) -> AddressMatch | None:
        text = " ".join(raw.text.split())
        if text == "*":
            return AddressMatch(None, None, "*")
        if "-" in text:
            low_text, _, high_text = (part.strip() for part in text.partition("-"))
            low = None if low_text == "*" else self.address(low_text, raw.loc, what)
            high = None if high_text == "*" else self.address(high_text, raw.loc, what)
            if (low_text != "*" and low is None) or (high_text != "*" and high is None):
                return None
            if low is not None and high is not None:
                if low.version != high.version:
                    self.report(raw.loc, f"range {text} mixes IPv4 and IPv6")
                    return None
                if low > high:
                    self.report(raw.loc, f"reversed range {text}: expected the lower address first")
                    return None
            return AddressMatch(low, high, f"{low_text} - {high_text}")
        if "/" in text:
            return self.prefix(text, raw.loc, what)
        address = self.address(text, raw.loc, what)
        if address is None:
            return None
        if what == "group" and not address.is_multicast:
            self.report(raw.loc, f"group {address} is not a multicast address")
            return None
        return AddressMatch(address, address, str(address))

    def prefix(self, text: str, loc: Loc, what: str) -> AddressMatch | None:
        address_text, _, length_text = (part.strip() for part in text.partition("/"))
        address = self.address(address_text, loc, what)
        if address is None:
            return None
        max_length = address.max_prefixlen
        if not length_text.isdigit() or int(length_text) > max_length:
            self.report(loc, f"bad prefix length {length_text!r}: expected 0..{max_length}")
            return None
        network = ipaddress.ip_network(f"{address}/{int(length_text)}", strict=False)
        return AddressMatch(network.network_address, network.broadcast_address,
                            f"{address}/{int(length_text)}")

    def address(self, text: str, loc: Loc, what: str) -> IPAddress | None:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            self.report(loc, f"bad {what} address {text!r}: expected an IPv4 or IPv6 address, "
                        "a range 'a - b', a prefix 'a/len' or '*'")
            return None
        family = Family(address.version)
        if family not in self.families:
            wanted = "IGMP" if family is Family.IPV4 else "MLD"
            self.report(loc, f"IPv{address.version} {what} {address} in a configuration without "
                        f"{wanted}: expected a 'protocol {wanted}...' line")
            return None
        return address

    def interface_name(self, item: Located) -> str | None:
        name = item.value
        if not isinstance(name, str) or not name:
            self.report(item.loc, "expected an interface name")
            return None
        if (len(name) >= IFNAMSIZ or name in (".", "..") or "/" in name
                or any(ch.isspace() for ch in name) or name == "*"):
            self.report(item.loc, f"invalid interface name {name!r}: expected at most "
                        f"{IFNAMSIZ - 1} characters without '/' or blanks")
            return None
        return name

    # -- instances -----------------------------------------------------------------
    def instances(self) -> list[InstanceConfig]:
        names: dict[str, RawInstance] = {}
        tables: dict[int, RawInstance] = {}
        downstream_owner: dict[str, tuple[str, Loc]] = {}
        upstream_owner: dict[str, tuple[str, Loc]] = {}
        result: list[InstanceConfig] = []
        for raw in self.raw.instances:
            name = str(raw.name.value)
            if name in names:
                self.report(raw.name.loc, f"instance {name!r} defined twice "
                            f"(first at line {names[name].name.loc.line})")
                continue
            names[name] = raw
            table = self.table_number(raw)
            if table is not None:
                if table in tables:
                    self.report(raw.table.loc, f"routing table {table} already used by instance "
                                f"{tables[table].name.value!r}")
                tables[table] = raw
            upstreams = self.interface_list(raw.upstreams, name, "upstream", upstream_owner,
                                            downstream_owner)
            downstreams = self.interface_list(raw.downstreams, name, "downstream",
                                              downstream_owner, upstream_owner)
            result.append(InstanceConfig(name=name, table=table, upstreams=upstreams,
                                         downstreams=downstreams, timers=self.timers(raw),
                                         limits=self.limits(raw), querier=self.querier(raw)))
        return result

    def table_number(self, raw: RawInstance) -> int | None:
        if raw.table is None:
            return None
        value = raw.table.value
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            self.report(raw.table.loc, f"bad routing table number {value!r}: expected an integer")
            return None
        if not TABLE_MIN <= value <= TABLE_MAX or value in RESERVED_TABLES:
            self.report(raw.table.loc, f"routing table {value} out of range: expected "
                        f"{TABLE_MIN}..{TABLE_MAX} except 253, 254, 255")
            return None
        return value

    def interface_list(self, items: list[Located], instance: str, role: str,
                       same_role: dict[str, tuple[str, Loc]],
                       other_role: dict[str, tuple[str, Loc]]) -> tuple[str, ...]:
        names: list[str] = []
        other = "downstream" if role == "upstream" else "upstream"
        for item in items:
            name = self.interface_name(item)
            if name is None:
                continue
            if name in same_role:
                owner, loc = same_role[name]
                where = "this instance" if owner == instance else f"instance {owner!r}"
                self.report(item.loc, f"interface {name!r} is already a {role} of {where} "
                            f"(line {loc.line})")
                continue
            if name in other_role:
                owner, loc = other_role[name]
                self.report(item.loc, f"interface {name!r} is already a {other} of instance "
                            f"{owner!r} (line {loc.line}): an interface has one role")
                continue
            same_role[name] = (instance, item.loc)
            names.append(name)
        return tuple(names)

    def number_settings(self, values: dict[str, Located], allowed: set[str],
                        integers: frozenset[str], what: str) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        for key, item in values.items():
            if key not in allowed:
                self.report(item.loc, f"unknown {what} setting {key!r}: expected one of "
                            f"{', '.join(sorted(allowed))}")
                continue
            value = item.value
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    key in integers and not isinstance(value, int)):
                kind = "an integer" if key in integers else "a number"
                self.report(item.loc, f"bad {what} value {key}={value!r}: expected {kind}")
                continue
            settings[key] = value if key in integers else float(value)
        return settings

    def timers(self, raw: RawInstance) -> Timers:
        settings = self.number_settings(raw.timers, set(_TIMER_FIELDS), _INTEGER_TIMERS, "timer")
        try:
            return Timers(**settings)
        except ValueError as error:
            self.report(raw.timers_loc or raw.loc, f"invalid timers: {error}")
            return Timers()

    def limits(self, raw: RawInstance) -> Limits:
        return self.bounds(raw.limits, Limits, "limit")

    def daemon_limits(self) -> DaemonLimits:
        return self.bounds(self.raw.limits, DaemonLimits, "daemon limit")

    def bounds(self, values: dict[str, Located], kind: type, what: str):
        """``kind`` (a limits dataclass) from ``values``; every bound is at least 1."""
        allowed = {f.name for f in fields(kind)}
        integers = frozenset(f.name for f in fields(kind) if f.type == "int")
        settings = self.number_settings(values, allowed, integers, what)
        for key, value in list(settings.items()):
            if value < 1:
                self.report(values[key].loc, f"bad {what} {key}={value}: expected at least 1")
                del settings[key]
        return kind(**settings)

    def querier(self, raw: RawInstance) -> QuerierSettings:
        allowed = {f.name for f in fields(QuerierSettings)}
        settings: dict[str, bool] = {}
        for key, item in raw.querier.items():
            if key not in allowed:
                self.report(item.loc, f"unknown querier setting {key!r}: expected one of "
                            f"{', '.join(sorted(allowed))}")
            elif not isinstance(item.value, bool):
                self.report(item.loc, f"bad querier value {key}={item.value!r}: expected true or false")
            else:
                settings[key] = item.value
        return QuerierSettings(**settings)

    # -- filters and rule matching -------------------------------------------------
    def attach_filters(self, instances: list[InstanceConfig]) -> list[InstanceConfig]:
        by_name = {instance.name: instance for instance in instances}
        defined = {str(raw.name.value) for raw in self.raw.instances}
        bindings: dict[str, list[FilterBinding]] = {name: [] for name in by_name}
        seen: dict[tuple[str, str, str], Loc] = {}
        for raw in self.raw.filters:
            name = str(raw.instance.value)
            table = self.table(raw.table)
            instance = by_name.get(name)
            if instance is None:
                if name not in defined:
                    self.report(raw.instance.loc, f"filter for unknown instance {name!r}")
                continue
            role = Role(raw.role.value)
            interface = str(raw.interface.value)
            members = instance.upstreams if role is Role.UPSTREAM else instance.downstreams
            if interface not in members:
                self.report(raw.interface.loc, f"interface {interface!r} is not a {role.value} "
                            f"of instance {name!r}")
                continue
            key = (name, interface, str(raw.direction.value))
            if key in seen:
                self.report(raw.loc, f"second {raw.direction.value} filter for {interface!r} in "
                            f"instance {name!r} (first at line {seen[key].line})")
                continue
            seen[key] = raw.loc
            if table is not None:
                bindings[name].append(FilterBinding(interface, role, Direction(raw.direction.value),
                                                    FilterMode(raw.mode.value), table))
        return [replace(instance, filters=tuple(bindings[instance.name])) for instance in instances]

    def attach_rule_matching(self, instances: list[InstanceConfig]) -> list[InstanceConfig]:
        by_name = {instance.name: instance for instance in instances}
        defined = {str(raw.name.value) for raw in self.raw.instances}
        seen: dict[tuple[str, str], Loc] = {}
        for raw in self.raw.rule_matchings:
            name = str(raw.instance.value)
            instance = by_name.get(name)
            if instance is None:
                if name not in defined:
                    self.report(raw.instance.loc, f"rule matching for unknown instance {name!r}")
                continue
            if raw.role.value != "upstream":
                self.report(raw.role.loc, "rule matching applies to upstreams: expected 'upstream'")
                continue
            direction = str(raw.direction.value)
            kind = RuleMatching(raw.kind.value)
            if (name, direction) in seen:
                self.report(raw.loc, f"second '{direction}' rule matching for instance {name!r} "
                            f"(first at line {seen[(name, direction)].line})")
                continue
            seen[(name, direction)] = raw.loc
            if direction == "out":
                if kind is RuleMatching.MUTEX:
                    self.report(raw.kind.loc, "'mutex' applies to 'upstream * in': expected 'all' "
                                "or 'first' for 'out'")
                    continue
                by_name[name] = replace(instance, upstream_forwarding=kind)
                continue
            interval = None
            if kind is RuleMatching.MUTEX:
                interval = self.mutex_interval(raw.mutex_ms)
                if interval is None:
                    continue
            by_name[name] = replace(instance, upstream_selection=kind, mutex_interval=interval)
        return [by_name[instance.name] for instance in instances]

    def mutex_interval(self, item: Located | None) -> float | None:
        if item is None:
            return None
        value = item.value
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            self.report(item.loc, f"bad mutex timeout {value!r}: expected a positive number "
                        "of milliseconds")
            return None
        return value / 1000.0

    # -- global settings -----------------------------------------------------------
    def control_socket(self) -> str | None:
        item = self.raw.control_socket
        if item is None:
            return None
        if not isinstance(item.value, str) or not item.value:
            self.report(item.loc, "expected a socket path for control.socket")
            return None
        return item.value

    def data_plane(self) -> str:
        item = self.raw.data_plane
        if item is None:
            return DATA_PLANES[0]
        if item.value not in DATA_PLANES:
            self.report(item.loc, f"bad data_plane {item.value!r}: expected one of {', '.join(DATA_PLANES)}")
            return DATA_PLANES[0]
        return item.value

    def metrics(self) -> MetricsConfig | None:
        forwarding = self.raw.metrics_forwarding
        if forwarding is not None and not isinstance(forwarding.value, bool):
            self.report(forwarding.loc, "expected true or false for metrics.forwarding")
        item = self.raw.metrics_listen
        if item is None:
            if forwarding is not None:
                self.report(forwarding.loc, "metrics.forwarding without metrics.listen")
            return None
        try:
            return MetricsConfig.parse(str(item.value), forwarding is None or forwarding.value is not False)
        except ValueError as exc:
            self.report(item.loc, f"{exc} (metrics.listen)")
            return None

    def plugins(self) -> tuple[PluginConfig, ...]:
        result: list[PluginConfig] = []
        names: set[str] = set()
        for name, settings in self.raw.plugins:
            if not isinstance(name.value, str) or not name.value:
                self.report(name.loc, "expected a plugin name")
                continue
            if name.value in names:
                self.report(name.loc, f"plugin {name.value!r} configured twice")
                continue
            if not isinstance(settings, dict):
                self.report(name.loc, f"settings of plugin {name.value!r}: expected a mapping")
                continue
            names.add(name.value)
            result.append(PluginConfig(name.value, MappingProxyType(dict(settings))))
        return tuple(result)

    def run(self) -> Config:
        protocols = self.protocols()
        self.collect_tables()
        for table in self.raw.tables:
            if table.name is not None:
                self.named_table(table.name)
        instances = self.attach_rule_matching(self.attach_filters(self.instances()))
        config = Config(protocols=protocols, instances=tuple(instances),
                        control_socket=self.control_socket(), data_plane=self.data_plane(),
                        limits=self.daemon_limits(), plugins=self.plugins(), metrics=self.metrics(),
                        disabled=self.raw.disabled is not None, source=self.raw.file)
        if self.problems:
            raise ConfigError(_sorted_unique(self.problems))
        return config


def _sorted_unique(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.file, p.line, p.column))


def validate(raw: RawConfig) -> Config:
    """Check ``raw`` and build the frozen model; raise ``ConfigError`` listing every problem."""
    return _Validator(raw).run()
