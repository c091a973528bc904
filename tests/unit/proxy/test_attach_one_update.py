"""An attach with a context reaches the data plane in one update, at the end of the reactor turn.

A downstream given to an instance (``ProxyApi.add_downstream``) and the
records imported on it in the same turn (``import_records``, what the
pmipv6 plugin does for an attach with a subscription context) are handed to
the plane in ONE call, ``groups_changed(<the imported groups>)``, instead of
a refresh for the interface and a second update for its groups (on the
nftables plane: one batch per attach); without context the plane still gets
an update (of no group) at the end of the turn, which writes what it staged.
Memory plane, ``task.Clock``.
"""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.dataplane.port import SourceFilter
from mcproxy_pmip.proxy.api import ProxyApi
from mcproxy_pmip.wire.records import FilterMode, GroupRecord, RecordType
from tests.unit.proxy.memory_proxy import MemoryProxy, exclude_none

CONFIG = "protocol IGMPv3;\nprotocol MLDv2;\npinstance p: up0 ==> d1;\n"
G4, G5 = ipaddress.ip_address("239.1.1.1"), ipaddress.ip_address("239.1.1.5")


@pytest.fixture
def run():
    proxy = MemoryProxy(CONFIG, ["up0", "d1", "a1"])
    yield proxy
    proxy.stop()


def test_a_downstream_and_its_imported_context_reach_the_plane_in_one_update(run: MemoryProxy) -> None:
    run.igmp_report("d1", [exclude_none(str(G4))])
    plane = run.plane.instances["p"]
    plane.batches.clear()
    api = ProxyApi(run.proxy)
    api.add_downstream("p", "a1")
    api.import_records("p", "a1", Family.IPV4, 3, [GroupRecord(RecordType.MODE_IS_EXCLUDE, G4),
                                                   GroupRecord(RecordType.MODE_IS_EXCLUDE, G5)])
    assert plane.batches == [], "nothing before the turn ends"
    run.reactor.advance(0)
    assert len(plane.batches) == 1
    assert set(plane.batches[0]) == {(Family.IPV4, G4), (Family.IPV4, G5)}
    any_source = SourceFilter(FilterMode.EXCLUDE)
    assert plane.groups[(Family.IPV4, G4)].downstreams == (("a1", any_source), ("d1", any_source))
    assert plane.groups[(Family.IPV4, G5)].downstreams == (("a1", any_source),)


def test_a_downstream_attached_without_context_still_gets_its_update(run: MemoryProxy) -> None:
    plane = run.plane.instances["p"]
    plane.batches.clear()
    ProxyApi(run.proxy).add_downstream("p", "a1")
    assert "a1" in plane.roles
    run.reactor.advance(0)
    assert plane.batches == [[]], "the plane's update at the end of the attach (staged links go in)"
