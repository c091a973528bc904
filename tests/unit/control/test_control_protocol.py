"""The control line protocol driven through StringTransport, and request parsing."""

from __future__ import annotations

import json
import logging

import pytest
from twisted.internet import defer
from twisted.internet.testing import StringTransport

from mcproxy_pmip.control import protocol as p
from mcproxy_pmip.control.server import ControlFactory
from mcproxy_pmip.errors import KernelError


class Harness:
    def __init__(self, commands):
        self.proto = ControlFactory(commands).buildProtocol(None)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)

    def replies(self) -> list[dict]:
        lines = self.transport.value().splitlines()
        self.transport.clear()
        return [json.loads(line) for line in lines]


def echo(args):
    return args.raw()


def test_one_reply_per_request_with_the_id_echoed():
    h = Harness({"echo": echo})
    h.send(b'{"id": 7, "cmd": "echo", "a": 1}\n{"id": "x", "cmd": "echo"}\r\n')
    assert h.replies() == [{"id": 7, "ok": True, "result": {"a": 1}},
                           {"id": "x", "ok": True, "result": {}}]


def test_partial_lines_are_buffered():
    h = Harness({"echo": echo})
    h.send(b'{"id": 1, "cm')
    assert h.replies() == []
    h.send(b'd": "echo"}\n')
    assert h.replies()[0]["ok"] is True


@pytest.mark.parametrize(("line", "code", "request_id"), [
    (b"{oops", "bad-json", None),
    (b"\xff\xfe", "bad-json", None),
    (b'"just a string"', "bad-request", None),
    (b'{"id": 3}', "bad-request", 3),
    (b'{"id": 4, "cmd": 5}', "bad-request", 4),
    (b'{"id": 5, "cmd": "nope"}', "unknown-command", 5),
])
def test_bad_requests_get_errors_and_the_connection_stays_usable(line, code, request_id):
    h = Harness({"echo": echo})
    h.send(line + b"\n" + b'{"id": 9, "cmd": "echo"}\n')
    error, good = h.replies()
    assert error["ok"] is False and error["error"]["code"] == code and error["id"] == request_id
    assert good == {"id": 9, "ok": True, "result": {}}
    assert not h.transport.disconnecting


def test_unknown_command_lists_the_commands():
    h = Harness({"echo": echo})
    h.send(b'{"id": 1, "cmd": "ehco"}\n')
    assert "commands: commands, echo" in h.replies()[0]["error"]["message"]


def test_handler_exception_is_internal_error_logged_with_traceback(caplog):
    def boom(args):
        raise ZeroDivisionError("oops")

    h = Harness({"boom": boom, "echo": echo})
    with caplog.at_level(logging.ERROR, logger="mcproxy_pmip.control.server"):
        h.send(b'{"id": 1, "cmd": "boom"}\n{"id": 2, "cmd": "echo"}\n')
    boom_reply, echo_reply = h.replies()
    assert boom_reply["error"]["code"] == "internal-error"
    assert "ZeroDivisionError" in boom_reply["error"]["message"]
    assert echo_reply["ok"] is True
    assert any(record.exc_info and record.exc_info[0] is ZeroDivisionError for record in caplog.records)


def test_refusals_and_daemon_errors_keep_their_codes():
    def refuse(args):
        raise p.CommandError("unknown-mn", "no such MN")

    def kernel(args):
        raise KernelError("MRT_ADD_VIF", 23)

    h = Harness({"refuse": refuse, "kernel": kernel})
    h.send(b'{"id": 1, "cmd": "refuse"}\n{"id": 2, "cmd": "kernel"}\n')
    refused, failed = h.replies()
    assert refused["error"] == {"code": "unknown-mn", "message": "no such MN"}
    assert failed["error"]["code"] == "kernel-error" and "MRT_ADD_VIF" in failed["error"]["message"]


def test_deferred_results_reply_when_they_fire():
    pending = defer.Deferred()
    h = Harness({"slow": lambda args: pending, "echo": echo})
    h.send(b'{"id": 1, "cmd": "slow"}\n{"id": 2, "cmd": "echo"}\n')
    assert [r["id"] for r in h.replies()] == [2]
    pending.callback({"done": True})
    assert h.replies() == [{"id": 1, "ok": True, "result": {"done": True}}]


def test_deferred_failure_becomes_an_error_reply():
    pending = defer.Deferred()
    h = Harness({"slow": lambda args: pending})
    h.send(b'{"id": 1, "cmd": "slow"}\n')
    pending.errback(p.CommandError("busy", "later"))
    assert h.replies()[0]["error"] == {"code": "busy", "message": "later"}


def test_reply_after_the_client_left_is_dropped():
    pending = defer.Deferred()
    h = Harness({"slow": lambda args: pending})
    h.send(b'{"id": 1, "cmd": "slow"}\n')
    h.transport.loseConnection()
    pending.callback(1)
    assert h.transport.value() == b""


def test_over_long_line_is_refused_once_skipped_and_the_connection_stays():
    h = Harness({"echo": echo})
    h.send(b"x" * (p.MAX_LINE_LENGTH + 1))
    assert [r["error"]["code"] for r in h.replies()] == ["line-too-long"]
    assert h.proto._buffer == b"", "the over-long line is buffered"
    h.send(b"x" * 1000)
    h.send(b'x"}\n{"id": 2, "cmd": "echo"}\n')
    assert h.replies() == [{"id": 2, "ok": True, "result": {}}]
    assert not h.transport.disconnecting


def test_nesting_and_huge_numbers_are_bad_json_not_exceptions():
    for line in (b"[" * 50_000, b'{"cmd":"echo","a":' + b"[" * 40 + b"]" * 40 + b"}",
                 b'{"cmd":"echo","a":-' + b"1" * 65 + b"}", b'{"cmd":"echo","a":Infinity}'):
        with pytest.raises(p.CommandError) as info:
            p.parse_request(line)
        assert info.value.code == "bad-json"
    nested = b'{"cmd":"echo","a":"' + b"[{" * 100 + b'\\"","b":' + b"[" * 30 + b"]" * 30 + b"}"
    assert p.parse_request(nested).cmd == "echo", "brackets inside strings counted"


def test_commands_command_lists_the_table():
    h = Harness({"echo": echo})
    h.send(b'{"id": 1, "cmd": "commands"}\n')
    assert h.replies()[0]["result"] == ["commands", "echo"]


def test_arguments_check_types_and_unknown_names():
    args = p.Arguments({"name": "a", "count": True, "hnp": ["x", 1], "extra": 1})
    assert args.string("name") == "a"
    with pytest.raises(p.CommandError, match="'count' must be an integer"):
        args.integer("count")
    with pytest.raises(p.CommandError, match="list of strings"):
        args.string_list("hnp")
    with pytest.raises(p.CommandError, match="missing argument 'absent'"):
        args.string("absent")
    with pytest.raises(p.CommandError, match="unknown argument.*extra"):
        args.finish()
