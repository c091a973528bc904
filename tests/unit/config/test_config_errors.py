"""Broken inputs: every problem reported with its exact file:line:column and what was expected."""

from __future__ import annotations

import pytest

from mcproxy_pmip.config import load_config, parse_config
from mcproxy_pmip.errors import ConfigError

CASES = [
    ("protocol IGMPv3;\npinstance a: eth0 ==> eth1\n",
     "f.conf:3:1: expected ';' after the downstream list, found end of file"),
    ("protocol IGMPv4;", "f.conf:1:10: unknown protocol 'IGMPv4'"),
    ("pinstance a eth0 ==> eth1;",
     "f.conf:1:13: expected ':', '(TABLE):', 'upstream' or 'downstream' after the instance name"),
    ("pinstance a: eth0 => eth1;", "f.conf:1:19: unexpected character '='"),
    ("pinstance a(x): e0 ==> e1;", "f.conf:1:13: bad routing table number 'x'"),
    ("pinstance a(255): e0 ==> e1;", "f.conf:1:13: routing table 255 out of range"),
    ("pinstance a: e0 ==> e1;\npinstance a: e2 ==> e3;", "f.conf:2:11: instance 'a' defined twice"),
    ("pinstance a: e0 ==> e1;\npinstance b: e2 ==> e1;",
     "f.conf:2:21: interface 'e1' is already a downstream of instance 'a'"),
    ("pinstance a: e0 ==> e1;\npinstance b: e1 ==> e2;",
     "f.conf:2:14: interface 'e1' is already a downstream of instance 'a'"),
    ("pinstance a: e0 ==> e1;\npinstance b downstream e1 in whitelist table { (* | *) };",
     "f.conf:2:11: filter for unknown instance 'b'"),
    ("pinstance a: e0 ==> e1;\npinstance a downstream e1 in whitelist table nope;",
     "f.conf:2:46: unknown table 'nope'"),
    ("pinstance a: e0 ==> e1;\npinstance a downstream e7 in whitelist table { (* | *) };",
     "f.conf:2:24: interface 'e7' is not a downstream of instance 'a'"),
    ("protocol MLDv2;\ntable t {\n  (239.1.1.1 | *)\n};",
     "f.conf:3:4: IPv4 group 239.1.1.1 in a configuration without IGMP"),
    ("table t { (239.1.1.9 - 239.1.1.1 | *) };", "f.conf:1:12: reversed range 239.1.1.9 - 239.1.1.1"),
    ("table t { (239.1.1.0/33 | *) };", "f.conf:1:12: bad prefix length '33': expected 0..32"),
    ("table t { (239.1.1.1 ) };", "f.conf:1:22: expected '|' between group and source, found ')'"),
    ("table t { (239.1.1.1 | *) ;", "f.conf:1:27: expected a rule box '(GROUP | SOURCE)' or '}'"),
    ("table t { (10.1.1.1 | *) };", "f.conf:1:12: group 10.1.1.1 is not a multicast address"),
    ("table t { (table t) };", "f.conf:1:18: table 't' refers to itself"),
    ('pinstance "a: e0 ==> e1;', "f.conf:1:11: unterminated quoted name"),
    ("pinstance a: e0 ==> e1;\npinstance a downstream e1 in rulematching all;",
     "f.conf:2:13: rule matching applies to upstreams: expected 'upstream'"),
    ("pinstance a: e0 ==> e1;\npinstance a upstream * out rulematching mutex 10;",
     "f.conf:2:41: 'mutex' applies to 'upstream * in'"),
    ("frobnicate;", "f.conf:1:1: expected 'protocol', 'pinstance', 'table' or 'disable', found 'frobnicate'"),
    ("pinstance a: averyveryverylongname ==> e1;", "f.conf:1:14: invalid interface name"),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_problem_is_located(text, expected):
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="f.conf", fmt="mcproxy")
    rendered = [str(problem) for problem in caught.value.problems]
    assert any(line.startswith(expected) for line in rendered), rendered


def test_every_problem_is_reported_together():
    text = ("protocol IGMPv9;\n"                       # 1: unknown protocol
            "pinstance a: e0 ==> e1\n"                 # 2-3: missing ';' (error at line 3)
            "table t { (239.1.1.1 - 239.0.0.0 | *) };\n"        # 3: reversed range
            "pinstance b(0): e5 ==> e6;\n"             # 4: table out of range
            "pinstance zz downstream e1 in whitelist table t;\n")  # 5: unknown instance
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="m.conf")
    locations = [(p.line, p.column) for p in caught.value.problems]
    assert locations == [(1, 10), (3, 1), (3, 12), (4, 13), (5, 11)], caught.value.problems
    assert all(p.file == "m.conf" for p in caught.value.problems)


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.conf")
    assert "cannot read the file" in caught.value.problems[0].message


def test_second_protocol_of_a_family_is_rejected():
    with pytest.raises(ConfigError) as caught:
        parse_config("protocol IGMPv3;\nprotocol IGMPv2;", file="p.conf")
    assert str(caught.value.problems[0]).startswith("p.conf:2:10: second IGMP protocol IGMPv2")
