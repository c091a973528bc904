"""One test per row of RFC 3376 §6.4.1 / §6.4.2 (RFC 3810 §7.4.1 / §7.4.2), both families.

Start states, built at T=0 (GMI 260 s, LMQT 2 s):
INCLUDE (A): A = {S1, S2}, source timers 260.
EXCLUDE (X,Y): X = {S1, S2} (timers 260), Y = {S3, S4}, group timer 260.
The record arrives at T=10. INCLUDE rows use B = {S2, S3}; EXCLUDE rows use
A = {S2, S3, S5}, so every part of the RFC's set expressions is non-empty.
"""

from __future__ import annotations

import pytest

from mcproxy_pmip.membership.router_table import ROWS
from mcproxy_pmip.wire.records import FilterMode
from router_support import (ALLOW, BLOCK, IS_EX, IS_IN, PLAN_IDS, PLANS, TO_EX, TO_IN, report,
                            router, specific_queries)

INCLUDE = FilterMode.INCLUDE
EXCLUDE = FilterMode.EXCLUDE
T = 10.0
GMI_AT = T + 260.0
OLD_AT = 260.0
LMQT_AT = T + 2.0
Y = None

# (start mode, record) -> (new mode, {source n: timer deadline or Y}, group timer, queries)
# queries: list of (source numbers or None for Q(G), S flag)
CASES = {
    (INCLUDE, IS_IN): (INCLUDE, {1: OLD_AT, 2: GMI_AT, 3: GMI_AT}, None, []),
    (INCLUDE, IS_EX): (EXCLUDE, {2: OLD_AT, 3: Y}, GMI_AT, []),
    (EXCLUDE, IS_IN): (EXCLUDE, {1: OLD_AT, 2: GMI_AT, 3: GMI_AT, 4: Y, 5: GMI_AT}, OLD_AT, []),
    (EXCLUDE, IS_EX): (EXCLUDE, {2: OLD_AT, 3: Y, 5: GMI_AT}, GMI_AT, []),
    (INCLUDE, ALLOW): (INCLUDE, {1: OLD_AT, 2: GMI_AT, 3: GMI_AT}, None, []),
    (INCLUDE, BLOCK): (INCLUDE, {1: OLD_AT, 2: LMQT_AT}, None, [((2,), False)]),
    (INCLUDE, TO_EX): (EXCLUDE, {2: LMQT_AT, 3: Y}, GMI_AT, [((2,), False)]),
    (INCLUDE, TO_IN): (INCLUDE, {1: LMQT_AT, 2: GMI_AT, 3: GMI_AT}, None, [((1,), False)]),
    (EXCLUDE, ALLOW): (EXCLUDE, {1: OLD_AT, 2: GMI_AT, 3: GMI_AT, 4: Y, 5: GMI_AT}, OLD_AT, []),
    (EXCLUDE, BLOCK): (EXCLUDE, {1: OLD_AT, 2: LMQT_AT, 3: Y, 4: Y, 5: LMQT_AT}, OLD_AT,
                       [((2, 5), False)]),
    (EXCLUDE, TO_EX): (EXCLUDE, {2: LMQT_AT, 3: Y, 5: LMQT_AT}, GMI_AT, [((2, 5), False)]),
    (EXCLUDE, TO_IN): (EXCLUDE, {1: LMQT_AT, 2: GMI_AT, 3: GMI_AT, 4: Y, 5: GMI_AT}, LMQT_AT,
                       [(None, False), ((1,), False)]),
}


def start_state(plan, mode):
    r = router(plan)
    if mode is INCLUDE:
        report(r, plan, 0.0, IS_IN, (plan.s(1), plan.s(2)))
    else:
        report(r, plan, 0.0, IS_EX, (plan.s(3), plan.s(4)))
        report(r, plan, 0.0, ALLOW, (plan.s(1), plan.s(2)))
    return r


def test_every_row_has_a_case_and_cites_its_section():
    assert set(ROWS) == set(CASES)
    for (mode, record_type), row in ROWS.items():
        section = "§6.4.1" if record_type.is_current_state else "§6.4.2"
        assert row.section == f"RFC 3376 {section}"
        assert row.text.startswith(f"{mode.value} (")
        assert f" {record_type.short} (" in row.text


@pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)
@pytest.mark.parametrize("key", list(CASES), ids=[f"{m.value}-{t.short}" for m, t in CASES])
def test_row(plan, key):
    mode, record_type = key
    new_mode, timers, group_timer_at, queries = CASES[key]
    r = start_state(plan, mode)
    assert r.membership(plan.group)[0] is mode
    record = (plan.s(2), plan.s(3)) if mode is INCLUDE else (plan.s(2), plan.s(3), plan.s(5))
    actions = report(r, plan, T, record_type, record)
    assert r.membership(plan.group)[0] is new_mode, ROWS[key].text
    assert r.source_timers(plan.group) == {plan.s(n): at for n, at in timers.items()}, ROWS[key].text
    assert r.group_timer_at(plan.group) == group_timer_at, ROWS[key].text
    expected_queries = [(plan.group, tuple(plan.s(n) for n in numbers) if numbers else (), flag)
                        for numbers, flag in queries]
    assert specific_queries(actions) == expected_queries, ROWS[key].text
    expected_membership = ({plan.s(n) for n in timers} if new_mode is INCLUDE
                           else {plan.s(n) for n, at in timers.items() if at is None})
    assert r.membership(plan.group) == (new_mode, frozenset(expected_membership))
