"""The daemon after start-up: CAP_NET_ADMIN and CAP_NET_RAW only, optionally as another user.

A real daemon in a namespace is read from ``/proc/<pid>/task/*/status``
(every thread): effective = permitted = bounding = exactly NET_ADMIN|NET_RAW,
nothing inheritable or ambient. With only those it still forwards, attaches
a downstream added at runtime on the control socket, restores rp_filter
(``-r``) and removes its kernel state and socket file at stop. The drop in a
process of its own is refused while a second thread runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.kernel import privileges, statefile
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.planes import PLANES, nft_text
from tests.netns.proxy_harness import build_proxy_topology, send_until

pytestmark = pytest.mark.netns

PREFIX = "hHp-"
KEPT = privileges.mask(["CAP_NET_ADMIN", "CAP_NET_RAW"])
GROUP = {Family.IPV4: "239.7.7.1", Family.IPV6: "ff15::7701"}
CONFIG = "protocol IGMPv3;\nprotocol MLDv2;\npinstance p: up0 ==> d1;\n"
NOBODY = "nobody"


@pytest.fixture(params=PLANES)
def topo(netns_factory, request):  # noqa: F811
    """The proxy topology; its files in a directory under /tmp (which another user can reach)."""
    tmp = tempfile.mkdtemp(prefix=PREFIX)
    request.addfinalizer(lambda: shutil.rmtree(tmp))
    yield from build_proxy_topology(netns_factory, tmp, PREFIX, request.param)


def task_sets(pid: int) -> dict[str, tuple[privileges.CapabilitySets, str]]:
    """Each thread's capability sets and its Uid line."""
    found = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status", encoding="ascii") as handle:
            text = handle.read()
        uid = next(line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("Uid:"))
        found[task] = (privileges.parse_status(text), " ".join(uid))
    return found


def assert_only_kept(pid: int, uid: int) -> None:
    for task, (sets, uids) in task_sets(pid).items():
        assert (sets.effective, sets.permitted, sets.bounding, sets.inheritable, sets.ambient) == \
            (KEPT, KEPT, KEPT, 0, 0), f"thread {task}: {sets} (names: {privileges.names(sets.effective)})"
        assert uids == " ".join([str(uid)] * 4), f"thread {task} uids {uids}"


def kernel_state_gone(topo) -> str | None:
    """What the daemon's plane left in px, or None."""
    if topo.data_plane == "nftables":
        tables = nft_text(topo.px, "list tables")
        return tables if "mcproxy_pmip" in tables else None
    vifs = topo.px.run(["cat", "/proc/net/ip_mr_vif"]).stdout.splitlines()[1:]
    return "\n".join(vifs) or None


def receives(topo, host_index: int, family: Family) -> float:
    """Seconds until data to GROUP reaches host ``host_index`` (joined by its kernel)."""
    receiver = topo.join(topo.hosts[host_index], family, GROUP[family])
    sender = topo.sender(family)
    try:
        return send_until(sender, GROUP[family], receiver, 10, f"data on h{host_index + 1} ({family.name})")
    finally:
        sender.close()
        receiver.close()


def test_daemon_keeps_only_net_admin_and_net_raw(topo):
    daemon = topo.start_daemon(CONFIG)
    assert_only_kept(daemon.process.pid, 0)
    assert "privileges_dropped user=- effective=CAP_NET_ADMIN,CAP_NET_RAW" in daemon.log()
    for family in (Family.IPV4, Family.IPV6):
        receives(topo, 0, family)
    reply = daemon.request("add-downstream", instance="p", interface="d2")
    assert reply["interface"] == "d2"
    for family in (Family.IPV4, Family.IPV6):
        receives(topo, 1, family)
    assert_only_kept(daemon.process.pid, 0)
    assert daemon.stop() == 0, daemon.log()[-3000:]
    assert kernel_state_gone(topo) is None, f"state left behind:\n{kernel_state_gone(topo)}"
    assert not os.path.exists(daemon.control)
    assert "Traceback" not in daemon.log(), daemon.log()[-3000:]


def test_daemon_as_another_user_still_serves_and_cleans_up(topo, monkeypatch, request):
    state_dir = tempfile.mkdtemp(prefix=PREFIX)
    request.addfinalizer(lambda: shutil.rmtree(state_dir))
    monkeypatch.setenv(statefile.STATE_DIR_ENV, state_dir)
    topo.px.sysctl("net.ipv4.conf.d1.rp_filter", 1)
    daemon = topo.start_daemon(CONFIG, "-r", "--user", NOBODY)
    nobody = privileges.resolve_user(NOBODY)
    assert_only_kept(daemon.process.pid, nobody.uid)
    assert topo.px.read_sysctl("net.ipv4.conf.d1.rp_filter") == "0"
    assert os.stat(daemon.control).st_uid == nobody.uid
    assert os.stat(state_dir).st_uid == nobody.uid
    assert os.listdir(state_dir), "no rp_filter state file while running"
    for family in (Family.IPV4, Family.IPV6):
        receives(topo, 0, family)
    daemon.request("add-downstream", instance="p", interface="d2")
    receives(topo, 1, Family.IPV4)
    assert daemon.stop() == 0, daemon.log()[-3000:]
    assert topo.px.read_sysctl("net.ipv4.conf.d1.rp_filter") == "1", "rp_filter not restored by the user"
    assert kernel_state_gone(topo) is None, f"state left behind:\n{kernel_state_gone(topo)}"
    assert not os.path.exists(daemon.control), "socket file left behind"
    assert os.listdir(state_dir) == [], "state file left behind"
    assert "Traceback" not in daemon.log(), daemon.log()[-3000:]


def test_unknown_user_stops_the_start_and_leaves_nothing(topo):
    daemon = topo.start_daemon(CONFIG, "--user", "hh-no-such-user", ready=False)
    assert daemon.process.wait(timeout=20) == 1
    assert "unknown user 'hh-no-such-user'" in daemon.log()
    assert kernel_state_gone(topo) is None, f"state left behind:\n{kernel_state_gone(topo)}"
    assert not os.path.exists(daemon.control)


DROP_WITH_THREAD = """
import threading, time
from mcproxy_pmip.kernel import privileges, statefile
threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
try:
    privileges.drop_privileges()
except privileges.PrivilegeError as exc:
    print("refused:", exc)
print("effective", hex(privileges.current().effective))
"""

DROP_ALONE = """
import os
from mcproxy_pmip.kernel import privileges, statefile
after = privileges.drop_privileges(identity=privileges.resolve_user("nobody"))
print(hex(after.effective), hex(after.bounding), os.getuid(), os.getgid())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the capabilities to drop)")
def test_drop_refused_while_another_thread_runs():
    done = subprocess.run([sys.executable, "-c", DROP_WITH_THREAD], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert "refused: the process has 2 threads" in done.stdout, done.stdout + done.stderr
    held = privileges.current().effective
    assert f"effective {held:#x}" in done.stdout, "capabilities changed although the drop was refused"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the capabilities to drop)")
def test_drop_to_user_in_a_process_of_its_own():
    done = subprocess.run([sys.executable, "-c", DROP_ALONE], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, PYTHONPATH=os.getcwd()))
    nobody = privileges.resolve_user("nobody")
    assert done.stdout.split() == ["0x3000", "0x3000", str(nobody.uid), str(nobody.gid)], done.stderr
