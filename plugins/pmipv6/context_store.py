"""Subscription contexts held for a while by the context channel (RFC 7411 §3.3), bounded.

Two uses (transfer.py): contexts peers pushed, waiting for their MN's attach
(keyed by MN and pushing peer), and contexts of departed MNs, waiting for the
new MAG's fetch (keyed by MN). Entries are held compact, as the validated
``ContextEntry`` tuples (family, code, payload bytes), never as parsed JSON.
Each expires ``hold_interval`` after it was put, on the clock (one timer for
the oldest entry); the store's size estimate (payload bytes plus a fixed
overhead per entry and per context) never exceeds ``max_bytes``: a context
that does not fit is refused, nothing held is evicted for it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from mcproxy_pmip_plugins.pmipv6.bindings import ContextEntry

HOLD_INTERVAL = 30.0
MAX_BYTES = 8 << 20
#: bytes counted per context and per entry besides the payload (objects, dict slot, key)
CONTEXT_OVERHEAD = 400
ENTRY_OVERHEAD = 150


def context_size(entries: tuple[ContextEntry, ...]) -> int:
    """The bytes ``entries`` are counted for in a store."""
    return CONTEXT_OVERHEAD + sum(ENTRY_OVERHEAD + len(entry.payload) for entry in entries)


@dataclass(frozen=True, slots=True)
class StoredContext:
    """One held context: its entries, when it expires, and a tag (the peer it is meant for)."""

    entries: tuple[ContextEntry, ...]
    expires_at: float
    size: int
    tag: str | None = None


class ContextStore:
    """Contexts by key, each for at most ``hold_interval``, together at most ``max_bytes``."""

    def __init__(self, clock: Any, hold_interval: float = HOLD_INTERVAL, max_bytes: int = MAX_BYTES) -> None:
        self.hold_interval = hold_interval
        self.max_bytes = max_bytes
        self._clock = clock
        self._held: OrderedDict[Hashable, StoredContext] = OrderedDict()
        self._bytes = 0
        self._expiry = None

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._held)

    def put(self, key: Hashable, entries: tuple[ContextEntry, ...], tag: str | None = None) -> bool:
        """Hold ``entries`` under ``key`` (replacing what it held); False if they do not fit."""
        self._expire()
        size = context_size(entries)
        previous = self._held.get(key)
        if self._bytes - (previous.size if previous else 0) + size > self.max_bytes:
            return False
        if previous is not None:
            self._remove(key)
        self._held[key] = StoredContext(entries, self._clock.seconds() + self.hold_interval, size, tag)
        self._bytes += size
        self._arm()
        return True

    def get(self, key: Hashable) -> StoredContext | None:
        self._expire()
        return self._held.get(key)

    def pop(self, key: Hashable) -> StoredContext | None:
        self._expire()
        return self._remove(key) if key in self._held else None

    def pop_matching(self, match: Callable[[Hashable], bool]) -> dict[Hashable, StoredContext]:
        """Remove and return every held context whose key ``match`` accepts."""
        self._expire()
        return {key: self._remove(key) for key in [k for k in self._held if match(k)]}

    def close(self) -> None:
        """Drop everything and the expiry timer (the plugin stops)."""
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        self._held.clear()
        self._bytes = 0

    def _remove(self, key: Hashable) -> StoredContext:
        stored = self._held.pop(key)
        self._bytes -= stored.size
        return stored

    def _expire(self) -> None:
        now = self._clock.seconds()
        while self._held:
            key, stored = next(iter(self._held.items()))
            if stored.expires_at > now:
                break
            self._remove(key)

    def _arm(self) -> None:
        """One timer, for the oldest context (entries are kept in expiry order)."""
        if self._expiry is not None and self._expiry.active():
            return
        if self._held:
            oldest = next(iter(self._held.values()))
            delay = max(0.0, oldest.expires_at - self._clock.seconds())
            self._expiry = self._clock.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._expiry = None
        self._expire()
        self._arm()
