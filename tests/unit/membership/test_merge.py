"""RFC 4605 §4.1 merge (with the RFC 3376 §3.2 merging rules): examples and properties."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from mcproxy_pmip.membership.merge import merge
from mcproxy_pmip.wire.records import FilterMode

INC = FilterMode.INCLUDE
EXC = FilterMode.EXCLUDE
A, B, C, D, E, F = (ipaddress.ip_address(f"10.0.0.{i}") for i in range(1, 7))


def test_all_include_is_the_union() -> None:
    assert merge([(INC, frozenset({A, B, C})), (INC, frozenset({B, C, D})), (INC, frozenset({E, F}))]) \
        == (INC, frozenset({A, B, C, D, E, F}))


def test_exclude_is_intersection_of_excludes_minus_includes() -> None:
    # RFC 3376 §3.2's example: EXCLUDE{a,b,c,d}, EXCLUDE{b,c,d,e}, INCLUDE{d,e,f} -> EXCLUDE{b,c}
    states = [(EXC, frozenset({A, B, C, D})), (EXC, frozenset({B, C, D, E})), (INC, frozenset({D, E, F}))]
    assert merge(states) == (EXC, frozenset({B, C}))


def test_any_exclude_wins_over_includes() -> None:
    assert merge([(INC, frozenset({A, B})), (EXC, frozenset())]) == (EXC, frozenset())
    assert merge([(INC, frozenset({A})), (EXC, frozenset({A, B}))]) == (EXC, frozenset({B}))


def test_scenario_10_v2_member_and_source_specific_member() -> None:
    # docs/scenarios.md item 10: I1 has (G) (EXCLUDE {}), I2 INCLUDE{S1,S2} -> EXCLUDE({})
    assert merge([(EXC, frozenset()), (INC, frozenset({A, B}))]) == (EXC, frozenset())
    # I1 expired: only I2 remains -> INCLUDE{S1,S2}
    assert merge([None, (INC, frozenset({A, B}))]) == (INC, frozenset({A, B}))


def test_no_membership() -> None:
    assert merge([]) is None
    assert merge([None, None]) is None
    assert merge([(INC, frozenset()), (INC, frozenset())]) is None


_sources = st.frozensets(st.sampled_from([A, B, C, D, E, F]))
_state = st.one_of(st.none(), st.tuples(st.sampled_from([INC, EXC]), _sources))


def _wanted(state: tuple[FilterMode, frozenset] | None, source: object) -> bool:
    if state is None:
        return False
    mode, sources = state
    return (source in sources) if mode is INC else (source not in sources)


@given(st.lists(_state, max_size=6))
def test_merged_state_forwards_exactly_what_some_downstream_wants(states: list) -> None:
    merged = merge(states)
    for source in (A, B, C, D, E, F):
        assert _wanted(merged, source) == any(_wanted(s, source) for s in states)
    if merged is not None and merged[0] is INC:
        assert merged[1], "INCLUDE with no sources must be reported as no membership"


@given(st.lists(_state, max_size=6))
def test_merge_is_order_independent(states: list) -> None:
    assert merge(states) == merge(list(reversed(states)))
