"""Daemon: runs the Proxy, its plugins and the control socket on the global reactor.

The data plane is chosen first (``--data-plane`` or the configuration's
``data_plane``; ``auto`` chooses, and the choice is logged). The pieces are
child services of one ``SequentialServices``, started in order: rp_filter
(``-r``), the Proxy (kernel state), the plugins, the control socket; they
stop in reverse, before the reactor shuts down, so SIGTERM / SIGINT leave no
vif, MFC entry, rule or socket file behind. SIGHUP (held by
``proxy.hangup`` from the command line's first line, so one that comes
during start-up waits for the reactor) re-reads the configuration file and
applies it all or nothing: a file that does not parse or validate is logged
and changes nothing; a file whose application fails half-way is rolled back
(``proxy.reload``) and logged. Reloads run one at a time; a burst of SIGHUPs
coalesces. The daemon's configuration is always the one the Proxy runs.
Under systemd (``$NOTIFY_SOCKET``, ``mcproxy_pmip.notify``) the daemon says
READY=1 once every piece has started, RELOADING=1 / READY=1 around a reload,
STOPPING=1 when it stops, and pings the watchdog from the reactor.
The exit status says how the run ended."""

from __future__ import annotations

import logging
import os
import sys

from twisted.internet import defer

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config import load_config
from mcproxy_pmip.config.model import Config, MetricsConfig
from mcproxy_pmip.control.server import core_commands
from mcproxy_pmip.dataplane.choice import choose, open_plane
from mcproxy_pmip.errors import ConfigError, McproxyError
from mcproxy_pmip.notify import Notifier, Watchdog, watchdog_interval
from mcproxy_pmip.plugin import collect_commands
from mcproxy_pmip.proxy.daemon_services import ControlSocket, PluginService, RpFilterReset
from mcproxy_pmip.proxy.hangup import HangupLatch
from mcproxy_pmip.proxy.reload import ReloadFailed
from mcproxy_pmip.proxy.privilege_service import PrivilegeDrop
from mcproxy_pmip.proxy.service_sequence import SequentialServices

log = logging.getLogger(__name__)

STATUS_INTERVAL = 10.0


def open_packet_socket(family: Family):
    """The kernel's packet socket of ``family`` (IGMP or MLD), for any number of links."""
    from mcproxy_pmip.kernel.packet_socket import IgmpPacketSocket, MldPacketSocket
    return IgmpPacketSocket() if family is Family.IPV4 else MldPacketSocket()


