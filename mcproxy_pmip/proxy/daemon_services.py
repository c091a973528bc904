"""The daemon's pieces around the Proxy as Twisted services: rp_filter, a plugin, the control socket.

Each does at ``startService`` what the daemon needs started and undoes it at
``stopService``; ``daemon`` puts them in one ``SequentialServices`` with the
Proxy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from twisted.application import service
from twisted.internet import defer

from mcproxy_pmip.control.protocol import CommandHandler
from mcproxy_pmip.control.server import ControlService
from mcproxy_pmip.kernel import sysctl

log = logging.getLogger(__name__)


class RpFilterReset(service.Service):
    """Turns the interfaces' rp_filter off while running; puts the old values back at stop.

    The old values are kept in a state file while running (``kernel.sysctl``),
    so a start after ``kill -9`` puts them back before recording its own.
    """

    def __init__(self, interfaces: list[str]) -> None:
        self._interfaces = interfaces
        self._previous: dict[str, int] = {}

    def startService(self) -> None:
        self._previous = sysctl.disable_rp_filter(self._interfaces)
        super().startService()

    def stopService(self):
        super().stopService()
        sysctl.finish_rp_filter(self._previous)


class PluginService(service.Service):
    """Runs one plugin: ``plugin.start(api, settings)``, and ``plugin.stop()`` whose failure is only logged."""

    def __init__(self, plugin, api, settings) -> None:
        self.plugin = plugin
        self._api = api
        self._settings = settings

    def startService(self) -> None:
        self.plugin.start(self._api, self._settings)
        super().startService()

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        try:
            yield defer.maybeDeferred(self.plugin.stop)
        except Exception:
            log.exception("plugin_stop_failed plugin=%s", self.plugin.name)


class ControlSocket(service.Service):
    """The control socket server, its command table taken at start (after the plugins started)."""

    def __init__(self, path: str, commands: Callable[[], Mapping[str, CommandHandler]], reactor) -> None:
        self._path = path
        self._commands = commands
        self._reactor = reactor
        self._server: ControlService | None = None

    def startService(self) -> None:
        self._server = ControlService(self._path, self._commands(), reactor=self._reactor)
        self._server.startService()
        super().startService()

    def requests(self):
        """The server's request counts by (command, result); None before start."""
        return None if self._server is None else self._server.factory.requests

    def stopService(self):
        super().stopService()
        return self._server.stopService()
