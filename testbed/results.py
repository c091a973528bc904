"""The results.json of a handover run: its keys, writer and reader.

One schema for the netns testbed (docs/testbed.md) and the simulator
(docs/simulation.md), so that the same tools read both: a top-level object
with at least ``mode`` and ``handovers``, one row per handover and stream
with every key of ``HANDOVER_KEYS`` and, optionally, those of
``OPTIONAL_HANDOVER_KEYS`` (the testbed measures them, the simulator need
not). Other top-level keys are free (the testbed records its data planes,
timeline and fault totals, the simulator its aggregates).

The file is written as it goes, one handover row per line, so a run of
millions of rows (the simulator at domain scale) never holds its text in
memory; rows may be any mapping of the keys (the simulator's slotted rows).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

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
    """``results`` checked, as JSON: top-level keys indented, each handover row on a line."""
    check_results(results, str(path))
    with path.open("w") as out:
        out.write("{")
        for number, (key, value) in enumerate(results.items()):
            out.write(f'{"," if number else ""}\n  {json.dumps(key)}: ')
            if key == "handovers":
                _write_rows(out, value)
            else:
                out.write(json.dumps(value, indent=2).replace("\n", "\n  "))
        out.write("\n}\n")


def _write_rows(out: TextIO, rows: Sequence[Mapping[str, Any]]) -> None:
    encode = json.JSONEncoder(separators=(", ", ": "), default=dict).encode
    out.write("[")
    for number, row in enumerate(rows):
        out.write(f'{"," if number else ""}\n    {encode(row)}')
    out.write("\n  ]" if rows else "]")


def load_results(path: Path) -> dict[str, Any]:
    """A results.json of the testbed or the simulator, checked."""
    return check_results(json.loads(path.read_text()), str(path))
