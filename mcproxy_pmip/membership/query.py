"""A received query as the engine sees it, the same for IGMP and MLD.

RFC 3376 §4.1 and RFC 3810 §5.1 define the fields: the router side uses them
for the querier election and a Non-Querier's timers (§6.6.1, §6.6.2, the QRV
and QQI of §4.1.6 / §4.1.7), the host side to schedule its answer (§5.2) and
to size the Older Version Querier Present Timeout (§8.12). ``query_from_wire``
is the one place a decoded ``IgmpQuery`` / ``MldQuery`` becomes a ``Query``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcproxy_pmip.addresses import IPAddress
from mcproxy_pmip.wire.igmp import IgmpQuery
from mcproxy_pmip.wire.mld import MldQuery


@dataclass(frozen=True, slots=True)
class Query:
    """One query heard on a link, any family and version.

    ``version``: IGMP 1/2/3, MLD 1/2. ``source``: the querier's address (the
    election compares it). ``max_resp_interval`` seconds (0: the receiver's
    default). ``group`` None is a General Query, else group-specific; with
    ``sources`` group-and-source-specific. ``suppress_router_processing`` the S
    flag. ``robustness`` the QRV and ``query_interval`` the QQI in seconds,
    0 when the query carries none (older versions, or a zero field).
    """

    version: int
    source: IPAddress
    max_resp_interval: float
    group: IPAddress | None = None
    sources: tuple[IPAddress, ...] = ()
    suppress_router_processing: bool = False
    robustness: int = 0
    query_interval: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        if self.version < 1:
            raise ValueError(f"query version {self.version}")
        if self.max_resp_interval < 0 or self.query_interval < 0 or self.robustness < 0:
            raise ValueError("negative interval or robustness")


def query_from_wire(message: IgmpQuery | MldQuery, source: IPAddress) -> Query:
    """The engine's ``Query`` for a decoded query message sent by ``source``."""
    return Query(message.version, source, message.max_resp_interval, message.group,
                 message.sources, message.suppress_router_processing, message.robustness,
                 message.query_interval)