class Daemon:
    """One run of the daemon; ``run()`` returns the exit status."""

    def __init__(self, config: Config, config_path: str, plugins: list, *, control_path: str | None,
                 status: bool, reset_rp_filter: bool, seed: int | None,
                 require_router_alert: bool, data_plane: str | None = None, user: str | None = None,
                 hangup: HangupLatch | None = None, metrics: MetricsConfig | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.plugins = plugins
        self.control_path = control_path
        self.print_status = status
        self.reset_rp_filter = reset_rp_filter
        self.seed = seed
        self.require_router_alert = require_router_alert
        self.data_plane = data_plane
        self.user = user
        self.exit_code = 0
        self.proxy = None
        self.api = None
        self.services: SequentialServices | None = None
        self.hangup = hangup
        self.metrics = metrics
        self.notifier = Notifier(None)
        self.watchdog: Watchdog | None = None

    def run(self) -> int:
        from twisted.internet import reactor
        self.reactor = reactor
        if self.hangup is None:
            self.hangup = HangupLatch()
            self.hangup.install()
        self.notifier = Notifier.from_environ()
        timeout = watchdog_interval(os.environ, os.getpid())
        if timeout is not None and self.notifier.enabled:
            self.watchdog = Watchdog(self.notifier, reactor, timeout)
            reactor.callWhenRunning(self.watchdog.start)
        reactor.callWhenRunning(self._start)
        reactor.addSystemEventTrigger("before", "shutdown", self._stop)
        reactor.run()
        return self.exit_code

    def _start(self) -> None:
        try:
            self.services = self._services()
            self.services.startService()
        except (McproxyError, OSError, ValueError) as exc:
            log.error("start_failed error=%s", exc)
            print(f"mcproxy-pmip: {exc}", file=sys.stderr)
            self.notifier.status(f"start failed: {exc}")
            self.exit_code = 1
            self.reactor.stop()
            return
        except Exception:
            log.exception("start_failed")
            self.notifier.status("start failed (see the log)")
            self.exit_code = 1
            self.reactor.stop()
            return
        self.hangup.connect(self.reload, self.reactor.callFromThread)
        log.info("daemon_started instances=%d protocols=%s control=%s plugins=%s",
                 len(self.proxy.instances), ",".join(self.config.protocols), self.control_path or "-",
                 ",".join(p.name for p in self.plugins) or "-")
        self.notifier.ready(self._running_status("started"))
        if self.print_status:
            self._status()

    def _services(self) -> SequentialServices:
        """The daemon's pieces in start order: rp_filter, the Proxy, the plugins, the control socket,
        the metrics endpoint (``--metrics``, ``mcproxy_pmip.metrics``)."""
        from mcproxy_pmip.proxy.api import ProxyApi
        from mcproxy_pmip.proxy.proxy import Proxy
        services = SequentialServices()
        if self.reset_rp_filter:
            names = {n for i in self.config.instances for n in i.interfaces}
            RpFilterReset(sorted(names)).setServiceParent(services)
        dynamic = bool(self.plugins)
        choice = choose(self.data_plane or self.config.data_plane, self.config, dynamic)
        log.info("data_plane_chosen plane=%s reason=%s", choice.name, choice.reason)
        self.proxy = Proxy(self.config, self.reactor, open_plane(choice.name, self.config, dynamic),
                           open_packet_socket, require_router_alert=self.require_router_alert,
                           seed=self.seed)
        self.proxy.setServiceParent(services)
        self.api = ProxyApi(self.proxy, [p.name for p in self.plugins])
        for plugin in self.plugins:
            PluginService(plugin, self.api, self._plugin_settings(plugin.name)).setServiceParent(services)
        control = None
        if self.control_path:
            control = ControlSocket(self.control_path,
                                    lambda: collect_commands(core_commands(self.api), self.plugins), self.reactor)
            control.setServiceParent(services)
        if self.metrics is not None:
            from mcproxy_pmip.metrics import MetricsService, ProxyCollector
            collector = ProxyCollector(self.proxy, self.plugins, control.requests if control else lambda: None,
                                       self.metrics.forwarding)
            MetricsService(self.metrics, collector, self.reactor).setServiceParent(services)
        PrivilegeDrop(self.user, self.control_path).setServiceParent(services)
        return services

    def _plugin_settings(self, name: str):
        plugin_config = self.config.plugin(name)
        return plugin_config.settings if plugin_config is not None else {}

    def _status(self) -> None:
        from mcproxy_pmip.proxy.status import render
        print(render(self.api), flush=True)
        print("-" * 60, flush=True)
        self.reactor.callLater(STATUS_INTERVAL, self._status)

    def reload(self) -> None:
        """Re-read the file and apply it all or nothing; on any refusal the old configuration runs on."""
        if self.proxy is None or not self.proxy.running:
            log.warning("reload_skipped reason=the proxy is not running")
            return
        self.notifier.reloading(f"reloading {self.config_path}")
        outcome = "reload raised an error"
        try:
            outcome = self._reload()
        finally:
            self.notifier.ready(self._running_status(outcome))

    def _running_status(self, event: str) -> str:
        """The STATUS= line while running: what happened last and what runs."""
        return (f"running, {event}: {len(self.proxy.instances)} instance(s), "
                f"protocols {','.join(self.config.protocols)}")

    def _reload(self) -> str:
        """The reload itself; returns its outcome for the status line."""
        log.info("reload_started file=%s signals=%d coalesced=%d", self.config_path,
                 self.hangup.received, self.hangup.coalesced)
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload_refused file=%s problems=%d reason=the file does not validate; "
                      "the old configuration keeps running\n%s", self.config_path, len(exc.problems), exc)
            return "reload refused (the file does not validate)"
        self._ignored_at_reload(new)
        try:
            self.proxy.reload(new)
        except ReloadFailed as exc:
            log.error("reload_failed file=%s step=%r error=%s rolled_back=%s reason=the old configuration "
                      "keeps running", self.config_path, exc.step, exc.cause,
                      "complete" if exc.rolled_back else "partial")
            return "reload failed"
        self.config = self.proxy.config
        return "reloaded"

    def _ignored_at_reload(self, new: Config) -> None:
        """Daemon-level lines a reload cannot change: logged; they take effect at the next start."""
        if new.plugins != self.config.plugins:
            log.warning("reload_plugins_ignored reason=plugins change only at restart")
        if new.metrics != self.config.metrics:
            log.warning("reload_metrics_ignored reason=the metrics endpoint changes only at restart")
        if new.control_socket != self.config.control_socket:
            log.warning("reload_control_socket_ignored reason=the control socket changes only at restart")

    @defer.inlineCallbacks
    def _stop(self):
        self.notifier.stopping("stopping")
        if self.hangup is not None:
            self.hangup.disconnect()
        if self.services is not None:
            yield self.services.stopService()
        if self.watchdog is not None:
            self.watchdog.stop()
        self.notifier.close()
        log.info("daemon_stopped exit=%d", self.exit_code)
