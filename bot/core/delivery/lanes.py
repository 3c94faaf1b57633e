"""Lanes: the unit of fairness and of rate limits in the delivery engine.

A lane is one (platform, workspace/tenant) pair: Slack's limits are per workspace per app, Teams'
per tenant per app. The `delivery_lane` table holds, per lane, a short lease (one replica works a
lane at a time, renewed by a heartbeat), and `paused_until`, set from a 429's Retry-After and
honoured by every replica. While a replica holds a lane's lease its in-memory pacer is the lane's
only one, so any number of replicas together stay under the lane's rate.

Work reaches a lane from *sources*: the outbox's notice deliveries (with reminders and in-place
updates) is one; direct messages (journeys, digests, escalations, hand-offs) are another. The
scheduler drains a held lane's sources in priority order (lowest `priority` first), a few items
at a time, each item one request against the lane's budget. See /work/briefs/engine-seam.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from bot.core.ports import Channel, Outcome

Lane = tuple[str, str]  # (platform, workspace/tenant external id)


@runtime_checkable
class LaneSource(Protocol):
    """Something that has outbound requests to make in lanes.

    The scheduler calls these only for a lane whose lease this replica holds; `token` identifies
    the holder (write it to your rows' claim column so a stale holder's late writes are refused,
    and so the rows can be found again on takeover).
    """

    name: str  # short, unique among the sources ("notices", "messages")
    priority: int  # lower drains first when a lane has work from several sources (notices: 10)

    async def due_lanes(self, now: datetime) -> set[Lane]:
        """Lanes with work due now, including rows claimed by a holder whose lease ran out."""

    async def claim(self, lane: Lane, limit: int, token: str, now: datetime, lease_until: datetime) -> list[Any]:
        """Claim at most `limit` due items of `lane` (conditional UPDATE; mark them in flight,
        claimed by `token` until `lease_until`). An item claimed back from an expired claim must
        remember that an earlier attempt may have landed (the channel checks before re-sending)."""

    async def send(self, item: Any, channel: Channel | None) -> Outcome:
        """Make the item's one request. Never raises for a platform error: return an Outcome
        (a 429 as `Outcome.retry(..., throttled=True, retry_after=s)`; the scheduler pauses the
        lane). `channel` is None when the platform is not configured."""

    async def record(self, results: list[tuple[Any, Outcome]], now: datetime) -> None:
        """Store outcomes (one grouped write; only rows still claimed by the item's token).
        A DEFERRED outcome (the lane was paused before the item was sent) means: back to pending,
        due at now + retry_after, no attempt counted."""

    async def next_due(self, lanes: Iterable[Lane] | None, now: datetime) -> datetime | None:
        """The earliest future time some work of this source becomes due (None: nothing waits),
        so the scheduler can sleep until then instead of polling. `lanes` None means any lane."""


@dataclass(frozen=True)
class LaneSettings:
    """How the scheduler shares a replica between lanes."""

    lease_seconds: float = 15.0  # a lane's lease; a dead replica's lanes move after this
    heartbeat_seconds: float = 5.0  # how often held leases are renewed
    concurrency: int = 64  # in-flight requests per replica, all lanes together
    lane_inflight: int = 8  # in-flight requests per lane (and items claimed ahead)
    max_lanes: int = 128  # lanes one replica works at once
    flush_ms: float = 5.0  # outcomes are written in groups gathered for this long
