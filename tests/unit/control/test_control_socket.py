"""The control server on a real UNIX socket in a subprocess, with the blocking client and the CLI."""

from __future__ import annotations

import json
import os
import pathlib
import select
import signal
import socket
import stat
import subprocess
import sys

import pytest

from mcproxy_pmip.control.client import ControlClient, ControlError
from mcproxy_pmip.control.ctl import main as ctl_main

DAEMON = pathlib.Path(__file__).with_name("control_daemon.py")


def start_daemon(path: pathlib.Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(DAEMON), str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if not ready:
        proc.kill()
        proc.wait()
        pytest.fail("control daemon did not start within 15 s")
    line = proc.stdout.readline()
    if line.strip() != b"ready":
        proc.kill()
        _, err = proc.communicate(timeout=5)
        pytest.fail(f"control daemon failed to start: {err.decode()[-2000:]}")
    return proc


def stop_daemon(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("control daemon ignored SIGTERM for 10 s")
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode


@pytest.fixture
def socket_path(tmp_path):
    return tmp_path / "run" / "ctl.sock"


@pytest.fixture
def daemon(socket_path):
    proc = start_daemon(socket_path)
    yield proc
    stop_daemon(proc)


def test_socket_mode_parent_directory_and_removal_on_stop(socket_path):
    proc = start_daemon(socket_path)
    try:
        mode = os.stat(socket_path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert stat.S_IMODE(os.stat(socket_path.parent).st_mode) == 0o700
    finally:
        code = stop_daemon(proc)
    assert code == 0
    assert not socket_path.exists(), "socket file left behind after stop"


def test_stale_socket_is_replaced(socket_path):
    socket_path.parent.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path))
    stale.close()
    assert socket_path.exists()
    proc = start_daemon(socket_path)
    try:
        with ControlClient(str(socket_path)) as client:
            assert client.request("version") == {"version": "test"}
    finally:
        stop_daemon(proc)


def test_requests_errors_and_a_usable_connection_after_bad_input(daemon, socket_path):
    with ControlClient(str(socket_path)) as client:
        assert client.request("status") == {"pid": 1234, "instances": 1}
        bad = client.send_raw(b"{not json")
        assert bad["ok"] is False and bad["error"]["code"] == "bad-json"
        assert client.send_raw(b"[1, 2]")["error"]["code"] == "bad-request"
        with pytest.raises(ControlError) as info:
            client.request("frobnicate")
        assert info.value.code == "unknown-command"
        with pytest.raises(ControlError) as info:
            client.request("groups", instance=7)
        assert info.value.code == "bad-argument"
        with pytest.raises(ControlError) as info:
            client.request("crash")
        assert info.value.code == "internal-error"
        with pytest.raises(ControlError) as info:
            client.request("add-downstream", instance="nope", interface="acc1")
        assert info.value.code == "unknown-instance"
        assert client.request("add-downstream", instance="mag1", interface="acc1") == \
            {"instance": "mag1", "interface": "acc1"}
        assert client.request("instances")[0]["downstreams"] == ["acc0", "acc1"]


def _read_line(sock: socket.socket, buffer: bytearray) -> dict:
    while b"\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            pytest.fail(f"the daemon closed the connection; got {bytes(buffer)[:200]!r}")
        buffer += chunk
    end = buffer.index(b"\n")
    line = bytes(buffer[:end])
    del buffer[:end + 1]
    return json.loads(line)


def test_over_long_line_gets_an_error_and_the_connection_stays(daemon, socket_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(socket_path))
        buffer = bytearray()
        # In pieces, so the daemon sees it too long before its newline, then once more in one piece.
        sock.sendall(b'{"id":1,"cmd":"status","pad":"' + b"x" * (1024 * 1024 + 10))
        assert _read_line(sock, buffer)["error"]["code"] == "line-too-long"
        sock.sendall(b"x" * 300_000 + b'"}\n{"id":2,"cmd":"version"}\n')
        assert _read_line(sock, buffer) == {"id": 2, "ok": True, "result": {"version": "test"}}
        sock.sendall(b"y" * (1024 * 1024 + 5) + b'\n{"id":3,"cmd":"version"}\n')
        assert _read_line(sock, buffer)["error"]["code"] == "line-too-long"
        assert _read_line(sock, buffer)["id"] == 3


MALFORMED = [
    (b"[" * 100_000 + b"]" * 100_000, "bad-json"),
    (b'{"id":1,"cmd":"status","x":' + b"[" * 5000 + b"]" * 5000 + b"}", "bad-json"),
    (b'{"id":1,"cmd":"status","x":' + b"7" * 5000 + b"}", "bad-json"),
    (b'{"id":' + b"1" * 5000 + b',"cmd":"status"}', "bad-json"),
    (b'{"cmd":"groups","instance":' + b"9" * 4301 + b"}", "bad-json"),
    (b'{"cmd":"status","x":NaN}', "bad-json"),
    (b"\xff\xfe\x00{", "bad-json"),
    (b"[1, 2]", "bad-request"),
    (b'"status"', "bad-request"),
    (b"42", "bad-request"),
    (b"null", "bad-request"),
    (b'{"id":[1],"cmd":"status"}', "bad-request"),
    (b'{"id":1,"cmd":7}', "bad-request"),
    (b'{"id":1,"cmd":{"a":1}}', "bad-request"),
    (b'{"id":1,"cmd":"groups","instance":["mag1"]}', "bad-argument"),
    (b'{"id":1,"cmd":"groups","interface":true}', "bad-argument"),
    (b'{"id":1,"cmd":"add-downstream","instance":"mag1","interface":1e400}', "bad-argument"),
    (b'{"id":1,"cmd":"add-downstream","instance":"mag1"}', "bad-argument"),
    (b'{"id":1,"cmd":"status","extra":1}', "bad-argument"),
]


def test_every_malformed_request_gets_an_error_on_the_same_connection(daemon, socket_path):
    with ControlClient(str(socket_path)) as client:
        assert client.request("add-downstream", instance="mag1", interface="acc7") == \
            {"instance": "mag1", "interface": "acc7"}
        for line, code in MALFORMED:
            reply = client.send_raw(line)
            assert reply["ok"] is False, f"{line[:60]!r} was accepted: {reply}"
            assert reply["error"]["code"] == code, f"{line[:60]!r}: {reply}"
        assert client.request("instances")[0]["downstreams"] == ["acc0", "acc7"], "state lost"
        assert client.request("status") == {"pid": 1234, "instances": 1}
    assert daemon.poll() is None, "the daemon died"


def test_ctl_prints_tables_json_and_errors(daemon, socket_path, capsys):
    assert ctl_main(["--socket", str(socket_path), "instances"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "UPSTREAMS", "DOWNSTREAMS"]
    assert out[1].split() == ["mag1", "tun0", "acc0"]
    assert ctl_main(["--socket", str(socket_path), "--json", "groups", "--instance", "mag9"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["instance"] == "mag9"
    assert ctl_main(["--socket", str(socket_path), "routes"]) == 0
    routes = capsys.readouterr().out.splitlines()
    assert "OIFS" in routes[0].split() and "acc0" in routes[1].split()
    assert ctl_main(["--socket", str(socket_path), "add-downstream", "nope", "acc1"]) == 1
    captured = capsys.readouterr()
    assert "unknown-instance: no instance 'nope'" in captured.err and captured.out == ""


def test_client_reports_a_missing_daemon(tmp_path):
    with pytest.raises(ControlError) as info:
        ControlClient(str(tmp_path / "absent.sock")).request("status")
    assert info.value.code == "connection"
