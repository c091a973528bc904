"""The testbed's data-plane option (scenario key, CLI flag, daemon argv) and the decision it
drives: which plane each daemon will choose and whether the MAGs need the access bridge.

The kernel's answer (has it multicast routing?) is passed in as a plain function, so every
row runs without root; the testbed calls the daemon's own probe there.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcproxy_pmip.config.model import DATA_PLANES
from mcproxy_pmip.errors import ConfigError
from mcproxy_pmip_testbed import cli
from mcproxy_pmip_testbed.daemons import DaemonRole, ProxyInstancePlan, igmpproxy_spec, mcproxy_pmip_spec
from mcproxy_pmip_testbed.plan import access_bridge_needed
from mcproxy_pmip_testbed.planes import DataPlaneError, check_request, decide, plane_summary
from mcproxy_pmip_testbed.runner import daemon_roles
from mcproxy_pmip_testbed.scenario import MobileNode, Topology, default_scenario, load_scenario
from tests.unit.testbed.test_testbed_scenario import GOOD


def has_mroute(_families) -> None:
    return None


def lacks_mroute(families) -> str:
    return "CONFIG_IP_MROUTE is not set" if 4 in families else "CONFIG_IPV6_MROUTE is not set"


def topology(mns: int, lmas: int = 1, mags: int = 2, access_bridge: str = "auto") -> Topology:
    lma_names = tuple(f"lma{k}" for k in range(1, lmas + 1))
    return Topology(lmas=lma_names, mags=tuple(f"mag{m}" for m in range(1, mags + 1)),
                    mns=tuple(MobileNode(f"mn{i}", lma_names[i % lmas], "mag1")
                              for i in range(1, mns + 1)),
                    access_bridge=access_bridge)


def run_decide(requested, spec, mode, top, probe):
    return decide(requested, spec, top, lambda plan: daemon_roles(plan, mode), run_id="0001",
                  probe=probe)


# -- the option ------------------------------------------------------------------------------

def test_scenario_data_plane_defaults_to_auto_and_is_checked() -> None:
    assert default_scenario().options.data_plane == "auto"
    for plane in DATA_PLANES:
        chosen = load_scenario(GOOD.replace('capture: ["lma1:src0"]', f"data_plane: {plane}"))
        assert chosen.options.data_plane == plane
    with pytest.raises(ConfigError) as info:
        load_scenario(GOOD.replace('capture: ["lma1:src0"]', "data_plane: ebpf"))
    assert [str(p) for p in info.value.problems] == [
        "<scenario>:0:0: options.data_plane: must be one of ('auto', 'mroute', 'nftables')"]


def test_the_flag_overrides_the_scenario_and_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.replace('capture: ["lma1:src0"]', "data_plane: mroute"))
    parser = cli.build_parser()
    assert cli.scenario_for(parser.parse_args(["run"])).options.data_plane == "auto"
    from_file = parser.parse_args(["run", "--scenario", str(path)])
    assert cli.scenario_for(from_file).options.data_plane == "mroute"
    flagged = parser.parse_args(["run", "--scenario", str(path), "--data-plane", "nftables",
                                 "--context-transfer", "reactive"])
    options = cli.scenario_for(flagged).options
    assert (options.data_plane, options.context_transfer) == ("nftables", "reactive")
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--data-plane", "ebpf"])


def test_every_mcproxy_pmip_daemon_gets_the_plane_igmpproxy_none(tmp_path: Path) -> None:
    role = DaemonRole(node="mag1", kind="mag", mode="context",
                      instances=(ProxyInstancePlan("mag1lma1", "tun1", ("a1",)),),
                      other_interfaces=("lo",))
    argv = mcproxy_pmip_spec().command(role, tmp_path / "c", tmp_path / "s", "nftables")
    assert argv[argv.index("--data-plane") + 1] == "nftables"
    assert argv[-2:] == ["--plugin", "pmipv6"]
    static = DaemonRole(node="mag1", kind="mag", mode="static", instances=role.instances,
                        other_interfaces=("lo",))
    assert "--data-plane" not in igmpproxy_spec().command(static, tmp_path / "c", tmp_path / "s")


@pytest.fixture
def restored_signals() -> Iterator[None]:
    """``cli.main`` installs SIGTERM/SIGHUP handlers; put the test process's back."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


def test_igmpproxy_on_nftables_is_refused_naming_the_kernel_option(
        tmp_path: Path, capsys, restored_signals) -> None:
    out = tmp_path / "out"
    status = cli.main(["run", "--daemon", "igmpproxy", "--data-plane", "nftables", "--mode", "static",
                       "--out", str(out)])
    assert status == 2
    error = capsys.readouterr().err
    assert "igmpproxy cannot run on the nftables data plane" in error
    assert "CONFIG_IP_MROUTE" in error
    assert not out.exists(), "refused before anything was built or written"


# -- the decision ----------------------------------------------------------------------------

