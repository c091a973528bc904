"""One heap of deadlines per engine object (docs/architecture.md, "Time").

Engine objects (routers, upstream hosts, the instance core) keep a single
``Deadlines`` and answer ``get_timer()`` from its earliest entry instead of
holding one timer object per group or source. Each key has one live heap
entry at or before its deadline:

- moving a deadline earlier pushes a new entry, the old one becomes stale;
- moving it later only records the new time: the early entry stays and is
  repaired (replaced by the real deadline) when it reaches the top, so a
  deadline refreshed on every report costs no heap operation;
- cancelling forgets the key; its entry is skipped when it surfaces.

The heap is rebuilt when stale entries outnumber live ones. Keys due at the
same time come out in the order their deadlines were last set.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable

_COMPACT_MINIMUM = 64

#: (deadline, order of setting, key): what the heap holds and what each key maps to
_Entry = tuple[float, int, Hashable]


class Deadlines:
    """Named deadlines: at most one per key, the earliest found in O(1) amortised."""

    __slots__ = ("_heap", "_at", "_queued", "_sequence")

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        #: key -> its deadline entry (the one the key must come out of the heap with)
        self._at: dict[Hashable, _Entry] = {}
        #: key -> its one live heap entry, at or before ``_at[key]``
        self._queued: dict[Hashable, _Entry] = {}
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._at

    def get(self, key: Hashable) -> float | None:
        """The deadline set for ``key``, or None."""
        entry = self._at.get(key)
        return None if entry is None else entry[0]

    def set(self, key: Hashable, at: float) -> None:
        """Set (or move) the deadline of ``key`` to ``at``."""
        entry = (at, next(self._sequence), key)
        self._at[key] = entry
        queued = self._queued.get(key)
        if queued is not None and queued[0] <= at:
            return
        self._queued[key] = entry
        heapq.heappush(self._heap, entry)
        if len(self._heap) > _COMPACT_MINIMUM and len(self._heap) > 2 * len(self._at):
            self._compact()

    def cancel(self, key: Hashable) -> None:
        """Forget the deadline of ``key`` (no error if there is none)."""
        if self._at.pop(key, None) is not None:
            del self._queued[key]

    def clear(self) -> None:
        """Forget every deadline."""
        self._heap.clear()
        self._at.clear()
        self._queued.clear()

    def earliest(self) -> float | None:
        """The earliest deadline set, or None."""
        self._settle_top()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Hashable]:
        """Remove and return the keys whose deadline is at or before ``now``, earliest first."""
        due: list[Hashable] = []
        heap = self._heap
        while True:
            self._settle_top()
            if not heap or heap[0][0] > now:
                return due
            key = heapq.heappop(heap)[2]
            del self._at[key]
            del self._queued[key]
            due.append(key)

    def _settle_top(self) -> None:
        """Drop stale entries and repair early ones until the top is a key's real deadline."""
        heap = self._heap
        while heap:
            top = heap[0]
            key = top[2]
            if self._queued.get(key) is not top:
                heapq.heappop(heap)
                continue
            entry = self._at[key]
            if entry is top:
                return
            self._queued[key] = entry
            heapq.heapreplace(heap, entry)

    def _compact(self) -> None:
        self._heap = list(self._at.values())
        heapq.heapify(self._heap)
        self._queued = dict(self._at)
