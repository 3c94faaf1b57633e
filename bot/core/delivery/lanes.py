"""Lanes: the unit of fairness and of rate limits in the delivery engine.

A lane is one (platform, workspace/tenant) pair: Slack's limits are per workspace per app, Teams'
per tenant per app. The `delivery_lane` table holds, per lane, a short lease (one replica works a
lane at a time, renewed by a heartbeat), and `paused_until`, set from a 429's Retry-After and
honoured by every replica. While a replica holds a lane's lease its in-memory pacer is the lane's
only one, so any number of replicas together stay under the lane's rate.

Work reaches a lane from *sources*: the outbox's notice deliveries (with reminders and in-place
updates) is one; direct messages (journeys, digests, escalations, hand-offs) are another. The
scheduler drains a held lane's sources in priority order (lowest `priority` first), a few items
at a time, each item one request against the lane's budget. See docs/architecture.md, "The delivery
engine: lanes and sources".
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from tortoise import connections
from tortoise.expressions import Q

from bot.core.ports import Channel, Outcome
from config.settings import DELIVERY_SEND_MARGIN_SECONDS
from storage import db as storage_db
from storage.models import OPEN_DELIVERY_STATUSES, DeliveryLane

Lane = tuple[str, str]  # (platform, workspace/tenant external id)

# SQL predicates on the outbox's tables (delivery, outbound_message), for a row aliased `d`.
# OPEN: rows still to be sent. Both tables have a partial index on (platform,
# workspace_external_id, id) WHERE this (migration 0011); a query must say it as is for SQLite and
# PostgreSQL to use the index. DUE: pending and its time has come, or claimed by a worker whose
# claim ran out (takes `now` twice).
OPEN = f"d.status IN ({', '.join(repr(s) for s in OPEN_DELIVERY_STATUSES)})"
DUE = "((d.status='pending' AND d.next_attempt_at<=?) OR (d.status='sending' AND d.claimed_until<?))"


@runtime_checkable
class LaneSource(Protocol):
    """Something that has outbound requests to make in lanes.

    The scheduler calls these only for a lane whose lease this replica holds; `token` identifies
    the holder (write it to your rows' claim column so a stale holder's late writes are refused,
    and so the rows can be found again on takeover).

    A source may also have `async def turn_ended(token)`, called when a turn of `token` ends: after
    the last outcomes of the lane's work are recorded, and when a lane nobody waits for goes
    straight on to a new turn (some sends may still be under way then). The notices mark
    themselves sent there.
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

    lease_seconds: float = 10.0  # a lane's lease; a dead replica's lanes move after this
    heartbeat_seconds: float = 3.0  # how often held leases are renewed
    concurrency: int = 64  # in-flight requests per replica, all lanes together
    lane_inflight: int = 8  # in-flight requests per lane (and items claimed ahead)
    max_lanes: int = 128  # lanes one replica works at once
    flush_ms: float = 5.0  # outcomes are written in groups gathered for this long
    quantum: int = 200  # items a lane sends per turn before it goes to the back of the queue
    # After a wake the scheduler waits this long before it looks, so a burst of wakes (every
    # acknowledgement wakes it, to update the clicked copies) is one look instead of one each.
    wake_gather: float = 0.05
    # After a wake that only asks for copies' in-place updates (an acknowledgement: its presser
    # already sees the acknowledged form, in the click's answer) the scheduler waits this long
    # instead, unless an urgent wake (a send, a reply) comes meanwhile. A look every `wake_gather`
    # at 500 clicks a second over 100 workspaces took each lane, claimed one row and let it go
    # again: a lease, a claim and a release per update (bench/acks.py).
    update_gather: float = 0.5
    # Fencing (exactly once across replicas): a replica starts a send only while at least
    # `send_margin` of its lease is left, and its rows' claims outlive the lease by `claim_grace`,
    # so a request started under the lease has margin + grace to return and be recorded before
    # another replica may take the row over (in doubt).
    send_margin: float = DELIVERY_SEND_MARGIN_SECONDS  # the settings refuse a lease this leaves no room under
    claim_grace: float = 5.0
    # pauses between attempts to write a group of outcomes (about 30 s in all), then it is abandoned
    record_retry_pauses: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
    claims: int = 64  # claims (database round trips) in progress at once, all lanes together (4 measured no better)


