"""Retry policy as a small value: given an attempt number, how long to wait, or give up."""

from __future__ import annotations

import random
from dataclasses import dataclass

_MAX_EXPONENT = 30  # beyond it every backoff is the cap anyway (and 3.0 ** 1000 overflows)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_seconds: float = 2.0
    factor: float = 3.0
    cap_seconds: float = 600.0
    # A platform that refused Herald's own credentials is asked again after this long (one request),
    # and at once after a restart (see Outbox._credentials_refused).
    credentials_recheck_seconds: float = 300.0

    def delay(self, attempt: int, *, retry_after: float | None = None, key: int = 0) -> float | None:
        """Seconds before attempt `attempt + 1`, or None when `attempt` was the last one.

        A platform's Retry-After wins when it is longer. Jitter (up to +25 %) is derived from
        `key` so that it is deterministic for a given delivery yet spreads a batch out.
        """
        if attempt >= self.max_attempts:
            return None
        backoff = min(self.cap_seconds, self.base_seconds * self.factor ** min(attempt - 1, _MAX_EXPONENT))
        backoff *= 1 + ((key * 2654435761) % 1000) / 4000
        return max(backoff, retry_after or 0.0)

    def throttle_pause(self, throttles: int) -> float:
        """Seconds to pause a lane after its `throttles`-th 429 in a row that named no Retry-After:
        exponential backoff with random jitter (up to +25 %), at most `cap_seconds` (Microsoft's
        guidance for the Bot Connector: "If the response doesn't include a Retry-After header,
        use an exponential backoff with random jitter").

        A 429 is not an attempt: it says "later", never "no", so it never makes a copy give up
        (`delay` counts only the failures that are)."""
        backoff = self.base_seconds * self.factor ** min(max(throttles, 1) - 1, _MAX_EXPONENT)
        return min(self.cap_seconds, backoff * random.uniform(1.0, 1.25))
