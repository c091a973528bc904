"""Diff of two configurations, as used on SIGHUP reload."""

from __future__ import annotations

from mcproxy_pmip.config import parse_config
from mcproxy_pmip.config.diff import diff_configs

OLD = """protocol IGMPv3;
pinstance a: up0 ==> d1 d2;
pinstance b(5): up1 ==> d3;
pinstance c: up2 ==> d4;
"""

NEW = """protocol IGMPv3;
pinstance a: up0 ==> d2 d5;
pinstance b(6): up1 ==> d3;
pinstance d: up3 ==> d6;
pinstance c: up2 ==> d4;
pinstance c downstream d4 in blacklist table { (239.1.1.1 | *) };
"""


def test_identical_configs_have_an_empty_diff():
    assert diff_configs(parse_config(OLD), parse_config(OLD)).is_empty


def test_instances_added_removed_and_changed():
    diff = diff_configs(parse_config(OLD), parse_config(NEW))
    assert [i.name for i in diff.instances_added] == ["d"]
    assert diff.instances_removed == ()
    changed = {c.name: c for c in diff.instances_changed}
    assert set(changed) == {"a", "b", "c"}
    assert changed["a"].downstreams_added == ("d5",)
    assert changed["a"].downstreams_removed == ("d1",)
    assert not changed["a"].needs_restart and not changed["a"].filters_changed
    assert changed["b"].needs_restart                       # another kernel table
    assert changed["c"].filters_changed and not changed["c"].needs_restart
    assert not diff.protocols_changed


def test_removed_instance_and_protocol_change():
    diff = diff_configs(parse_config(NEW), parse_config("protocol MLDv2;\npinstance a: up0 ==> d2 d5;"))
    assert {i.name for i in diff.instances_removed} == {"b", "c", "d"}
    assert diff.protocols_changed and diff.instances_changed == ()
