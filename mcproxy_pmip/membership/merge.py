"""The RFC 4605 §4.1 membership database: merging per-downstream subscriptions into one.

Each downstream's router state for a group is given as ``(filter mode, sources)``:
``(INCLUDE, forwarded sources)`` or ``(EXCLUDE, blocked sources)``. RFC 4605
§4.1 merges them with the rules RFC 3376 §3.2 / RFC 3810 §4.2 give for merging
socket states into an interface state:

- any EXCLUDE: EXCLUDE with the intersection of all EXCLUDE source sets minus
  the union of all INCLUDE source sets;
- all INCLUDE: INCLUDE with the union of the source sets;
- INCLUDE with an empty set is no membership at all (``None``).
"""

from __future__ import annotations

from collections.abc import Iterable

from mcproxy_pmip.addresses import IPAddress
from mcproxy_pmip.wire.records import FilterMode

MembershipState = tuple[FilterMode, frozenset[IPAddress]]
#: every source wanted
ANY_SOURCE: MembershipState = (FilterMode.EXCLUDE, frozenset())


def merge(states: Iterable[MembershipState | None]) -> MembershipState | None:
    """Merge subscriptions into one membership record (RFC 4605 §4.1).

    ``None`` entries (no membership on that downstream) are skipped, as are
    INCLUDE entries with no sources; the result is ``None`` when nothing is wanted.
    One (EXCLUDE, {}) makes the result (EXCLUDE, {}) whatever the others are:
    the common case of any-source listeners is answered without set work.
    """
    states = tuple(states)
    if ANY_SOURCE in states:
        return ANY_SOURCE
    included: set[IPAddress] = set()
    excluded: set[IPAddress] | None = None
    for state in states:
        if state is None:
            continue
        mode, sources = state
        if mode is FilterMode.INCLUDE:
            included.update(sources)
        elif excluded is None:
            excluded = set(sources)
        else:
            excluded.intersection_update(sources)
    if excluded is not None:
        return FilterMode.EXCLUDE, frozenset(excluded.difference(included))
    if included:
        return FilterMode.INCLUDE, frozenset(included)
    return None