@pytest.mark.parametrize(("requested", "spec", "mode", "top", "probe", "bridge", "mag", "lma"), [
    # auto: the daemons' own rule; a MAG never ends up on mroute with more than 31 MNs
    ("auto", "mcproxy-pmip", "static", topology(31), has_mroute, False, "mroute", "mroute"),
    ("auto", "mcproxy-pmip", "static", topology(32), has_mroute, False, "nftables", "mroute"),
    ("auto", "mcproxy-pmip", "context", topology(40), has_mroute, False, "nftables", "mroute"),
    ("auto", "mcproxy-pmip", "plugin", topology(1), has_mroute, False, "nftables", "mroute"),
    ("auto", "mcproxy-pmip", "static", topology(40), lacks_mroute, False, "nftables", "nftables"),
    # mroute asked for: its 32 vifs per table (the tunnel and 31 MNs per instance)
    ("mroute", "mcproxy-pmip", "static", topology(31), has_mroute, False, "mroute", "mroute"),
    ("mroute", "mcproxy-pmip", "static", topology(32), has_mroute, True, "mroute", "mroute"),
    ("mroute", "mcproxy-pmip", "context", topology(40), has_mroute, True, "mroute", "mroute"),
    ("mroute", "mcproxy-pmip", "static", topology(40, lmas=2), has_mroute, False, "mroute", "mroute"),
    ("nftables", "mcproxy-pmip", "static", topology(200), has_mroute, False, "nftables", "nftables"),
    # igmpproxy: multicast routing only
    ("auto", "igmpproxy", "static", topology(40), has_mroute, True, "mroute", "mroute"),
    ("mroute", "igmpproxy", "static", topology(3), has_mroute, False, "mroute", "mroute"),
    # explicit settings win
    ("auto", "mcproxy-pmip", "static", topology(1, access_bridge="always"), lacks_mroute, True,
     "nftables", "nftables"),
    ("nftables", "mcproxy-pmip", "static", topology(40, access_bridge="always"), has_mroute, True,
     "nftables", "nftables"),
])
def test_which_plane_and_whether_the_access_bridge(requested, spec, mode, top, probe, bridge,
                                                   mag, lma) -> None:
    chosen = run_decide(requested, cli.SPECS[spec](), mode, top, probe)
    assert chosen.plan.access_bridge is bridge
    downstreams = chosen.plan.mag_downstreams("mag1", "lma1")
    if bridge:
        assert downstreams == ("acc0",)
    else:
        assert len(downstreams) == sum(1 for m in top.mns if m.lma == "lma1")
    assert {n: c.name for n, c in chosen.expected.items() if n.startswith("mag")} == \
        {m: mag for m in top.mags}
    assert {n: c.name for n, c in chosen.expected.items() if n.startswith("lma")} == \
        {k: lma for k in top.lmas}


def test_no_kernel_probe_where_the_plane_is_given() -> None:
    def must_not_probe(_families):
        raise AssertionError("the kernel was probed for an explicit nftables plane")

    chosen = run_decide("nftables", mcproxy_pmip_spec(), "static", topology(3), must_not_probe)
    assert {c.name for c in chosen.expected.values()} == {"nftables"}


@pytest.mark.parametrize(("requested", "spec", "top", "probe", "message"), [
    ("mroute", "mcproxy-pmip", topology(1), lacks_mroute,
     "the mroute data plane needs a kernel with CONFIG_IP_MROUTE and CONFIG_IPV6_MROUTE "
     "(CONFIG_IP_MROUTE is not set): use --data-plane auto or --data-plane nftables"),
    ("auto", "igmpproxy", topology(1), lacks_mroute,
     "igmpproxy forwards only with the kernel's multicast routing: it needs a kernel with "
     "CONFIG_IP_MROUTE (CONFIG_IP_MROUTE is not set)"),
    ("nftables", "igmpproxy", topology(1), has_mroute,
     "igmpproxy cannot run on the nftables data plane: it forwards only with mroute; it needs a "
     "kernel with CONFIG_IP_MROUTE"),
    ("mroute", "mcproxy-pmip", topology(40, access_bridge="never"), has_mroute,
     "instance mag1lma1 on mag1 would have 41 interfaces on the mroute data plane, which has 32 "
     "per table: use topology.access_bridge auto or always or --data-plane nftables"),
    ("mroute", "mcproxy-pmip", topology(1, mags=32), has_mroute,
     "instance lma1 on lma1 would have 33 interfaces on the mroute data plane, which has 32 per "
     "table: use fewer MAGs or --data-plane nftables"),
])
def test_a_plane_the_daemon_or_kernel_cannot_give_is_refused(requested, spec, top, probe,
                                                             message) -> None:
    with pytest.raises(DataPlaneError) as info:
        run_decide(requested, cli.SPECS[spec](), "static", top, probe)
    assert str(info.value) == message


def test_check_request_alone_needs_no_kernel() -> None:
    check_request("auto", igmpproxy_spec())
    check_request("mroute", igmpproxy_spec())
    for plane in DATA_PLANES:
        check_request(plane, mcproxy_pmip_spec())
    with pytest.raises(DataPlaneError, match="unknown data plane 'ebpf'"):
        check_request("ebpf", mcproxy_pmip_spec())


def test_access_bridge_rule_and_summary() -> None:
    assert not access_bridge_needed("auto", "mroute", topology(31))
    assert access_bridge_needed("auto", "mroute", topology(32))
    assert not access_bridge_needed("auto", "nftables", topology(400))
    assert access_bridge_needed("always", "nftables", topology(1))
    assert not access_bridge_needed("never", "mroute", topology(400))
    assert plane_summary({"lma1": "mroute", "mag1": "nftables", "mag2": "nftables"}) == \
        "mroute (lma1); nftables (mag1, mag2)"
    assert plane_summary({"lma1": None}) == "unknown (lma1)"
