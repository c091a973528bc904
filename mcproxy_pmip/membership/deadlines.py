"""One heap of deadlines per engine object (docs/architecture.md, "Time").

Engine objects keep a single ``Deadlines`` and answer ``get_timer()`` from its
earliest entry instead of holding one timer object per group or source.
Rescheduling and cancelling are O(log n) / O(1): superseded heap entries are
left in place and skipped when they surface (lazy deletion), and the heap is
rebuilt when stale entries outnumber live ones.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable

_COMPACT_MINIMUM = 64


class Deadlines:
    """Named deadlines: at most one per key, the earliest found in O(1) amortised."""

    __slots__ = ("_heap", "_at", "_sequence")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._at: dict[Hashable, float] = {}
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._at

    def get(self, key: Hashable) -> float | None:
        """The deadline set for ``key``, or None."""
        return self._at.get(key)

    def set(self, key: Hashable, at: float) -> None:
        """Set (or move) the deadline of ``key`` to ``at``."""
        self._at[key] = at
        heapq.heappush(self._heap, (at, next(self._sequence), key))
        if len(self._heap) > _COMPACT_MINIMUM and len(self._heap) > 2 * len(self._at):
            self._compact()

    def cancel(self, key: Hashable) -> None:
        """Forget the deadline of ``key`` (no error if there is none)."""
        self._at.pop(key, None)

    def earliest(self) -> float | None:
        """The earliest deadline set, or None."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Hashable]:
        """Remove and return the keys whose deadline is at or before ``now``, earliest first."""
        due: list[Hashable] = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return due
            _, _, key = heapq.heappop(self._heap)
            del self._at[key]
            due.append(key)

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and self._at.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)

    def _compact(self) -> None:
        self._heap = [(at, next(self._sequence), key) for key, at in self._at.items()]
        heapq.heapify(self._heap)
