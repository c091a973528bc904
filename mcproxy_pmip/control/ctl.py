"""``mcproxy-pmip-ctl``: the command-line front of the control socket.

``mcproxy-pmip-ctl [--socket PATH] [--json] CMD [POSITIONAL...] [--name VALUE...]``
sends one request and prints the result as human-readable text (tables for
lists of rows), or the raw reply result as JSON with ``--json``. Option names
map to argument names (``--mn-id`` -> ``mn_id``); ``COMMAND_SPECS`` gives
positional names and value types for the known commands, other commands take
string options; ``--args JSON`` merges a JSON object into the arguments.
An error reply exits with status 1 and the message on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mcproxy_pmip import __version__
from mcproxy_pmip.control.client import ControlClient, ControlError
from mcproxy_pmip.control.protocol import DEFAULT_SOCKET_PATH


class UsageError(Exception):
    """Command-line arguments that do not form a request."""


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"not valid JSON: {text!r} ({exc.msg})") from None


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"not an integer: {text!r}") from None


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """How the CLI maps tokens to one command's arguments.

    ``positional``: argument names taken from bare tokens, in order.
    ``types``: converters by argument name (default: the string as is).
    ``repeated``: arguments given as lists (each occurrence of the option adds one).
    ``options``: argument names the command takes as ``--name VALUE`` (for help and completion).
    ``values``: the known values of a positional argument (for completion).
    ``summary``: one line saying what the command does (for the man page).
    """

    positional: tuple[str, ...] = ()
    types: dict[str, Callable[[str], Any]] = field(default_factory=dict)
    repeated: frozenset[str] = frozenset()
    options: tuple[str, ...] = ()
    values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    summary: str = ""


def _on_interface(summary: str) -> CommandSpec:
    return CommandSpec(positional=("instance", "interface"), summary=summary)


COMMAND_SPECS: dict[str, CommandSpec] = {
    "commands": CommandSpec(summary="the command names the daemon answers"),
    "status": CommandSpec(summary="daemon summary: pid, uptime, instances, plugins, counters"),
    "version": CommandSpec(summary="program and protocol versions"),
    "instances": CommandSpec(summary="one row per instance: upstreams, downstreams, table"),
    "routes": CommandSpec(summary="one row per forwarding entry: source, group, iif, oifs, packets"),
    "groups": CommandSpec(options=("instance", "interface"),
                          summary="one row per (instance, interface, group), optionally filtered"),
    "add-downstream": _on_interface("add a downstream interface to an instance"),
    "del-downstream": _on_interface("remove a downstream interface from an instance"),
    "add-upstream": _on_interface("add an upstream interface to an instance"),
    "del-upstream": _on_interface("remove an upstream interface from an instance"),
    "binding": CommandSpec(positional=("event",),
                           types={"lifetime": _integer, "context": _json_value, "forwarded_last": _json_value},
                           repeated=frozenset({"hnp"}),
                           options=("mn_id", "access_if", "tunnel_if", "lma", "hnp", "lifetime",
                                    "context", "previous_mag", "next_mag", "forwarded_last"),
                           values={"event": ("attach", "refresh", "detach", "prepare")},
                           summary="pmipv6: a mobile node's binding attached, refreshed, detached or prepared"),
    "bindings": CommandSpec(summary="pmipv6: one row per binding"),
    "context-export": CommandSpec(positional=("mn_id",),
                                  summary="pmipv6: a mobile node's multicast context (RFC 7411)"),
    "handover-prepare": CommandSpec(options=("mn_id", "target"),
                                    summary="pmipv6: push a mobile node's context to the next MAG"),
}


def build_arguments(cmd: str, tokens: Sequence[str]) -> dict[str, Any]:
    """The request arguments for ``cmd`` from the tokens after it."""
    spec = COMMAND_SPECS.get(cmd, CommandSpec())
    arguments: dict[str, Any] = {}
    positional = list(spec.positional)
    items = list(tokens)
    while items:
        token = items.pop(0)
        if token.startswith("--") and len(token) > 2:
            name, has_value, value = token[2:].partition("=")
            if not has_value:
                if not items:
                    raise UsageError(f"option {token} needs a value")
                value = items.pop(0)
            name = name.replace("-", "_")
            if name == "args":
                extra = _json_value(value)
                if not isinstance(extra, dict):
                    raise UsageError("--args needs a JSON object")
                arguments.update(extra)
                continue
            converted = spec.types.get(name, str)(value)
            if name in spec.repeated:
                arguments.setdefault(name, []).append(converted)
            elif name in arguments:
                raise UsageError(f"option --{name.replace('_', '-')} given twice")
            else:
                arguments[name] = converted
        else:
            if not positional:
                raise UsageError(f"unexpected argument {token!r} for {cmd}")
            name = positional.pop(0)
            arguments[name] = spec.types.get(name, str)(token)
    return arguments


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(_cell(item) for item in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as an aligned text table; columns in order of first appearance."""
    if not rows:
        return "(none)"
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.upper().ljust(width) for column, width in zip(columns, widths)).rstrip()]
    lines.extend("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip()
                 for line in cells)
    return "\n".join(lines)


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def format_result(result: Any, indent: str = "") -> str:
    """A reply result as text: mappings as ``key: value`` lines, lists of rows as tables."""
    if result is None:
        return f"{indent}ok"
    if _is_rows(result):
        return "\n".join(indent + line for line in format_table(result).splitlines())
    if isinstance(result, list):
        return "\n".join(indent + _cell(item) for item in result) if result else f"{indent}(none)"
    if not isinstance(result, dict):
        return indent + _cell(result)
    lines: list[str] = []
    width = max((len(key) for key in result), default=0)
    for key, value in result.items():
        if _is_rows(value) or isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(format_result(value, indent + "  "))
        else:
            lines.append(f"{indent}{(key + ':').ljust(width + 1)} {_cell(value)}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcproxy-pmip-ctl",
        description="Send one command to a running mcproxy-pmip daemon.",
        epilog="Examples: mcproxy-pmip-ctl groups --instance mag1; "
               "mcproxy-pmip-ctl binding attach --mn-id mn1 --access-if acc0 --tunnel-if tun0 "
               "--lifetime 3600; mcproxy-pmip-ctl commands")
    parser.add_argument("--socket", default=DEFAULT_SOCKET_PATH, help="control socket path")
    parser.add_argument("--json", action="store_true", help="print the raw JSON result")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the reply")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("cmd", help="command name (see 'commands')")
    parser.add_argument("tokens", nargs=argparse.REMAINDER, help="positional arguments and --name VALUE options")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    try:
        arguments = build_arguments(options.cmd, options.tokens)
    except UsageError as exc:
        print(f"mcproxy-pmip-ctl: {exc}", file=sys.stderr)
        return 2
    try:
        with ControlClient(options.socket, timeout=options.timeout) as client:
            result = client.request(options.cmd, **arguments)
    except ControlError as exc:
        print(f"mcproxy-pmip-ctl: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    if options.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
