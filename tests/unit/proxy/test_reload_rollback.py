"""Reload all or nothing, on the in-memory Proxy: a step that fails puts the old configuration back.

The memory plane refuses an interface beyond ``max_interfaces`` (as MRT's 32
vifs) and ``RefusingPlane`` refuses one instance outright (as a kernel error
would); after each failed reload the Proxy runs exactly its old instances,
interfaces and membership, and its configuration is the old one.
"""

from __future__ import annotations

import ipaddress
import logging

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config import parse_config
from mcproxy_pmip.dataplane.memory import MemoryPlane
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.proxy.daemon import Daemon
from mcproxy_pmip.proxy.hangup import HangupLatch
from mcproxy_pmip.proxy.reload import ReloadFailed
from tests.unit.proxy.memory_proxy import MemoryProxy, exclude_none

G4 = ipaddress.ip_address("239.1.1.1")
HEAD = "protocol IGMPv3;\nprotocol MLDv2;\n"
LINKS = ["up0", "up1", "up2", "d1", "d2", "d3", "d4", "d5", "d6"]


class RefusingPlane(MemoryPlane):
    """A memory plane whose kernel refuses to open instance ``refused``."""

    def __init__(self, refused: str, max_interfaces: int | None = None) -> None:
        super().__init__(max_interfaces)
        self.refused = refused

    def open_instance(self, name, families, table, view):
        if name == self.refused:
            raise KernelError("open-instance", 1, f"instance {name} refused")
        return super().open_instance(name, families, table, view)


def running(run: MemoryProxy) -> dict[str, set[str]]:
    """Instance name -> the interfaces its plane holds, for the instances the Proxy runs."""
    return {name: set(run.plane.instances[name].roles) for name in run.proxy.instances}


def joined(run: MemoryProxy, instance: str, link: str) -> bool:
    run.reactor.advance(0)
    outputs = run.plane.instances[instance].groups.get((Family.IPV4, G4))
    return outputs is not None and any(name == link for name, _ in outputs.downstreams)


def test_half_applicable_config_is_refused_whole_and_the_running_one_untouched() -> None:
    """One new instance fine, one beyond the plane's limit: neither runs, the old one is unchanged."""
    run = MemoryProxy(HEAD + "pinstance p: up0 ==> d1;\n", LINKS, max_interfaces=3)
    run.igmp_report("d1", [exclude_none("239.1.1.1")])
    old = run.proxy.config
    new = parse_config(HEAD + "pinstance p: up0 ==> d1;\npinstance q: up1 ==> d2;\n"
                       "pinstance r: up2 ==> d3 d4 d5;\n")
    with pytest.raises(ReloadFailed) as failed:
        run.proxy.reload(new)
    assert failed.value.step == "add instance r" and failed.value.rolled_back
    assert running(run) == {"p": {"up0", "d1"}}
    assert run.plane.instances["q"].closed, "the instance added before the failure was stopped again"
    assert run.proxy.config is old
    assert joined(run, "p", "d1")
    run.stop()


def test_restarted_instance_comes_back_with_its_old_config_and_membership() -> None:
    """p restarts (another upstream), then q's in-place downstream add fails: p is back as it was."""
    old_text = HEAD + "pinstance p: up0 ==> d1 d2;\npinstance q: up1 ==> d3;\n"
    run = MemoryProxy(old_text, LINKS, max_interfaces=3)
    run.igmp_report("d1", [exclude_none("239.1.1.1")])
    old_p = run.proxy.instances["p"].config
    new = parse_config(HEAD + "pinstance p: up2 ==> d1 d2;\npinstance q: up1 ==> d3 d4 d5;\n")
    with pytest.raises(ReloadFailed) as failed:
        run.proxy.reload(new)
    assert failed.value.step == "change instance q"
    assert running(run) == {"p": {"up0", "d1", "d2"}, "q": {"up1", "d3"}}
    assert run.proxy.instances["p"].config == old_p
    assert run.proxy.instances["q"].downstreams == ["d3"]
    assert joined(run, "p", "d1"), "the membership of the restarted instance was imported back"
    assert run.proxy.config == parse_config(old_text)
    run.stop()


