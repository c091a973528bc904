"""InstanceCore's held subscriptions (a prepared handover, docs/handover.md): joined upstream, forwarded nowhere."""

from __future__ import annotations

import pytest

from mcproxy_pmip.membership.actions import SendReport
from mcproxy_pmip.wire.records import RecordType
from tests.unit.membership.test_instance import EXC, G, G2, HOST1, INC, S1, V4, Harness, rec

KEY = "prepared:mn1"


def upstream_reports(actions) -> list[SendReport]:
    return [a for a in actions if isinstance(a, SendReport) and a.interface == "up0"]


def test_held_records_join_upstream_and_forward_nowhere() -> None:
    h = Harness()
    actions = h.core.hold(h.now, KEY, V4, [rec(RecordType.MODE_IS_EXCLUDE, G), rec(RecordType.MODE_IS_INCLUDE, G2, S1)])
    assert upstream_reports(actions), "the held groups are reported upstream at once"
    assert h.core.membership(V4, G) == (EXC, frozenset())
    assert h.core.membership(V4, G2) == (INC, frozenset({S1}))
    assert h.core.outputs(V4, S1, G, "up0") == frozenset(), "nothing is forwarded for a holding"
    assert h.core.subscribers(V4, G) == (), "a holding is no downstream"
    assert h.core.held == (KEY,)


def test_a_downstream_taking_over_a_held_group_keeps_the_upstream_quiet() -> None:
    h = Harness()
    h.core.hold(h.now, KEY, V4, [rec(RecordType.MODE_IS_EXCLUDE, G)])
    h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G), source=HOST1)
    assert h.core.outputs(V4, S1, G, "up0") == frozenset({"d1"})
    released = h.core.release(h.now, KEY)
    assert upstream_reports(released) == [], "the merged state did not change: nothing upstream"
    assert h.core.membership(V4, G) == (EXC, frozenset()) and h.core.held == ()


def test_release_leaves_upstream() -> None:
    h = Harness()
    h.core.hold(h.now, KEY, V4, [rec(RecordType.MODE_IS_EXCLUDE, G)])
    released = h.core.release(h.now, KEY)
    assert upstream_reports(released), "the group is left upstream"
    assert h.core.membership(V4, G) is None
    assert h.core.release(h.now, KEY) == [], "a second release changes nothing"


def test_holding_again_replaces_the_family_and_a_key_may_not_be_an_interface() -> None:
    h = Harness()
    h.core.hold(h.now, KEY, V4, [rec(RecordType.MODE_IS_EXCLUDE, G)])
    h.core.hold(h.now, KEY, V4, [rec(RecordType.MODE_IS_EXCLUDE, G2)])
    assert h.core.membership(V4, G) is None and h.core.membership(V4, G2) == (EXC, frozenset())
    h.core.hold(h.now, KEY, V4, [])
    assert h.core.held == () and h.core.membership(V4, G2) is None
    with pytest.raises(ValueError):
        h.core.hold(h.now, "d1", V4, [rec(RecordType.MODE_IS_EXCLUDE, G)])
