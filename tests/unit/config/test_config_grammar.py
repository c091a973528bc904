"""mcproxy grammar: every construct, keywords in any case, comments, quoting, multi-line commands."""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config import parse_config
from mcproxy_pmip.config.mcproxy_grammar import tokenize
from mcproxy_pmip.config.model import AddressRule, FilterMode, Role, RuleMatching, Table
from mcproxy_pmip.membership.filters import Direction


def test_classic_mcproxy_config():
    config = parse_config("protocol IGMPv3; pinstance myProxy: eth0 ==> eth1 eth2;")
    assert config.protocols == ("IGMPv3",)
    (instance,) = config.instances
    assert (instance.name, instance.upstreams, instance.downstreams) == ("myProxy", ("eth0",), ("eth1", "eth2"))
    assert instance.table is None and instance.filters == ()
    assert config.disabled is False


def test_no_protocol_line_defaults_to_igmpv3():
    assert parse_config("pinstance a: eth0 ==> eth1;").protocols == ("IGMPv3",)


def test_protocol_per_family_runs_igmp_and_mld_together():
    config = parse_config("protocol MLDv1; protocol igmpv2; pinstance a: eth0 ==> eth1;")
    assert config.protocols == ("MLDv1", "IGMPv2")
    assert config.protocol_version(Family.IPV4) == 2
    assert config.protocol_version(Family.IPV6) == 1


def test_table_number_and_zero_upstreams():
    config = parse_config("pinstance split(10): tunU1 tunU2 ==> tunD1; pinstance q: ==> eth8;")
    split, querier_only = config.instances
    assert split.table == 10 and split.upstreams == ("tunU1", "tunU2")
    assert querier_only.upstreams == () and querier_only.downstreams == ("eth8",)


def test_keywords_are_case_insensitive():
    config = parse_config("PROTOCOL igmpV3; PInstance A: eth0 ==> eth1;\n"
                          "TABLE t { (239.1.1.1 | *) };\n"
                          "pinstance A DOWNSTREAM eth1 IN WhiteList TABLE t;\n"
                          "pinstance A Upstream * OUT RuleMatching FIRST;")
    (instance,) = config.instances
    assert instance.filters[0].mode is FilterMode.WHITELIST
    assert instance.upstream_forwarding is RuleMatching.FIRST


def test_comments_and_commands_spanning_lines():
    text = ("# heading\n"
            "protocol # the protocol comes next\n"
            "  IGMPv3 ;# trailing\n"
            "pinstance\n  a\n  :\n eth0\n==>\n eth1 # end\n;\n")
    (instance,) = parse_config(text).instances
    assert instance.upstreams == ("eth0",) and instance.downstreams == ("eth1",)


def test_quoted_names_are_never_keywords():
    config = parse_config('pinstance "table": "upstream" ==> "eth1";')
    (instance,) = config.instances
    assert instance.name == "table" and instance.upstreams == ("upstream",)


def test_colon_attached_to_name_and_ipv6_addresses_keep_colons():
    kinds = [(t.kind, t.text) for t in tokenize("pinstance a:eth0 ==> eth1; (ff0e::1/16 | *)", "f")]
    assert ("WORD", "a") in kinds and ("COLON", ":") in kinds and ("WORD", "eth0") in kinds
    assert ("WORD", "ff0e::1/16") in kinds


def test_disable_marks_the_whole_config_disabled():
    config = parse_config("disable;\nprotocol IGMPv3;\npinstance a: eth0 ==> eth1;")
    assert config.disabled is True
    assert config.instances[0].name == "a"


FULL = """
protocol IGMPv3;
pinstance p(7): up0 up1 ==> d0 d1;
table base { (239.1.0.0/16 | *) };
table nested {
    (table base)
    (table { (239.9.9.9 | 10.0.0.1 - 10.0.0.9) })
    table base
    d0(239.2.2.2 | *)
    *(239.3.0.0 - 239.3.0.255 | 192.0.2.0/24)
};
pinstance p downstream d0 in whitelist table nested;
pinstance p downstream d1 out blacklist table { (239.5.5.5 | *) };
pinstance p upstream up0 out whitelist { d0(* | *) };
pinstance p upstream * in rulematching mutex 2500;
pinstance p upstream * out rulematching first;
"""


def test_every_construct_builds_the_model():
    (instance,) = parse_config(FULL).instances
    assert instance.table == 7
    assert instance.upstream_selection is RuleMatching.MUTEX and instance.mutex_interval == 2.5
    assert instance.upstream_forwarding is RuleMatching.FIRST
    d0_in = instance.filter_for("d0", Direction.IN)
    assert d0_in.role is Role.DOWNSTREAM and d0_in.mode is FilterMode.WHITELIST
    assert d0_in.table.name == "nested"
    base, anonymous, base_again, iface_rule, star_rule = d0_in.table.rules
    assert isinstance(base, Table) and base.name == "base" and base == base_again
    assert isinstance(anonymous, Table) and anonymous.name is None
    assert isinstance(iface_rule, AddressRule) and iface_rule.interface == "d0"
    assert star_rule.interface is None
    assert star_rule.source.low == ipaddress.IPv4Address("192.0.2.0")
    assert star_rule.source.high == ipaddress.IPv4Address("192.0.2.255")
    up0_out = instance.filter_for("up0", Direction.OUT)
    assert up0_out.role is Role.UPSTREAM and up0_out.table.rules[0].interface == "d0"
    assert instance.filter_for("d1", Direction.OUT).mode is FilterMode.BLACKLIST


def test_prefix_with_host_bits_is_masked_and_range_may_be_open():
    config = parse_config("table t { (239.1.2.3/16 | 10.0.0.1 - *) }; pinstance a: e0 ==> e1;"
                          "pinstance a downstream e1 in whitelist table t;")
    rule = config.instances[0].filters[0].table.rules[0]
    assert rule.group.low == ipaddress.IPv4Address("239.1.0.0")
    assert rule.source.high is None and rule.source.matches(ipaddress.IPv4Address("255.1.1.1"))


@pytest.mark.parametrize("text", ["", "   \n# only a comment\n", ";;;"])
def test_empty_configs(text):
    config = parse_config(text, fmt="mcproxy")
    assert config.instances == () and config.protocols == ("IGMPv3",)
