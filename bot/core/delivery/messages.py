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

A message to a person who may have changed by the time it goes (one to "the partner's CAM": an
escalation, a hand-off, the note that a member completed onboarding) is checked when it is claimed: its purpose's addressee check (`addressed_by`) says whom it is for
now, and the row is re-addressed to them (back to pending, in their lane), or settled as *failed*
when nobody may receive it, with the purpose's own record of the change in the same transaction.
Whom it is for is each purpose's own rule; comparing that with whom it was queued for, and where
they are reached now, is shared (`staff_addressee`).

A message that lists things which may change while it waits (a digest, behind the lane's notice
copies) is rendered again when it is claimed, before its request is marked started: its purpose's
render check (`rendered_by`) gives the text as it reads now, stored on the row with the purpose's
own record, or cancels it when nothing is left to say. So it is still sent at most once.
Both are one claim-time mechanism: each check returns a `ClaimVerdict` (registered by
`ClaimStage` and purpose), applied in one place (`MessageSource._still_ours`).

A message with a `member_id` is written to that member. One whose member is no longer active
(removed from the partner directory) is not sent: the claim settles it as *cancelled* and its
hook decides what that means (a journey step waits in case the member comes back; a relayed
answer's CAM is told; a digest's notices stay for the next one).
One in a workspace Herald was removed from fails at the claim with `workspaces.removed_reason`,
and one to an account whose member removed Herald (Teams, `app_installs`) with `APP_REMOVED`: no
request the platform could only refuse, and no wait for the member's hours first.

Crash safety is **at most once**: a plain direct message carries nothing a channel could look for
afterwards (no notice metadata), so a row whose request may have started before its claim expired
is never sent again; it is settled as *interrupted* and its hook decides what that means (a
journey step counts as sent and its nudge follows up; a digest's notices roll into the next
digest; ...). `request_started` is set just before the request: a row the lane had claimed but
that was still waiting for its pace or a request slot is sent normally by whoever takes it over.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot.common.schedule import next_working_moment
from bot.core.compliance.audit import audit_event, record
from bot.core.delivery.lanes import DUE, OPEN, Lane, lanes_with_due_rows, renew_claims
from bot.core.delivery.notice_rows import MemberHours
from bot.core.delivery.retry import RetryPolicy
from bot.core.directory.app_installs import APP_REMOVED
from bot.core.directory.workspaces import removed_reason
from bot.core.directory.quiet_hours import quiet_hours_ends, working_hours_ends
from bot.core.directory.reach import staff_recipient
from bot.core.ports import Button, Channel, DirectMessage, MessageRef, Outcome, OutcomeKind, Recipient
from bot.topics import TopicCatalog
from storage import db as storage_db
from storage.models import (
    DeliveryStatus,
    Member,
    MessagePurpose,
    OutboundMessage,
    PlatformAccount,
    Staff,
    Workspace,
)

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
    MessagePurpose.ESCALATION: Priority.PERSON_WAITING, MessagePurpose.ESCALATION_FALLBACK: Priority.PERSON_WAITING,
    MessagePurpose.STAFF_NOTE: Priority.PERSON_WAITING,
    MessagePurpose.ANSWER: Priority.PERSON_WAITING, MessagePurpose.HANDOFF_REMINDER: Priority.PERSON_WAITING,
    MessagePurpose.JOURNEY_STEP: Priority.BACKGROUND, MessagePurpose.JOURNEY_CAM: Priority.BACKGROUND,
    MessagePurpose.JOURNEY_NUDGE: Priority.BACKGROUND, MessagePurpose.DIGEST: Priority.BACKGROUND,
    MessagePurpose.HANDOFF_WAITING: Priority.BACKGROUND,  # in the partner's working hours
}

INTERRUPTED = "Herald stopped while sending this; it may not have arrived and is not sent again"
MEMBER_INACTIVE = "not sent: the member was removed from the partner directory"


# ---- where a message goes ----------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One person on one platform: a member's PlatformAccount or a staff member's chat ids."""

    platform: str
    recipient: Recipient
    account_id: int | None = None  # the member's account, to cache a newly opened DM channel

    @classmethod
    def of_account(cls, account: PlatformAccount, *, dm_channel: str = "", display_name: str = "",
                   thread_id: str = "") -> "Target":
        return cls(account.platform, Recipient(workspace_id=account.workspace_external_id, user_id=account.user_id,
                                               dm_channel=dm_channel or account.dm_channel,
                                               service_url=account.service_url, display_name=display_name,
                                               thread_id=thread_id),
                   account.id)


