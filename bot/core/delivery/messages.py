"""Direct messages through the outbox: journey steps, nudges, CAM notes, digests, escalations,
hand-offs and relayed answers.

Each message is an `OutboundMessage` row written in the same transaction as the state change that
causes it (a journey step becoming due, a digest run, an escalation, a hand-off), under a unique
idempotency key, so a tick on two replicas or a replayed request never queues it twice. The outbox
sends the rows in their workspace's lane with the same pacing, `Retry-After` pauses, retries with
backoff and lease-based claims as notice deliveries, notices first (`MessageSource` has the shape
of a lane source: `due_lanes`, `claim`, `send`, `record`). After a final outcome it calls the
purpose's completion hook in the transaction that records the outcome, so each purpose's own row,
audit events and reports stay as they were when these messages were sent directly.

Crash safety is **at most once**: a plain direct message carries nothing a channel could look for
afterwards (no notice metadata), so a row whose claim expired ("maybe sent") is never sent again;
it is settled as *interrupted* and its hook decides what that means (a journey step counts as
sent and its nudge follows up; a digest's notices roll into the next digest; ...).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.core.delivery.retry import RetryPolicy
from bot.core.ports import Button, Channel, DirectMessage, MessageRef, Outcome, OutcomeKind, Recipient
from storage import db as storage_db
from storage.models import DeliveryStatus, MessagePurpose, OutboundMessage, PlatformAccount

log = logging.getLogger(__name__)


class Priority:
    """Lower goes first within a workspace's lane. Notice deliveries (0 with a deadline or
    must-know, 1 need-to-know) are drained before any of these."""

    NOTICE_DEADLINE = 0
    NOTICE = 1
    PERSON_WAITING = 2  # hand-offs, relays, escalations: a person is waiting for it
    BACKGROUND = 3  # journey steps, nudges, digests


PRIORITY = {
    MessagePurpose.HANDOFF: Priority.PERSON_WAITING, MessagePurpose.RELAY: Priority.PERSON_WAITING,
    MessagePurpose.ESCALATION: Priority.PERSON_WAITING, MessagePurpose.STAFF_NOTE: Priority.PERSON_WAITING,
    MessagePurpose.JOURNEY_STEP: Priority.BACKGROUND, MessagePurpose.JOURNEY_CAM: Priority.BACKGROUND,
    MessagePurpose.JOURNEY_NUDGE: Priority.BACKGROUND, MessagePurpose.DIGEST: Priority.BACKGROUND,
}

INTERRUPTED = "Herald stopped while sending this; it may not have arrived and is not sent again"


# ---- where a message goes ----------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One person on one platform: a member's PlatformAccount or a staff member's chat ids."""

    platform: str
    recipient: Recipient
    account_id: int | None = None  # the member's account, to cache a newly opened DM channel

    @classmethod
    def of_account(cls, account: PlatformAccount, *, dm_channel: str = "", display_name: str = "") -> "Target":
        return cls(account.platform, Recipient(workspace_id=account.workspace_external_id, user_id=account.user_id,
                                               dm_channel=dm_channel or account.dm_channel,
                                               service_url=account.service_url, display_name=display_name),
                   account.id)


def message_json(message: DirectMessage) -> dict[str, Any]:
    return {"title": message.title, "lines": list(message.lines),
            "buttons": [{"label": b.label, "action_id": b.action_id, "value": b.value, "style": b.style}
                        for b in message.buttons]}


def message_from_json(data: dict[str, Any]) -> DirectMessage:
    return DirectMessage(title=data["title"], lines=tuple(data.get("lines", ())),
                         buttons=tuple(Button(**b) for b in data.get("buttons", ())))


def _recipient_json(recipient: Recipient) -> dict[str, str]:
    return {"workspace_id": recipient.workspace_id, "user_id": recipient.user_id, "dm_channel": recipient.dm_channel,
            "service_url": recipient.service_url, "display_name": recipient.display_name}


