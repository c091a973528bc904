"""Rate-limited logging of events driven by the network (a hostile host or peer must not flood the log).

Per reason: the first occurrence in an interval is logged at once; later ones
in the same interval are only counted, and one summary line with the count
("suppressed=N") is written when the interval ends. Every occurrence is
counted in ``counts`` whether it was logged or not.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

LOG_INTERVAL = 60.0


class RateLimitedLog:
    """``event(reason, message, *args)``: log the first per ``interval`` and reason, count the rest."""

    def __init__(self, logger: logging.Logger, clock: Any, interval: float = LOG_INTERVAL,
                 level: int = logging.WARNING, summary: str = "log") -> None:
        self._logger = logger
        self._clock = clock
        self._interval = interval
        self._level = level
        self._summary = summary
        self._suppressed: Counter[str] = Counter()
        self._flush_calls: dict[str, Any] = {}
        self.counts: Counter[str] = Counter()

    def event(self, reason: str, message: str, *args: Any) -> None:
        """One occurrence of ``reason``; ``message % args`` is logged if none was this interval."""
        self.counts[reason] += 1
        if reason in self._flush_calls:
            self._suppressed[reason] += 1
            return
        self._logger.log(self._level, message, *args)
        self._flush_calls[reason] = self._clock.callLater(self._interval, self._flush, reason)

    def _flush(self, reason: str) -> None:
        del self._flush_calls[reason]
        suppressed = self._suppressed.pop(reason, 0)
        if suppressed:
            self._logger.log(self._level, "%s_suppressed reason=%s suppressed=%d interval=%g",
                             self._summary, reason, suppressed, self._interval)
            self._flush_calls[reason] = self._clock.callLater(self._interval, self._flush, reason)

    def close(self) -> None:
        """Cancel the pending summaries (the owner stops); counts are kept."""
        for call in self._flush_calls.values():
            if call.active():
                call.cancel()
        self._flush_calls.clear()
        self._suppressed.clear()
