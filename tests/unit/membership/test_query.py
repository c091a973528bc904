"""The engine's family-neutral ``Query`` and its one constructor from decoded messages."""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.membership.query import Query, query_from_wire
from mcproxy_pmip.wire import igmp, mld

G4 = ipaddress.ip_address("232.1.1.1")
S4 = (ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2"))
QUERIER4 = ipaddress.ip_address("10.0.0.254")
G6 = ipaddress.ip_address("ff3e::8000:1")
S6 = (ipaddress.ip_address("2001:db8::1"),)
QUERIER6 = ipaddress.ip_address("fe80::1")


def test_igmpv3_group_and_source_specific_query_keeps_every_field() -> None:
    message = igmp.IgmpQuery(3, 1.5, G4, S4, True, 3, 60.0)
    assert query_from_wire(message, QUERIER4) == Query(
        version=3, source=QUERIER4, max_resp_interval=1.5, group=G4, sources=S4,
        suppress_router_processing=True, robustness=3, query_interval=60.0)


def test_igmpv2_general_query_carries_no_querier_values() -> None:
    query = query_from_wire(igmp.IgmpQuery(2, 10.0), QUERIER4)
    assert (query.version, query.group, query.sources, query.robustness,
            query.query_interval) == (2, None, (), 0, 0.0)


def test_mld_queries_of_both_versions() -> None:
    v2 = query_from_wire(mld.MldQuery(2, 10.0, G6, S6, False, 2, 125.0), QUERIER6)
    assert v2 == Query(2, QUERIER6, 10.0, G6, S6, False, 2, 125.0)
    v1 = query_from_wire(mld.MldQuery(1, 1.0, G6), QUERIER6)
    assert v1 == Query(1, QUERIER6, 1.0, G6)


def test_sources_become_a_tuple_and_the_value_is_frozen() -> None:
    query = Query(3, QUERIER4, 10.0, G4, list(S4))
    assert query.sources == S4
    with pytest.raises(AttributeError):
        query.version = 2  # type: ignore[misc]


@pytest.mark.parametrize("fields", [
    {"version": 0},
    {"max_resp_interval": -1.0},
    {"robustness": -1},
    {"query_interval": -0.5},
])
def test_invalid_values_cannot_be_built(fields: dict) -> None:
    values = {"version": 3, "source": QUERIER4, "max_resp_interval": 10.0} | fields
    with pytest.raises(ValueError):
        Query(**values)