def test_removed_instance_is_started_again_when_an_added_one_fails() -> None:
    run = MemoryProxy(HEAD + "pinstance p: up0 ==> d1;\npinstance q: up1 ==> d2;\n", LINKS)
    run.proxy.plane = RefusingPlane("bad")
    run.proxy.plane.instances = run.plane.instances
    run.igmp_report("d1", [exclude_none("239.1.1.1")])
    with pytest.raises(ReloadFailed) as failed:
        run.proxy.reload(parse_config(HEAD + "pinstance q: up1 ==> d2;\npinstance bad: up0 ==> d1 d3;\n"))
    assert isinstance(failed.value.cause, KernelError)
    assert running(run) == {"p": {"up0", "d1"}, "q": {"up1", "d2"}}
    assert joined(run, "p", "d1")
    assert [i.name for i in run.proxy.config.instances] == ["p", "q"]
    run.stop()


def test_removed_downstream_is_given_back_in_order_with_its_membership() -> None:
    run = MemoryProxy(HEAD + "pinstance p: up0 ==> d1 d2;\n", LINKS, max_interfaces=3)
    run.igmp_report("d1", [exclude_none("239.1.1.1")])
    with pytest.raises(ReloadFailed):
        run.proxy.reload(parse_config(HEAD + "pinstance p: up0 ==> d2 d3 d4;\n"))
    assert run.proxy.instances["p"].downstreams == ["d1", "d2"]
    assert running(run) == {"p": {"up0", "d1", "d2"}}
    assert joined(run, "p", "d1")
    run.stop()


def test_a_failing_undo_step_is_reported_and_the_others_still_run() -> None:
    run = MemoryProxy(HEAD + "pinstance p: up0 ==> d1;\npinstance q: up1 ==> d2;\n", LINKS)
    refusing = RefusingPlane("bad")
    refusing.instances = run.plane.instances
    run.proxy.plane = refusing
    original_start = run.proxy.start_instance

    def start(config):
        if config.name == "p":
            raise KernelError("open-instance", 1, "p refused on the way back")
        return original_start(config)
    run.proxy.start_instance = start
    with pytest.raises(ReloadFailed) as failed:
        run.proxy.reload(parse_config(HEAD + "pinstance bad: up0 ==> d1;\n"))
    assert not failed.value.rolled_back
    assert set(run.proxy.instances) == {"q"}, "q was restarted although p could not be"
    run.stop()


def test_successful_reload_after_a_failed_one_applies_the_new_file() -> None:
    run = MemoryProxy(HEAD + "pinstance p: up0 ==> d1;\n", LINKS, max_interfaces=3)
    with pytest.raises(ReloadFailed):
        run.proxy.reload(parse_config(HEAD + "pinstance p: up0 ==> d1 d2 d3;\n"))
    run.proxy.reload(parse_config(HEAD + "pinstance p: up0 ==> d1 d2;\n"))
    assert running(run) == {"p": {"up0", "d1", "d2"}}
    run.stop()


# -- the daemon's side: the file, the log, one configuration ------------------------------


@pytest.fixture
def daemon(tmp_path):
    run = MemoryProxy(HEAD + "pinstance p: up0 ==> d1;\n", LINKS, max_interfaces=3)
    path = tmp_path / "px.conf"
    path.write_text(HEAD + "pinstance p: up0 ==> d1;\n")
    made = Daemon(run.proxy.config, str(path), [], control_path=None, status=False, reset_rp_filter=False,
                  seed=1, require_router_alert=False, hangup=HangupLatch())
    made.proxy = run.proxy
    yield made, path, run
    run.stop()


def test_daemon_keeps_the_old_config_when_the_file_does_not_validate(daemon, caplog) -> None:
    made, path, run = daemon
    old = made.config
    path.write_text(HEAD + "pinstance p: up0 ==> d1;\npinstance p: up1 ==> d2;\n")
    with caplog.at_level(logging.INFO):
        made.reload()
    assert made.config is old and run.proxy.config is old
    assert "reload_refused" in caplog.text and "defined twice" in caplog.text


def test_daemon_and_proxy_agree_after_a_rolled_back_reload(daemon, caplog) -> None:
    made, path, run = daemon
    old = made.config
    path.write_text(HEAD + "pinstance p: up0 ==> d1;\npinstance r: up1 ==> d2 d3 d4;\n")
    with caplog.at_level(logging.INFO):
        made.reload()
    assert made.config is old and run.proxy.config is old
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reload_failed")]
    assert failed and "step='add instance r'" in failed[0] and "rolled_back=complete" in failed[0], failed
    path.write_text(HEAD + "pinstance p: up0 ==> d1 d2;\n")
    made.reload()
    assert made.config is run.proxy.config and running(run) == {"p": {"up0", "d1", "d2"}}