class PriorityGate:
    """A semaphore whose waiters go in order of a priority (lowest first, then arrival).

    The scheduler keys it by how much a lane has sent since it last ran dry (least attained
    service first), so when a replica is saturated (CPU, database connections) a lane with little
    work, or that just got some, goes ahead of lanes that have been sending for a while, and a
    50-member workspace is not queued behind a 5,000-member one. Equal lanes still alternate.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._busy = 0
        self._waiters: list[tuple[float, int, asyncio.Future]] = []
        self._order = itertools.count()

    def hold(self, priority: float) -> "_Held":
        """`async with gate.hold(priority):` a place, given back on leaving the block."""
        return _Held(self, priority)

    async def _acquire(self, priority: float) -> None:
        if self._busy < self.capacity and not self._waiters:
            self._busy += 1
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # granted just as we were cancelled
                self._release()
            raise

    def _release(self) -> None:
        self._busy -= 1
        while self._waiters and self._busy < self.capacity:
            *_, future = heapq.heappop(self._waiters)
            if not future.done():
                self._busy += 1
                future.set_result(None)


class _Held:
    """PriorityGate.hold's context manager (a class: one is entered per request sent)."""

    __slots__ = ("gate", "priority")

    def __init__(self, gate: PriorityGate, priority: float) -> None:
        self.gate, self.priority = gate, priority

    async def __aenter__(self) -> None:
        await self.gate._acquire(self.priority)

    async def __aexit__(self, *exc: object) -> None:
        self.gate._release()


class LaneBudgets:
    """Token buckets per lane for one kind of request with a limit of its own: Slack's
    `chat.update` (the in-place updates of acknowledged, edited and retracted copies) is a Tier 3
    method, about 50 a minute per workspace, apart from `chat.postMessage`. Spending the budget
    before the call keeps those updates from drawing 429s. It runs on the injected clock. A bucket
    nobody has spent from is full, as Slack allows bursts.

    The bucket goes with the lane, not the replica: LaneStore.acquire loads it from the lane's
    row (`load`) and LaneStore.release writes it back (`state`), in the statements that take and
    give up the lease. Only the lease holder claims in a lane, so between the two this replica's
    bucket is the lane's only one; a replica taking the lane next starts from what was left, so
    any number of replicas together stay within the rate.

    A bucket holds a minute's worth less ``margin_seconds`` of refill (45 at 50 a minute). The
    budget is spent when rows are claimed, but a burst reaches the platform over the next seconds
    (paced, waiting for request slots); the platform's bucket, full until then, does not refill
    meanwhile while this one does. Holding back a few seconds of refill keeps the two in step: at
    500 clicks a second, 0 of the copies' updates drew a 429 with the margin, against 4-30 per run
    without it (bench/acks.py).

    `pause` holds the lane's updates (only them) until a time: the platform refused one with a
    429 that limits that method alone (Slack's limits are per method per workspace). It is kept as
    one token at that time, so the bucket refills from there, and it is handed on like the rest;
    it applies to a platform without a budget too."""

    def __init__(self, per_minute: dict[str, float], clock: Any, *, margin_seconds: float = 6.0) -> None:
        self.per_minute = {platform: rate for platform, rate in per_minute.items() if rate > 0}
        self.clock = clock
        self.margin_seconds = margin_seconds
        # lane -> (tokens, as of). A time in the future with tokens below one is a pause: the
        # tokens count back from then (negative now), so one is there exactly when it ends.
        self._buckets: dict[Lane, tuple[float, datetime]] = {}

    def capacity(self, rate: float) -> float:
        """The most a bucket holds: a minute's worth less the margin, at least one request."""
        return max(1.0, rate * (1 - self.margin_seconds / 60))

    def load(self, lane: Lane, tokens: float | None, as_of: datetime | None) -> None:
        """The lane's bucket as its previous holder left it (None: never spent, full)."""
        if tokens is None or as_of is None:
            self._buckets.pop(lane, None)
        else:
            self._buckets[lane] = (tokens, as_of)

    def state(self, lane: Lane) -> tuple[float, datetime] | None:
        """The lane's bucket to hand on (None: full, nothing to hand on)."""
        return self._buckets.get(lane)

    def _paused_until(self, lane: Lane) -> datetime | None:
        state = self._buckets.get(lane)
        if state is not None and state[1] > self.clock.now():
            return state[1]
        return None

    def _tokens(self, lane: Lane) -> float | None:
        rate = self.per_minute.get(lane[0])
        if rate is None:  # no budget: only a pause holds the lane's updates
            if self._paused_until(lane) is not None:
                return 0.0
            self._buckets.pop(lane, None)
            return None
        now = self.clock.now()
        tokens, since = self._buckets.get(lane, (self.capacity(rate), now))
        tokens = min(self.capacity(rate), tokens + (now - since).total_seconds() * rate / 60)
        self._buckets[lane] = (tokens, now)
        return tokens

    def take(self, lane: Lane, wanted: int) -> int:
        """Up to `wanted` requests the lane may make now (all of them when it has no budget)."""
        tokens = self._tokens(lane)
        if tokens is None:
            return wanted
        granted = max(0, min(wanted, int(tokens)))
        if lane[0] in self.per_minute:
            self._buckets[lane] = (tokens - granted, self._buckets[lane][1])
        return granted

    def give_back(self, lane: Lane, unused: int) -> None:
        if unused > 0 and lane in self._buckets and lane[0] in self.per_minute:
            tokens, since = self._buckets[lane]
            self._buckets[lane] = (min(self.capacity(self.per_minute[lane[0]]), tokens + unused), since)

    def next_token_at(self, lane: Lane) -> datetime:
        paused = self._paused_until(lane)
        if lane[0] not in self.per_minute:
            return paused or self.clock.now()
        tokens = self._tokens(lane) or 0.0
        rate = self.per_minute[lane[0]]
        return self.clock.now() + timedelta(seconds=max(0.0, 1 - tokens) * 60 / rate)

    def pause(self, lane: Lane, until: datetime) -> None:
        """No update in the lane before `until` (a 429's Retry-After for that method alone); then
        one, and the bucket refills from there. A longer wait already due is kept."""
        if self.next_token_at(lane) < until:
            self._buckets[lane] = (1.0, until)


