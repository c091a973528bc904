"""The ``-c`` report's form: failures name their kernel option and the way out (no kernel needed)."""

from __future__ import annotations

import errno
import gzip

from mcproxy_pmip.dataplane import features
from mcproxy_pmip.errors import KernelError


def _failing() -> str:
    raise KernelError("MRT_INIT", errno.ENOPROTOOPT, "table None")


def test_a_failing_probe_becomes_a_row_naming_its_option() -> None:
    row = features.run_probe("IPv4 multicast routing socket", _failing, "CONFIG_IP_MROUTE")
    assert not row.ok and "ENOPROTOOPT" in row.detail and row.option == "CONFIG_IP_MROUTE"


def test_the_report_says_what_is_missing_and_what_to_do() -> None:
    bad = features.run_probe("IPv4 multicast routing socket", _failing, "CONFIG_IP_MROUTE")
    good = features.FeatureCheck("IPv4 nftables dup to", True, "created and deleted")
    packets = features.FeatureCheck("IPv4 IGMP packet I/O", True, "opened")
    reports = [features.PlaneReport("packet I/O", (packets,), "x"),
               features.PlaneReport("mroute plane", (bad,), "rebuild with CONFIG_IP_MROUTE, or --data-plane nftables"),
               features.PlaneReport("nftables plane", (good,), "y")]
    text = features.format_report(reports, {"CONFIG_IP_MROUTE": "n"})
    assert "mroute plane: NOT USABLE: rebuild with CONFIG_IP_MROUTE, or --data-plane nftables" in text
    assert "FAIL  IPv4 multicast routing socket" in text and "[CONFIG_IP_MROUTE is not set]" in text
    assert "nftables plane: usable" in text
    assert features.runnable(reports)
    assert not features.runnable([reports[0], reports[1], features.PlaneReport("nftables plane", (bad,), "y")])
    assert "[needs CONFIG_IP_MROUTE]" in features.format_report(reports, None)


def test_kernel_config_is_read_from_a_gzip_file(tmp_path) -> None:
    path = tmp_path / "config.gz"
    path.write_bytes(gzip.compress(b"CONFIG_NF_TABLES=y\n# CONFIG_IP_MROUTE is not set\nCONFIG_HZ=250\n"))
    config = features.read_kernel_config(path)
    assert config == {"CONFIG_NF_TABLES": "y", "CONFIG_IP_MROUTE": "n", "CONFIG_HZ": "250"}
    assert features.read_kernel_config(tmp_path / "absent.gz") is None
