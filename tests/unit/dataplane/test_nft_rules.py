"""Pure tests of the nftables plane's command text (``dataplane.nft_rules``) and the binding's helpers."""

from __future__ import annotations

import errno
import ipaddress

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.dataplane import nft_rules as rules
from mcproxy_pmip.dataplane.port import ANY_SOURCE, GroupOutputs, SourceFilter
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel.nft import error_number, explain, json_documents
from mcproxy_pmip.wire.records import FilterMode

V4, V6 = rules.SYNTAX[Family.IPV4], rules.SYNTAX[Family.IPV6]
G4, G6 = ipaddress.ip_address("239.1.1.1"), ipaddress.ip_address("ff0e::101")
S1, S2 = ipaddress.ip_address("10.1.0.2"), ipaddress.ip_address("10.1.0.3")
I1 = rules.instance_names(1)
T = "mcproxy_pmip"


def include(*sources):
    return SourceFilter(FilterMode.INCLUDE, frozenset(sources))


def exclude(*sources):
    return SourceFilter(FilterMode.EXCLUDE, frozenset(sources))


def test_identifiers_are_derived_from_a_number_and_the_group_bytes():
    assert (I1.chain, I1.sources, I1.groups, I1.upstreams) == ("i1", "src_i1", "groups_i1", "up_i1")
    assert I1.group_chain(G4) == "i1_gef010101"
    assert I1.group_chain(G6) == "i1_gff0e0000000000000000000000000101"
    assert rules.instance_names(2).group_chain(G4) != I1.group_chain(G4)
    assert I1.output_chain(7) == "i1_o7"


def test_table_carries_the_pid_and_a_raw_prerouting_chain_that_skips_ttl_1_and_link_local():
    commands = rules.table_commands(V4, T, 4242)
    assert commands[0] == f'create table ip {T} {{ comment "mcproxy-pmip pid 4242"; }}'
    assert f"add chain ip {T} pre {{ type filter hook prerouting priority raw; policy accept; }}" in commands
    assert commands[-4:] == [f"add rule ip {T} pre ip daddr != 224.0.0.0/4 return",
                             f"add rule ip {T} pre ip ttl <= 1 return",
                             f"add rule ip {T} pre ip daddr 224.0.0.0/24 return",
                             f"add rule ip {T} pre iifname vmap @ifaces"]


def test_ipv6_table_skips_hop_limit_1_and_scopes_0_to_2_whatever_the_flags():
    commands = rules.table_commands(V6, T, 1)
    assert f"add rule ip6 {T} pre ip6 hoplimit <= 1 return" in commands
    assert f"add rule ip6 {T} pre ip6 daddr & ff0f:: {{ ff00::, ff01::, ff02:: }} return" in commands


def test_instance_chain_counts_sources_dispatches_groups_then_sends_the_rest_upstream():
    commands = rules.instance_commands(V4, T, I1, ("i1_o1",))
    assert commands[0] == (f"add set ip {T} src_i1 {{ type ifname . ipv4_addr . ipv4_addr; flags dynamic,timeout; "
                           f"timeout 180s; size 65536; counter; }}")
    assert f"add map ip {T} groups_i1 {{ type ipv4_addr : verdict; }}" in commands
    assert f"add set ip {T} up_i1 {{ type ifname; }}" in commands
    assert f"add counter ip {T} refused_i1" in commands
    assert commands[-5:] == [f"flush chain ip {T} i1",
                             f"add rule ip {T} i1 update @src_i1 {{ iifname . ip saddr . ip daddr }}",
                             f'add rule ip {T} i1 iifname . ip saddr . ip daddr != @src_i1 counter name "refused_i1"',
                             f"add rule ip {T} i1 ip daddr vmap @groups_i1",
                             f"add rule ip {T} i1 iifname != @up_i1 jump i1_o1"]


def test_the_source_set_size_is_the_route_cap_and_no_room_counts_every_packet_refused():
    capped = rules.instance_commands(V4, T, I1, (), source_set_size=100)
    assert "size 100;" in capped[0]
    none = rules.instance_commands(V6, T, I1, (), source_set_size=0)
    assert not any("update @src_i1" in command for command in none)
    assert f'add rule ip6 {T} i1 counter name "refused_i1"' in none


def test_instance_chain_without_default_upstreams_sends_nothing_upstream():
    commands = rules.instance_chain_commands(V6, T, I1, ())
    assert not any("jump" in command or "dup" in command for command in commands)
    assert f"add rule ip6 {T} i1 update @src_i1 {{ iifname . ip6 saddr . ip6 daddr }}" in commands


OUTPUT_CHAINS = {"d1": "i1_o1", "d2": "i1_o2", "d3": "i1_o3", "up0": "i1_o4"}


def test_output_chain_holds_the_one_rule_naming_its_interface():
    assert rules.output_chain_commands(V4, T, "i1_o1", "d1") == [
        f"add chain ip {T} i1_o1",
        f"flush chain ip {T} i1_o1",
        f'add rule ip {T} i1_o1 dup to ip daddr device "d1"',
    ]
    assert rules.output_chain_commands(V6, T, "i1_o1", "d1")[-1] == f'add rule ip6 {T} i1_o1 dup to ip6 daddr device "d1"'


