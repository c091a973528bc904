"""The systemd units in packaging/systemd hold what the daemon's notify, reload and privilege model need."""

from __future__ import annotations

import configparser
import pathlib
import shutil
import subprocess

import pytest

UNITS = pathlib.Path(__file__).resolve().parents[2] / "packaging" / "systemd"
FAMILIES = {"AF_UNIX", "AF_NETLINK", "AF_PACKET", "AF_INET", "AF_INET6"}
CAPABILITIES = {"CAP_NET_ADMIN", "CAP_NET_RAW"}


def parse(path: pathlib.Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",),
                                       comment_prefixes=("#", ";"))
    parser.optionxform = str
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return parser


@pytest.mark.parametrize("name", ["mcproxy-pmip.service", "mcproxy-pmip@.service"])
def test_unit_is_notify_watchdog_reload_and_least_privilege(name: str) -> None:
    service = parse(UNITS / name)["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["WatchdogSec"].rstrip("s").isdigit() and int(service["WatchdogSec"].rstrip("s")) > 0
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert set(service["AmbientCapabilities"].split()) == CAPABILITIES
    assert set(service["CapabilityBoundingSet"].split()) == CAPABILITIES
    assert set(service["RestrictAddressFamilies"].split()) == FAMILIES
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert service["ProtectHome"] == "yes"
    assert service["ReadWritePaths"].startswith("/run/mcproxy-pmip")
    assert "User" in service and service["User"] != "root"
    assert "ProtectKernelTunables" not in service, "-r writes rp_filter under /proc/sys/net"
    assert "mcproxy-pmip " in service["ExecStart"] and " -f " in service["ExecStart"]


def test_the_template_gives_each_instance_its_own_runtime_directory() -> None:
    service = parse(UNITS / "mcproxy-pmip@.service")["Service"]
    assert service["RuntimeDirectory"] == "mcproxy-pmip/%i"
    assert "MCPROXY_PMIP_STATE_DIR=/run/mcproxy-pmip/%i" in service["Environment"]
    assert "/run/mcproxy-pmip/%i/" in service["ExecStart"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_knows_every_directive(tmp_path: pathlib.Path) -> None:
    """``systemd-analyze verify`` on copies whose ExecStart names an existing program: no unknown key."""
    names = []
    for name in ("mcproxy-pmip.service", "mcproxy-pmip@.service"):
        text = (UNITS / name).read_text(encoding="utf-8").replace("/usr/local/bin/mcproxy-pmip", "/bin/true")
        target = name.replace("@.", "@mB.")
        (tmp_path / target).write_text(text, encoding="utf-8")
        names.append(str(tmp_path / target))
    result = subprocess.run(["systemd-analyze", "verify", *names], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Unknown" not in output and "ignoring" not in output, output
