"""The control protocol: one JSON object per line each way, and its error vocabulary.

A request is ``{"id": 7, "cmd": "NAME", ...arguments}``; the reply is
``{"id": 7, "ok": true, "result": ...}`` or
``{"id": 7, "ok": false, "error": {"code": "...", "message": "..."}}``.
This module holds what both ends share: framing limits, request parsing,
reply encoding, ``CommandError`` and ``Arguments`` (typed access to a
request's arguments that rejects unknown or mistyped ones). It performs no IO.
See docs/control.md for every command.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcproxy_pmip import jsonline

#: Where the daemon listens unless told otherwise.
DEFAULT_SOCKET_PATH = "/run/mcproxy-pmip/control.sock"

#: The longest line either end accepts (the newline excluded).
MAX_LINE_LENGTH = 1024 * 1024

#: Error codes of the protocol itself; commands add their own (e.g. "unknown-mn").
BAD_JSON = "bad-json"
BAD_REQUEST = "bad-request"
UNKNOWN_COMMAND = "unknown-command"
BAD_ARGUMENT = "bad-argument"
INTERNAL_ERROR = "internal-error"
LINE_TOO_LONG = "line-too-long"

#: A command handler takes the request's arguments and returns a JSON-able
#: value or a Deferred that fires with one; it raises ``CommandError`` to refuse.
CommandHandler = Callable[["Arguments"], Any]


class CommandError(Exception):
    """A command refused with a machine-readable ``code`` and a human ``message``."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class RequestError(CommandError):
    """A ``CommandError`` raised after the request's id was read."""

    def __init__(self, request_id: Any, error: CommandError) -> None:
        super().__init__(error.code, error.message)
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request line. ``request_id`` is echoed verbatim (any JSON scalar or None)."""

    request_id: Any
    cmd: str
    arguments: dict[str, Any]


def parse_request(line: bytes) -> Request:
    """Parse one request line; raises ``CommandError`` (the reply then carries the id if known).

    Whatever the bytes, the only exception is ``CommandError``: what
    ``jsonline.decode`` refuses (too deep, too long numbers, NaN / Infinity,
    invalid UTF-8, not JSON) is "bad-json".
    """
    try:
        obj = jsonline.decode(line)
    except ValueError as exc:
        raise CommandError(BAD_JSON, f"bad request line: {exc}") from None
    if not isinstance(obj, dict):
        raise CommandError(BAD_REQUEST, "request must be a JSON object")
    request_id = obj.pop("id", None)
    if isinstance(request_id, (dict, list)):
        raise CommandError(BAD_REQUEST, "id must be a string, a number or null")
    cmd = obj.pop("cmd", None)
    if cmd is None:
        raise RequestError(request_id, CommandError(BAD_REQUEST, "missing 'cmd'"))
    if not isinstance(cmd, str):
        raise RequestError(request_id, CommandError(BAD_REQUEST, "'cmd' must be a string"))
    return Request(request_id, cmd, obj)


def encode_result(request_id: Any, result: Any) -> bytes:
    return _encode({"id": request_id, "ok": True, "result": result})


def encode_error(request_id: Any, code: str, message: str) -> bytes:
    return _encode({"id": request_id, "ok": False, "error": {"code": code, "message": message}})


def _encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


class Arguments:
    """Typed, checked access to a request's arguments.

    Each getter raises ``CommandError("bad-argument")`` on a missing required
    argument or a wrong type; ``finish()`` refuses arguments nobody asked for,
    so a typo never passes silently.
    """

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = dict(values)
        self._used: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def raw(self) -> dict[str, Any]:
        return dict(self._values)

    def _get(self, name: str, kinds: tuple[type, ...], required: bool, kind_name: str) -> Any:
        self._used.add(name)
        value = self._values.get(name)
        if value is None:
            if required:
                raise CommandError(BAD_ARGUMENT, f"missing argument '{name}'")
            return None
        if isinstance(value, bool) and bool not in kinds:
            raise CommandError(BAD_ARGUMENT, f"'{name}' must be {kind_name}")
        if not isinstance(value, kinds):
            raise CommandError(BAD_ARGUMENT, f"'{name}' must be {kind_name}")
        return value

    def string(self, name: str, required: bool = True) -> str | None:
        value = self._get(name, (str,), required, "a string")
        if value == "":
            raise CommandError(BAD_ARGUMENT, f"'{name}' must not be empty")
        return value

    def integer(self, name: str, required: bool = True, minimum: int | None = None) -> int | None:
        value = self._get(name, (int,), required, "an integer")
        if value is not None and minimum is not None and value < minimum:
            raise CommandError(BAD_ARGUMENT, f"'{name}' must be at least {minimum}")
        return value

    def boolean(self, name: str, required: bool = True) -> bool | None:
        return self._get(name, (bool,), required, "true or false")

    def string_list(self, name: str, required: bool = True) -> list[str] | None:
        value = self._get(name, (list,), required, "a list of strings")
        if value is not None and not all(isinstance(item, str) for item in value):
            raise CommandError(BAD_ARGUMENT, f"'{name}' must be a list of strings")
        return value

    def object_list(self, name: str, required: bool = True) -> list[dict[str, Any]] | None:
        value = self._get(name, (list,), required, "a list of objects")
        if value is not None and not all(isinstance(item, dict) for item in value):
            raise CommandError(BAD_ARGUMENT, f"'{name}' must be a list of objects")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self._values) - self._used)
        if unknown:
            raise CommandError(BAD_ARGUMENT, f"unknown argument(s): {', '.join(unknown)}")
