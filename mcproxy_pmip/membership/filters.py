"""The filter policy the engine consults: mcproxy's whitelist/blacklist rules as an input.

The config layer builds a ``FilterPolicy`` from ``pinstance ... whitelist|blacklist``
lines; the engine only asks it questions. ``source`` None stands for "any
source" (a (*,G) subscription or report): a rule then matches on the group alone.

Where each direction applies (mcproxy's documentation):
- downstream IN: which records a downstream may subscribe to (filtered before the router state);
- downstream OUT: which (S,G) data are forwarded to that downstream;
- upstream OUT: what the proxy reports upstream for the merged state;
- upstream IN: which (S,G) data are accepted from the upstream.
"""

from __future__ import annotations

import enum
from typing import Protocol

from mcproxy_pmip.addresses import IPAddress


class Direction(enum.Enum):
    IN = "in"
    OUT = "out"


class FilterPolicy(Protocol):
    def allows(self, interface: str, direction: Direction, group: IPAddress,
               source: IPAddress | None) -> bool:
        """True if (source, group) may pass ``interface`` in ``direction``."""


class AllowAll:
    """The policy of an instance without filters."""

    def allows(self, interface: str, direction: Direction, group: IPAddress,
               source: IPAddress | None) -> bool:
        return True
