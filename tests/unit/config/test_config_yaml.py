"""YAML format: the same model as the mcproxy grammar, located problems, format detection."""

from __future__ import annotations

import pytest

from mcproxy_pmip.config import detect_format, load_config, parse_config
from mcproxy_pmip.config.model import RuleMatching
from mcproxy_pmip.errors import ConfigError

GRAMMAR = """
protocol IGMPv3; protocol MLDv2;
pinstance mag1(10): tun0 ==> veth1 veth2;
table allowed { (239.1.0.0/16 | *) (table { (ff0e::/16 | *) }) };
pinstance mag1 downstream veth1 in whitelist table allowed;
pinstance mag1 upstream tun0 out blacklist table { veth2(239.255.255.250 | *) };
pinstance mag1 upstream * in rulematching mutex 1500;
pinstance mag1 upstream * out rulematching first;
"""

YAML = """
protocols: [IGMPv3, MLDv2]
tables:
  allowed: ["(239.1.0.0/16 | *)", "(table { (ff0e::/16 | *) })"]
instances:
  - name: mag1
    table: 10
    upstreams: [tun0]
    downstreams: [veth1, veth2]
    upstream_selection: mutex
    mutex_interval: 1.5
    upstream_forwarding: first
    filters:
      - {interface: veth1, direction: in, mode: whitelist, table: allowed}
      - {interface: tun0, direction: out, mode: blacklist, rules: ["veth2(239.255.255.250 | *)"]}
"""


def test_same_model_from_both_formats():
    from_grammar = parse_config(GRAMMAR, file="a.conf")
    from_yaml = parse_config(YAML, file="a.yaml")
    assert from_grammar == from_yaml
    assert from_yaml.instances[0].upstream_selection is RuleMatching.MUTEX


def test_yaml_only_settings():
    config = parse_config("""
protocols: [MLDv2]
control: {socket: /tmp/x.sock}
plugins: {pmipv6: {profile: pmipv6, remove_empty_instance: true}}
instances:
  - name: a
    upstreams: [tun0]
    downstreams: []
    timers: {robustness: 3, query_interval: 60, startup_query_interval: 1}
    limits: {max_groups: 10}
    querier: {querier_election: false}
""", fmt="yaml")
    (instance,) = config.instances
    assert config.control_socket == "/tmp/x.sock"
    assert config.plugin("pmipv6").settings["remove_empty_instance"] is True
    assert instance.timers.robustness == 3 and instance.timers.startup_interval == 1.0
    assert instance.router_options().max_groups == 10
    assert instance.router_options().querier_election is False


@pytest.mark.parametrize("text, expected", [
    ("instances:\n  - name: a\n    timers: {query_interval: 5, query_response_interval: 10}\n",
     "y.yaml:3:13: invalid timers: query_response_interval must be less than query_interval"),
    ("protocols: [IGMPv3\n", "y.yaml:2:1: YAML syntax"),
    ("instances:\n  - name: a\n    downstreams: eth0\n", "y.yaml:3:18: expected a list for downstreams"),
    ("bogus: 1\n", "y.yaml:1:1: unknown key 'bogus' in the configuration"),
    ("instances:\n  - name: a\n    limits: {max_groups: 0}\n", "y.yaml:3:26: bad limit max_groups=0"),
    ("instances:\n  - name: a\n    downstreams: [e1]\n    filters:\n"
     "      - {interface: e1, direction: in, mode: whitelist, rules: ['(239.1.1.1 | 300.1.1.1)']}\n",
     "y.yaml:5:79: bad source address '300.1.1.1'"),
    ("instances:\n  - name: a\n    upstream_selection: sometimes\n",
     "y.yaml:3:25: bad upstream_selection 'sometimes'"),
    ("instances:\n  - name: a\n  - name: a\n", "y.yaml:3:11: instance 'a' defined twice"),
])
def test_yaml_problems_are_located(text, expected):
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="y.yaml")
    rendered = [str(problem) for problem in caught.value.problems]
    assert any(line.startswith(expected) for line in rendered), rendered


def test_yaml_reports_every_problem():
    text = "protocols: [IGMPv7]\ninstances:\n  - name: a\n    table: -1\n    timers: {robustness: x}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="y.yaml")
    assert [(p.line, p.column) for p in caught.value.problems] == [(1, 13), (4, 12), (5, 26)]


@pytest.mark.parametrize("text, path, expected", [
    ("protocol IGMPv3;", "x.conf", "mcproxy"),
    ("# c\npinstance a: e0 ==> e1;", "x", "mcproxy"),
    ("# c\nprotocols: [IGMPv3]", "x", "yaml"),
    ("protocol IGMPv3;", "x.yml", "yaml"),
])
def test_format_detection(text, path, expected):
    assert detect_format(text, path) == expected


def test_load_picks_yaml_by_extension(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("protocols: [MLDv1]\n")
    assert load_config(path).protocols == ("MLDv1",)
