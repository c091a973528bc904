"""InstanceCore.restart_downstream: a downstream that regains carrier is queried again, state kept."""

from __future__ import annotations

from mcproxy_pmip.membership.actions import SendQuery
from mcproxy_pmip.wire.records import RecordType

from tests.unit.membership.test_instance import EXC, G, V4, Harness, rec


def test_restart_sends_general_query_and_keeps_membership():
    harness = Harness(downstreams=("d1",))
    harness.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    harness.advance(200.0)  # past the startup queries, before the 260 s membership timeout
    out = harness.core.restart_downstream(harness.now, "d1", V4)
    queries = [a for a in out if isinstance(a, SendQuery)]
    assert [(q.interface, q.group) for q in queries] == [("d1", None)]
    assert harness.core.router("d1", V4).membership(G) == (EXC, frozenset())
    startup = [a for a in harness.advance(2.0) if isinstance(a, SendQuery)]
    assert startup == [], "the next startup query waits for the startup query interval"
    deadline = harness.core.get_timer()
    assert deadline is not None and deadline <= harness.now + 31.25
