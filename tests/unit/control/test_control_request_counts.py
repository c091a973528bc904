"""The control server counts answered requests by command and result (for the metrics)."""

from __future__ import annotations

from twisted.internet.testing import StringTransport

from mcproxy_pmip.control import protocol as p
from mcproxy_pmip.control.protocol import CommandError
from mcproxy_pmip.control.server import ControlFactory


def refuse(args):
    raise CommandError("conflict", "no")


def test_requests_counted_per_command_and_result_over_connections():
    factory = ControlFactory({"echo": lambda args: args.raw(), "refuse": refuse})
    for _ in range(2):
        proto = factory.buildProtocol(None)
        proto.makeConnection(StringTransport())
        proto.dataReceived(b'{"id": 1, "cmd": "echo"}\n{"id": 2, "cmd": "refuse"}\n{"id": 3, "cmd": "nope"}\n')
    assert factory.requests == {("echo", "ok"): 2, ("refuse", "conflict"): 2, ("-", p.UNKNOWN_COMMAND): 2}
