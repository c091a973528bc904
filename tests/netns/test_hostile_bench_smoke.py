"""bench/hostile_bench.py runs from the checkout alone: a short run of its three phases, nftables plane.

With the attack off the harness must measure every join's report reaching
the upstream link, data gaps and status latencies; with it on, the attacker
must have sent its reports (and, in the third phase, its spray); the daemon must survive and stop with
status 0, and no ``hHb-`` namespace may be left behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bench_namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.startswith("hHb-")}


@pytest.mark.netns
@pytest.mark.slow
def test_hostile_bench_short_run_measures_and_cleans_up(tmp_path: Path) -> None:
    before = _bench_namespaces()
    result_file = tmp_path / "hostile.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "hostile_bench.py"), "--duration", "3", "--settle", "1",
         "--spray", "2000", "--spray-rate", "1000", "--outdir", str(tmp_path / "logs"), "--json", str(result_file)],
        capture_output=True, text=True, timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "report -> upstream p99, ms" in done.stdout
    result = json.loads(result_file.read_text())
    off, flood, both = result["phases"]
    assert (off["phase"], flood["phase"], both["phase"]) == ("off", "reports", "reports+data")
    assert off["report_ms"]["n"] >= 4 and off["report_ms"]["misses"] == 0, off["report_ms"]
    assert off["data_gap_ms"]["4"] is not None and off["data_gap_ms"]["6"] is not None
    assert off["status_ms"]["n"] >= 8 and off["status_ms"]["failures"] == 0
    assert flood["report_ms"]["n"] + flood["report_ms"]["misses"] + flood["report_ms"]["host_silent"] >= 4
    (reports,) = flood["attack"]
    assert reports["sent"] > 500 and reports["is_in_packets"] == {"4": 3, "6": 12}, reports
    _, spray = both["attack"]
    assert spray["distinct_sg"] == 2000 and spray["sent"] > 1000, spray
    assert result["alive_at_end"] is True and result["exit_status"] == 0
    assert _bench_namespaces() <= before, "namespaces left behind"
