"""Every example in configs/ loads (CONTRIBUTING.md, Style)."""

from __future__ import annotations

import pathlib

import pytest

from mcproxy_pmip.config import load_config

CONFIGS = pathlib.Path(__file__).resolve().parents[3] / "configs"
EXAMPLES = sorted(p for p in CONFIGS.iterdir() if p.suffix in (".conf", ".yaml", ".yml"))


def test_examples_exist():
    assert len(EXAMPLES) >= 7


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads(path):
    config = load_config(path)
    assert config.source == str(path)
    assert config.protocols
    if path.name != "mag.conf":
        assert config.instances