async def enqueue(*, key: str, purpose: MessagePurpose, reference: int, target: Target, message: DirectMessage,
                  now: datetime, member_id: int | None = None, staff_id: int | None = None,
                  priority: int | None = None, using_db: Any = None) -> bool:
    """Queue one message; False when its key is already queued (a replayed request, another
    replica). Call it inside the transaction of the state change that causes the message: a
    concurrent duplicate then fails that transaction on the unique key instead of sending twice."""
    if await OutboundMessage.filter(key=key).using_db(using_db).exists():
        return False
    await OutboundMessage.create(
        key=key[:200], purpose=purpose.value, reference=reference,
        priority=PRIORITY.get(purpose, Priority.BACKGROUND) if priority is None else priority,
        member_id=member_id, staff_id=staff_id, account_id=target.account_id, platform=target.platform,
        workspace_external_id=target.recipient.workspace_id, recipient=_recipient_json(target.recipient),
        message=message_json(message), next_attempt_at=now, created_at=now, using_db=using_db)
    return True


async def queued(purpose: MessagePurpose, reference: int) -> bool:
    """Whether a message for this row is queued or being sent."""
    return await OutboundMessage.filter(purpose=purpose.value, reference=reference, status__in=[
        DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value]).exists()


# ---- completion hooks --------------------------------------------------------------------------

class ResultKind(StrEnum):
    SENT = "sent"
    FAILED = "failed"  # refused, or gave up after the retries
    INTERRUPTED = "interrupted"  # claimed before a crash: may or may not have arrived; not sent again


@dataclass(frozen=True)
class MessageResult:
    kind: ResultKind
    now: datetime
    ref: MessageRef | None = None
    reason: str = ""
    channels: dict[str, Channel] = field(default_factory=dict)  # for hooks that queue a follow-up

    @property
    def sent(self) -> bool:
        return self.kind is ResultKind.SENT


Hook = Callable[[OutboundMessage, MessageResult], Awaitable[None]]
_HOOKS: dict[str, Hook] = {}


def on_result(purpose: MessagePurpose) -> Callable[[Hook], Hook]:
    """Register the completion hook of a purpose. It runs inside the transaction that records the
    message's final outcome (queries without `using_db` join it), exactly once per message."""
    def register(hook: Hook) -> Hook:
        _HOOKS[purpose.value] = hook
        return hook
    return register


# ---- the lane source ---------------------------------------------------------------------------

@dataclass
class Claimed:
    row: OutboundMessage
    maybe_sent: bool  # taken back from an expired claim

    @property
    def id(self) -> int:
        return self.row.id


def _due(now: datetime) -> Q:
    return Q(status=DeliveryStatus.PENDING.value, next_attempt_at__lte=now) | Q(
        status=DeliveryStatus.SENDING.value, claimed_until__lt=now)


