"""bench/proxybench.py runs from the checkout alone: a short run on the nftables plane, both families.

The harness must measure (report -> upstream report, report -> data), pass
both source-filter cases against our daemon, exit 0, and leave none of its
``pxb-`` namespaces behind.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REPS = 3


def _nf_dup_missing() -> str | None:
    """Why nftables ``dup to`` is unusable here (probed in a namespace of its own), or None."""
    name = f"pxb-probe-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for family, group, option in (("ip", "224.0.0.1", "CONFIG_NF_DUP_IPV4"),
                                      ("ip6", "ff02::1", "CONFIG_NF_DUP_IPV6")):
            rules = f'table {family} probe {{\n chain c {{\n dup to {group} device "lo"\n }}\n}}\n'
            done = subprocess.run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=rules, capture_output=True,
                                  text=True)
            if done.returncode != 0:
                return f"the kernel refuses nftables dup (needs {option}): {done.stderr.strip()[:200]}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)
    return None


def _pxb_namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.startswith("pxb-")}


@pytest.mark.netns
@pytest.mark.slow
def test_proxybench_short_run_measures_filters_and_cleans_up(tmp_path: Path) -> None:
    if shutil.which("nft") is None:
        pytest.skip("needs the nft command (Debian package nftables)")
    missing = _nf_dup_missing()
    if missing:
        pytest.skip(missing)
    before = _pxb_namespaces()
    result_file = tmp_path / "pb.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "proxybench.py"), "--daemons", "ours", "--planes", "nftables",
         "--families", "4,6", "--scenarios", "latency,filter", "--reps", str(REPS), "--hosts", "2",
         "--outdir", str(tmp_path / "logs"), "--json", str(result_file)],
        capture_output=True, text=True, timeout=240, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    columns = json.loads(result_file.read_text())["columns"]
    assert [c["column"] for c in columns] == ["ours/nftables/v4", "ours/nftables/v6"]
    for column in columns:
        assert "error" not in column, column["error"]
        assert column["latency"]["report_to_upstream_ms"]["n"] == REPS, column["latency"]
        assert column["latency"]["report_to_data_ms"]["n"] == REPS, column["latency"]
        assert column["filter"]["include"]["pass"], column["filter"]["include"]
        assert column["filter"]["exclude"]["pass"], column["filter"]["exclude"]
        assert column["exit_status"] == 0
    assert "PASS S1=" in done.stdout
    assert _pxb_namespaces() <= before, "proxybench left namespaces behind"
