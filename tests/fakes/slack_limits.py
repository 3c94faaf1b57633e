"""Slack's Web API rate limits for the fake Slack API's limits mode (docs/platform-limits.md has
the figures and their sources).

Slack evaluates limits "per API method per workspace/team per app": a token bucket per
(workspace, method) at the method's tier. ``chat.postMessage`` is special: about one message a
second per channel (short bursts allowed) plus a workspace-wide limit of "several hundred messages
per minute". ``conversations.history`` and ``conversations.replies`` drop to 1 request a minute, 15
objects a page, for commercially distributed apps outside the Slack Marketplace (2025-05-29).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from tests.fakes.rate_limits import Clock, Rate, TokenBucket

__all__ = ["HISTORY_METHODS", "METHOD_TIERS", "SlackLimiter", "SlackLimits", "TIER_RATES"]

# Slack's tiers, per minute (docs.slack.dev/apis/web-api/rate-limits). Slack publishes no burst
# sizes; a tier's bucket holds one minute's allowance (Tier 1 "a small amount of burst", Tier 4
# "generous burst behavior"). auth.test is special: "hundreds of requests per minute".
TIER_RATES: Mapping[str, Rate] = MappingProxyType({
    "tier1": Rate(1), "tier2": Rate(20), "tier3": Rate(50), "tier4": Rate(100), "auth.test": Rate(600),
})

# Each method the fake serves (and a few Herald may call), with its tier as Slack's method
# reference lists it. chat.postMessage is absent: it has its own per-channel and workspace limits.
METHOD_TIERS: Mapping[str, str] = MappingProxyType({
    "auth.test": "auth.test",
    "conversations.open": "tier3",
    "conversations.history": "tier3",
    "conversations.replies": "tier3",
    "conversations.info": "tier3",
    "chat.update": "tier3",
    "chat.delete": "tier3",
    "chat.postEphemeral": "tier4",
    "users.info": "tier4",
    "users.lookupByEmail": "tier3",
    "views.open": "tier4",
    "views.update": "tier4",
    "views.push": "tier4",
    "views.publish": "tier4",
    "files.getUploadURLExternal": "tier4",
    "files.completeUploadExternal": "tier4",
})

HISTORY_METHODS = frozenset({"conversations.history", "conversations.replies"})
POST_METHOD = "chat.postMessage"


def _mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class SlackLimits:
    """A limits profile. The defaults are Slack's documented figures; ``scale`` multiplies every
    rate (bursts stay), so ``scale=60`` runs an hour's traffic shape in a minute."""

    scale: float = 1.0
    tiers: Mapping[str, Rate] = field(default_factory=lambda: TIER_RATES)
    method_tiers: Mapping[str, str] = field(default_factory=lambda: METHOD_TIERS)
    post_per_channel: Rate = Rate(1, 1.0, burst=3)
    """chat.postMessage: 1 a second per channel; "short bursts >1 allowed" (3 is our choice)."""
    post_per_workspace: Rate = Rate(300, 60.0)
    """chat.postMessage workspace-wide: "several hundred messages per minute" (300 is our choice)."""
    non_marketplace_reads: Rate = Rate(1, 60.0, burst=1)
    """conversations.history/replies for a distributed non-Marketplace install: 1 a minute."""
    non_marketplace_page_size: int = 15
    """... and their ``limit`` defaults to and is capped at 15 objects."""

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError("scale must be positive")
        unknown = set(self.method_tiers.values()) - set(self.tiers)
        if unknown:
            raise ValueError(f"method_tiers names unknown tiers: {sorted(unknown)}")
        object.__setattr__(self, "tiers", _mapping(self.tiers))
        object.__setattr__(self, "method_tiers", _mapping(self.method_tiers))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: SlackLimits | None = None) -> SlackLimits:
        """Overrides on top of ``base`` (default: Slack's figures). ``tiers`` and ``method_tiers``
        merge into the base's; rates read as ``{"count", "per", "burst"}`` or ``[count, per, burst]``."""
        base = base or cls()
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown Slack limits settings: {sorted(unknown)}")
        changes: dict[str, Any] = {}
        for name, value in data.items():
            if name == "tiers":
                changes[name] = {**base.tiers, **{k: Rate.parse(v) for k, v in value.items()}}
            elif name == "method_tiers":
                changes[name] = {**base.method_tiers, **value}
            elif name in ("post_per_channel", "post_per_workspace", "non_marketplace_reads"):
                changes[name] = Rate.parse(value)
            elif name == "scale":
                changes[name] = float(value)
            else:
                changes[name] = int(value)
        return replace(base, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "tiers": {k: v.as_dict() for k, v in self.tiers.items()},
            "method_tiers": dict(self.method_tiers),
            "post_per_channel": self.post_per_channel.as_dict(),
            "post_per_workspace": self.post_per_workspace.as_dict(),
            "non_marketplace_reads": self.non_marketplace_reads.as_dict(),
            "non_marketplace_page_size": self.non_marketplace_page_size,
        }


class SlackLimiter:
    """Decides, per request, whether Slack would answer 429 and with what wait."""

    def __init__(self, limits: SlackLimits, clock: Clock) -> None:
        self.limits = limits
        self.clock = clock
        self._methods: dict[tuple[str, str, str], TokenBucket] = {}
        self._channels: dict[tuple[str, str], TokenBucket] = {}
        self._workspace_posts: dict[str, TokenBucket] = {}

    def _bucket(self, table: dict[Any, TokenBucket], key: Any, rate: Rate, now: float) -> TokenBucket:
        bucket = table.get(key)
        if bucket is None:
            bucket = table[key] = TokenBucket(rate.per_second(self.limits.scale), rate.capacity, now)
        return bucket

    def check(self, team: str, method: str, *, channel: str = "", non_marketplace: bool = False
              ) -> tuple[float, str] | None:
        """``None`` when the request may proceed (its token is spent), else ``(seconds to wait,
        reason)``; the reason names the limit that refused: a tier, ``channel``, ``workspace`` or
        ``non_marketplace``."""
        now = self.clock()
        limits = self.limits
        if method == POST_METHOD:
            per_channel = self._bucket(self._channels, (team, channel), limits.post_per_channel, now)
            per_workspace = self._bucket(self._workspace_posts, team, limits.post_per_workspace, now)
            channel_wait, workspace_wait = per_channel.wait(now), per_workspace.wait(now)
            if channel_wait or workspace_wait:
                if channel_wait >= workspace_wait:
                    return channel_wait, "channel"
                return workspace_wait, "workspace"
            per_channel.take()
            per_workspace.take()
            return None
        if non_marketplace and method in HISTORY_METHODS:
            rate, reason = limits.non_marketplace_reads, "non_marketplace"
        else:
            tier = limits.method_tiers.get(method)
            if tier is None:
                return None
            rate, reason = limits.tiers[tier], tier
        bucket = self._bucket(self._methods, (team, method, reason), rate, now)
        wait = bucket.wait(now)
        if wait:
            return wait, reason
        bucket.take()
        return None
