"""The ``-c`` feature check against the real kernel, inside a fresh namespace.

Whatever the kernel lacks, the check must say it per plane and leave nothing
behind; the probes of a plane the kernel has must all pass.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.dataplane import features
from mcproxy_pmip.dataplane.choice import missing_mroute
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.planes import nft_text

pytestmark = pytest.mark.netns


def _mroute_missing(ns) -> str | None:
    with ns.entered():
        return missing_mroute(frozenset({Family.IPV4, Family.IPV6}))


def test_every_part_is_reported_and_nothing_is_left_behind(netns_factory):  # noqa: F811
    ns = netns_factory()
    with ns.entered():
        reports = {report.name: report for report in features.check_features()}
    assert set(reports) == {"packet I/O", "mroute plane", "nftables plane"}
    assert reports["packet I/O"].usable, features.format_report(list(reports.values()))
    assert reports["nftables plane"].usable, features.format_report(list(reports.values()))
    missing = _mroute_missing(ns)
    assert reports["mroute plane"].usable is (missing is None), features.format_report(list(reports.values()))
    if missing is None:
        rows = {row.feature: row for row in reports["mroute plane"].rows}
        assert "32 per table" in rows["IPv4 vifs per table"].detail
        assert "32 per table" in rows["IPv6 vifs per table"].detail
        assert ns.ip("-4", "mroute", "show").strip() == "" and ns.ip("-6", "mroute", "show").strip() == ""
    assert nft_text(ns, "list tables").strip() == "", "the probe table was deleted"


def test_the_command_names_the_missing_kernel_option_and_exits_zero_when_a_plane_works(netns_factory):  # noqa: F811
    ns = netns_factory()
    result = ns.run([sys.executable, "-m", "mcproxy_pmip", "-c"], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nftables plane: usable" in result.stdout
    if _mroute_missing(ns) is not None:
        assert "mroute plane: NOT USABLE" in result.stdout
        assert "--data-plane nftables" in result.stdout
        assert "CONFIG_IP_MROUTE" in result.stdout and "CONFIG_IPV6_MROUTE" in result.stdout
    else:
        assert "mroute plane: usable" in result.stdout


def test_a_busy_default_table_still_counts_as_supported(netns_factory):  # noqa: F811
    ns = netns_factory()
    missing = _mroute_missing(ns)
    if missing is not None:
        pytest.skip(f"needs kernel multicast routing: {missing}")
    from mcproxy_pmip.kernel.mroute import MrouteSocket
    with ns.entered():
        owner = MrouteSocket(Family.IPV4, None)
        try:
            row = features.run_probe("x", lambda: features.probe_mroute_socket(Family.IPV4))
        finally:
            owner.close()
    assert row.ok and "another multicast router" in row.detail


def test_start_failure_on_a_missing_plane_is_one_line(netns_factory, tmp_path):  # noqa: F811
    ns = netns_factory()
    missing = _mroute_missing(ns)
    if missing is None:
        pytest.skip("this kernel has multicast routing: the mroute plane starts")
    conf = tmp_path / "p.conf"
    conf.write_text("protocol IGMPv3;\npinstance p: lo ==> lo2;\n")
    result = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-m", "mcproxy_pmip", "-f", str(conf),
                             "--no-control", "--data-plane", "mroute"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("mcproxy-pmip:")]
    assert len(errors) == 1 and "CONFIG_IP_MROUTE" in errors[0] and "--data-plane nftables" in errors[0], \
        result.stderr