async def staff_target(staff: Staff, channels: dict[str, Channel]) -> Target | None:
    """Where the outbox reaches a staff member (`reach.staff_recipient`); None: no chat account
    on a platform Herald is configured for."""
    found = await staff_recipient(staff, channels)
    return Target(found[0].platform, found[1]) if found is not None else None


def message_json(message: DirectMessage) -> dict[str, Any]:
    return {"title": message.title, "lines": list(message.lines),
            "buttons": [{"label": b.label, "action_id": b.action_id, "value": b.value, "style": b.style}
                        for b in message.buttons]}


def message_from_json(data: dict[str, Any]) -> DirectMessage:
    return DirectMessage(title=data["title"], lines=tuple(data.get("lines", ())),
                         buttons=tuple(Button(**b) for b in data.get("buttons", ())))


def _recipient_json(recipient: Recipient) -> dict[str, str]:
    """The row's `recipient` (rows written before `thread_id` existed lack it: no thread)."""
    return {"workspace_id": recipient.workspace_id, "user_id": recipient.user_id, "dm_channel": recipient.dm_channel,
            "service_url": recipient.service_url, "display_name": recipient.display_name,
            "thread_id": recipient.thread_id}


async def enqueue(*, key: str, purpose: MessagePurpose, reference: int, target: Target, message: DirectMessage,
                  now: datetime, member_id: int | None = None, staff_id: int | None = None,
                  priority: int | None = None, using_db: Any = None) -> bool:
    """Queue one message; False when its key is already queued (a replayed request, another
    replica). `member_id`: the member it is written to (none for a message to staff). Call it
    inside the transaction of the state change that causes the message, and write that change only
    when it returns True: a concurrent duplicate (a double click, two replicas) waits for the
    other's transaction and then gets False too (`INSERT ... ON CONFLICT (key) DO NOTHING`, one
    statement on both databases), so the caller's transaction goes on instead of failing on the
    unique key. Any other integrity error is raised."""
    row = OutboundMessage(
        key=key[:200], purpose=purpose.value, reference=reference,
        priority=PRIORITY.get(purpose, Priority.BACKGROUND) if priority is None else priority,
        member_id=member_id, staff_id=staff_id, account_id=target.account_id, platform=target.platform,
        workspace_external_id=target.recipient.workspace_id, recipient=_recipient_json(target.recipient),
        message=message_json(message), next_attempt_at=now, due_since=now, created_at=now)
    conn = using_db if using_db is not None else connections.get("default")
    names, query = _insert_unless_queued()
    fields = OutboundMessage._meta.fields_map
    values = [fields[name].to_db_value(getattr(row, name), row) for name in names]
    return bool(await conn.execute_query_dict(storage_db.placeholders(query, storage_db.dialect(conn) == "postgres"),
                                              values))


@functools.cache
def _insert_unless_queued() -> tuple[tuple[str, ...], str]:
    """The fields written and the statement: one row of every column but the id (the values
    converted by each field, as OutboundMessage.create does: defaults and auto_now included),
    nothing when its key is queued already, the id returned only for a row inserted. Built on
    first use: the foreign keys' columns are in the model's fields once tortoise is initialised."""
    projection = OutboundMessage._meta.fields_db_projection
    names = tuple(name for name in projection if name != "id")
    columns = ", ".join(f'"{projection[name]}"' for name in names)
    return names, (f'INSERT INTO "{OutboundMessage._meta.db_table}" ({columns}) VALUES ({", ".join("?" * len(names))}) '
                   'ON CONFLICT ("key") DO NOTHING RETURNING id')


async def queue_throttled_reply(*, key: str, target: Target, message: DirectMessage, now: datetime,
                                staff_id: int | None = None, reference: int = 0) -> bool:
    """A reply to a member of staff that the platform throttled (429) when it was sent straight
    from the listener (e.g. the outcome of the preview modal's Send): queued as a staff note, so it
    leaves in the workspace's lane once the pause is over instead of being lost. `key` names the
    reply (a replayed request queues it once); False when it is already queued."""
    return await enqueue(key=f"{MessagePurpose.STAFF_NOTE.value}:reply:{key}", purpose=MessagePurpose.STAFF_NOTE,
                         reference=reference, target=target, message=message, now=now, staff_id=staff_id)


