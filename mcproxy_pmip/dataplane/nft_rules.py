"""The nftables plane's rules as nft command text: pure functions, no kernel.

Layout of the daemon's table, one per family (``dup`` exists only in the ip
and ip6 families, not inet); ``iN`` is an instance's identifier, ``oK`` an
interface's number within it::

    table ip mcproxy_pmip {
      comment "mcproxy-pmip pid 123"
      map ifaces { type ifname : verdict; }           # interface -> goto its instance's chain
      chain pre { type filter hook prerouting priority raw; policy accept;
        ip daddr != 224.0.0.0/4 return                # multicast only
        ip ttl <= 1 return                            # nf_dup does not drop TTL 0 itself
        ip daddr 224.0.0.0/24 return                  # link-local scope (RFC 4605 §6)
        iifname vmap @ifaces }
      set src_iN { type ifname . ipv4_addr . ipv4_addr; flags dynamic,timeout; timeout 180s;
                   size <max_routes>; counter; }      # per (iif, S, G)
      counter refused_iN                              # packets of (iif, S, G) the full set refused
      map groups_iN { type ipv4_addr : verdict; }     # group -> goto its group chain
      set up_iN { type ifname; }                      # the instance's upstreams
      chain iN { update @src_iN { iifname . ip saddr . ip daddr }   # counters, kernel-side expiry
                 iifname . ip saddr . ip daddr != @src_iN counter name "refused_iN"
                 ip daddr vmap @groups_iN
                 iifname != @up_iN jump iN_oU }        # no entry: RFC 4605 §4.2 default upstream
      chain iN_oK { dup to ip daddr device "d" }      # the one rule naming interface d
      chain iN_g<hex of the group> {
        counter
        iifname != "d" ip saddr { S1 } jump iN_oK      # INCLUDE {S1}
        iifname != "e" ip saddr != { S2 } jump iN_oL   # EXCLUDE {S2}
        iifname != @up_iN jump iN_oU }                 # from a downstream: upstream
    }

The counter set is the plane's data-driven (S,G) state, so its ``size`` is
the instance's route cap (``route_budget``). When it is full the kernel adds
no element: the ``update`` rule ends there (the rule breaks, evaluation goes
on with the next rule), the next rule counts the packet on ``refused_iN``,
and the packet is forwarded by its group as before. An instance granted no
room at all has no ``update`` rule and counts every packet as refused.

The group map's verdicts are ``goto``: a group chain ends the instance's
processing, so the default-upstream rules see only groups without an entry.
``dup`` takes the interface index from the name when the rule is loaded, and
libnftables resolves a name by listing every link of the namespace (about
30 ms a batch with 2,000 links): only an interface's output chain names it,
so that cost is paid once per interface, never per group change. nf_dup
decrements the TTL / hop limit of the copy in prerouting, so the copies are
real L3 forwards.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.dataplane.port import GroupOutputs, SourceFilter
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.wire.records import FilterMode

#: how long an (S,G) without packets stays in the counter set (the MRT plane's idle interval)
IDLE_INTERVAL = 180
#: most (S,G) entries one instance's counter set holds unless told (``Limits.max_routes``);
#: packets of further sources still forward, counted as refused
SOURCE_SET_SIZE = 65536
#: the table comment, which says which process owns the table
PID_COMMENT = "mcproxy-pmip pid {pid}"


@dataclass(frozen=True, slots=True)
class FamilySyntax:
    """The nft words that differ between IPv4 and IPv6."""

    family: Family
    nft: str
    address_type: str
    saddr: str
    daddr: str
    hop_limit: str
    multicast: str
    link_local_scope: str


SYNTAX = {
    Family.IPV4: FamilySyntax(Family.IPV4, "ip", "ipv4_addr", "ip saddr", "ip daddr", "ip ttl",
                              "224.0.0.0/4", "ip daddr 224.0.0.0/24"),
    # ffx0::/16, ffx1::/16 and ffx2::/16 for every flag nibble x (addresses.is_link_local_scope_group)
    Family.IPV6: FamilySyntax(Family.IPV6, "ip6", "ipv6_addr", "ip6 saddr", "ip6 daddr", "ip6 hoplimit",
                              "ff00::/8", "ip6 daddr & ff0f:: { ff00::, ff01::, ff02:: }"),
}


def quote(name: str) -> str:
    """An interface name as an nft string; names nft cannot quote are refused."""
    if not name or len(name) > 15 or any(c in name for c in '"\\\n\t ') or not name.isprintable():
        raise KernelError("nft", errno.EINVAL, f"interface name {name!r} cannot be written in nft syntax")
    return f'"{name}"'


@dataclass(frozen=True, slots=True)
class InstanceNames:
    """The nft identifiers of one instance (``iN``): instance names themselves are arbitrary strings."""

    ident: str

    @property
    def chain(self) -> str:
        return self.ident

    @property
    def sources(self) -> str:
        return f"src_{self.ident}"

    @property
    def groups(self) -> str:
        return f"groups_{self.ident}"

    @property
    def upstreams(self) -> str:
        return f"up_{self.ident}"

    @property
    def refused(self) -> str:
        return f"refused_{self.ident}"

    def group_chain(self, group: IPAddress) -> str:
        return f"{self.ident}_g{group.packed.hex()}"

    def output_chain(self, number: int) -> str:
        return f"{self.ident}_o{number}"


def instance_names(number: int) -> InstanceNames:
    return InstanceNames(f"i{number}")


def table_commands(syntax: FamilySyntax, table: str, pid: int) -> list[str]:
    """Create the daemon's table of one family (fails if it exists) with its dispatching base chain."""
    t = f"{syntax.nft} {table}"
    comment = PID_COMMENT.format(pid=pid)
    return [
        f'create table {t} {{ comment "{comment}"; }}',
        f"add map {t} ifaces {{ type ifname : verdict; }}",
        f"add chain {t} pre {{ type filter hook prerouting priority raw; policy accept; }}",
        f"add rule {t} pre {syntax.daddr} != {syntax.multicast} return",
        f"add rule {t} pre {syntax.hop_limit} <= 1 return",
        f"add rule {t} pre {syntax.link_local_scope} return",
        f"add rule {t} pre iifname vmap @ifaces",
    ]


