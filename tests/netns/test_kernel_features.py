"""The ``-c`` feature check against the real kernel, inside a fresh namespace."""

from __future__ import annotations

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.kernel import features
from mcproxy_pmip.kernel.mroute import MrouteSocket
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)

pytestmark = pytest.mark.netns


def test_basics_report_ok_and_leave_nothing_behind(netns_factory):  # noqa: F811
    ns = netns_factory()
    rules_before = ns.ip("-4", "mrule", "show") + ns.ip("-6", "mrule", "show")
    with ns.entered():
        rows = features.check_features()
    by_name = {row.feature: row for row in rows}
    assert len(by_name) == len(rows) == 13
    failed = [row for row in rows if not row.ok]
    assert failed == [], features.format_report(failed)
    assert "32 per table" in by_name["IPv4 vifs per table"].detail
    assert "32 per table" in by_name["IPv6 vifs per table"].detail
    assert by_name["IPv4 sources per socket filter (net.ipv4.igmp_max_msf)"].detail.startswith(
        ns.read_sysctl("net.ipv4.igmp_max_msf") + " "
    )
    report = features.format_report(rows)
    assert report.count("\n") == 12 and "FAIL" not in report
    assert ns.ip("-4", "mrule", "show") + ns.ip("-6", "mrule", "show") == rules_before
    assert ns.ip("-4", "mroute", "show").strip() == "" and ns.ip("-6", "mroute", "show").strip() == ""


def test_busy_default_table_still_counts_as_supported(netns_factory):  # noqa: F811
    ns = netns_factory()
    with ns.entered():
        owner = MrouteSocket(Family.IPV4, None)
        try:
            rows = {row.feature: row for row in features.check_features()}
        finally:
            owner.close()
    row = rows["IPv4 multicast routing socket (MRT_INIT)"]
    assert row.ok and "another multicast router" in row.detail
    assert rows["IPv4 vifs per table"].ok

