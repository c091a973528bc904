"""mcproxy-pmip: an IGMP/MLD multicast proxy (RFC 4605) for PMIPv6 Mobile Access Gateways.

Layers, imported one way only (checked by tests/unit/test_layers.py):
``wire`` and ``membership`` are sans-IO (no socket, twisted, pyroute2, scapy);
``kernel`` makes the syscalls; ``proxy``/``control``/``cli`` are the IO layer
on one Twisted reactor.
"""

__version__ = "0.3.0"