async def queued(purpose: MessagePurpose, reference: int) -> bool:
    """Whether a message for this row is queued or being sent."""
    return await OutboundMessage.filter(purpose=purpose.value, reference=reference, status__in=[
        DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value]).exists()


# ---- completion hooks --------------------------------------------------------------------------

class ResultKind(StrEnum):
    SENT = "sent"
    FAILED = "failed"  # refused, or gave up after the retries
    INTERRUPTED = "interrupted"  # claimed before a crash: may or may not have arrived; not sent again
    CANCELLED = "cancelled"  # not tried: its member is no longer active


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


# the modules that register hooks: imported before a result is recorded, so a worker that has not
# imported them yet (e.g. a replica that only sends) still runs them
_HOOK_MODULES = ("bot.core.onboarding.journeys", "bot.core.notices.digests", "bot.core.notices.escalations",
                 "bot.core.onboarding.handoffs", "bot.core.onboarding.handoff_reminders")


def _hook(purpose: str) -> Hook | None:
    if purpose not in _HOOKS:
        _import_hook_modules()
    return _HOOKS.get(purpose)


def _import_hook_modules() -> None:
    for module in _HOOK_MODULES:
        importlib.import_module(module)


# ---- claim-time checks -------------------------------------------------------------------------

@dataclass(frozen=True)
class ClaimVerdict:
    """A purpose's verdict on one of its messages as it is claimed: it is not to be sent as
    queued. `record` writes the purpose's own rows and audit event; it runs first in the
    transaction that applies the verdict, so it is undone if the claim was taken over meanwhile.
    `end` set: not sent; settled so (failed: nobody may receive it; cancelled: nothing is left to
    say) with `reason`. Else `target` set: re-addressed, back to pending in the target's lane
    (`staff_id`: whom it is for now). Else it is sent now. `message`: the message as it reads now,
    stored on the row (None: as queued)."""

    record: Callable[[], Awaitable[None]]
    message: DirectMessage | None = None
    target: Target | None = None
    staff_id: int | None = None
    end: ResultKind | None = None
    reason: str = ""

    @classmethod
    def readdress(cls, staff_id: int | None, target: Target | None, reason: str,
                  record: Callable[[], Awaitable[None]], message: DirectMessage | None = None) -> ClaimVerdict:
        """For someone else now (an addressee check): to `target`, worded as `message`; or, with
        no target, nobody may receive it: it fails with `reason`."""
        if target is None:
            return cls(record, end=ResultKind.FAILED, reason=reason)
        return cls(record, message=message, target=target, staff_id=staff_id)

    @classmethod
    def rerender(cls, message: DirectMessage | None, record: Callable[[], Awaitable[None]],
                 reason: str = "") -> ClaimVerdict:
        """Reads differently now (a render check): sent as `message`, claim kept; or, with no
        message, nothing is left to say: it is cancelled with `reason`."""
        if message is None:
            return cls(record, end=ResultKind.CANCELLED, reason=reason)
        return cls(record, message=message)


class ClaimStage(StrEnum):
    """When in the claim a purpose's check runs, in this order."""

    ADDRESSEE = "addressee"  # before the member's hours are looked at (`addressed_by`)
    RENDER = "render"  # after them, just before the request is marked started (`rendered_by`)


@dataclass(frozen=True)
class StaffAddressee:
    """Whom a message to staff is for now, when not whom it was queued for (`staff_addressee`)."""

    staff: Staff | None  # whom the purpose's own rule names now; None: nobody
    before: Staff | None  # whom it was queued for (None: no longer on file)
    target: Target | None  # where `staff` is reached; None: it cannot go, for `reason`
    reason: str

    def why(self, changed: str) -> str:
        """The purpose's audit reason: what changed, and why it is not sent if it is not."""
        return changed + ("" if self.target is not None else f"; not sent: {self.reason}")

    def readdress(self, record: Callable[[], Awaitable[None]], message: DirectMessage | None = None) -> ClaimVerdict:
        return ClaimVerdict.readdress(self.staff.id if self.staff is not None else None, self.target, self.reason,
                                      record, message=message)


