"""The nftables plane's attach path: a new downstream and its groups cost the kernel one batch.

A new downstream's dispatch element is staged by ``add_interface`` and goes
with the plane's next batch (``groups_changed``, which the proxy makes at the
end of the attach with the imported context's groups, or ``refresh``). Same
router namespace as ``test_nft_plane`` (source, router, two hosts).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.dataplane.port import ANY_SOURCE, GroupOutputs, Role
from mcproxy_pmip.errors import KernelError
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.planes import nft_text
from tests.netns.test_nft_plane import (G, G2, S1, TABLE, V4, V6, Router, pending, read_until, receiver, send,
                                        sender, started_router)

pytestmark = [pytest.mark.netns]


def open_upstream_only(r: Router) -> None:
    with r.ns.entered():
        r.instance = r.plane.open_instance("myProxy", frozenset(Family), None, r.view)
        r.instance.add_interface("up0", socket.if_nametoindex("up0"), Role.UPSTREAM)


@pytest.fixture
def bare(netns_factory) -> Iterator[Router]:  # noqa: F811
    """The router with an instance that has only its upstream (``up0``)."""
    with started_router(netns_factory, open_upstream_only) as r:
        yield r


def _batches(r: Router) -> int:
    return _counter(r, "nft_batches")


def _counter(r: Router, name: str) -> int:
    with r.ns.entered():
        return r.instance.counters().get(name, 0)


def _add(r: Router, name: str) -> None:
    with r.ns.entered():
        r.instance.add_interface(name, socket.if_nametoindex(name), Role.DOWNSTREAM)


def test_a_new_downstream_and_its_context_groups_cost_one_batch_and_data_flows(bare):
    r = bare
    before = _batches(r)
    _add(r, "down0")
    assert _batches(r) == before, "the new downstream is staged, not a batch of its own"
    assert '"down0"' not in nft_text(r.ns, f"list map ip {TABLE} ifaces")
    for family in (V4, V6):
        r.view.decisions[(family, G[family])] = GroupOutputs(family, G[family], (("down0", ANY_SOURCE),),
                                                             ("up0",))
    with r.ns.entered():
        r.instance.groups_changed([(V4, G[V4]), (V6, G[V6])])
    assert _batches(r) == before + 1
    for family in (V4, V6):
        assert '"down0"' in nft_text(r.ns, f"list map {'ip' if family is V4 else 'ip6'} {TABLE} ifaces")
    on_h1 = r.keep(receiver(r.h1, V4, G[V4]))
    send(r.keep(sender(r.source, S1[V4])), G[V4], b"after the attach")
    assert read_until(on_h1, b"after the attach") == [b"after the attach"]


def test_a_staged_downstream_removed_or_closed_before_its_batch_leaves_nothing(bare):
    r = bare
    _add(r, "down0")
    before = _batches(r)
    with r.ns.entered():
        r.instance.remove_interface("down0")
    assert _batches(r) == before, "nothing was in the kernel: nothing to delete"
    with r.ns.entered():
        r.instance.groups_changed([])
    assert '"down0"' not in nft_text(r.ns, f"list map ip {TABLE} ifaces")
    _add(r, "down1")
    with r.ns.entered():
        r.instance.close()
    listing = nft_text(r.ns, f"list table ip {TABLE}")
    assert "down1" not in listing and "i1" not in listing


def test_a_refused_group_does_not_hold_back_a_staged_downstream(bare):
    r = bare
    _add(r, "down1")
    with r.ns.entered():
        r.instance.add_interface("ghost0", 999, Role.DOWNSTREAM)
    r.view.decisions[(V4, G2[V4])] = GroupOutputs(V4, G2[V4], (("ghost0", ANY_SOURCE),), ("up0",))
    with pytest.raises(KernelError), r.ns.entered():
        r.instance.groups_changed([(V4, G2[V4])])
    dispatch = nft_text(r.ns, f"list map ip {TABLE} ifaces")
    assert '"down1"' in dispatch and '"ghost0"' in dispatch, "the staged elements went in on their own"
    r.want(V4, G[V4], ("down1", ANY_SOURCE))
    on_h2 = r.keep(receiver(r.h2, V4, G[V4]))
    send(r.keep(sender(r.source, S1[V4])), G[V4], b"to down1")
    assert read_until(on_h2, b"to down1") == [b"to down1"]
    assert pending(on_h2) == []


def test_a_downstream_joining_a_forwarded_group_is_appended_and_a_leave_rewrites_the_chain(bare):
    r = bare
    _add(r, "down0")
    _add(r, "down1")
    r.want(V4, G[V4], ("down0", ANY_SOURCE))
    chain = f"list chain ip {TABLE} i1_g{G[V4].packed.hex()}"
    before = nft_text(r.ns, chain)
    netlink_batches = _counter(r, "nft_netlink_batches")
    r.want(V4, G[V4], ("down0", ANY_SOURCE), ("down1", ANY_SOURCE))
    assert _counter(r, "nft_netlink_batches") == netlink_batches + 1, "additions only: our own netlink batch"
    after = nft_text(r.ns, chain)
    assert after.startswith(before.rstrip().rsplit("}", 2)[0].rstrip()), "the old rules stay as they were"
    assert after.count("jump") == before.count("jump") + 1 and after.rstrip().endswith("}")
    on_h1, on_h2 = r.keep(receiver(r.h1, V4, G[V4])), r.keep(receiver(r.h2, V4, G[V4]))
    src = r.keep(sender(r.source, S1[V4]))
    send(src, G[V4], b"to both")
    assert read_until(on_h1, b"to both") == [b"to both"]
    assert read_until(on_h2, b"to both") == [b"to both"]
    r.want(V4, G[V4], ("down1", ANY_SOURCE))
    assert '"down0"' not in nft_text(r.ns, chain), "a removal writes the chain again"
    send(src, G[V4], b"down1 only")
    assert read_until(on_h2, b"down1 only") == [b"down1 only"]
    assert pending(on_h1) == []


def test_a_refused_netlink_batch_changes_nothing_and_the_next_one_is_answered(bare):
    from mcproxy_pmip.kernel import nft_netlink as netlink
    r = bare
    with r.ns.entered():
        writer = netlink.NftNetlink()
    try:
        with pytest.raises(KernelError) as refused:
            writer.commit([netlink.new_chain(V4, TABLE, "afp_new"),
                           netlink.rule_dup(V4, TABLE, "no_such_chain", 1)])
        assert "message 2 of 2" in str(refused.value)
        assert "afp_new" not in nft_text(r.ns, f"list table ip {TABLE}"), "one transaction: nothing applied"
        writer.commit([netlink.new_chain(V4, TABLE, "afp_new")])
        assert "afp_new" in nft_text(r.ns, f"list table ip {TABLE}")
    finally:
        writer.close()