class MessageSource:
    """The outbox's source of direct messages, lane by lane ((platform, workspace or tenant))."""

    def __init__(self, channels: dict[str, Channel], *, worker_id: str = "", lease: timedelta = timedelta(minutes=2),
                 retry: RetryPolicy | None = None) -> None:
        self.channels = channels
        self.worker_id = worker_id or uuid.uuid4().hex[:16]
        self.lease = lease
        self.retry = retry or RetryPolicy()

    async def due_lanes(self, now: datetime, limit: int = 1000) -> list[tuple[str, str]]:
        rows = await OutboundMessage.filter(_due(now)).distinct().limit(limit).values_list(
            "platform", "workspace_external_id")
        return [tuple(r) for r in rows]  # type: ignore[misc]

    async def claim(self, lane: tuple[str, str], now: datetime, limit: int) -> list[Claimed]:
        """Lease up to `limit` due rows of one lane, most urgent first."""
        due = _due(now) & Q(platform=lane[0], workspace_external_id=lane[1])
        token = f"{self.worker_id}:{uuid.uuid4().hex[:8]}"
        async with in_transaction():
            query = OutboundMessage.filter(due).order_by("priority", "id").limit(limit)
            if storage_db.dialect() == "postgres":
                query = query.select_for_update(skip_locked=True)
            candidates = await query.values("id", "status")
            if not candidates:
                return []
            await OutboundMessage.filter(due, id__in=[c["id"] for c in candidates]).update(
                status=DeliveryStatus.SENDING.value, claimed_by=token, claimed_until=now + self.lease)
        prior = {c["id"]: c["status"] for c in candidates}
        rows = await OutboundMessage.filter(claimed_by=token).select_related("account").order_by("priority", "id")
        return [Claimed(r, prior.get(r.id) == DeliveryStatus.SENDING.value) for r in rows]

    async def send(self, channel: Channel, claimed: Claimed) -> Outcome:
        """One platform call. Never for a `maybe_sent` row (at most once, see the module doc)."""
        row = claimed.row
        data = dict(row.recipient)
        account: PlatformAccount | None = row.account
        if account is not None and not data.get("dm_channel"):
            data["dm_channel"] = account.dm_channel
        return await channel.send_message(Recipient(**data), message_from_json(row.message))

    async def record(self, batch: list[Claimed], outcomes: dict[int, Outcome], now: datetime) -> int:
        """Store each row's outcome; a final one (sent, failed, interrupted) runs the purpose's hook
        in the same transaction. Returns how many rows reached a final outcome."""
        final = 0
        for claimed in batch:
            final += await self._record_one(claimed, outcomes.get(claimed.id), now)
        return final

    async def _record_one(self, claimed: Claimed, outcome: Outcome | None, now: datetime) -> int:
        row = claimed.row
        if claimed.maybe_sent:
            return await self._settle(row, MessageResult(ResultKind.INTERRUPTED, now, reason=INTERRUPTED,
                                                         channels=self.channels), now, outcome=None)
        outcome = outcome or Outcome.retry("no outcome recorded")
        if outcome.kind is OutcomeKind.DELIVERED and outcome.ref is not None:
            return await self._settle(row, MessageResult(ResultKind.SENT, now, ref=outcome.ref,
                                                         channels=self.channels), now, outcome=outcome)
        if outcome.kind is OutcomeKind.DEFERRED:  # not attempted: the lane is paused
            await self._release(row, now + timedelta(seconds=outcome.retry_after or 1), row.attempts, outcome)
            return 0
        attempts = row.attempts + 1
        delay = self.retry.delay(attempts, retry_after=outcome.retry_after, key=row.id) \
            if outcome.kind is OutcomeKind.RETRY else None
        if delay is None:
            reason = outcome.reason or "unknown error"
            if outcome.kind is OutcomeKind.RETRY:
                reason = f"gave up after {attempts} attempts: {reason}"
            row.attempts = attempts
            return await self._settle(row, MessageResult(ResultKind.FAILED, now, reason=reason,
                                                         channels=self.channels), now, outcome=outcome)
        await self._release(row, now + timedelta(seconds=delay), attempts, outcome)
        return 0

    async def _release(self, row: OutboundMessage, when: datetime, attempts: int, outcome: Outcome) -> None:
        async with in_transaction():
            await OutboundMessage.filter(id=row.id, claimed_by=row.claimed_by).update(
                status=DeliveryStatus.PENDING.value, next_attempt_at=when, attempts=attempts, claimed_by="",
                claimed_until=None, error=outcome.reason[:2000])
            await _cache_dm(row, outcome, now=when)

    async def _settle(self, row: OutboundMessage, result: MessageResult, now: datetime, *,
                      outcome: Outcome | None) -> int:
        ref = result.ref
        values: dict[str, Any] = dict(claimed_by="", claimed_until=None, attempts=row.attempts)
        if result.sent:
            values.update(status=DeliveryStatus.DELIVERED.value, channel_id=ref.channel_id,  # type: ignore[union-attr]
                          message_id=ref.message_id, sent_at=now, error="", attempts=row.attempts + 1)  # type: ignore[union-attr]
        else:
            values.update(status=DeliveryStatus.FAILED.value, error=result.reason[:2000])
        async with in_transaction():
            moved = await OutboundMessage.filter(id=row.id, claimed_by=row.claimed_by).update(**values)
            if not moved:
                return 0  # our claim was taken over: the other worker records it
            if outcome is not None:
                await _cache_dm(row, outcome, now=now)
            hook = _HOOKS.get(row.purpose)
            if hook is None:
                log.error("no completion hook for outbound messages of purpose %r (row %s)", row.purpose, row.id)
            else:
                await hook(row, result)
        return 1


async def _cache_dm(row: OutboundMessage, outcome: Outcome, *, now: datetime) -> None:
    account_id = row.account_id  # type: ignore[attr-defined]
    if outcome.dm_channel and account_id is not None:
        await PlatformAccount.filter(id=account_id).exclude(dm_channel=outcome.dm_channel).update(
            dm_channel=outcome.dm_channel, updated_at=now)