async def staff_addressee(message: OutboundMessage, staff: Staff | None, channels: dict[str, Channel], *,
                          nobody: str, no_account: str) -> StaffAddressee | None:
    """What every addressee check of a message to staff (an escalation, a hand-off, the note that
    a member completed their journey) does once its purpose's own rule has named `staff`: None
    while that is whom `message` was queued for; else where it goes now, or why it cannot go
    (`nobody`: the rule names no one; `no_account`: no chat account Herald can reach), with whom
    it was for before, for the purpose's audit event. The rule itself (whose CAM, which
    fallback) and the audit kind stay with each purpose."""
    if staff is not None and staff.id == message.staff_id:  # type: ignore[attr-defined]
        return None
    target = await staff_target(staff, channels) if staff is not None else None
    reason = "" if target is not None else nobody if staff is None else no_account
    before = await Staff.get_or_none(id=message.staff_id) if message.staff_id else None  # type: ignore[attr-defined]
    return StaffAddressee(staff, before, target, reason)


ClaimCheck = Callable[[OutboundMessage, "MessageSource", datetime], Awaitable[ClaimVerdict | None]]
_CLAIM_CHECKS: dict[tuple[ClaimStage, str], ClaimCheck] = {}
_CHECKS_LOADED = False

AddresseeCheck = Callable[[OutboundMessage, dict[str, Channel], datetime], Awaitable[ClaimVerdict | None]]
RenderCheck = Callable[[OutboundMessage, TopicCatalog, datetime], Awaitable[ClaimVerdict | None]]


def addressed_by(purpose: MessagePurpose) -> Callable[[AddresseeCheck], AddresseeCheck]:
    """Register the purpose's addressee check, run when one of its messages is claimed (before the
    member's hours): None to send it as queued, else a `ClaimVerdict.readdress`. Reads only; its
    `record` does the writing."""
    def register(check: AddresseeCheck) -> AddresseeCheck:
        _CLAIM_CHECKS[ClaimStage.ADDRESSEE, purpose.value] = lambda row, source, now: check(row, source.channels, now)
        return check
    return register


def rendered_by(purpose: MessagePurpose) -> Callable[[RenderCheck], RenderCheck]:
    """Register the purpose's render check, run when one of its messages is claimed (after the
    addressee check and the member's hours, before the request is marked started): None to send
    it as it is, else a `ClaimVerdict.rerender`. Reads only; its `record` does the writing."""
    def register(check: RenderCheck) -> RenderCheck:
        _CLAIM_CHECKS[ClaimStage.RENDER, purpose.value] = lambda row, source, now: check(row, source.catalog, now)
        return check
    return register


def _claim_check(stage: ClaimStage, purpose: str) -> ClaimCheck | None:
    """The purpose's check at `stage`, once the modules that register checks are imported (a worker
    that only sends has not yet)."""
    global _CHECKS_LOADED
    if not _CHECKS_LOADED:
        _import_hook_modules()
        _CHECKS_LOADED = True
    return _CLAIM_CHECKS.get((stage, purpose))


class _ClaimLost(Exception):
    """Our claim on a row was taken over while applying a verdict to it: nothing is written."""


# ---- the member's hours ------------------------------------------------------------------------

# Messages to a member that nobody is waiting for (background priority: a journey step or nudge the
# tick queued, a digest, the note that their hand-off is still with the CAM) wait for the member's hours when the outbox gets to them: they were queued
# in those hours, but can be sent much later (a backlog, an outage, a rate-limit pause). A reply to
# the member (e.g. the milestone their Done reached, queued as a person waiting) goes at once.
# purpose -> whether the member's working hours (weekdays) count, not just the end of quiet hours
# (as journeys.py and digests.py queue them).
_MEMBER_HOURS: dict[str, bool] = {MessagePurpose.JOURNEY_STEP.value: True, MessagePurpose.JOURNEY_NUDGE.value: True,
                                  MessagePurpose.DIGEST.value: False, MessagePurpose.HANDOFF_WAITING.value: True}


def _waits_for_hours(row: OutboundMessage) -> bool:
    return row.purpose in _MEMBER_HOURS and row.priority == Priority.BACKGROUND and row.member_id is not None  # type: ignore[attr-defined]


