"""The nftables plane's attach batch as nf_tables netlink messages (``kernel.nft_netlink``), not nft text.

A batch qualifies when it only adds: downstreams' ``ifaces`` elements
(staged by ``add_interface``), output chains loaded for the first time
(``add chain`` and the ``dup`` rule, the device given by the ifindex the
plane knows), and jumps appended to group chains for downstreams that take
every source (``iifname != "<name>" jump <output chain>``). That is what a
mobile node's attach with its context at a MAG that already forwards the
groups writes. Anything else (a group chain written again, a source filter,
a removal, a default upstream, an output chain reloaded) goes through
libnftables as nft text. The messages are the same changes the text would
make, in the same order, in one transaction; libnftables' listing of every
chain and link before such a batch is what they avoid (docs/dataplanes.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.dataplane import nft_rules as rules
from mcproxy_pmip.dataplane.port import ANY_SOURCE, SourceFilter
from mcproxy_pmip.kernel import nft_netlink as netlink

#: (family, group) and the downstreams appended to its chain, each with its source filter
Appended = tuple[tuple[Family, IPAddress], tuple[tuple[str, SourceFilter], ...]]


def qualifies(appended: Iterable[Appended]) -> bool:
    """True when every appended downstream takes every source (its rule has no source match)."""
    return all(source_filter == ANY_SOURCE for _, added in appended for _, source_filter in added)


def attach_messages(table: str, names: rules.InstanceNames, families: Iterable[Family], staged: Iterable[str],
                    loads: Sequence[tuple[Family, str]], appended: Iterable[Appended],
                    output_chains: Mapping[str, str], ifindex: Mapping[str, int]) -> list[netlink.Message]:
    """Staged ``ifaces`` elements, then first loads of output chains, then the appended jumps."""
    messages = [netlink.set_element_goto(family, table, "ifaces", name, names.chain)
                for name in staged for family in sorted(families)]
    for family, name in loads:
        chain = output_chains[name]
        messages += [netlink.new_chain(family, table, chain), netlink.rule_dup(family, table, chain, ifindex[name])]
    for (family, group), added in appended:
        messages += [netlink.rule_jump_unless_iifname(family, table, names.group_chain(group), name,
                                                      output_chains[name]) for name, _ in added]
    return messages
