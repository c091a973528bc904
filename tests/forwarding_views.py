"""A ``ForwardingView`` stand-in for plane tests and benches that need no proxy decisions."""

from __future__ import annotations

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.dataplane.port import GroupOutputs


class FixedOutputs:
    """Every (S,G) goes to ``outputs`` (less the interface it came in on); no group-level decision."""

    def __init__(self, outputs: frozenset[str] = frozenset()) -> None:
        self._outputs = outputs

    def outputs(self, family: Family, source: IPAddress, group: IPAddress, iif: str) -> frozenset[str]:
        return self._outputs - {iif}

    def group_outputs(self, family: Family, group: IPAddress) -> GroupOutputs:
        return GroupOutputs(family, group)

    def default_upstreams(self, family: Family) -> tuple[str, ...]:
        return ()
