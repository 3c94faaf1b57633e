"""Rate-limit primitives the fakes share: a token bucket, a multi-window sliding log, a manual
monotonic clock, the ``Retry-After`` value and the counters behind ``limits_stats()``.

Time always comes from an injected ``clock`` (a zero-argument callable returning seconds, by default
``time.monotonic``), so the fakes' own tests move a :class:`ManualMonotonic` instead of sleeping.
Everything here is on the fakes' hot path (tens of thousands of requests a minute through one
process): plain floats, ``__slots__`` and no allocation on an accepted request beyond a list append.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Clock", "LimitStats", "ManualMonotonic", "Rate", "TokenBucket", "WindowLog", "retry_after_seconds"]

Clock = Callable[[], float]

# Float slack when comparing token counts and window edges, so that a clock moved by exactly the
# Retry-After a fake gave always finds the request allowed.
_EPS = 1e-9


class ManualMonotonic:
    """A monotonic clock for tests: ``clock()`` returns the current reading; it moves only on
    :meth:`advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self.now += seconds
        return self.now


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` requests per ``per`` seconds, with up to ``burst`` at once (a token bucket of
    capacity ``burst`` refilled at ``count / per`` tokens a second). ``burst`` defaults to ``count``:
    a whole period's allowance may be spent at once, as in a per-minute window."""

    count: float
    per: float = 60.0
    burst: float | None = None

    def __post_init__(self) -> None:
        if self.count <= 0 or self.per <= 0 or (self.burst is not None and self.burst < 1):
            raise ValueError(f"invalid rate {self!r}")

    @property
    def capacity(self) -> float:
        return float(self.burst if self.burst is not None else self.count)

    def per_second(self, scale: float = 1.0) -> float:
        return self.count / self.per * scale

    def as_dict(self) -> dict[str, float]:
        return {"count": self.count, "per": self.per, "burst": self.capacity}

    @classmethod
    def parse(cls, value: Any) -> Rate:
        """A Rate from ``{"count": 50, "per": 60, "burst": 10}``, ``[50, 60]``, ``[50, 60, 10]`` or a Rate."""
        if isinstance(value, Rate):
            return value
        if isinstance(value, Mapping):
            return cls(float(value["count"]), float(value.get("per", 60.0)),
                       None if value.get("burst") is None else float(value["burst"]))
        if isinstance(value, (list, tuple)) and 1 <= len(value) <= 3:
            return cls(*(float(v) for v in value))
        raise ValueError(f"cannot read a rate from {value!r}")


class TokenBucket:
    """A token bucket. :meth:`wait` refills and says how long until one token is there (0.0: one
    is there now); :meth:`take` spends it. Split in two so that a request checked against several
    buckets (a channel's and the workspace's) spends from none of them when one refuses."""

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def wait(self, now: float) -> float:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0 - _EPS:
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0


class WindowLog:
    """The times of recent operations, checked against several ``(count, seconds)`` windows at
    once: at most ``count`` operations in any ``seconds``-long sliding window (Microsoft's "N
    operations per T seconds" tables). Kept no longer than the longest window."""

    __slots__ = ("stamps",)

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def wait(self, now: float, windows: Iterable[tuple[int, float]], horizon: float) -> float:
        stamps = self.stamps
        if stamps and stamps[0] <= now - horizon:
            del stamps[:bisect_right(stamps, now - horizon + _EPS)]
        longest = 0.0
        size = len(stamps)
        for count, seconds in windows:
            if size < count:
                continue
            inside = size - bisect_right(stamps, now - seconds + _EPS)
            if inside >= count:
                # the count-th most recent operation leaves this window `seconds` after it happened
                longest = max(longest, stamps[size - count] + seconds - now)
        return longest

    def record(self, now: float) -> None:
        self.stamps.append(now)


def retry_after_seconds(wait: float) -> int:
    """The ``Retry-After`` value for a wait: whole seconds, rounded up, at least 1 (what Slack
    sends, and what ``slack_sdk``'s retry handler can parse: it calls ``int()`` on the header)."""
    return max(1, math.ceil(wait - _EPS))


class LimitStats:
    """Counters for ``limits_stats()``: requests let through and 429s sent, per method and per
    scope (a Slack workspace or a Teams tenant), the reason for each 429, the Retry-After values
    given, and injected transient failures. Counts are kept with plain Counters keyed by tuples."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.accepted: Counter[tuple[str, str]] = Counter()
        self.throttled: Counter[tuple[str, str]] = Counter()
        self.reasons: Counter[str] = Counter()
        self.retry_after: Counter[tuple[str, int]] = Counter()
        self.transient: Counter[tuple[str, int]] = Counter()

    def reset(self) -> None:
        for counter in (self.accepted, self.throttled, self.reasons, self.retry_after, self.transient):
            counter.clear()

    def accept(self, scope: str, method: str) -> None:
        self.accepted[(scope, method)] += 1

    def throttle(self, scope: str, method: str, reason: str, retry_after: int | None) -> None:
        self.throttled[(scope, method)] += 1
        self.reasons[reason] += 1
        if retry_after is not None:
            self.retry_after[(method, retry_after)] += 1

    def fail(self, method: str, status: int) -> None:
        self.transient[(method, status)] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "accepted": _section(self.accepted, self.scope),
            "throttled": {**_section(self.throttled, self.scope), "by_reason": dict(self.reasons)},
            "retry_after": _nested(self.retry_after),
            "transient": {"total": sum(self.transient.values()),
                          "by_status": _totals((str(s), n) for (_, s), n in self.transient.items()),
                          "by_method": _nested(self.transient)},
        }


def _totals(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for key, count in pairs:
        totals[key] += count
    return dict(totals)


def _nested(counter: Mapping[tuple[str, Any], int]) -> dict[str, dict[str, int]]:
    """``{(outer, inner): n}`` as ``{outer: {str(inner): n}}`` (JSON keys are strings)."""
    out: dict[str, dict[str, int]] = {}
    for (outer, inner), n in counter.items():
        out.setdefault(outer, {})[str(inner)] = n
    return out


def _section(counter: Counter[tuple[str, str]], scope: str) -> dict[str, Any]:
    return {
        "total": sum(counter.values()),
        "by_method": _totals((method, n) for (_, method), n in counter.items()),
        f"by_{scope}": _nested(counter),
    }
