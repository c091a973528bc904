"""Reader of the YAML configuration format into the located ``RawConfig``.

The document is composed into YAML nodes (``yaml.compose`` with the safe
loader), not loaded into plain Python, so every value keeps its line and
column for the problems that validation reports. Rule strings use mcproxy's
rule-box syntax and are parsed by ``mcproxy_grammar.parse_rule_box``. The
schema is documented in docs/configuration.md.
"""

from __future__ import annotations

from typing import Any, Callable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mcproxy_pmip.errors import ConfigProblem
from mcproxy_pmip.config.mcproxy_grammar import parse_rule_box
from mcproxy_pmip.config.syntax import (Loc, Located, RawConfig, RawFilter, RawInstance,
                                        RawRuleMatching, RawTable, RawTableRef)

_TOP_KEYS = ("protocols", "control", "plugins", "tables", "instances", "disabled", "data_plane",
             "limits", "metrics")
_INSTANCE_KEYS = ("name", "table", "upstreams", "downstreams", "upstream_selection",
                  "upstream_forwarding", "mutex_interval", "timers", "limits", "querier",
                  "filters")
_FILTER_KEYS = ("interface", "direction", "mode", "rules", "table")


class _Reader:
    def __init__(self, file: str) -> None:
        self.raw = RawConfig(file=file)
        self.constructor = yaml.constructor.SafeConstructor()

    def loc(self, node: Node) -> Loc:
        return Loc(self.raw.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def report(self, node: Node, message: str) -> None:
        self.raw.problems.append(self.loc(node).problem(message))

    def scalar(self, node: Node, expected: str) -> Located | None:
        if not isinstance(node, ScalarNode):
            self.report(node, f"expected {expected}")
            return None
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as error:
            self.report(node, f"expected {expected}: {error}")
            return None
        return Located(value, self.loc(node))

    def string(self, node: Node, expected: str) -> Located | None:
        item = self.scalar(node, expected)
        if item is None:
            return None
        if isinstance(item.value, bool) or item.value is None or isinstance(item.value, (list, dict)):
            self.report(node, f"expected {expected}")
            return None
        return Located(str(item.value), item.loc)

    def python(self, node: Node) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as error:
            self.report(node, f"bad value: {error}")
            return None

    def mapping(self, node: Node, keys: tuple[str, ...], what: str) -> dict[str, Node]:
        """The entries of a mapping node whose keys are among ``keys`` (others reported)."""
        if not isinstance(node, MappingNode):
            self.report(node, f"expected a mapping for {what}")
            return {}
        entries: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if key not in keys:
                self.report(key_node, f"unknown key {key!r} in {what}: expected one of "
                            f"{', '.join(keys)}")
            elif key in entries:
                self.report(key_node, f"duplicate key {key!r} in {what}")
            else:
                entries[key] = value_node
        return entries

    def sequence(self, node: Node, what: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            self.report(node, f"expected a list for {what}")
            return []
        return list(node.value)

    def strings(self, node: Node, what: str, expected: str) -> list[Located]:
        return [item for item in (self.string(child, expected) for child in self.sequence(node, what))
                if item is not None]

    def free_mapping(self, node: Node, what: str, convert: Callable[[Node], Any]) -> dict[str, Any]:
        if not isinstance(node, MappingNode):
            self.report(node, f"expected a mapping for {what}")
            return {}
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.string(key_node, f"a key in {what}")
            if key is None:
                continue
            if key.value in result:
                self.report(key_node, f"duplicate key {key.value!r} in {what}")
                continue
            result[key.value] = convert(value_node) if value_node is not None else None
        return result

    # -- the document --------------------------------------------------------------
    def document(self, root: Node | None) -> None:
        if root is None:
            return
        entries = self.mapping(root, _TOP_KEYS, "the configuration")
        if "protocols" in entries:
            self.raw.protocols = self.strings(entries["protocols"], "protocols", "a protocol name")
        if "disabled" in entries:
            item = self.scalar(entries["disabled"], "true or false")
            if item is not None and not isinstance(item.value, bool):
                self.report(entries["disabled"], "expected true or false for disabled")
            elif item is not None and item.value:
                self.raw.disabled = item.loc
        if "control" in entries:
            control = self.mapping(entries["control"], ("socket",), "control")
            if "socket" in control:
                self.raw.control_socket = self.string(control["socket"], "a socket path")
        if "data_plane" in entries:
            self.raw.data_plane = self.string(entries["data_plane"], "a data plane name")
        if "metrics" in entries:
            metrics = self.mapping(entries["metrics"], ("listen", "forwarding"), "metrics")
            if "listen" in metrics:
                self.raw.metrics_listen = self.string(metrics["listen"], "an ADDR:PORT to listen on")
            if "forwarding" in metrics:
                self.raw.metrics_forwarding = self.scalar(metrics["forwarding"], "true or false")
        if "limits" in entries:
            self.raw.limits.update(self.free_mapping(entries["limits"], "limits",
                                                     lambda n: Located(self.python(n), self.loc(n))))
            self.raw.limits_loc = self.loc(entries["limits"])
        if "plugins" in entries:
            self.plugins(entries["plugins"])
        if "tables" in entries:
            self.tables(entries["tables"])
        if "instances" in entries:
            for node in self.sequence(entries["instances"], "instances"):
                self.instance(node)

    def plugins(self, node: Node) -> None:
        if not isinstance(node, MappingNode):
            self.report(node, "expected a mapping of plugin names to settings")
            return
        for key_node, value_node in node.value:
            name = self.string(key_node, "a plugin name")
            if name is None:
                continue
            settings = self.python(value_node)
            self.raw.plugins.append((name, {} if settings is None else settings))

    def tables(self, node: Node) -> None:
        if not isinstance(node, MappingNode):
            self.report(node, "expected a mapping of table names to rule lists")
            return
        for key_node, value_node in node.value:
            name = self.string(key_node, "a table name")
            if name is not None:
                self.raw.tables.append(RawTable(name, self.rules(value_node), name.loc))

    def rules(self, node: Node) -> tuple:
        boxes = []
        for child in self.sequence(node, "rules"):
            text = self.string(child, "a rule box string like '*(239.1.0.0/16 | *)'")
            if text is None:
                continue
            quoted = isinstance(child, ScalarNode) and child.style in ("'", '"')
            loc = Loc(text.loc.file, text.loc.line, text.loc.column + (1 if quoted else 0))
            box = parse_rule_box(text.value, loc, self.raw.problems)
            if box is not None:
                boxes.append(box)
        return tuple(boxes)

    def instance(self, node: Node) -> None:
        entries = self.mapping(node, _INSTANCE_KEYS, "an instance")
        name = self.string(entries["name"], "an instance name") if "name" in entries else None
        if name is None:
            if "name" not in entries and isinstance(node, MappingNode):
                self.report(node, "expected a 'name' for the instance")
            return
        instance = RawInstance(name=name, loc=self.loc(node))
        if "table" in entries:
            instance.table = self.scalar(entries["table"], "a routing table number")
        if "upstreams" in entries:
            instance.upstreams = self.strings(entries["upstreams"], "upstreams", "an interface name")
        if "downstreams" in entries:
            instance.downstreams = self.strings(entries["downstreams"], "downstreams",
                                                "an interface name")
        for key, target in (("timers", instance.timers), ("limits", instance.limits),
                            ("querier", instance.querier)):
            if key in entries:
                target.update(self.free_mapping(entries[key], key,
                                                lambda n: Located(self.python(n), self.loc(n))))
        if "timers" in entries:
            instance.timers_loc = self.loc(entries["timers"])
        self.raw.instances.append(instance)
        self.rule_matching(name, entries)
        if "filters" in entries:
            upstreams = {item.value for item in instance.upstreams}
            for child in self.sequence(entries["filters"], "filters"):
                self.filter(name, child, upstreams)

    def rule_matching(self, name: Located, entries: dict[str, Node]) -> None:
        for key, direction, choices in (("upstream_selection", "in", ("all", "first", "mutex")),
                                        ("upstream_forwarding", "out", ("all", "first"))):
            if key not in entries:
                continue
            kind = self.string(entries[key], " or ".join(choices))
            if kind is None:
                continue
            if kind.value not in choices:
                self.report(entries[key], f"bad {key} {kind.value!r}: expected "
                            f"{', '.join(choices)}")
                continue
            mutex = None
            if kind.value == "mutex":
                if "mutex_interval" not in entries:
                    self.report(entries[key], "expected 'mutex_interval' (seconds) with mutex")
                    continue
                seconds = self.scalar(entries["mutex_interval"], "a number of seconds")
                if seconds is None:
                    continue
                value = seconds.value
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = value * 1000.0
                mutex = Located(value, seconds.loc)
            role = Located("upstream", kind.loc)
            self.raw.rule_matchings.append(RawRuleMatching(name, role, Located(direction, kind.loc),
                                                           kind, mutex, kind.loc))

    def filter(self, instance: Located, node: Node, upstreams: set[str]) -> None:
        entries = self.mapping(node, _FILTER_KEYS, "a filter")
        values: dict[str, Located] = {}
        for key, choices in (("interface", None), ("direction", ("in", "out")),
                             ("mode", ("whitelist", "blacklist"))):
            if key not in entries:
                self.report(node, f"expected '{key}' in the filter")
                return
            item = self.string(entries[key], key)
            if item is None:
                return
            if choices is not None and item.value.lower() not in choices:
                self.report(entries[key], f"bad {key} {item.value!r}: expected {' or '.join(choices)}")
                return
            values[key] = item if choices is None else Located(item.value.lower(), item.loc)
        if ("rules" in entries) == ("table" in entries):
            self.report(node, "expected exactly one of 'rules' or 'table' in the filter")
            return
        if "table" in entries:
            table_name = self.string(entries["table"], "a table name")
            if table_name is None:
                return
            table: RawTable | RawTableRef = RawTableRef(table_name, table_name.loc)
        else:
            table = RawTable(None, self.rules(entries["rules"]), self.loc(entries["rules"]))
        interface = values["interface"]
        role = Located("upstream" if interface.value in upstreams else "downstream", interface.loc)
        self.raw.filters.append(RawFilter(instance, role, interface, values["direction"],
                                          values["mode"], table, self.loc(node)))


def parse(text: str, file: str = "<string>") -> RawConfig:
    """Compose ``text`` as YAML into a ``RawConfig``; problems are in its ``problems``."""
    reader = _Reader(file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        message = " ".join(part for part in (error.context, error.problem) if part)
        reader.raw.problems.append(ConfigProblem(file, line, column, f"YAML syntax: {message}"))
        return reader.raw
    except yaml.YAMLError as error:
        reader.raw.problems.append(ConfigProblem(file, 0, 0, f"YAML syntax: {error}"))
        return reader.raw
    reader.document(root)
    return reader.raw