def test_group_rules_any_source_include_exclude_and_upstream_jump_to_output_chains():
    outputs = GroupOutputs(Family.IPV4, G4, (("d1", ANY_SOURCE), ("d2", include(S1)), ("d3", exclude(S2))),
                           ("up0",))
    chain = f"add rule ip {T} i1_gef010101"
    body = rules.group_rules(V4, T, I1, outputs, OUTPUT_CHAINS)
    assert body == [
        f"{chain} counter",
        f'{chain} iifname != "d1" jump i1_o1',
        f'{chain} iifname != "d2" ip saddr {{ 10.1.0.2 }} jump i1_o2',
        f'{chain} iifname != "d3" ip saddr != {{ 10.1.0.3 }} jump i1_o3',
        f"{chain} iifname != @up_i1 jump i1_o4",
    ]
    assert not any("device" in rule for rule in body)


def test_include_with_no_source_gives_no_rule_and_sources_are_sorted():
    outputs = GroupOutputs(Family.IPV4, G4, (("d1", include()), ("d2", include(S2, S1))))
    body = rules.group_rules(V4, T, I1, outputs, OUTPUT_CHAINS)
    assert len(body) == 2
    assert "ip saddr { 10.1.0.2, 10.1.0.3 }" in body[1]


def test_ipv6_group_rules_use_ip6_words():
    source = ipaddress.ip_address("fd01::2")
    outputs = GroupOutputs(Family.IPV6, G6, (("d1", include(source)),))
    assert rules.group_rules(V6, T, I1, outputs, OUTPUT_CHAINS)[1].endswith(
        'iifname != "d1" ip6 saddr { fd01::2 } jump i1_o1')


def test_installing_a_group_is_one_batch_chain_first_map_element_last():
    outputs = GroupOutputs(Family.IPV4, G4, (("d1", ANY_SOURCE),))
    commands = rules.install_group_commands(V4, T, I1, outputs, OUTPUT_CHAINS)
    assert commands[:2] == [f"add chain ip {T} i1_gef010101", f"flush chain ip {T} i1_gef010101"]
    assert commands[-1] == f"add element ip {T} groups_i1 {{ 239.1.1.1 : goto i1_gef010101 }}"


def test_removing_a_group_drops_the_element_before_the_chain():
    assert rules.remove_group_commands(V4, T, I1, G4) == [
        f"delete element ip {T} groups_i1 {{ 239.1.1.1 }}",
        f"delete chain ip {T} i1_gef010101",
    ]


def test_interfaces_enter_the_dispatch_map_and_upstreams_the_upstream_set():
    assert rules.interface_commands(V4, T, I1, "down0", False) == [
        f'add element ip {T} ifaces {{ "down0" : goto i1 }}']
    assert rules.interface_commands(V4, T, I1, "up0", True)[1] == f'add element ip {T} up_i1 {{ "up0" }}'
    assert rules.remove_interface_commands(V4, T, I1, "up0", True) == [
        f'delete element ip {T} ifaces {{ "up0" }}', f'delete element ip {T} up_i1 {{ "up0" }}']


def test_closing_an_instance_removes_references_before_what_they_refer_to():
    commands = rules.close_instance_commands(V4, T, I1, ["up0"], [G4], ["i1_o4"])
    assert commands == [
        f'delete element ip {T} ifaces {{ "up0" }}',
        f"delete chain ip {T} i1",
        f"delete map ip {T} groups_i1",
        f"delete chain ip {T} i1_gef010101",
        f"delete chain ip {T} i1_o4",
        f"delete set ip {T} src_i1",
        f"delete set ip {T} up_i1",
        f"delete counter ip {T} refused_i1",
    ]


@pytest.mark.parametrize("name", ["", 'a"b', "a b", "a\\b", "x" * 16, "tab\t"])
def test_names_nft_cannot_quote_are_refused(name):
    with pytest.raises(KernelError) as caught:
        rules.quote(name)
    assert caught.value.errno == errno.EINVAL


def test_ordinary_names_are_quoted():
    assert rules.quote("pmip-tun1.7@x") == '"pmip-tun1.7@x"'


def test_error_number_comes_from_the_kernel_refusal_text():
    assert error_number("Error: Could not process rule: File exists\nadd ...") == errno.EEXIST
    assert error_number("Error: Could not process rule: No such file or directory") == errno.ENOENT
    assert error_number("Error: No such file or directory; did you mean table 'x' in family ip6?") == errno.ENOENT
    assert error_number("Error: syntax error, unexpected newline") == errno.EINVAL


def test_json_documents_reads_concatenated_documents():
    assert json_documents('{"a": 1}\n{"b": 2}\n') == [{"a": 1}, {"b": 2}]
    assert json_documents("  ") == []


def test_explain_names_the_command_each_caret_points_at():
    commands = ["add chain ip t c", 'add rule ip t c dup to 239.1.1.1 device "ghost0"', "add element ip t m { 1 }"]
    column = len(commands[0]) + 2 + commands[1].index('"ghost0"')
    error = ("Error: Interface does not exist\n" + "; ".join(commands)[:40] + "\n"
             + " " * column + "^" * 8 + "\n")
    assert explain(error, commands) == f"Interface does not exist: {commands[1]}"


def test_explain_keeps_text_it_cannot_read():
    assert explain("something odd", ["add table ip t"]) == "something odd"
