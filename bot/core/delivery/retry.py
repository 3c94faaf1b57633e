"""Retry policy as a small value: given an attempt number, how long to wait, or give up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_seconds: float = 2.0
    factor: float = 3.0
    cap_seconds: float = 600.0

    def delay(self, attempt: int, *, retry_after: float | None = None, key: int = 0) -> float | None:
        """Seconds before attempt `attempt + 1`, or None when `attempt` was the last one.

        A platform's Retry-After wins when it is longer. Jitter (up to +25 %) is derived from
        `key` so that it is deterministic for a given delivery yet spreads a batch out.
        """
        if attempt >= self.max_attempts:
            return None
        backoff = min(self.cap_seconds, self.base_seconds * self.factor ** (attempt - 1))
        backoff *= 1 + ((key * 2654435761) % 1000) / 4000
        return max(backoff, retry_after or 0.0)
