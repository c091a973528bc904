"""bench/attach_path.py runs from the checkout alone; a context attach costs the daemon one transaction.

A short run on the nftables plane: every attach delivers both families'
data on the new access link, the daemon's probe shows exactly one transaction
per attach, written as netlink messages (the staged link, its output chains
and the appended group rules), and none of the ``afp-`` namespaces is left behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns.test_nft_plane import _library_missing

REPO = Path(__file__).resolve().parents[2]
REPS = 3

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(_library_missing(), reason="needs libnftables.so.1 (Debian package libnftables1)")]


def _afp_namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.startswith("afp-")}


def test_attach_path_bench_measures_one_batch_per_attach_and_cleans_up(tmp_path):
    before = _afp_namespaces()
    out = tmp_path / "attach.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "attach_path.py"), "-n", str(REPS),
                           "--planes", "nftables", "--json", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    [result] = json.loads(out.read_text())
    assert result["plane"] == "nftables" and len(result["rows"]) == REPS
    for row in result["rows"]:
        assert all(row["first_ms"][family] is not None for family in ("4", "6")), row["first_ms"]
        assert len(row["nft_batches"]) == 1, f"one transaction per attach, got {row['nft_batches']}"
        assert row["nft_batches"][0][0] == "netlink", "additions only: written as netlink messages"
        assert row["reply_ms"] > 0 and row["request_received_ms"] is not None
    assert "request -> first packet IPv4" in done.stdout
    assert _afp_namespaces() == before, "the bench removes its namespaces"