# A lane is taken and given back once per turn (for an acknowledgement's update, once per click),
# so these two are plain statements: the ORM's query building cost more than the round trip.
# Taking the lease reads the lane's update budget as its last holder left it; giving it up writes
# it back (LaneBudgets), so the budget costs no statement of its own.
_ACQUIRE_SQL = ("UPDATE delivery_lane SET leased_by=?, lease_until=? WHERE platform=? AND workspace_external_id=? "
                "AND (leased_by=? OR leased_by='' OR lease_until IS NULL OR lease_until<?) "
                "AND (paused_until IS NULL OR paused_until<=?) RETURNING update_tokens, update_tokens_at")
_RELEASE_SQL = ("UPDATE delivery_lane SET leased_by='', lease_until=NULL, last_served_at=?, "
                "update_tokens=COALESCE(?, update_tokens), update_tokens_at=COALESCE(?, update_tokens_at) "
                "WHERE platform=? AND workspace_external_id=? AND leased_by=?")


@dataclass(frozen=True, slots=True)
class Lease:
    """A lane's lease just taken, and the lane's update budget as its last holder left it
    (LaneBudgets.load)."""

    until: datetime
    update_tokens: float | None = None
    update_tokens_at: datetime | None = None


class LaneStore:
    """The `delivery_lane` rows: leases, heartbeats and shared pauses (conditional UPDATEs, so two
    replicas never both hold a lane)."""

    def __init__(self, worker_id: str, lease: timedelta) -> None:
        self.worker_id = worker_id
        self.lease = lease
        self._known: set[Lane] = set()

    async def ensure(self, lanes: Iterable[Lane]) -> None:
        missing = [lane for lane in lanes if lane not in self._known]
        if not missing:
            return
        existing = {(r[0], r[1]) for r in await DeliveryLane.filter(
            platform__in=list({p for p, _ in missing})).values_list("platform", "workspace_external_id")}
        new = [DeliveryLane(platform=p, workspace_external_id=w) for p, w in missing if (p, w) not in existing]
        if new:
            await DeliveryLane.bulk_create(new, ignore_conflicts=True)
        self._known.update(missing)

    async def candidates(self, lanes: set[Lane], now: datetime) -> list[Lane]:
        """Of `lanes`, those free to take (lease free or ours, not paused), least recently served first."""
        rows = await DeliveryLane.filter(platform__in=list({p for p, _ in lanes})).values(
            "platform", "workspace_external_id", "leased_by", "lease_until", "paused_until", "last_served_at")
        free = []
        for r in rows:
            lane = (r["platform"], r["workspace_external_id"])
            if lane not in lanes:
                continue
            if r["paused_until"] is not None and r["paused_until"] > now:
                continue
            if r["leased_by"] and r["leased_by"] != self.worker_id and r["lease_until"] is not None \
                    and r["lease_until"] >= now:
                continue
            free.append((r["last_served_at"] or datetime.min.replace(tzinfo=now.tzinfo), lane))
        free.sort(key=lambda pair: pair[0])
        return [lane for _, lane in free]

    async def take(self, lane: Lane, now: datetime) -> Lease | None:
        """Take the lane's lease if it is free (or already ours) and the lane is not paused;
        returns the lease with the lane's update budget as its last holder left it, or None."""
        until = now + self.lease
        taken = await connections.get("default").execute_query_dict(
            storage_db.placeholders(_ACQUIRE_SQL), [self.worker_id, until, *lane, self.worker_id, now, now])
        if not taken:
            return None
        return Lease(until, taken[0]["update_tokens"], storage_db.as_datetime(taken[0]["update_tokens_at"]))

    async def acquire(self, lane: Lane, now: datetime) -> datetime | None:
        """`take`, for a caller that needs only the lease's end."""
        lease = await self.take(lane, now)
        return lease.until if lease is not None else None

    async def renew(self, lanes: Iterable[Lane], now: datetime) -> set[Lane]:
        """Extend our leases that have not run out; returns the lanes whose lease was extended
        (to now + lease). A lease that ran out before this beat is not ours any more, even while
        nobody else has taken it yet: another replica may be acquiring it right now."""
        until = now + self.lease
        await DeliveryLane.filter(leased_by=self.worker_id, lease_until__gte=now).update(lease_until=until)
        held = {(r[0], r[1]) for r in await DeliveryLane.filter(
            leased_by=self.worker_id, lease_until=until).values_list("platform", "workspace_external_id")}
        return held & set(lanes)

    async def release(self, lane: Lane, now: datetime, budgets: LaneBudgets | None = None) -> None:
        """Give the lease up, handing the lane's update budget (`budgets`) on to its next holder."""
        tokens, as_of = (budgets.state(lane) if budgets is not None else None) or (None, None)
        await connections.get("default").execute_query(storage_db.placeholders(_RELEASE_SQL),
                                                       [now, tokens, as_of, *lane, self.worker_id])

    async def release_all(self, now: datetime) -> None:
        await DeliveryLane.filter(leased_by=self.worker_id).update(leased_by="", lease_until=None, last_served_at=now)

    async def pause(self, lane: Lane, until: datetime) -> None:
        """A 429: every replica leaves the lane alone until `until`."""
        await DeliveryLane.filter(Q(platform=lane[0], workspace_external_id=lane[1]),
                                  Q(paused_until__isnull=True) | Q(paused_until__lt=until)).update(paused_until=until)

    async def next_change(self, lanes: set[Lane], now: datetime) -> datetime | None:
        """When one of `lanes` (with due work) next becomes free: a pause or another's lease ends."""
        times = []
        for r in await DeliveryLane.filter(platform__in=list({p for p, _ in lanes})).values(
                "platform", "workspace_external_id", "leased_by", "lease_until", "paused_until"):
            if (r["platform"], r["workspace_external_id"]) not in lanes:
                continue
            if r["paused_until"] is not None and r["paused_until"] > now:
                times.append(r["paused_until"])
            elif r["leased_by"] and r["leased_by"] != self.worker_id and r["lease_until"] is not None:
                times.append(r["lease_until"])
        return min(times) if times else None


