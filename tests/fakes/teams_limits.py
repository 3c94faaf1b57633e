"""The Bot Connector's (Teams') rate limits for the fake Bot Connector's limits mode
(docs/platform-limits.md has the figures and their sources).

Microsoft documents a global limit of 50 requests a second per app per tenant, and "per bot per
thread" limits: in one conversation at most 7 operations in any 1 s, 8 in 2 s, 60 in 30 s and 1800
in an hour for sending and for creating conversations (twice that for member reads). Over a limit
the connector answers ``429 Too Many Requests``; callers must also retry 412, 502, 503 and 504,
which this profile can inject at a given rate.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from tests.fakes.rate_limits import Clock, Rate, TokenBucket, WindowLog

__all__ = ["MEMBER_WINDOWS", "ROUTE_SCENARIOS", "SEND_WINDOWS", "TeamsLimiter", "TeamsLimits"]

Windows = tuple[tuple[int, float], ...]

# Microsoft's "per bot per thread limit" table: (maximum operations, time period in seconds).
SEND_WINDOWS: Windows = ((7, 1.0), (8, 2.0), (60, 30.0), (1800, 3600.0))
MEMBER_WINDOWS: Windows = ((14, 1.0), (16, 2.0), (120, 30.0), (3600, 3600.0))

# Which of Microsoft's scenarios each fake route counts against, in its conversation. Update and
# delete are not in Microsoft's table; they count as sends here ("all requests are subject to the
# same rate limiting policy").
ROUTE_SCENARIOS: Mapping[str, str] = MappingProxyType({
    "create_conversation": "create",
    "send_activity": "send",
    "reply_activity": "send",
    "update_activity": "send",
    "delete_activity": "send",
    "get_member": "members",
})


def _windows(value: Any) -> Windows:
    return tuple((int(count), float(seconds)) for count, seconds in value)


@dataclass(frozen=True)
class TeamsLimits:
    """A limits profile; the defaults are Microsoft's figures. ``scale`` multiplies every rate
    (the tenant's requests a second; conversation windows shrink by the same factor)."""

    scale: float = 1.0
    per_tenant: Rate = Rate(50, 1.0)
    """50 requests a second per app per tenant; a burst of one second's allowance (our choice)."""
    per_conversation: Mapping[str, Windows] = field(default_factory=lambda: MappingProxyType(
        {"send": SEND_WINDOWS, "create": SEND_WINDOWS, "members": MEMBER_WINDOWS}))
    route_scenarios: Mapping[str, str] = field(default_factory=lambda: ROUTE_SCENARIOS)
    retry_after: bool = True
    """Send ``Retry-After`` with a 429 (off: exercise a caller's own backoff)."""
    transient_rate: float = 0.0
    """Fraction of requests (after the rate limits) answered with one of ``transient_statuses``."""
    transient_statuses: tuple[int, ...] = (412, 502, 504)
    transient_applied: float = 0.0
    """Fraction of injected 502/504 answers given after the operation was carried out anyway (a
    gateway that timed out on a request the service completed)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError("scale must be positive")
        if not 0.0 <= self.transient_rate <= 1.0 or not 0.0 <= self.transient_applied <= 1.0:
            raise ValueError("transient_rate and transient_applied are fractions between 0 and 1")
        object.__setattr__(self, "per_conversation",
                           MappingProxyType({k: _windows(v) for k, v in self.per_conversation.items()}))
        object.__setattr__(self, "route_scenarios", MappingProxyType(dict(self.route_scenarios)))
        object.__setattr__(self, "transient_statuses", tuple(int(s) for s in self.transient_statuses))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: TeamsLimits | None = None) -> TeamsLimits:
        """Overrides on top of ``base`` (default: Microsoft's figures)."""
        base = base or cls()
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown Teams limits settings: {sorted(unknown)}")
        changes: dict[str, Any] = {}
        for name, value in data.items():
            if name == "per_tenant":
                changes[name] = Rate.parse(value)
            elif name == "per_conversation":
                changes[name] = {**base.per_conversation, **value}
            elif name == "route_scenarios":
                changes[name] = {**base.route_scenarios, **value}
            elif name in ("scale", "transient_rate", "transient_applied"):
                changes[name] = float(value)
            elif name == "retry_after":
                changes[name] = bool(value)
            elif name == "transient_statuses":
                changes[name] = tuple(value)
            else:
                changes[name] = int(value)
        return replace(base, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "per_tenant": self.per_tenant.as_dict(),
            "per_conversation": {k: [list(w) for w in v] for k, v in self.per_conversation.items()},
            "route_scenarios": dict(self.route_scenarios),
            "retry_after": self.retry_after,
            "transient_rate": self.transient_rate,
            "transient_statuses": list(self.transient_statuses),
            "transient_applied": self.transient_applied,
            "seed": self.seed,
        }


class TeamsLimiter:
    """Decides, per request, whether the connector would answer 429 (and the wait), and which
    requests get an injected transient failure."""

    def __init__(self, limits: TeamsLimits, clock: Clock) -> None:
        self.limits = limits
        self.clock = clock
        self._tenants: dict[str, TokenBucket] = {}
        self._logs: dict[tuple[str, str], WindowLog] = {}
        self._windows = {name: tuple((count, seconds / limits.scale) for count, seconds in windows)
                         for name, windows in limits.per_conversation.items()}
        self._horizons = {name: max(seconds for _, seconds in windows) for name, windows in self._windows.items()}
        self._random = random.Random(limits.seed)

    def check(self, route: str, tenant: str | None, conversation: str | None) -> tuple[float, str] | None:
        """``None`` when the request may proceed (it is counted), else ``(seconds to wait,
        "tenant" | "conversation")``. An unknown tenant or conversation is not limited by it."""
        now = self.clock()
        bucket = None
        tenant_wait = 0.0
        if tenant is not None:
            bucket = self._tenants.get(tenant)
            if bucket is None:
                rate = self.limits.per_tenant
                bucket = self._tenants[tenant] = TokenBucket(rate.per_second(self.limits.scale), rate.capacity, now)
            tenant_wait = bucket.wait(now)
        log = None
        conversation_wait = 0.0
        scenario = self.limits.route_scenarios.get(route)
        if conversation and scenario in self._windows:
            log = self._logs.get((conversation, scenario))
            if log is None:
                log = self._logs[(conversation, scenario)] = WindowLog()
            conversation_wait = log.wait(now, self._windows[scenario], self._horizons[scenario])
        if tenant_wait or conversation_wait:
            if tenant_wait >= conversation_wait:
                return tenant_wait, "tenant"
            return conversation_wait, "conversation"
        if bucket is not None:
            bucket.take()
        if log is not None:
            log.record(now)
        return None

    def transient(self) -> tuple[int, bool] | None:
        """``(status, applied)`` when this request gets an injected transient failure; ``applied``:
        carry the operation out before failing."""
        limits = self.limits
        if limits.transient_rate <= 0.0 or not limits.transient_statuses:
            return None
        if self._random.random() >= limits.transient_rate:
            return None
        status = self._random.choice(limits.transient_statuses)
        applied = status in (502, 504) and self._random.random() < limits.transient_applied
        return status, applied
