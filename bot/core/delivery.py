"""The delivery engine: claims outbox rows under a lease, sends them, records the result.

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
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.channels.base import Channel, Outcome, OutcomeKind, Recipient
from bot.core.audit import audit_event, record
from bot.core.clock import Clock
from bot.core.retry import RetryPolicy
from bot.core.views import NoticeView, notice_view
from bot.topics import TopicCatalog
from storage import db as storage_db
from storage.models import Delivery, DeliveryStatus, Notice, NoticeStatus, PlatformAccount

log = logging.getLogger(__name__)

_RESULT_FIELDS = ["status", "attempts", "next_attempt_at", "claimed_by", "claimed_until",
                  "channel_id", "message_id", "error", "delivered_at"]


@dataclass
class Job:
    delivery: Delivery
    maybe_sent: bool  # claimed back from an expired lease: an earlier send may have landed


class Outbox:
    def __init__(self, channels: dict[str, Channel], catalog: TopicCatalog, clock: Clock, *,
                 concurrency: int = 16, batch_size: int = 200, lease_seconds: int = 120,
                 retry: RetryPolicy | None = None) -> None:
        self.channels = channels
        self.catalog = catalog
        self.clock = clock
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.lease = timedelta(seconds=lease_seconds)
        self.retry = retry or RetryPolicy()
        self.worker_id = uuid.uuid4().hex[:16]
        self._blocked_until: dict[tuple[str, str], datetime] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._lock = asyncio.Lock()

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
            jobs = await self._claim()
            if not jobs:
                return 0
            outcomes = await self._send_all(jobs)
            await self._store(jobs, outcomes)
            await self._complete_notices({job.delivery.notice_id for job in jobs})  # type: ignore[attr-defined]
            return len(jobs)

    # ---- claiming -------------------------------------------------------------------------

    async def _claim(self) -> list[Job]:
        now = self.clock.now()
        due = Q(status=DeliveryStatus.PENDING.value, next_attempt_at__lte=now) | Q(
            status=DeliveryStatus.SENDING.value, claimed_until__lt=now)
        token = f"{self.worker_id}:{uuid.uuid4().hex[:8]}"
        async with in_transaction():
            query = Delivery.filter(due).order_by("id").limit(self.batch_size)
            if storage_db.dialect() == "postgres":
                query = query.select_for_update(skip_locked=True)
            candidates = await query.values("id", "status")
            if not candidates:
                return []
            ids = [row["id"] for row in candidates]
            await Delivery.filter(due, id__in=ids).update(
                status=DeliveryStatus.SENDING.value, claimed_by=token, claimed_until=now + self.lease)
        prior = {row["id"]: row["status"] for row in candidates}
        claimed = await Delivery.filter(claimed_by=token, status=DeliveryStatus.SENDING.value).select_related(
            "account", "member").order_by("id")
        return [Job(d, maybe_sent=prior.get(d.id) == DeliveryStatus.SENDING.value) for d in claimed]

    # ---- sending --------------------------------------------------------------------------

    async def _send_all(self, jobs: list[Job]) -> dict[int, Outcome]:
        views = await self._views({job.delivery.notice_id for job in jobs})  # type: ignore[attr-defined]
        groups: dict[tuple[str, str], list[Job]] = defaultdict(list)
        for job in jobs:
            groups[(job.delivery.platform, job.delivery.workspace_external_id)].append(job)
        outcomes: dict[int, Outcome] = {}
        await asyncio.gather(*(self._send_group(key, group, views, outcomes) for key, group in groups.items()))
        return outcomes

    async def _send_group(self, key: tuple[str, str], jobs: list[Job], views: dict[int, NoticeView],
                          outcomes: dict[int, Outcome]) -> None:
        """Send one workspace's jobs with bounded concurrency; stop early if it gets throttled."""
        channel = self.channels.get(key[0])
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(job: Job) -> None:
            async with semaphore:
                blocked = self._blocked_for(key)
                if blocked is not None:
                    outcomes[job.delivery.id] = Outcome.deferred(blocked)
                    return
                if channel is None:
                    outcomes[job.delivery.id] = Outcome.failed(f"{key[0].title()} is not configured in Herald")
                    return
                outcome = await self._deliver_one(channel, job, views[job.delivery.notice_id])  # type: ignore[attr-defined]
                if outcome.throttled and outcome.retry_after:
                    self._blocked_until[key] = self.clock.now() + timedelta(seconds=outcome.retry_after)
                outcomes[job.delivery.id] = outcome

        await asyncio.gather(*(one(job) for job in jobs))

    async def _deliver_one(self, channel: Channel, job: Job, view: NoticeView) -> Outcome:
        account: PlatformAccount | None = job.delivery.account
        if account is None:
            return Outcome.failed("the member's platform account was removed")
        recipient = Recipient(workspace_id=account.workspace_external_id, user_id=account.user_id,
                              dm_channel=account.dm_channel, service_url=account.service_url,
                              display_name=job.delivery.member.name)
        try:
            return await channel.deliver(recipient, view, delivery_id=job.delivery.id, maybe_sent=job.maybe_sent)
        except Exception as exc:  # noqa: BLE001 - a channel bug must not lose the row
            log.exception("delivery %s raised", job.delivery.id)
            return Outcome.retry(f"internal error ({type(exc).__name__})")

    def _blocked_for(self, key: tuple[str, str]) -> float | None:
        until = self._blocked_until.get(key)
        if until is None:
            return None
        remaining = (until - self.clock.now()).total_seconds()
        if remaining <= 0:
            del self._blocked_until[key]
            return None
        return remaining

    async def _views(self, notice_ids: set[int]) -> dict[int, NoticeView]:
        notices = await Notice.filter(id__in=list(notice_ids))
        return {n.id: notice_view(n, self.catalog) for n in notices}

    # ---- recording ------------------------------------------------------------------------

    async def _store(self, jobs: list[Job], outcomes: dict[int, Outcome]) -> None:
        now = self.clock.now()
        deliveries, events, dm_cache = [], [], {}
        for job in jobs:
            d = job.delivery
            outcome = outcomes.get(d.id) or Outcome.retry("no outcome recorded")
            if outcome.dm_channel and d.account is not None:
                dm_cache[d.account.id] = outcome.dm_channel
            self._apply(d, outcome, now)
            deliveries.append(d)
            if d.status == DeliveryStatus.DELIVERED.value:
                events.append(audit_event("delivery.delivered", now=now, notice_id=d.notice_id,  # type: ignore[attr-defined]
                                          member_id=d.member_id, platform=d.platform,  # type: ignore[attr-defined]
                                          channel=d.channel_id, message_id=d.message_id, delivery_id=d.id))
            elif d.status == DeliveryStatus.FAILED.value:
                events.append(audit_event("delivery.failed", now=now, notice_id=d.notice_id,  # type: ignore[attr-defined]
                                          member_id=d.member_id, platform=d.platform,  # type: ignore[attr-defined]
                                          reason=d.error, attempts=d.attempts, delivery_id=d.id))
        # The lease (minutes) is far longer than a batch (bounded by the channels' HTTP timeouts),
        # so a claim is still ours when its results are written.
        async with in_transaction() as conn:
            await Delivery.bulk_update(deliveries, fields=_RESULT_FIELDS, batch_size=500, using_db=conn)
            for account_id, channel_id in dm_cache.items():
                await PlatformAccount.filter(id=account_id).using_db(conn).update(dm_channel=channel_id)
            await record(events, using_db=conn)

    def _apply(self, d: Delivery, outcome: Outcome, now: datetime) -> None:
        d.claimed_by, d.claimed_until = "", None
        if outcome.kind is OutcomeKind.DELIVERED and outcome.ref is not None:
            d.attempts += 1
            d.status, d.delivered_at, d.error = DeliveryStatus.DELIVERED.value, now, ""
            d.channel_id, d.message_id = outcome.ref.channel_id, outcome.ref.message_id
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
            open_rows = await Delivery.filter(notice_id=notice_id, status__in=[
                DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value]).exists()
            if not open_rows:
                await Notice.filter(id=notice_id, status=NoticeStatus.SENDING.value).update(
                    status=NoticeStatus.SENT.value, completed_at=now)