def instance_commands(syntax: FamilySyntax, table: str, names: InstanceNames,
                      default_upstreams: Iterable[str], source_set_size: int = SOURCE_SET_SIZE) -> list[str]:
    """Create one instance's sets, maps, refusal counter and chain (``source_set_size``: its route cap)."""
    t = f"{syntax.nft} {table}"
    key = f"ifname . {syntax.address_type} . {syntax.address_type}"
    return [
        f"add set {t} {names.sources} {{ type {key}; flags dynamic,timeout; timeout {IDLE_INTERVAL}s; "
        f"size {max(1, source_set_size)}; counter; }}",
        f"add counter {t} {names.refused}",
        f"add map {t} {names.groups} {{ type {syntax.address_type} : verdict; }}",
        f"add set {t} {names.upstreams} {{ type ifname; }}",
        f"add chain {t} {names.chain}",
        *instance_chain_commands(syntax, table, names, default_upstreams, count_sources=source_set_size > 0),
    ]


def instance_chain_commands(syntax: FamilySyntax, table: str, names: InstanceNames,
                            default_outputs: Iterable[str], count_sources: bool = True) -> list[str]:
    """(Re)fill the instance chain: counters, group dispatch, then the default upstreams' output chains.

    ``count_sources`` False (no room for any (S,G)): no ``update``, every packet counts as refused.
    """
    t = f"{syntax.nft} {table}"
    chain = f"add rule {t} {names.chain}"
    element = f"iifname . {syntax.saddr} . {syntax.daddr}"
    if count_sources:
        counting = [f"{chain} update @{names.sources} {{ {element} }}",
                    f'{chain} {element} != @{names.sources} counter name "{names.refused}"']
    else:
        counting = [f'{chain} counter name "{names.refused}"']
    return [
        f"flush chain {t} {names.chain}",
        *counting,
        f"{chain} {syntax.daddr} vmap @{names.groups}",
        *(f"{chain} iifname != @{names.upstreams} jump {output}" for output in default_outputs),
    ]


def output_chain_commands(syntax: FamilySyntax, table: str, chain: str, name: str, loaded: bool = True) -> list[str]:
    """Create or refill (``loaded``: it may hold a rule) the output chain of interface ``name``: its one
    ``dup`` rule.

    ``dup to ip daddr``: the copy goes to the packet's own group, so one rule
    serves every group and source that jumps here.
    """
    t = f"{syntax.nft} {table}"
    return [
        f"add chain {t} {chain}",
        *([f"flush chain {t} {chain}"] if loaded else []),
        f"add rule {t} {chain} dup to {syntax.daddr} device {quote(name)}",
    ]


