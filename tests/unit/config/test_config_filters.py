"""Filter semantics: whitelist/blacklist, ranges, prefixes, nested/anonymous tables, interface rules."""

from __future__ import annotations

from ipaddress import ip_address as ip

from mcproxy_pmip.config import parse_config
from mcproxy_pmip.config.filters import RuleFilterPolicy
from mcproxy_pmip.membership.filters import Direction, FilterPolicy

IN, OUT = Direction.IN, Direction.OUT

CONFIG = """
protocol IGMPv3; protocol MLDv2;
pinstance p: up0 ==> d0 d1 d2 d3;
table company { (239.1.0.0/16 | *) (239.2.0.1 - 239.2.0.10 | 10.0.0.0/8) };
table wrapper { (table company) (table { (ff0e::/16 | *) }) };
pinstance p downstream d0 in whitelist table wrapper;
pinstance p downstream d1 in blacklist table company;
pinstance p downstream d2 out whitelist table { d0(* | *) *(239.9.9.9 | 192.0.2.1) };
pinstance p upstream up0 out blacklist table { (239.255.255.250 | *) };
"""


def policy() -> RuleFilterPolicy:
    return RuleFilterPolicy.for_instance(parse_config(CONFIG).instances[0])


def test_is_a_filter_policy():
    assert isinstance(policy(), RuleFilterPolicy)
    checked: FilterPolicy = policy()
    assert checked.allows("d3", IN, ip("239.1.1.1"), None)


def test_whitelist_passes_only_matching_rules_prefix_and_range():
    p = policy()
    assert p.allows("d0", IN, ip("239.1.200.3"), ip("1.2.3.4"))          # prefix, any source
    assert not p.allows("d0", IN, ip("239.3.0.1"), None)                   # no rule
    assert p.allows("d0", IN, ip("239.2.0.10"), ip("10.9.9.9"))            # range upper bound
    assert not p.allows("d0", IN, ip("239.2.0.11"), ip("10.9.9.9"))        # just past the range
    assert not p.allows("d0", IN, ip("239.2.0.5"), ip("11.0.0.1"))         # source outside prefix


def test_source_none_matches_on_the_group_alone():
    p = policy()
    assert p.allows("d0", IN, ip("239.2.0.5"), None)
    assert not p.allows("d1", IN, ip("239.2.0.5"), None)


def test_nested_and_anonymous_tables_match_ipv6():
    p = policy()
    assert p.allows("d0", IN, ip("ff0e::1234"), None)
    assert not p.allows("d0", IN, ip("ff05::1"), None)


def test_blacklist_passes_when_no_rule_matches():
    p = policy()
    assert not p.allows("d1", IN, ip("239.1.0.1"), ip("1.1.1.1"))
    assert p.allows("d1", IN, ip("239.7.0.1"), ip("1.1.1.1"))
    assert not p.allows("up0", OUT, ip("239.255.255.250"), None)
    assert p.allows("up0", OUT, ip("239.255.255.251"), None)


def test_direction_without_binding_passes_everything():
    p = policy()
    assert p.allows("d0", OUT, ip("239.3.0.1"), None)
    assert p.allows("up0", IN, ip("239.255.255.250"), None)


def test_interface_rules_match_the_peer_and_star_matches_any_peer():
    p = policy()
    assert p.allows("d2", OUT, ip("239.50.0.1"), ip("1.1.1.1"), peer="d0")
    assert not p.allows("d2", OUT, ip("239.50.0.1"), ip("1.1.1.1"), peer="up0")
    assert p.allows("d2", OUT, ip("239.9.9.9"), ip("192.0.2.1"), peer="up0")
    assert not p.allows("d2", OUT, ip("239.9.9.9"), ip("192.0.2.2"), peer="up0")
    # Without a peer (the FilterPolicy contract) the interface part is a wildcard.
    assert p.allows("d2", OUT, ip("239.50.0.1"), ip("1.1.1.1"))


def test_family_mismatch_never_matches():
    p = policy()
    assert p.allows("d1", IN, ip("ff0e::1"), None)   # IPv6 never matches the IPv4 blacklist
    assert not p.allows("d0", IN, ip("ff02::1"), None)
