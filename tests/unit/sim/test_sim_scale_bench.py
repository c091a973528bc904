"""bench/sim_scale.py runs from a clone: a tiny size end to end, the dwell and rows settings
reaching the run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "sim_scale.py"


def _line(*options: str) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), "--mns", "20", "--hours", "0.1", "-n", "1",
                           "--mags", "4", *options], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _handovers_per_mn_hour(dwell: str) -> float:
    line = _line("--dwell", dwell)
    assert f"dwell {dwell.replace(',', '-')} s" in line, line
    assert "EXTRAPOLATED to 1 h" in line, line
    found = re.search(r"handovers (\d+) \(([\d.]+) per MN and hour\)", line)
    assert found is not None, line
    assert int(found.group(1)) > 0, line
    return float(found.group(2))


def test_a_shorter_dwell_gives_more_handovers() -> None:
    assert _handovers_per_mn_hour("5,10") > 2 * _handovers_per_mn_hour("30,60")


def test_without_rows_the_same_run_is_measured() -> None:
    events = re.compile(r"events (\d+); handovers (\d+)")
    with_rows, without = _line(), _line("--no-rows")
    assert "no rows" in without and "no rows" not in with_rows
    assert events.search(with_rows).groups() == events.search(without).groups(), (with_rows, without)
