"""The delivery engine: claims outbox rows under a lease, sends them, records the result; and
pushes in-place updates (edits, retractions, acknowledgements) to messages already delivered.

Correctness lives in the database: a row is claimed by a conditional UPDATE (and, on PostgreSQL,
`FOR UPDATE SKIP LOCKED`), so any number of workers and replicas can run at once. A crashed
worker's rows come back when their lease expires and are re-sent only after the channel has
checked that the earlier attempt did not in fact arrive.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.common import metrics
from bot.common.clock import Clock
from bot.core.compliance.audit import audit_event, record
from bot.core.delivery.messages import Claimed, MessageSource
from bot.core.delivery.retry import RetryPolicy
from bot.core.notices.reminders import schedule_for
from bot.core.notices.row_views import RowExtras
from bot.core.notices.views import NoticeView, notice_view
from bot.core.ports import Channel, MessageRef, Outcome, OutcomeKind, Recipient
from bot.topics import TopicCatalog
from storage import db as storage_db
from storage.models import (
    Acknowledgement,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Notice,
    NoticeStatus,
    PlatformAccount,
)

log = logging.getLogger(__name__)

# One parameterised statement per batch (executemany) instead of an ORM bulk update: the ORM
# builds a CASE expression per column per row, which cost more than the sends (bench/fanout.py).
# `claimed_by` in the WHERE clause: a row whose lease was taken over is no longer ours to write.
_STORE_SQL = ("UPDATE delivery SET status=?, attempts=?, next_attempt_at=?, claimed_by='', claimed_until=NULL, "
              "channel_id=?, message_id=?, error=?, delivered_at=?, rendered_revision=?, next_reminder_at=?, "
              "updated_at=? WHERE id=? AND claimed_by=?")
_DM_CACHE_SQL = "UPDATE platform_account SET dm_channel=?, updated_at=? WHERE id=?"
_UPDATE_FIELDS = ["update_pending", "rendered_revision", "claimed_by", "claimed_until", "error"]
UPDATE_RETRY = timedelta(minutes=1)


@dataclass
class Job:
    delivery: Delivery
    maybe_sent: bool  # claimed back from an expired lease: an earlier send may have landed


class Outbox:
    link_tracker = None  # A/B tests' counted links (bot.core.notices.interactions.LinkTracker), set by Herald

    def __init__(self, channels: dict[str, Channel], catalog: TopicCatalog, clock: Clock, *,
                 concurrency: int = 16, batch_size: int = 200, lease_seconds: int = 120,
                 retry: RetryPolicy | None = None, parallel_workspaces: int = 32,
                 rate_limits: dict[str, float] | None = None) -> None:
        self.channels = channels
        self.catalog = catalog
        self.clock = clock
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.lease = timedelta(seconds=lease_seconds)
        self.retry = retry or RetryPolicy()
        self.parallel_workspaces = parallel_workspaces
        self.rate_limits = rate_limits or {}  # platform -> requests per second per workspace/tenant
        self._next_slot: dict[tuple[str, str], float] = {}
        self.worker_id = uuid.uuid4().hex[:16]
        self._blocked_until: dict[tuple[str, str], datetime] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._lock = asyncio.Lock()
        # everything else Herald sends (journeys, digests, escalations, hand-offs): same lanes
        self.messages = MessageSource(channels, retry=self.retry)

    # ---- the loop -------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        while not self._stopping:
            try:
                handled = await self.run_once()
            except Exception:  # noqa: BLE001 - the loop must survive a bad batch or a db blip
                log.exception("outbox batch failed")
                handled = 0
            if not handled and not self._stopping:
                await self._wake.wait()
                self._wake.clear()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def drain(self) -> int:
        """Run batches until nothing is due now. Returns the number of rows handled."""
        total = 0
        while handled := await self.run_once():
            total += handled
        return total

    async def run_once(self) -> int:
        async with self._lock:
            sent = await self._send_due()
            updated = await self.push_updates()
            return sent + updated

    async def _send_due(self) -> int:
        """Drain every workspace/tenant with due rows, each in its own task (at most
        `parallel_workspaces` at once), so a slow or throttled one never holds up the others.
        Within a workspace the notices go first, then the direct messages, most urgent first."""
        now = self.clock.now()
        keys = await Delivery.filter(_due(now)).distinct().limit(1000).values_list("platform", "workspace_external_id")
        lanes = list(dict.fromkeys([tuple(k) for k in keys] + sorted(await self.messages.due_lanes(now))))
        gate = asyncio.Semaphore(self.parallel_workspaces)

        async def drain(key: tuple[str, str]) -> int:
            async with gate:
                total = 0
                while handled := await self._send_batch(key):
                    total += handled
                while handled := await self._send_messages(key):
                    total += handled
                return total

        return sum(await asyncio.gather(*(drain(key) for key in lanes)))

    async def _send_messages(self, key: tuple[str, str]) -> int:
        """One batch of a lane's direct messages (a `LaneSource`), under the lane's pacing and
        rate-limit pause, after the lane's notices."""
        now = self.clock.now()
        token = f"{self.worker_id}:{uuid.uuid4().hex[:8]}"
        batch = await self.messages.claim(key, self.batch_size, token, now, now + self.lease)
        if not batch:
            return 0
        outcomes: dict[int, Outcome] = {}

        def call(claimed: Claimed) -> Callable[[Channel], Awaitable[Outcome]]:
            return lambda channel: self.messages.send(claimed, channel)

        await self._run_group(key, [(c.row, call(c)) for c in batch], outcomes)
        await self.messages.record([(c, outcomes.get(c.id) or Outcome.retry("no outcome recorded")) for c in batch],
                                   self.clock.now())
        return len(batch)

    # ---- claiming -------------------------------------------------------------------------

    async def _claim(self, due: Q, status: DeliveryStatus) -> tuple[list[Delivery], dict[int, str]]:
        """Lease up to a batch of rows matching `due`; returns them and each row's prior status."""
        now = self.clock.now()
        token = f"{self.worker_id}:{uuid.uuid4().hex[:8]}"
        async with in_transaction():
            query = Delivery.filter(due).order_by("id").limit(self.batch_size)
            if storage_db.dialect() == "postgres":
                query = query.select_for_update(skip_locked=True)
            candidates = await query.values("id", "status")
            if not candidates:
                return [], {}
            ids = [row["id"] for row in candidates]
            await Delivery.filter(due, id__in=ids).update(
                status=status.value, claimed_by=token, claimed_until=now + self.lease)
        prior = {row["id"]: row["status"] for row in candidates}
        claimed = await Delivery.filter(claimed_by=token).select_related("account", "member").order_by("id")
        return claimed, prior

    # ---- sending --------------------------------------------------------------------------

    async def _send_batch(self, key: tuple[str, str]) -> int:
        due = _due(self.clock.now()) & Q(platform=key[0], workspace_external_id=key[1])
        rows, prior = await self._claim(due, DeliveryStatus.SENDING)
        if not rows:
            return 0
        jobs = [Job(d, maybe_sent=prior.get(d.id) == DeliveryStatus.SENDING.value) for d in rows]
        notices, views = await self._views(rows)
        outcomes = await self._fan_out(jobs, views)
        await self._store(jobs, outcomes, notices)
        await self._complete_notices(set(notices))
        return len(jobs)

    async def _fan_out(self, jobs: list[Job], views: dict[int, NoticeView]) -> dict[int, Outcome]:
        groups: dict[tuple[str, str], list[Job]] = defaultdict(list)
        for job in jobs:
            groups[(job.delivery.platform, job.delivery.workspace_external_id)].append(job)
        outcomes: dict[int, Outcome] = {}

        async def send(channel: Channel, job: Job) -> Outcome:
            return await channel.deliver(_recipient(job.delivery), views[job.delivery.id],
                                         delivery_id=job.delivery.id, maybe_sent=job.maybe_sent)

        await asyncio.gather(*(self._run_group(key, [(j.delivery, lambda c, j=j: send(c, j)) for j in group], outcomes)
                               for key, group in groups.items()))
        return outcomes

    async def _run_group(self, key: tuple[str, str], work: list[tuple[Any, Callable[[Channel], Awaitable[Outcome]]]],
                         outcomes: dict[int, Outcome]) -> None:
        """Run one workspace's calls with bounded concurrency; pause it when it is throttled."""
        channel = self.channels.get(key[0])
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(delivery: Delivery, call: Callable[[Channel], Awaitable[Outcome]]) -> None:
            async with semaphore:
                await self._pace(key)
                blocked = self._blocked_for(key)
                if blocked is not None:
                    outcomes[delivery.id] = Outcome.deferred(blocked)
                    return
                if channel is None:
                    outcomes[delivery.id] = Outcome.failed(f"{key[0].title()} is not configured in Herald")
                    return
                if isinstance(delivery, Delivery) and delivery.account is None:
                    outcomes[delivery.id] = Outcome.failed("the member's platform account was removed")
                    return
                try:
                    outcome = await call(channel)
                except Exception as exc:  # noqa: BLE001 - a channel bug must not lose the row
                    log.exception("delivery %s raised", delivery.id)
                    outcome = Outcome.retry(f"internal error ({type(exc).__name__})")
                if outcome.throttled:
                    metrics.throttled(key[0], outcome.retry_after)
                if outcome.throttled and outcome.retry_after:
                    self._blocked_until[key] = self.clock.now() + timedelta(seconds=outcome.retry_after)
                outcomes[delivery.id] = outcome

        await asyncio.gather(*(one(delivery, call) for delivery, call in work))

    async def _pace(self, key: tuple[str, str]) -> None:
        """Stay under the platform's documented request rate per workspace/tenant (e.g. Teams:
        about 50 per second per bot per tenant). This is throughput control, not business time,
        so it uses the monotonic clock."""
        rate = self.rate_limits.get(key[0], 0.0)
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        slot = max(loop.time(), self._next_slot.get(key, 0.0))
        self._next_slot[key] = slot + 1.0 / rate
        if slot > loop.time():
            await asyncio.sleep(slot - loop.time())

    def _blocked_for(self, key: tuple[str, str]) -> float | None:
        until = self._blocked_until.get(key)
        if until is None:
            return None
        remaining = (until - self.clock.now()).total_seconds()
        if remaining <= 0:
            del self._blocked_until[key]
            return None
        return remaining

    # ---- rendering ------------------------------------------------------------------------

    async def _views(self, rows: list[Delivery]) -> tuple[dict[int, Notice], dict[int, NoticeView]]:
        """The current view of each row's message: revision, retraction, the member's
        acknowledgement, and for reminders a pointer to the original."""
        notice_ids = {d.notice_id for d in rows}  # type: ignore[attr-defined]
        member_ids = {d.member_id for d in rows}  # type: ignore[attr-defined]
        notices = {n.id: n for n in await Notice.filter(id__in=list(notice_ids))}
        base = {nid: notice_view(n, self.catalog) for nid, n in notices.items()}
        extras = await RowExtras.load(notice_ids, now=self.clock.now())  # A/B variants, surveys
        acks = {}
        for ack in await Acknowledgement.filter(notice_id__in=list(notice_ids), member_id__in=list(member_ids)):
            if ack.revision == notices[ack.notice_id].ack_revision:  # type: ignore[attr-defined]
                acks[(ack.notice_id, ack.member_id)] = ack  # type: ignore[attr-defined]
        originals = {}
        if any(d.kind == DeliveryKind.REMINDER.value for d in rows):
            for o in await Delivery.filter(notice_id__in=list(notice_ids), member_id__in=list(member_ids),
                                           kind=DeliveryKind.NOTICE.value).values(
                                               "notice_id", "member_id", "platform", "channel_id", "message_id"):
                originals[(o["notice_id"], o["member_id"], o["platform"])] = (o["channel_id"], o["message_id"])
        views = {}
        for d in rows:
            key = (d.notice_id, d.member_id)  # type: ignore[attr-defined]
            view = extras.apply(base[d.notice_id], d.notice_id, d.variant, member_id=d.member_id,  # type: ignore[attr-defined]
                                tracker=self.link_tracker)
            if key in acks:
                view = view.with_ack(d.member.name or d.member.email, acks[key].acknowledged_at)
            if d.kind == DeliveryKind.REMINDER.value:
                view = view.as_reminder(d.sequence, originals.get((*key, d.platform)))
            views[d.id] = view
        return notices, views

    # ---- recording ------------------------------------------------------------------------

    async def _store(self, jobs: list[Job], outcomes: dict[int, Outcome], notices: dict[int, Notice]) -> None:
        now = self.clock.now()
        rows, events, dm_cache = [], [], {}
        first_reminders = self._first_reminders(notices, now)
        for job in jobs:
            d = job.delivery
            outcome = outcomes.get(d.id) or Outcome.retry("no outcome recorded")
            if outcome.dm_channel and d.account is not None:
                dm_cache[d.account.id] = outcome.dm_channel
            claim = d.claimed_by
            self._apply(d, outcome, now, notices[d.notice_id], first_reminders)  # type: ignore[attr-defined]
            metrics.delivery_recorded(d.platform, d.status, outcome.kind.value)
            rows.append((d.status, d.attempts, d.next_attempt_at, d.channel_id, d.message_id, d.error,
                         d.delivered_at, d.rendered_revision, d.next_reminder_at, now, d.id, claim))
            event = _result_event(d, now)
            if event is not None:
                events.append(event)
        async with in_transaction() as conn:
            await conn.execute_many(_sql(_STORE_SQL), rows)
            if dm_cache:
                await conn.execute_many(_sql(_DM_CACHE_SQL), [(c, now, a) for a, c in dm_cache.items()])
            await record(events, using_db=conn)

    def _first_reminders(self, notices: dict[int, Notice], now: datetime) -> dict[int, datetime | None]:
        """When the first reminder falls due for a must-know notice delivered now."""
        return {nid: schedule_for(n, self.catalog).due_at(now, 1, n.deadline)
                for nid, n in notices.items() if n.importance == "must-know"}

    def _apply(self, d: Delivery, outcome: Outcome, now: datetime, notice: Notice,
               first_reminders: dict[int, datetime | None]) -> None:
        d.claimed_by, d.claimed_until = "", None
        if outcome.kind is OutcomeKind.DELIVERED and outcome.ref is not None:
            d.attempts += 1
            d.status, d.delivered_at, d.error = DeliveryStatus.DELIVERED.value, now, ""
            d.channel_id, d.message_id = outcome.ref.channel_id, outcome.ref.message_id
            d.rendered_revision = notice.revision
            if d.kind == DeliveryKind.NOTICE.value:
                d.next_reminder_at = first_reminders.get(notice.id)
            return
        if outcome.kind is OutcomeKind.DEFERRED:
            d.status = DeliveryStatus.PENDING.value
            d.next_attempt_at = now + timedelta(seconds=outcome.retry_after or 1)
            return
        d.attempts += 1
        delay = None
        if outcome.kind is OutcomeKind.RETRY:
            delay = self.retry.delay(d.attempts, retry_after=outcome.retry_after, key=d.id)
        if delay is None:
            reason = outcome.reason or "unknown error"
            if outcome.kind is OutcomeKind.RETRY:
                reason = f"gave up after {d.attempts} attempts: {reason}"
            d.status, d.error = DeliveryStatus.FAILED.value, reason
            return
        d.status, d.error = DeliveryStatus.PENDING.value, outcome.reason
        d.next_attempt_at = now + timedelta(seconds=delay)

    async def _complete_notices(self, notice_ids: set[int]) -> None:
        now = self.clock.now()
        for notice_id in notice_ids:
            open_rows = await Delivery.filter(notice_id=notice_id, kind=DeliveryKind.NOTICE.value, status__in=[
                DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value]).exists()
            if not open_rows:
                await Notice.filter(id=notice_id, status=NoticeStatus.SENDING.value).update(
                    status=NoticeStatus.SENT.value, completed_at=now)

    # ---- in-place updates -----------------------------------------------------------------

    async def push_updates(self, only_ids: list[int] | None = None) -> int:
        """Re-render delivered messages whose `update_pending` flag is set. Returns rows handled.

        Called by the loop, and directly after an acknowledgement so the clicker sees the change
        at once; a failed update stays pending and is retried a minute later.
        """
        now = self.clock.now()
        due = Q(status=DeliveryStatus.DELIVERED.value, update_pending=True) & (
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        if only_ids is not None:
            due &= Q(id__in=only_ids)
        rows, _ = await self._claim(due, DeliveryStatus.DELIVERED)
        if not rows:
            return 0
        notices, views = await self._views(rows)
        outcomes: dict[int, Outcome] = {}

        async def update(channel: Channel, d: Delivery) -> Outcome:
            await channel.update(d.workspace_external_id, MessageRef(d.channel_id, d.message_id), views[d.id])
            return Outcome.delivered(MessageRef(d.channel_id, d.message_id))

        groups: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
        for d in rows:
            groups[(d.platform, d.workspace_external_id)].append(d)
        await asyncio.gather(*(self._run_group(key, [(d, lambda c, d=d: update(c, d)) for d in group], outcomes)
                               for key, group in groups.items()))
        for d in rows:
            outcome = outcomes.get(d.id)
            d.claimed_by = ""
            if outcome is not None and outcome.kind is OutcomeKind.DELIVERED:
                d.update_pending, d.claimed_until, d.error = False, None, ""
                d.rendered_revision = notices[d.notice_id].revision  # type: ignore[attr-defined]
            else:  # keep the intent; try again later
                d.claimed_until = now + UPDATE_RETRY
                d.error = f"update pending: {outcome.reason if outcome else 'not attempted'}"
        await Delivery.bulk_update(rows, fields=_UPDATE_FIELDS, batch_size=500)
        return len(rows)


def _due(now: datetime) -> Q:
    """Rows to send now: pending and due, or claimed by a worker whose lease has run out."""
    return Q(status=DeliveryStatus.PENDING.value, next_attempt_at__lte=now) | Q(
        status=DeliveryStatus.SENDING.value, claimed_until__lt=now)


def _sql(query: str) -> str:
    """Write statements with `?` placeholders; PostgreSQL (asyncpg) numbers them `$1, $2, ...`."""
    if storage_db.dialect() != "postgres":
        return query
    parts = query.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]


def _recipient(d: Delivery) -> Recipient:
    account: PlatformAccount = d.account  # type: ignore[assignment]
    return Recipient(workspace_id=account.workspace_external_id, user_id=account.user_id,
                     dm_channel=account.dm_channel, service_url=account.service_url,
                     display_name=d.member.name)


def _result_event(d: Delivery, now: datetime):  # noqa: ANN202
    common = dict(now=now, notice_id=d.notice_id, member_id=d.member_id, platform=d.platform,  # type: ignore[attr-defined]
                  delivery_id=d.id)
    if d.status == DeliveryStatus.DELIVERED.value:
        if d.kind == DeliveryKind.REMINDER.value:
            return audit_event("notice.reminded", reminder=d.sequence, channel=d.channel_id,
                               message_id=d.message_id, **common)
        return audit_event("delivery.delivered", channel=d.channel_id, message_id=d.message_id, **common)
    if d.status == DeliveryStatus.FAILED.value:
        kind = "reminder.failed" if d.kind == DeliveryKind.REMINDER.value else "delivery.failed"
        return audit_event(kind, reason=d.error, attempts=d.attempts, **common)
    return None
