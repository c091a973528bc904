"""The unvalidated tree both readers produce: every value carries its source location.

``mcproxy_grammar`` and ``yaml_reader`` fill a ``RawConfig`` (and its list of
syntax problems); ``validate`` is the one place that checks meaning and builds
the frozen model. Nothing here is checked: strings stay strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcproxy_pmip.errors import ConfigProblem


@dataclass(frozen=True, slots=True)
class Loc:
    """A position in a configuration source (1-based line and column; 0 = whole file)."""

    file: str
    line: int
    column: int

    def problem(self, message: str) -> ConfigProblem:
        return ConfigProblem(self.file, self.line, self.column, message)


@dataclass(frozen=True, slots=True)
class Located:
    """A scalar value as written, with where it was written."""

    value: Any
    loc: Loc


@dataclass(frozen=True, slots=True)
class RawMatch:
    """One side of a rule box as text: ``*``, ``a``, ``a - b`` or ``a/len``."""

    text: str
    loc: Loc


@dataclass(frozen=True, slots=True)
class RawRule:
    interface: Located | None
    group: RawMatch
    source: RawMatch
    loc: Loc


@dataclass(frozen=True, slots=True)
class RawTableRef:
    name: Located
    loc: Loc


@dataclass(frozen=True, slots=True)
class RawTable:
    """``table NAME {...}`` (name set) or an anonymous ``{...}`` (name None)."""

    name: Located | None
    rules: tuple[RawRule | RawTableRef | RawTable, ...]
    loc: Loc


@dataclass(frozen=True, slots=True)
class RawFilter:
    """``pinstance I upstream|downstream IF in|out whitelist|blacklist TABLE``."""

    instance: Located
    role: Located
    interface: Located
    direction: Located
    mode: Located
    table: RawTable | RawTableRef
    loc: Loc


@dataclass(frozen=True, slots=True)
class RawRuleMatching:
    """``pinstance I upstream * in|out rulematching all|first|mutex MS``."""

    instance: Located
    role: Located
    direction: Located
    kind: Located
    mutex_ms: Located | None
    loc: Loc


@dataclass(slots=True)
class RawInstance:
    """``pinstance NAME[(TABLE)]: UP... ==> DOWN...`` plus the YAML-only settings."""

    name: Located
    loc: Loc
    table: Located | None = None
    upstreams: list[Located] = field(default_factory=list)
    downstreams: list[Located] = field(default_factory=list)
    timers: dict[str, Located] = field(default_factory=dict)
    timers_loc: Loc | None = None
    limits: dict[str, Located] = field(default_factory=dict)
    querier: dict[str, Located] = field(default_factory=dict)


@dataclass(slots=True)
class RawConfig:
    """Everything a reader found, in source order, plus the syntax problems it met."""

    file: str
    protocols: list[Located] = field(default_factory=list)
    instances: list[RawInstance] = field(default_factory=list)
    tables: list[RawTable] = field(default_factory=list)
    filters: list[RawFilter] = field(default_factory=list)
    rule_matchings: list[RawRuleMatching] = field(default_factory=list)
    disabled: Loc | None = None
    control_socket: Located | None = None
    data_plane: Located | None = None
    metrics_listen: Located | None = None
    metrics_forwarding: Located | None = None
    limits: dict[str, Located] = field(default_factory=dict)
    limits_loc: Loc | None = None
    plugins: list[tuple[Located, Any]] = field(default_factory=list)
    problems: list[ConfigProblem] = field(default_factory=list)