async def lanes_with_due_rows(table: str, now: datetime) -> set[Lane]:
    """The lanes of `table` (delivery, outbound_message) with a row due now.

    One statement that skips through the open-rows index from one lane to the next (a recursive
    CTE: a few index probes per lane with unfinished rows, however many rows they hold), then asks
    each lane for one due row. The DISTINCT over all due rows it replaces cost 170 ms of
    PostgreSQL CPU at 60,000 pending rows, several times a second during a broadcast. Each step
    takes the next workspace of the same platform, or else the first of the next platform
    (`min()` with an equality prefix is an index seek on both databases; a row-value comparison
    is not on SQLite)."""
    # SQLite, without statistics, would read the lanes through the status index and sort them
    # at every step; PostgreSQL has no index hints and needs none here.
    rows_of = f"{table} d" + (f" INDEXED BY {table}_open_lane" if storage_db.dialect() == "sqlite" else "")

    def first_workspace(platform: str) -> str:
        return f"SELECT min(d.workspace_external_id) FROM {rows_of} WHERE {OPEN} AND d.platform={platform}"

    next_platform = f"SELECT min(d.platform) FROM {rows_of} WHERE {OPEN} AND d.platform>t.p"
    next_in_platform = f"{first_workspace('t.p')} AND d.workspace_external_id>t.w"
    query = (
        f"WITH RECURSIVE t(p, w) AS ("
        f"SELECT p, ({first_workspace('p')}) FROM (SELECT min(d.platform) AS p FROM {rows_of} WHERE {OPEN}) AS f "
        f"UNION ALL SELECT CASE WHEN ({next_in_platform}) IS NULL THEN ({next_platform}) ELSE t.p END, "
        f"COALESCE(({next_in_platform}), ({first_workspace(f'({next_platform})')})) "
        f"FROM t WHERE t.p IS NOT NULL) "
        f"SELECT p, w FROM t WHERE p IS NOT NULL AND EXISTS (SELECT 1 FROM {rows_of} "
        f"WHERE d.platform=t.p AND d.workspace_external_id=t.w AND {OPEN} AND {DUE})")
    rows = await connections.get("default").execute_query_dict(storage_db.placeholders(query), [now, now])
    return {(r["p"], r["w"]) for r in rows}


