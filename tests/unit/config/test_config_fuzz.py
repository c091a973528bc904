"""Random text never raises anything but ConfigError (h11-style fuzz contract)."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from mcproxy_pmip.config import parse_config
from mcproxy_pmip.errors import ConfigError

GRAMMAR_WORDS = ["protocol", "IGMPv3", "MLDv2", "pinstance", "table", "disable", "upstream",
                 "downstream", "in", "out", "whitelist", "blacklist", "rulematching", "mutex",
                 "all", "first", "eth0", "eth1", "a", "239.1.1.1", "ff0e::1", "*", "(", ")",
                 "{", "}", "|", ";", ":", "==>", "-", "/", "16", "\n", "#", '"', "10"]
YAML_WORDS = ["protocols:", "instances:", "- name: a", "upstreams: [e0]", "downstreams:",
              "filters:", "timers: {robustness: 0}", "table: 10", "[", "]", "{", "}", ":",
              "- ", "\n", "  ", "rules: ['(239.1.1.1 | *)']", "&a", "*a", "!!python/object", "'"]


def check(text: str, fmt: str | None) -> None:
    try:
        parse_config(text, fmt=fmt)
    except ConfigError as error:
        assert error.problems
        assert all(p.line >= 0 and p.column >= 0 for p in error.problems)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text(text):
    check(text, None)
    check(text, "mcproxy")
    check(text, "yaml")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(GRAMMAR_WORDS), max_size=40))
def test_grammar_token_soup(words):
    check(" ".join(words), "mcproxy")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(YAML_WORDS), max_size=30))
def test_yaml_token_soup(words):
    check(" ".join(words), "yaml")
