"""The daemon's own plugin facade for plugin tests: ``ProxyApi`` over a ``MemoryProxy``.

No instance is configured: the plugin creates them through the facade. The
proxy runs on the MemoryProxy's ``task.Clock`` (``facade.clock``); assertions
read the real state (instances, the memory plane, packets sent).
"""

from __future__ import annotations

from collections.abc import Iterable

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.proxy.api import ProxyApi
from tests.unit.proxy.memory_proxy import MemoryProxy

CONFIG = "protocol IGMPv3;\nprotocol MLDv2;\n"
LINKS = ("tun0", "tun1", "acc1", "acc2", "br0")


def proxy_and_facade(links: Iterable[str] = LINKS, *, max_interfaces: int | None = None,
                     reactor=None) -> tuple[MemoryProxy, ProxyApi]:
    """A started proxy with no instance and its facade; ``reactor`` replaces the facade's
    reactor (listeners, peer connections) while the clock stays the proxy's."""
    memory = MemoryProxy(CONFIG, links, max_interfaces=max_interfaces)
    facade = ProxyApi(memory.proxy, ["pmipv6"])
    if reactor is not None:
        facade.reactor = reactor
    return memory, facade


def downstreams(memory: MemoryProxy) -> dict[str, set[str]]:
    """Each instance's downstreams, as the proxy has them."""
    return {name: set(instance.downstreams) for name, instance in memory.proxy.instances.items()}


def general_queries(memory: MemoryProxy, link: str) -> int:
    """General Queries sent on ``link`` so far, both families."""
    return sum(1 for family in Family for query in memory.sent_queries(family, link) if query.group is None)


def upstream_reports(memory: MemoryProxy, tunnel: str) -> int:
    """Reports sent on ``tunnel`` so far, both families."""
    return sum(len(memory.sent_reports(family, tunnel)) for family in Family)
