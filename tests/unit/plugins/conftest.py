"""Fixtures for plugin tests: a MemoryProxy with no instance (``memory``) and the real facade over it."""

from __future__ import annotations

import pytest

from mcproxy_pmip.proxy.api import ProxyApi
from tests.unit.plugins.real_facade import proxy_and_facade
from tests.unit.proxy.memory_proxy import MemoryProxy


@pytest.fixture
def proxy_pair() -> tuple[MemoryProxy, ProxyApi]:
    memory, facade = proxy_and_facade()
    yield memory, facade
    memory.stop()


@pytest.fixture
def memory(proxy_pair) -> MemoryProxy:
    return proxy_pair[0]


@pytest.fixture
def facade(proxy_pair) -> ProxyApi:
    return proxy_pair[1]
