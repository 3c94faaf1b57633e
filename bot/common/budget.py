"""A time budget for the periodic jobs that work in batches (digests, reminders).

A job takes batch after batch until nothing is due or its share of the tick is used, so a
morning's 100,000 digests go out in minutes instead of 200 a minute, and the next tick still
starts on time. Throughput control, not business time: it reads a monotonic clock (injectable,
so tests decide when the budget runs out), never the business clock the jobs are given.
"""

from __future__ import annotations

import time
from collections.abc import Callable

TICK_SHARE = 0.8  # of the tick interval: room left for the tick's other jobs and the next tick
DEFAULT_SECONDS = 48.0  # TICK_SHARE of the default 60 s tick, for callers that pass no budget


class TimeBudget:
    """`seconds` from now on `monotonic`; `spent()` says when they are used."""

    def __init__(self, seconds: float = DEFAULT_SECONDS, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._until = monotonic() + seconds

    @classmethod
    def of_tick(cls, tick_seconds: float, *, monotonic: Callable[[], float] = time.monotonic) -> TimeBudget:
        """The share of one tick the batch jobs may use together."""
        return cls(tick_seconds * TICK_SHARE, monotonic=monotonic)

    def spent(self) -> bool:
        return self._monotonic() >= self._until