def claimed_by_prefix(token_prefix: str) -> tuple[str, list[str]]:
    """A predicate (and its two values) for the rows of `d` whose claim token starts with
    `token_prefix`, which an index on the claimed rows can serve on both databases.

    A range, not LIKE: SQLite's LIKE ignores case and uses no index by default, and PostgreSQL's
    uses one only under the C collation or text_pattern_ops. The range compares in code point
    order: SQLite's default (BINARY); on PostgreSQL spelled COLLATE "C", as its index is
    (migration 0029), since a database's own collation (en_US.UTF-8, say) may not keep the strings
    starting with a prefix between the prefix and its successor. `claimed_by <> ''` as the partial
    index says it: most rows (every copy sent) hold no claim and are not in it."""
    if not token_prefix:
        raise ValueError("a claim token prefix names a worker: it cannot be empty")
    upper = token_prefix[:-1] + chr(ord(token_prefix[-1]) + 1)
    column = 'd.claimed_by COLLATE "C"' if storage_db.dialect() == "postgres" else "d.claimed_by"
    return f"d.claimed_by <> '' AND {column} >= ? AND {column} < ?", [token_prefix, upper]


async def renew_claims(table: str, token_prefix: str, until: datetime, *, where: str = "",
                       exclude_ids: Collection[int] = ()) -> None:
    """Extend the claims of rows held by the scheduler's tokens (the lane heartbeat), except rows
    in `exclude_ids`. `where` is an extra predicate on the row (aliased `d`).

    One statement on PostgreSQL: the rows are locked in id order by a subquery that skips rows
    locked right now (being recorded: that write releases them anyway), and only those are
    updated. Locking them in a SELECT of its own and updating them in a second statement
    deadlocked with the outcome writes (bench/scale.py, 5 in one run): the ORM's values_list()
    drops select_for_update() (see storage.db.select_locked), so nothing was locked and the
    UPDATE took the rows in its own order.
    PostgreSQL broke each deadlock by aborting the outcome write, the rows stayed claimed and
    this heartbeat kept them so.

    The heartbeat runs every few seconds on every replica: the rows are found from the index on
    the claimed rows (`claimed_by_prefix`), not by reading every row the table ever held."""
    claimed, values = claimed_by_prefix(token_prefix)
    extra = f" AND {where}" if where else ""
    if exclude_ids:
        extra += f" AND d.id NOT IN ({','.join(str(int(i)) for i in sorted(exclude_ids))})"
    if storage_db.dialect() == "postgres":
        query = (f"UPDATE {table} SET claimed_until=? WHERE id IN (SELECT d.id FROM {table} d "
                 f"WHERE {claimed}{extra} ORDER BY d.id FOR UPDATE SKIP LOCKED)")
    else:
        query = f"UPDATE {table} AS d SET claimed_until=? WHERE {claimed}{extra}"
    await connections.get("default").execute_query(storage_db.placeholders(query), [until, *values])
