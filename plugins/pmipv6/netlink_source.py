"""Binding events read from the kernel's routing table, for PMIPv6 daemons that only program routes.

A MAG's PMIPv6 daemon (RFC 5213 §6.10, forwarding considerations) installs a
route to each MN's home network prefix via the MN's access link when the
binding is accepted, and removes it when the binding ends. This source
watches those routes (netlink groups RTMGRP_IPV4_ROUTE / RTMGRP_IPV6_ROUTE,
plus RTMGRP_LINK for interface names) with the socket in ``reactor.addReader``:
a unicast route in the main table via a watched access link appearing is an
attach (MN id ``hnp:<prefix>``, tunnel from ``tunnel_for_access``), its
removal a detach. Routes the kernel makes itself (connected prefixes, router
advertisements, redirects) are ignored. Existing routes are read once at start.

Recovery: any error reading or handling notifications (``ENOBUFS`` when the
kernel dropped some, or anything unexpected) closes the socket, opens a new
one (subscribed before the dump, so nothing falls between) and resynchronises
from a full dump of links and routes: routes that came meanwhile attach,
routes that went detach. Each recovery is counted (``recoveries``) and
logged, an unexpected error with its traceback. When the reopen or the dump
fails too, it is retried after ``RETRY_INTERVAL``, doubling up to
``MAX_RETRY_INTERVAL``, until it succeeds or the source stops.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from collections.abc import Callable, Mapping
from typing import Any

from pyroute2 import IPRoute, IPRSocket
from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTMGRP_LINK

from mcproxy_pmip.plugin import CommandError
from mcproxy_pmip_plugins.pmipv6.bindings import BindingEvent, MobileNodeAttached, MobileNodeDetached

log = logging.getLogger(__name__)

MAIN_TABLE = 254
RTN_UNICAST = 1
#: rtm_protocol values of routes the kernel installs by itself: redirect, kernel, RA.
KERNEL_PROTOCOLS = frozenset({1, 2, 9})
#: first wait before reopening after a failed recovery, and the longest (doubling in between)
RETRY_INTERVAL = 1.0
MAX_RETRY_INTERVAL = 30.0


def mn_id_for(prefix: str) -> str:
    return f"hnp:{prefix}"


class NetlinkBindingSource:
    """Turns HNP routes on access links into binding events; an ``IReadDescriptor``.

    ``tunnel_for_access``: access interface -> MAG→LMA tunnel interface.
    ``handle``: where events go (``BindingTable.handle``). ``netns``: read
    another network namespace (tests).
    """

    def __init__(self, reactor: Any, tunnel_for_access: Mapping[str, str],
                 handle: Callable[[BindingEvent], dict[str, Any]], netns: str | None = None) -> None:
        self._reactor = reactor
        self._tunnel_for_access = dict(tunnel_for_access)
        self._handle = handle
        self._netns = netns
        self._names: dict[int, str] = {}
        self._routes: dict[str, str] = {}
        self._socket: IPRSocket | None = None
        self._running = False
        self._retry = None
        self._retry_interval = RETRY_INTERVAL
        #: recoveries begun (an error, then reopen and full dump), and reopen attempts that failed
        self.recoveries = 0
        self.failed_reopens = 0

    def start(self) -> None:
        """Subscribe, then read links and routes that exist already."""
        try:
            self._open()
            self._resync()
        except BaseException:
            self._close_socket()
            raise
        self._running = True
        self._reactor.addReader(self)

    def stop(self) -> None:
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._socket is None:
            return
        self._reactor.removeReader(self)
        self._close_socket()

    def _close_socket(self) -> None:
        sock, self._socket = self._socket, None
        if sock is None:
            return
        try:
            sock.close()
        except Exception:
            log.exception("netlink-source-close-failed")

    def _open(self) -> None:
        self._socket = IPRSocket(netns=self._netns) if self._netns else IPRSocket()
        self._socket.bind(groups=RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_LINK)

    def _resync(self) -> None:
        """Full dump (at start and after lost notifications); routes gone meanwhile are detached."""
        with IPRoute(netns=self._netns) if self._netns else IPRoute() as ipr:
            self._names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            routes = list(ipr.get_routes(table=MAIN_TABLE))
        seen = set()
        for message in routes:
            prefix = self._route_prefix(message)
            if prefix is not None:
                seen.add(prefix)
                self._route_added(prefix, self._names.get(message.get_attr("RTA_OIF")))
        for prefix in set(self._routes) - seen:
            self._route_removed(prefix)

    # IReadDescriptor

    def fileno(self) -> int:
        return self._socket.fileno() if self._socket is not None else -1

    def logPrefix(self) -> str:
        return "pmipv6-netlink"

    def connectionLost(self, reason: Any) -> None:
        log.warning("netlink-source-lost reason=%s", reason)

    def doRead(self) -> None:
        try:
            messages = self._socket.get()
            for message in messages:
                self._dispatch(message)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EINTR):
                return
            if exc.errno == errno.ENOBUFS:
                log.warning("netlink-source-overrun recoveries=%d: resynchronising from a full dump",
                            self.recoveries + 1)
            else:
                log.exception("netlink-source-error recoveries=%d: reopening", self.recoveries + 1)
            self._recover()
        except Exception:
            log.exception("netlink-source-error recoveries=%d: reopening", self.recoveries + 1)
            self._recover()

    def _recover(self) -> None:
        """Drop the socket, then reopen and resynchronise (now, and later again if that fails)."""
        self.recoveries += 1
        self._reactor.removeReader(self)
        self._close_socket()
        self._reopen()

    def _reopen(self) -> None:
        self._retry = None
        if not self._running:
            return
        try:
            self._open()
            self._resync()
        except Exception:
            self._close_socket()
            self.failed_reopens += 1
            log.exception("netlink-source-reopen-failed retry_in=%.1f", self._retry_interval)
            self._retry = self._reactor.callLater(self._retry_interval, self._reopen)
            self._retry_interval = min(self._retry_interval * 2, MAX_RETRY_INTERVAL)
            return
        self._retry_interval = RETRY_INTERVAL
        self._reactor.addReader(self)
        log.info("netlink-source-resynchronised recoveries=%d routes=%d", self.recoveries, len(self._routes))

    # message handling

    def _dispatch(self, message: Any) -> None:
        event = message.get("event")
        if event in ("RTM_NEWLINK", "RTM_DELLINK"):
            name = message.get_attr("IFLA_IFNAME")
            if event == "RTM_NEWLINK" and name:
                self._names[message["index"]] = name
            else:
                self._names.pop(message["index"], None)
            return
        prefix = self._route_prefix(message)
        if prefix is None:
            return
        if event == "RTM_NEWROUTE":
            self._route_added(prefix, self._names.get(message.get_attr("RTA_OIF")))
        elif event == "RTM_DELROUTE":
            self._route_removed(prefix)

    @staticmethod
    def _route_prefix(message: Any) -> str | None:
        """The HNP of a candidate route, or None for routes that cannot be one."""
        table = message.get_attr("RTA_TABLE") or message["table"]
        if table != MAIN_TABLE or message["type"] != RTN_UNICAST or message["proto"] in KERNEL_PROTOCOLS:
            return None
        dst = message.get_attr("RTA_DST")
        if dst is None or message["dst_len"] == 0:
            return None
        network = ipaddress.ip_network(f"{dst}/{message['dst_len']}", strict=False)
        if network.is_multicast or network.is_link_local:
            return None
        return str(network)

    def _route_added(self, prefix: str, access_if: str | None) -> None:
        tunnel_if = self._tunnel_for_access.get(access_if) if access_if else None
        if tunnel_if is None:
            if prefix in self._routes:
                self._route_removed(prefix)
            return
        if self._routes.get(prefix) == access_if:
            return
        self._routes[prefix] = access_if
        self._deliver(MobileNodeAttached(mn_id_for(prefix), access_if, tunnel_if, hnp=(prefix,)))

    def _route_removed(self, prefix: str) -> None:
        if self._routes.pop(prefix, None) is None:
            return
        self._deliver(MobileNodeDetached(mn_id_for(prefix)))

    def _deliver(self, event: BindingEvent) -> None:
        try:
            result = self._handle(event)
        except CommandError as exc:
            log.warning("netlink-binding-refused mn=%s code=%s message=%s", event.mn_id, exc.code, exc.message)
            return
        except Exception:
            log.exception("netlink-binding-failed mn=%s", event.mn_id)
            return
        log.debug("netlink-binding mn=%s result=%s", event.mn_id, result)
