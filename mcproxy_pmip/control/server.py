"""The control socket server: JSON lines over a UNIX socket on the Twisted reactor.

``ControlService`` listens (mode 0600, parent directory created, a stale
socket replaced, the file removed on stop); each connection is a
``ControlProtocol`` that parses requests (control/protocol.py), dispatches them
through a command table and writes one reply line per request. The table is
``core_commands(backend)`` (the daemon's ``ControlBackend``) plus the plugins'
commands (``mcproxy_pmip.plugin.collect_commands``). Bad input is answered
with an error and the connection stays usable, whatever the bytes: invalid
JSON, deep nesting, huge numbers, wrong types (control/protocol.py turns all
of them into ``CommandError``), and over-long lines, which are answered once
and skipped up to their newline. A handler that raises something unexpected
is logged with its traceback and answered with "internal-error".
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from collections import Counter
from collections.abc import Mapping
from typing import Any, Protocol

from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorUNIX
from twisted.internet.protocol import Factory
from twisted.internet.protocol import Protocol as StreamProtocol
from twisted.python.failure import Failure

from mcproxy_pmip.control import protocol as p
from mcproxy_pmip.control.protocol import DEFAULT_SOCKET_PATH, Arguments, CommandError, CommandHandler
from mcproxy_pmip.errors import ConfigError, KernelError, McproxyError

log = logging.getLogger(__name__)

class ControlBackend(Protocol):
    """The daemon's side of the core commands. Methods may return a value or a Deferred.

    Refusals the client should see raise ``CommandError`` (codes such as
    "unknown-instance", "unknown-interface") or ``McproxyError``.
    """

    def status(self) -> dict[str, Any]:
        """Daemon-wide summary: pid, uptime, instance count, plugins, counters."""

    def version(self) -> dict[str, Any]:
        """Program version, protocol versions supported."""

    def instances(self) -> list[dict[str, Any]]:
        """One row per instance: name, upstreams, downstreams, table."""

    def groups(self, instance: str | None, interface: str | None) -> list[dict[str, Any]]:
        """One row per (instance, interface, group): filter mode, sources, version, timers."""

    def routes(self) -> list[dict[str, Any]]:
        """One row per MFC entry: instance, family, source, group, iif, oifs, packet counter."""

    def add_downstream(self, instance: str, interface: str) -> Any:
        ...

    def del_downstream(self, instance: str, interface: str) -> Any:
        ...

    def add_upstream(self, instance: str, interface: str) -> Any:
        ...

    def del_upstream(self, instance: str, interface: str) -> Any:
        ...


def core_commands(backend: ControlBackend) -> dict[str, CommandHandler]:
    """The core command table over ``backend`` (argument checking done here)."""

    def no_arguments(method):
        def handler(args: Arguments) -> Any:
            args.finish()
            return method()
        return handler

    def groups(args: Arguments) -> Any:
        instance = args.string("instance", required=False)
        interface = args.string("interface", required=False)
        args.finish()
        return backend.groups(instance, interface)

    def on_interface(method):
        def handler(args: Arguments) -> Any:
            instance = args.string("instance")
            interface = args.string("interface")
            args.finish()
            return defer.maybeDeferred(method, instance, interface).addCallback(
                lambda result: {"instance": instance, "interface": interface}
                if result is None else result)
        return handler

    return {
        "status": no_arguments(backend.status),
        "version": no_arguments(backend.version),
        "instances": no_arguments(backend.instances),
        "routes": no_arguments(backend.routes),
        "groups": groups,
        "add-downstream": on_interface(backend.add_downstream),
        "del-downstream": on_interface(backend.del_downstream),
        "add-upstream": on_interface(backend.add_upstream),
        "del-upstream": on_interface(backend.del_upstream),
    }


def _error_code(exc: McproxyError) -> str:
    if isinstance(exc, KernelError):
        return "kernel-error"
    if isinstance(exc, ConfigError):
        return "config-error"
    return "proxy-error"


class ControlProtocol(StreamProtocol):
    """One control connection: a request per line in, a reply per line out.

    A line longer than ``MAX_LENGTH`` is answered with "line-too-long" as soon
    as it is known to be too long; its bytes are dropped (never buffered)
    up to its newline, and the next line is read as usual.
    """

    delimiter = b"\n"
    MAX_LENGTH = p.MAX_LINE_LENGTH

    def __init__(self, commands: Mapping[str, CommandHandler], requests: Counter | None = None) -> None:
        self._commands = commands
        #: requests answered, by (command, "ok" | error code); unknown commands count as "-"
        self.requests: Counter[tuple[str, str]] = Counter() if requests is None else requests
        self._buffer = b""
        self._skipping = False

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while self.transport is not None and not self.transport.disconnecting:
            end = self._buffer.find(self.delimiter)
            if end < 0:
                break
            line, self._buffer = self._buffer[:end], self._buffer[end + 1:]
            if self._skipping:
                self._skipping = False
            elif len(line) > self.MAX_LENGTH:
                self.lineLengthExceeded(len(line))
            else:
                self.lineReceived(line)
        if len(self._buffer) > self.MAX_LENGTH:
            if not self._skipping:
                self.lineLengthExceeded(len(self._buffer))
            self._skipping = True
            self._buffer = b""

    def lineReceived(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if not line.strip():
            return
        try:
            request = p.parse_request(line)
        except p.RequestError as exc:
            self._send(p.encode_error(exc.request_id, exc.code, exc.message))
            return
        except CommandError as exc:
            self._send(p.encode_error(None, exc.code, exc.message))
            return
        handler = self._commands.get(request.cmd)
        if handler is None:
            self.requests[("-", p.UNKNOWN_COMMAND)] += 1
            names = ", ".join(sorted(self._commands))
            self._send(p.encode_error(request.request_id, p.UNKNOWN_COMMAND,
                                      f"unknown command {request.cmd!r}; commands: {names}"))
            return
        d = defer.maybeDeferred(handler, Arguments(request.arguments))
        d.addCallback(self._result_reply, request)
        d.addErrback(self._failure_reply, request)
        d.addCallback(self._send)

    def _result_reply(self, result: Any, request: p.Request) -> bytes:
        self.requests[(request.cmd, "ok")] += 1
        return p.encode_result(request.request_id, result)

    def _failure_reply(self, failure: Failure, request: p.Request) -> bytes:
        exc = failure.value
        self.requests[(request.cmd, exc.code if isinstance(exc, CommandError) else
                       _error_code(exc) if isinstance(exc, McproxyError) else p.INTERNAL_ERROR)] += 1
        if isinstance(exc, CommandError):
            log.debug("control-refused cmd=%s code=%s message=%s", request.cmd, exc.code, exc.message)
            return p.encode_error(request.request_id, exc.code, exc.message)
        if isinstance(exc, McproxyError):
            log.warning("control-failed cmd=%s error=%s", request.cmd, exc)
            return p.encode_error(request.request_id, _error_code(exc), str(exc))
        log.error("control-internal-error cmd=%s", request.cmd,
                  exc_info=(failure.type, failure.value, failure.getTracebackObject()))
        return p.encode_error(request.request_id, p.INTERNAL_ERROR,
                              f"{failure.type.__name__}: {exc} (see the daemon log)")

    def _send(self, data: bytes) -> None:
        if self.transport is None or self.transport.disconnecting:
            return
        self.transport.write(data)

    def lineLengthExceeded(self, length: int) -> None:
        log.warning("control-line-too-long length=%d", length)
        self._send(p.encode_error(None, p.LINE_TOO_LONG,
                                  f"request longer than {p.MAX_LINE_LENGTH} bytes (skipped to its newline)"))


class ControlFactory(Factory):
    """Builds a ``ControlProtocol`` per connection; a ``commands`` command lists the table."""

    def __init__(self, commands: Mapping[str, CommandHandler]) -> None:
        self.commands = dict(commands)
        self.commands.setdefault("commands", self._list_commands)
        #: every connection's answered requests (``ControlProtocol.requests``)
        self.requests: Counter[tuple[str, str]] = Counter()

    def _list_commands(self, args: Arguments) -> list[str]:
        args.finish()
        return sorted(self.commands)

    def buildProtocol(self, addr: Any) -> ControlProtocol:
        proto = ControlProtocol(self.commands, self.requests)
        proto.factory = self
        return proto


class ControlSocketError(McproxyError):
    """The control socket cannot be created (path in use, not a socket, no permission)."""


def prepare_socket_path(path: str) -> None:
    """Create the parent directory (0700) and remove a stale socket left by a dead daemon.

    A socket somebody still accepts on, or a file that is not a socket, is
    left alone and reported as ``ControlSocketError``.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=0o700, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlSocketError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ControlSocketError(f"cannot probe {path}: {exc}") from exc
        log.info("control-stale-socket-removed path=%s", path)
        os.unlink(path)
    else:
        raise ControlSocketError(f"another daemon is listening on {path}")
    finally:
        probe.close()


class ControlService(service.Service):
    """Listens on the control socket while running; the socket file goes on stop."""

    def __init__(self, path: str = DEFAULT_SOCKET_PATH, commands: Mapping[str, CommandHandler] | None = None,
                 reactor: IReactorUNIX | None = None) -> None:
        self.path = path
        self.factory = ControlFactory(commands or {})
        self._reactor = reactor
        self._port = None

    def startService(self) -> None:
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        prepare_socket_path(self.path)
        # No moment where the socket exists with broader permissions than 0600.
        previous_umask = os.umask(0o177)
        try:
            self._port = reactor.listenUNIX(self.path, self.factory, mode=0o600)
        finally:
            os.umask(previous_umask)
        log.info("control-listening path=%s", self.path)
        super().startService()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        port, self._port = self._port, None
        if port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening)
