"""The engine's ``FilterPolicy`` built from an instance's whitelist/blacklist bindings.

mcproxy semantics: an interface without a filter in a direction passes
everything; a whitelist passes (S,G) if a rule box of its table matches, a
blacklist if none does. ``source`` None (a (*,G) subscription) matches a rule on
its group alone. A rule box naming an interface matches only traffic whose peer
(mcproxy's input interface: where the data or subscription comes from) is that
interface; ``FilterPolicy.allows`` does not carry the peer, so callers that know
it pass ``peer=``, and without it the interface part of a rule is a wildcard.
"""

from __future__ import annotations

from mcproxy_pmip.addresses import IPAddress
from mcproxy_pmip.membership.filters import Direction
from mcproxy_pmip.config.model import FilterBinding, InstanceConfig


class RuleFilterPolicy:
    """``membership.filters.FilterPolicy`` over ``FilterBinding`` tables."""

    def __init__(self, bindings: tuple[FilterBinding, ...] | list[FilterBinding]) -> None:
        self._bindings: dict[tuple[str, Direction], FilterBinding] = {}
        for binding in bindings:
            self._bindings[(binding.interface, binding.direction)] = binding

    @classmethod
    def for_instance(cls, instance: InstanceConfig) -> RuleFilterPolicy:
        return cls(instance.filters)

    def binding(self, interface: str, direction: Direction) -> FilterBinding | None:
        return self._bindings.get((interface, direction))

    def allows(self, interface: str, direction: Direction, group: IPAddress,
               source: IPAddress | None, peer: str | None = None) -> bool:
        """True if (source, group) may pass ``interface`` in ``direction``."""
        binding = self._bindings.get((interface, direction))
        if binding is None:
            return True
        return binding.allows(group, source, peer)