async def _hold_outside_hours(claimed: list[Claimed], now: datetime) -> list[Claimed]:
    """The claimed rows that may go now; the others are put back unsent, due when their member's
    hours begin, each with a `message.held` audit event."""
    waiting = [c.row for c in claimed if _waits_for_hours(c.row)]
    if not waiting:
        return claimed
    members = {working: sorted({r.member_id for r in waiting if _MEMBER_HOURS[r.purpose] is working})  # type: ignore[attr-defined]
               for working in (True, False)}
    ends = {True: await working_hours_ends(members[True], now) if members[True] else {},
            False: await quiet_hours_ends(members[False], now) if members[False] else {}}
    held = [(row, until) for row in waiting
            if (until := ends[_MEMBER_HOURS[row.purpose]].get(row.member_id)) is not None]  # type: ignore[attr-defined]
    if not held:
        return claimed
    async with in_transaction() as conn:
        events = []
        for row, until in held:
            moved = await OutboundMessage.filter(id=row.id, claimed_by=row.claimed_by).using_db(conn).update(
                status=DeliveryStatus.PENDING.value, next_attempt_at=until, due_since=until, claimed_by="",
                claimed_until=None)
            if moved:
                events.append(audit_event(
                    "message.held", now=now, member_id=row.member_id, purpose=row.purpose,  # type: ignore[attr-defined]
                    outbound_message=row.id, reference=row.reference, until=until,
                    reason="outside working hours" if _MEMBER_HOURS[row.purpose] else "quiet hours"))
        await record(events, using_db=conn)
    kept = {row.id for row, _ in held}
    return [c for c in claimed if c.row.id not in kept]


async def retime_held_messages(member_id: int, hours: MemberHours, now: datetime,
                               using_db: BaseDBAsyncClient) -> int:
    """The member's messages `_hold_outside_hours` put back (pending, unclaimed, never tried,
    due later, due_since set with next_attempt_at) become due when the member's hours (`hours`: the
    zone and quiet hours just chosen) begin, or now: earlier or later than the hours they were held
    for. One UPDATE per new time (at most two: working hours, end of quiet hours). Returns how
    many moved."""
    rows = await OutboundMessage.filter(
        member_id=member_id, purpose__in=list(_MEMBER_HOURS), priority=Priority.BACKGROUND,
        status=DeliveryStatus.PENDING.value, claimed_by="", attempts=0, next_attempt_at__gt=now,
    ).using_db(using_db).values_list("id", "purpose", "next_attempt_at", "due_since")
    held: dict[datetime, list[int]] = {}
    moments: dict[bool, datetime] = {}
    for row_id, purpose, due, since in rows:
        if since is None or storage_db.as_datetime(since) != storage_db.as_datetime(due):
            continue  # not a hold
        working = _MEMBER_HOURS[purpose]
        if working not in moments:
            moments[working] = max(now, next_working_moment(now, hours.timezone, quiet_start=hours.quiet_start,
                                                            quiet_end=hours.quiet_end, skip_weekends=working))
        held.setdefault(moments[working], []).append(row_id)
    moved = 0
    for moment, ids in held.items():
        moved += await OutboundMessage.filter(id__in=ids, status=DeliveryStatus.PENDING.value, claimed_by="").using_db(
            using_db).update(next_attempt_at=moment, due_since=moment)
    return moved


# ---- the lane source ---------------------------------------------------------------------------

@dataclass
class Claimed:
    row: OutboundMessage
    maybe_sent: bool  # always False: rows whose request may have started are settled at the claim

    @property
    def id(self) -> int:
        return self.row.id


def _due(now: datetime) -> Q:
    return Q(status=DeliveryStatus.PENDING.value, next_attempt_at__lte=now) | Q(
        status=DeliveryStatus.SENDING.value, claimed_until__lt=now)