def source_match(syntax: FamilySyntax, source_filter: SourceFilter) -> str | None:
    """The rule words for a source filter; "" for all sources, None when no source passes."""
    addresses = ", ".join(str(a) for a in sorted(source_filter.sources, key=lambda a: a.packed))
    if source_filter.mode is FilterMode.INCLUDE:
        return f"{syntax.saddr} {{ {addresses} }}" if addresses else None
    return f"{syntax.saddr} != {{ {addresses} }}" if addresses else ""


def group_rules(syntax: FamilySyntax, table: str, names: InstanceNames, outputs: GroupOutputs,
                output_chains: Mapping[str, str]) -> list[str]:
    """The rules of one group chain: a counter, then a jump to each output's chain."""
    chain = f"add rule {syntax.nft} {table} {names.group_chain(outputs.group)}"
    rules = [f"{chain} counter",
             *downstream_rules(syntax, table, names, outputs.group, outputs.downstreams, output_chains)]
    rules.extend(f"{chain} iifname != @{names.upstreams} jump {output_chains[name]}"
                 for name in outputs.upstreams)
    return rules


def downstream_rules(syntax: FamilySyntax, table: str, names: InstanceNames, group: IPAddress,
                     downstreams: Iterable[tuple[str, SourceFilter]], output_chains: Mapping[str, str]) -> list[str]:
    """Rules appended to a group chain: a jump to each downstream's output chain its filter allows.

    Each jump returns, so the order of a chain's jumps does not matter: a
    downstream that joins a group already forwarded is appended to its chain
    (``add rule``), not written with the whole chain again.
    """
    chain = f"add rule {syntax.nft} {table} {names.group_chain(group)}"
    rules = []
    for name, source_filter in downstreams:
        match = source_match(syntax, source_filter)
        if match is None:
            continue
        words = " ".join(w for w in (f"iifname != {quote(name)}", match) if w)
        rules.append(f"{chain} {words} jump {output_chains[name]}")
    return rules


def install_group_commands(syntax: FamilySyntax, table: str, names: InstanceNames,
                           outputs: GroupOutputs, output_chains: Mapping[str, str]) -> list[str]:
    """Create or refill a group chain and point the group map at it (one atomic batch)."""
    t = f"{syntax.nft} {table}"
    chain = names.group_chain(outputs.group)
    return [
        f"add chain {t} {chain}",
        f"flush chain {t} {chain}",
        *group_rules(syntax, table, names, outputs, output_chains),
        f"add element {t} {names.groups} {{ {outputs.group} : goto {chain} }}",
    ]


def remove_group_commands(syntax: FamilySyntax, table: str, names: InstanceNames, group: IPAddress) -> list[str]:
    """Drop a group's map element, then its chain (the element holds a reference to it)."""
    t = f"{syntax.nft} {table}"
    return [
        f"delete element {t} {names.groups} {{ {group} }}",
        f"delete chain {t} {names.group_chain(group)}",
    ]


def interface_commands(syntax: FamilySyntax, table: str, names: InstanceNames, name: str,
                       upstream: bool) -> list[str]:
    """Dispatch ``name``'s packets to the instance (and mark it upstream)."""
    t = f"{syntax.nft} {table}"
    commands = [f"add element {t} ifaces {{ {quote(name)} : goto {names.chain} }}"]
    if upstream:
        commands.append(f"add element {t} {names.upstreams} {{ {quote(name)} }}")
    return commands


def remove_interface_commands(syntax: FamilySyntax, table: str, names: InstanceNames, name: str,
                              upstream: bool) -> list[str]:
    t = f"{syntax.nft} {table}"
    commands = [f"delete element {t} ifaces {{ {quote(name)} }}"]
    if upstream:
        commands.append(f"delete element {t} {names.upstreams} {{ {quote(name)} }}")
    return commands


def close_instance_commands(syntax: FamilySyntax, table: str, names: InstanceNames, interfaces: Iterable[str],
                            groups: Iterable[IPAddress], output_chains: Iterable[str]) -> list[str]:
    """Remove everything of one instance, references before what they refer to."""
    t = f"{syntax.nft} {table}"
    commands = [f"delete element {t} ifaces {{ {quote(name)} }}" for name in interfaces]
    commands += [f"delete chain {t} {names.chain}", f"delete map {t} {names.groups}"]
    commands += [f"delete chain {t} {names.group_chain(group)}" for group in groups]
    commands += [f"delete chain {t} {chain}" for chain in output_chains]
    commands += [f"delete set {t} {names.sources}", f"delete set {t} {names.upstreams}",
                 f"delete counter {t} {names.refused}"]
    return commands


def delete_table_command(syntax: FamilySyntax, table: str) -> str:
    return f"delete table {syntax.nft} {table}"
