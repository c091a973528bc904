"""The results.json of a handover run: its keys, writer and reader.

One schema for the netns testbed (docs/testbed.md) and the simulator
(docs/simulation.md), so that the same tools read both: a top-level object
with at least ``mode`` and ``handovers``, one row per handover and stream
with every key of ``HANDOVER_KEYS`` and, optionally, those of
``OPTIONAL_HANDOVER_KEYS`` (the testbed measures them, the simulator need
not). Other top-level keys are free (the testbed records its data planes,
timeline and fault totals, the simulator its aggregates).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HANDOVER_KEYS = ("handover", "mn", "from_mag", "to_mag", "mode", "stream", "family", "group",
                 "detach_at", "attach_at", "l2_outage_ms", "gap_ms", "lost", "duplicated",
                 "attach_to_upstream_report_ms", "attach_to_first_packet_ms")
OPTIONAL_HANDOVER_KEYS = ("reordered", "attach_to_last_buffered_packet_ms", "binding_attach_to_first_packet_ms",
                          "binding_attach_to_last_buffered_packet_ms")


def check_results(results: dict[str, Any], where: str = "results") -> dict[str, Any]:
    """``results`` if it has the shared schema, else ValueError naming the first problem."""
    for key in ("mode", "handovers"):
        if key not in results:
            raise ValueError(f"{where}: no {key!r}")
    for index, row in enumerate(results["handovers"]):
        missing = sorted(set(HANDOVER_KEYS) - set(row))
        extra = sorted(set(row) - set(HANDOVER_KEYS) - set(OPTIONAL_HANDOVER_KEYS))
        if missing or extra:
            raise ValueError(f"{where}: handovers[{index}] missing {missing} extra {extra}")
    return results


def write_results(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(check_results(results, str(path)), indent=2))


def load_results(path: Path) -> dict[str, Any]:
    """A results.json of the testbed or the simulator, checked."""
    return check_results(json.loads(path.read_text()), str(path))