class MessageSource:
    """The outbox's source of direct messages, lane by lane ((platform, workspace or tenant)); a
    `bot.core.delivery.lanes.LaneSource`."""

    name = "messages"
    priority = 20  # after the notices (10) within a lane

    def __init__(self, channels: dict[str, Channel], catalog: TopicCatalog, *,
                 retry: RetryPolicy | None = None) -> None:
        self.channels = channels
        self.catalog = catalog  # for the render checks (a digest lists topics the member is still in)
        self.retry = retry or RetryPolicy()

    async def due_lanes(self, now: datetime) -> set[Lane]:
        return await lanes_with_due_rows("outbound_message", now)

    async def claim(self, lane: Lane, limit: int, token: str, now: datetime, lease_until: datetime) -> list[Claimed]:
        """Lease up to `limit` due rows of one lane, most urgent first. Rows taken back from an
        expired claim whose request had started (maybe sent) are settled as interrupted here and
        not returned: a plain direct message cannot be looked for afterwards, so it is sent at most
        once. Those whose request had not started come back as fresh rows. Rows to a member who is
        no longer active are settled as cancelled and not returned either."""
        fresh: list[Claimed] = []
        while len(fresh) < limit:
            found, set_aside = await self._claim_once(lane, limit - len(fresh), token, now, lease_until)
            fresh += found
            if not set_aside:
                break
        return fresh

    async def _claim_once(self, lane: Lane, limit: int, token: str, now: datetime,
                          lease_until: datetime) -> tuple[list[Claimed], int]:
        """Claim up to `limit` due rows: those to send, and how many were claimed but set aside
        (settled as interrupted, or put back for their member's hours)."""
        due = _due(now)
        async with in_transaction():
            candidates = await storage_db.select_locked(
                "outbound_message d", "d.id AS id, d.status AS status, d.request_started AS started",
                f"d.platform=? AND d.workspace_external_id=? AND {OPEN} AND {DUE}", [*lane, now, now],
                order_by="d.priority, d.id", limit=limit, skip_locked=True)
            if not candidates:
                return [], 0
            await OutboundMessage.filter(due, id__in=[c["id"] for c in candidates]).update(
                status=DeliveryStatus.SENDING.value, claimed_by=token, claimed_until=lease_until)
        in_doubt = {c["id"] for c in candidates if c["status"] == DeliveryStatus.SENDING.value and c["started"]}
        rows = await OutboundMessage.filter(claimed_by=token, id__in=[c["id"] for c in candidates]).select_related(
            "account").order_by("priority", "id")
        inactive = await _inactive_members(rows)
        removed = await Workspace.filter(platform=lane[0], external_id=lane[1], active=False).exists()
        fresh = []
        for row in rows:
            if row.id in in_doubt:
                await self._settle(row, MessageResult(ResultKind.INTERRUPTED, now, reason=INTERRUPTED,
                                                      channels=self.channels), now, outcome=None)
            elif row.member_id in inactive:  # type: ignore[attr-defined]
                await self._settle(row, MessageResult(ResultKind.CANCELLED, now, reason=MEMBER_INACTIVE,
                                                      channels=self.channels), now, outcome=None)
            elif removed or (row.account is not None and row.account.app_removed_at is not None):
                # Herald was removed from the workspace, or by the member (Teams): it could only be refused
                reason = removed_reason(*lane) if removed else APP_REMOVED
                await self._settle(row, MessageResult(ResultKind.FAILED, now, reason=reason,
                                                      channels=self.channels), now, outcome=None)
            elif await self._still_ours(row, ClaimStage.ADDRESSEE, now):
                fresh.append(Claimed(row, maybe_sent=False))
        sendable = [c for c in await _hold_outside_hours(fresh, now)
                    if await self._still_ours(c.row, ClaimStage.RENDER, now)]
        return sendable, len(rows) - len(sendable)

    async def _still_ours(self, row: OutboundMessage, stage: ClaimStage, now: datetime) -> bool:
        """Whether the claimed row is still ours to send after its purpose's check at `stage`
        (see `ClaimVerdict`): as queued, or as it reads now (the new text stored on the row, claim
        kept); else it was re-addressed (back to pending, in its new addressee's lane) or settled
        (failed, cancelled), with the purpose's record in the same transaction."""
        check = _claim_check(stage, row.purpose)
        verdict = await check(row, self, now) if check is not None else None
        if verdict is None:
            return True
        try:
            async with in_transaction():
                await verdict.record()
                if verdict.end is not None:
                    result = MessageResult(verdict.end, now, reason=verdict.reason, channels=self.channels)
                    if not await self._settle(row, result, now, outcome=None):
                        raise _ClaimLost
                    return False
                values: dict[str, Any] = {}
                if verdict.message is not None:
                    values["message"] = message_json(verdict.message)
                if (target := verdict.target) is not None:
                    values.update(staff_id=verdict.staff_id, account_id=target.account_id, platform=target.platform,
                                  workspace_external_id=target.recipient.workspace_id,
                                  recipient=_recipient_json(target.recipient), status=DeliveryStatus.PENDING.value,
                                  next_attempt_at=now, claimed_by="", claimed_until=None, request_started=False)
                if values and not await OutboundMessage.filter(id=row.id, claimed_by=row.claimed_by).update(**values):
                    raise _ClaimLost
                row.message = values.get("message", row.message)
        except _ClaimLost:
            return False  # the worker that took it over checks it again
        return verdict.target is None

    def cost(self, item: Claimed) -> int:
        """Requests against the lane's budget: a Teams recipient without a known conversation
        needs one created first (Slack posts to the user id: one request)."""
        row = item.row
        known = row.recipient.get("dm_channel") or (row.account is not None and row.account.dm_channel)
        return 2 if row.platform == "teams" and not known else 1

    async def send(self, item: Claimed, channel: Channel | None) -> Outcome:
        """The message's one platform call, once the row says it may have started."""
        row = item.row
        if channel is None:
            return Outcome.failed(f"{row.platform.title()} is not configured in Herald")
        if not await self._mark_started(row):
            return Outcome.deferred(1)  # not attempted: due again in a second (or already another's)
        data = dict(row.recipient)
        account: PlatformAccount | None = row.account
        if account is not None and not data.get("dm_channel"):
            data["dm_channel"] = account.dm_channel
        try:
            return await channel.send_message(Recipient(**data), message_from_json(row.message))
        except Exception as exc:  # noqa: BLE001 - a channel bug must not lose the row
            log.exception("outbound message %s raised", row.id)
            return Outcome.retry(f"internal error ({type(exc).__name__})")

    async def record(self, results: list[tuple[Claimed, Outcome]], now: datetime) -> None:
        """Store the outcomes in one transaction; a final one (sent, failed) runs the purpose's
        hook in it, each row in its own savepoint so one failing hook cannot undo the others (its
        row stays claimed and is settled as interrupted when the claim runs out)."""
        async with in_transaction():
            for item, outcome in results:
                try:
                    async with in_transaction():
                        await self._record_one(item, outcome, now)
                except Exception:  # noqa: BLE001 - logged; the row is settled when its claim expires
                    log.exception("recording outbound message %s failed", item.id)

    @staticmethod
    async def _mark_started(row: OutboundMessage) -> bool:
        """Record that the row's request is about to start (one write per message, not per notice
        delivery): after a crash only rows so marked are in doubt. False when it could not be
        written or the claim is no longer ours; then the request is not made."""
        try:
            return bool(await OutboundMessage.filter(id=row.id, claimed_by=row.claimed_by).update(
                request_started=True))
        except Exception:  # noqa: BLE001 - a database blip: the row is released and tried again
            log.warning("could not mark outbound message %s as being sent; not sending it now", row.id, exc_info=True)
            return False

    async def next_due(self, lanes: Iterable[Lane] | None, now: datetime) -> datetime | None:
        query = OutboundMessage.filter(status=DeliveryStatus.PENDING.value, next_attempt_at__gt=now)
        held = OutboundMessage.filter(status=DeliveryStatus.SENDING.value, claimed_until__gte=now)
        if lanes is not None:
            lanes = list(lanes)
            if not lanes:
                return None
            in_lanes = Q(*[Q(platform=p, workspace_external_id=w) for p, w in lanes], join_type="OR")
            query, held = query.filter(in_lanes), held.filter(in_lanes)
        found = [*await query.order_by("next_attempt_at").limit(1).values_list("next_attempt_at", flat=True),
                 *await held.order_by("claimed_until").limit(1).values_list("claimed_until", flat=True)]
        return min(found) if found else None

    async def renew(self, token_prefix: str, until: datetime, exclude: Collection[int] = ()) -> None:
        """Extend the claims of rows held by the scheduler's tokens (the lane heartbeat), but
        not those of rows in `exclude` (outcomes that could not be written)."""
        await renew_claims("outbound_message", token_prefix, until, where=f"d.status='{DeliveryStatus.SENDING.value}'",
                           exclude_ids=exclude)

    async def _record_one(self, item: Claimed, outcome: Outcome | None, now: datetime) -> None:
        row = item.row
        outcome = outcome or Outcome.retry("no outcome recorded")
        if outcome.kind is OutcomeKind.DELIVERED and outcome.ref is not None:
            await self._settle(row, MessageResult(ResultKind.SENT, now, ref=outcome.ref, channels=self.channels),
                               now, outcome=outcome)
            return
        if outcome.kind is OutcomeKind.DEFERRED or outcome.throttled:
            # not attempted (the lane is paused), or a 429: "later", never "no", so no attempt counted
            await self._release(row, now, now + timedelta(seconds=outcome.retry_after or 1), row.attempts, outcome)
            return
        attempts = row.attempts + 1
        delay = self.retry.delay(attempts, retry_after=outcome.retry_after, key=row.id) \
            if outcome.kind is OutcomeKind.RETRY else None
        if delay is None:
            reason = outcome.reason or "unknown error"
            if outcome.kind is OutcomeKind.RETRY:
                reason = f"gave up after {attempts} attempts: {reason}"
            row.attempts = attempts
            await self._settle(row, MessageResult(ResultKind.FAILED, now, reason=reason, channels=self.channels),
                               now, outcome=outcome)
            return
        await self._release(row, now, now + timedelta(seconds=delay), attempts, outcome)

    async def _release(self, row: OutboundMessage, now: datetime, when: datetime, attempts: int,
                       outcome: Outcome) -> None:
        """Back to pending, due at `when` (a retry, or a lane paused before it was tried)."""
        async with in_transaction():
            await OutboundMessage.filter(id=row.id, claimed_by=row.claimed_by).update(
                status=DeliveryStatus.PENDING.value, next_attempt_at=when, attempts=attempts, claimed_by="",
                claimed_until=None, request_started=False, error=outcome.reason[:2000])
            await _cache_dm(row, outcome, now=now)

    async def _settle(self, row: OutboundMessage, result: MessageResult, now: datetime, *,
                      outcome: Outcome | None) -> int:
        ref = result.ref
        values: dict[str, Any] = dict(claimed_by="", claimed_until=None, attempts=row.attempts)
        if result.sent:
            values.update(status=DeliveryStatus.DELIVERED.value, channel_id=ref.channel_id,  # type: ignore[union-attr]
                          message_id=ref.message_id, sent_at=now, error="", attempts=row.attempts + 1)  # type: ignore[union-attr]
        elif result.kind is ResultKind.CANCELLED:
            values.update(status=DeliveryStatus.CANCELLED.value, error=result.reason[:2000])
        else:
            values.update(status=DeliveryStatus.FAILED.value, error=result.reason[:2000])
        async with in_transaction():
            moved = await OutboundMessage.filter(id=row.id, claimed_by=row.claimed_by).update(**values)
            if not moved:
                return 0  # our claim was taken over: the other worker records it
            if outcome is not None:
                await _cache_dm(row, outcome, now=now)
            hook = _hook(row.purpose)
            if hook is None:
                log.error("no completion hook for outbound messages of purpose %r (row %s)", row.purpose, row.id)
            else:
                await hook(row, result)
        return 1


async def _inactive_members(rows: Iterable[OutboundMessage]) -> set[int]:
    """The members among the rows' recipients who are no longer active."""
    ids = {row.member_id for row in rows if row.member_id is not None}  # type: ignore[attr-defined]
    if not ids:
        return set()
    return set(await Member.filter(id__in=list(ids), active=False).values_list("id", flat=True))


async def _cache_dm(row: OutboundMessage, outcome: Outcome, *, now: datetime) -> None:
    """Store a newly opened DM conversation on the member's account, with the service URL it was
    opened on (Teams): updates of the notices sent there later need it."""
    account_id = row.account_id  # type: ignore[attr-defined]
    if not outcome.dm_channel or account_id is None:
        return
    changed: dict[str, Any] = {"dm_channel": outcome.dm_channel}
    if outcome.service_url:
        changed["service_url"] = outcome.service_url
    await PlatformAccount.filter(id=account_id).exclude(**changed).update(**changed, updated_at=now)
