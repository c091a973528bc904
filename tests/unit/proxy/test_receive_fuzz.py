"""A seeded fuzz of the real receive path (decode -> Receiver -> Proxy -> engine -> plane) has zero escapes.

``bench/fuzz_receive.py`` runs the same harness with 10^6 packets.
"""

from __future__ import annotations

import pytest

from tests.unit.proxy.receive_fuzz import ReceiveFuzz

PACKETS = 15_000


@pytest.mark.parametrize("seed", [11, 12])
def test_mutated_packets_are_accepted_or_dropped_with_a_counted_reason(seed: int) -> None:
    fuzz = ReceiveFuzz(seed)
    try:
        result = fuzz.feed(PACKETS)
        assert result.escapes == []
        assert result.packets == PACKETS == result.accepted + result.dropped_total
        assert "receiver_silent" not in result.dropped, "every packet not delivered is counted by a reason"
        assert result.accepted > PACKETS // 5, "valid and harmlessly mutated packets get through"
        reached = {reason.split("_", 1)[1] for reason in result.dropped if not reason.startswith("decode_")}
        for reason in ("record_overrun", "bad_checksum", "too_short", "query_not_on_link", "own_report"):
            assert reason in reached, f"the fuzz never reached {reason}: {sorted(reached)}"
        plane = fuzz.run.plane.instances["p"]
        assert plane.groups, "accepted reports built state in the data plane"
    finally:
        fuzz.close()
