"""The nftables plane's attach path without a kernel: staged downstreams, appended group rules.

``NftInstancePlane`` over a recording stand-in for ``NftablesPlane.apply``
(every batch kept as its command list) and a view whose decisions the test
sets: a new downstream costs no batch of its own, its first update carries
its map element, its output chain (no ``flush`` for a chain never loaded)
and only the rules the groups gain.
"""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.dataplane import nft_rules as rules
from mcproxy_pmip.dataplane.nft_instance import NftInstancePlane
from mcproxy_pmip.dataplane.port import ANY_SOURCE, GroupOutputs, Role, RouteBudget, SourceFilter
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.wire.records import FilterMode

V4 = Family.IPV4
G = ipaddress.ip_address("239.1.1.1")
T = "mcproxy_pmip"


class RecordingPlane:
    table_name = T

    def __init__(self) -> None:
        self.routes = RouteBudget()
        self.batches: list[list[str]] = []
        self.refuse = ""
        self.netlink = False
        self.messages: list = []

    def apply_messages(self, messages, counters=None) -> bool:
        """The netlink path: taken (True) only when the test says so; the messages are kept."""
        if messages:
            self.messages.append(messages)
        return self.netlink or not messages

    def apply(self, commands, counters=None) -> None:
        if any(self.refuse and self.refuse in command for command in commands):
            raise KernelError("nft", 22, f"refused {self.refuse}")
        if commands:
            self.batches.append(list(commands))


class View:
    def __init__(self) -> None:
        self.decisions: dict = {}

    def group_outputs(self, family, group):
        return self.decisions.get((family, group), GroupOutputs(family, group))

    def default_upstreams(self, family):
        return ("t0",)


def instance() -> tuple[NftInstancePlane, RecordingPlane, View]:
    plane, view = RecordingPlane(), View()
    forwarding = NftInstancePlane(plane, "p", frozenset({V4}), rules.instance_names(1), view,
                                  plane.routes.quota("p"), 16)
    forwarding.add_interface("t0", 2, Role.UPSTREAM)
    forwarding.add_interface("d0", 3, Role.DOWNSTREAM)
    view.decisions[(V4, G)] = GroupOutputs(V4, G, (("d0", ANY_SOURCE),), ("t0",))
    forwarding.groups_changed([(V4, G)])
    plane.batches.clear()
    return forwarding, plane, view


def test_a_new_downstream_is_staged_and_goes_with_the_next_update_with_only_the_appended_rule():
    forwarding, plane, view = instance()
    forwarding.add_interface("a1", 4, Role.DOWNSTREAM)
    assert plane.batches == []
    view.decisions[(V4, G)] = GroupOutputs(V4, G, (("a1", ANY_SOURCE), ("d0", ANY_SOURCE)), ("t0",))
    forwarding.groups_changed([(V4, G)])
    [batch] = plane.batches
    assert batch == [f'add element ip {T} ifaces {{ "a1" : goto i1 }}',
                     f"add chain ip {T} i1_o3",
                     f'add rule ip {T} i1_o3 dup to ip daddr device "a1"',
                     f'add rule ip {T} i1_gef010101 iifname != "a1" jump i1_o3']


def test_an_attach_of_additions_only_goes_as_netlink_messages_when_the_socket_takes_them():
    forwarding, plane, view = instance()
    plane.netlink = True
    forwarding.add_interface("a1", 4, Role.DOWNSTREAM)
    view.decisions[(V4, G)] = GroupOutputs(V4, G, (("a1", ANY_SOURCE), ("d0", ANY_SOURCE)), ("t0",))
    forwarding.groups_changed([(V4, G)])
    assert plane.batches == [], "no nft text"
    [messages] = plane.messages
    assert [m.kind for m in messages] == [12, 3, 6, 6], "element, chain, dup rule, jump rule"
    view.decisions[(V4, G)] = GroupOutputs(V4, G, (("d0", ANY_SOURCE),), ("t0",))
    forwarding.groups_changed([(V4, G)])
    assert len(plane.batches) == 1 and f"flush chain ip {T} i1_gef010101" in plane.batches[0], \
        "a removal is nft text"


def test_an_update_of_no_group_writes_what_is_staged_and_a_removal_before_it_writes_nothing():
    forwarding, plane, _ = instance()
    forwarding.add_interface("a1", 4, Role.DOWNSTREAM)
    forwarding.groups_changed([])
    assert plane.batches == [[f'add element ip {T} ifaces {{ "a1" : goto i1 }}']]
    plane.batches.clear()
    forwarding.add_interface("a2", 5, Role.DOWNSTREAM)
    forwarding.remove_interface("a2")
    forwarding.groups_changed([])
    assert plane.batches == []


def test_anything_but_an_addition_writes_the_group_chain_again():
    forwarding, plane, view = instance()
    narrowed = SourceFilter(FilterMode.INCLUDE, frozenset({ipaddress.ip_address("10.1.0.2")}))
    view.decisions[(V4, G)] = GroupOutputs(V4, G, (("d0", narrowed),), ("t0",))
    forwarding.groups_changed([(V4, G)])
    [batch] = plane.batches
    assert f"flush chain ip {T} i1_gef010101" in batch


def test_a_refused_batch_still_writes_the_staged_downstreams_on_their_own():
    forwarding, plane, view = instance()
    forwarding.add_interface("a1", 4, Role.DOWNSTREAM)
    forwarding.add_interface("bad0", 6, Role.DOWNSTREAM)
    plane.refuse = 'device "bad0"'
    view.decisions[(V4, G)] = GroupOutputs(V4, G, (("bad0", ANY_SOURCE), ("d0", ANY_SOURCE)), ("t0",))
    with pytest.raises(KernelError):
        forwarding.groups_changed([(V4, G)])
    assert plane.batches == [[f'add element ip {T} ifaces {{ "a1" : goto i1 }}',
                              f'add element ip {T} ifaces {{ "bad0" : goto i1 }}']]
    plane.batches.clear()
    forwarding.groups_changed([])
    assert plane.batches == [], "nothing left staged"


def test_netlink_messages_encode_the_attributes_nf_tables_reads():
    from mcproxy_pmip.kernel import nft_netlink as netlink
    rule = netlink.rule_jump_unless_iifname(V4, T, "i1_gef010101", "a1", "i1_o3")
    assert rule.kind == netlink.NFT_MSG_NEWRULE and rule.flags & netlink.NLM_F_APPEND
    assert b"a1" + bytes(14) in rule.attributes and b"i1_o3\0" in rule.attributes
    dup = netlink.rule_dup(Family.IPV6, T, "i1_o3", 7)
    assert (24).to_bytes(4, "big") + b"\x08\x00\x04\x00" + (16).to_bytes(4, "big") in dup.attributes
    batch, numbers = netlink.encode_batch([rule, dup], 100)
    assert numbers == [101, 102] and len(batch) % 4 == 0
    flags = [int.from_bytes(batch[offset + 6:offset + 8], "little") for offset in _offsets(batch)]
    assert [bool(f & netlink.NLM_F_ACK) for f in flags] == [False, False, True, False], "only the last asks"
    with pytest.raises(KernelError):
        netlink.interface_name("x" * 16)


def _offsets(batch: bytes) -> list[int]:
    """Where each netlink message of a batch starts."""
    offsets, offset = [], 0
    while offset < len(batch):
        offsets.append(offset)
        offset += (int.from_bytes(batch[offset:offset + 4], "little") + 3) & ~3
    return offsets
