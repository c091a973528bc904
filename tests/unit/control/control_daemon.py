"""A tiny daemon hosting the real ControlService with a fake backend (run as a subprocess by tests).

Usage: python control_daemon.py SOCKET_PATH. Prints "ready" once listening; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import logging
import sys

from twisted.internet import defer, reactor

from mcproxy_pmip.control.protocol import CommandError
from mcproxy_pmip.control.server import ControlService, core_commands


class FakeBackend:
    def __init__(self) -> None:
        self.downstreams = {"mag1": ["acc0"]}

    def status(self):
        return {"pid": 1234, "instances": len(self.downstreams)}

    def version(self):
        return {"version": "test"}

    def instances(self):
        return [{"name": name, "upstreams": ["tun0"], "downstreams": sorted(ds)}
                for name, ds in self.downstreams.items()]

    def routes(self):
        return [{"instance": "mag1", "family": "ipv6", "source": "2001:db8::1", "group": "ff3e::1",
                 "iif": "tun0", "oifs": ["acc0"], "packets": 7}]

    def groups(self, instance, interface):
        return [{"instance": instance or "mag1", "interface": interface or "acc0",
                 "group": "ff3e::1", "filter_mode": "EXCLUDE", "sources": []}]

    def add_downstream(self, instance, interface):
        if instance not in self.downstreams:
            raise CommandError("unknown-instance", f"no instance {instance!r}")
        d = defer.Deferred()
        reactor.callLater(0.01, d.callback, None)
        self.downstreams[instance].append(interface)
        return d

    def del_downstream(self, instance, interface):
        self.downstreams[instance].remove(interface)

    def add_upstream(self, instance, interface):
        return None

    def del_upstream(self, instance, interface):
        return None


def crash(args):
    raise RuntimeError("handler bug")


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    commands = core_commands(FakeBackend())
    commands["crash"] = crash
    svc = ControlService(sys.argv[1], commands, reactor)
    svc.startService()
    reactor.addSystemEventTrigger("before", "shutdown", svc.stopService)
    # "ready" only once the reactor runs: its SIGTERM handler is installed by then.
    reactor.callWhenRunning(print, "ready", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
