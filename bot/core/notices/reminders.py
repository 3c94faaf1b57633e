"""Reminders for unacknowledged must-know notices.

Each delivered original carries `next_reminder_at`. The planner (run by the scheduler on every
replica) turns due ones into reminder rows in the outbox, in the member's working hours, and
moves `next_reminder_at` on, a batch at a time in one transaction each: one read of the batch's
acknowledgements, one update, one insert. On PostgreSQL a batch's rows are locked (`SKIP
LOCKED`: replicas planning at once take different rows); the update moves only rows still as they
were read and the insert skips a reminder that exists, so a reminder happens once however many
replicas plan at the same moment.

A copy that cannot be reminded until something else changes is not looked at again every hour
for as long as the notice lives (each look wrote the row): its reminders end (`reminder.ended`,
audited with the reason) and what ends the block resumes them (`reminder.resumed`,
bot.core.notices.rejoining): a member out of the directory (deactivated by an import; an import
that brings them back), a workspace Herald was removed from (its reconnection), a member who
removed Herald in Teams (adding it again), an organisation paused until resumed (resuming it).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from bot.common.budget import TimeBudget
from bot.core.compliance.audit import audit_event, record
from bot.common.schedule import ReminderSchedule, next_working_moment
from bot.topics import TopicCatalog
from storage.models import (
    Acknowledgement,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Notice,
    NoticeStatus,
    Organisation,
    PlatformAccount,
    Workspace,
)
from storage import db as storage_db

log = logging.getLogger(__name__)

LIVE = [NoticeStatus.SENDING.value, NoticeStatus.SENT.value]
REMINDER_ENDED = "reminder.ended"  # an original's reminders stopped for good before the notice asked for none
REMINDER_RESUMED = "reminder.resumed"  # ... and started again (the member is back in the directory)
LEFT_DIRECTORY = "the member was removed from the partner directory"
WORKSPACE_REMOVED = "Herald was removed from the member's workspace; they resume when it is connected again"
TEAMS_APP_REMOVED = "the member removed Herald in Teams; they resume when they add it again"
PAUSED = "the organisation's reminders are paused until resumed; they resume with it"


def schedule_for(notice: Notice, catalog: TopicCatalog) -> ReminderSchedule:
    topic = catalog.topics.get(notice.topic)
    fallback = topic.reminders if topic else ReminderSchedule()
    try:
        return ReminderSchedule.parse(notice.reminder_hours, fallback)
    except (TypeError, ValueError):
        log.warning("notice %s has an unusable reminder override; using the topic's", notice.id)
        return fallback


async def plan_reminders(now: datetime, catalog: TopicCatalog, *, batch: int = 500,
                         budget: TimeBudget | None = None) -> int:
    """Create the reminders that are due now, a batch at a time until none are due or the tick's
    time budget is used (at least one batch a run). Returns how many were created."""
    budget = budget or TimeBudget()
    created = 0
    while True:
        taken, planned = await _plan_batch(now, catalog, batch)
        created += planned
        if taken < batch or budget.spent():
            return created


async def _plan_batch(now: datetime, catalog: TopicCatalog, size: int) -> tuple[int, int]:
    """In one transaction: up to `size` due originals, oldest due first (on PostgreSQL locked,
    skipping those another replica is planning), one read of their acknowledgements, every
    original moved on in one statement (only if still as read) and the reminders of those moved
    inserted together. Returns (originals taken, reminders created)."""
    async with in_transaction() as conn:
        locked = await storage_db.select_locked(
            "delivery", "id", "kind=? AND status=? AND next_reminder_at<=?",
            [DeliveryKind.NOTICE.value, DeliveryStatus.DELIVERED.value, now],
            order_by="next_reminder_at, id", limit=size, skip_locked=True, conn=conn)
        if not locked:
            return 0, 0
        due = await Delivery.filter(id__in=[r["id"] for r in locked]).select_related(
            "notice", "member__organisation").using_db(conn)
        acked = await _acknowledged_among(due, conn)
        removed = await _removed_workspaces(conn)
        app_removed = await _removed_accounts([d.account_id for d in due], conn)  # type: ignore[attr-defined]
        plans = [_plan_one(original, now, catalog, (original.notice.id, original.member.id) in acked, removed,
                           app_removed=original.account_id in app_removed)  # type: ignore[attr-defined]
                 for original in due]
        moved = await _move_all(plans, conn)
        reminders = [plan.reminder(now) for plan in plans if plan.remind and plan.original.id in moved]
        if reminders:  # a clash on the unique key: that reminder exists already
            await Delivery.bulk_create(reminders, ignore_conflicts=True, using_db=conn)
        await record([_ended_event(plan, now) for plan in plans if plan.ended and plan.original.id in moved],
                     using_db=conn)
    return len(locked), len(reminders)


def _ended_event(plan: _Plan, now: datetime):  # noqa: ANN202 - a PendingEvent
    original = plan.original
    return audit_event(REMINDER_ENDED, now=now, notice_id=original.notice.id, member_id=original.member.id,
                       platform=original.platform, delivery_id=original.id, reason=plan.ended,
                       reminders_sent=original.reminders_sent)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What becomes of one due original: its next reminder time, and whether a reminder goes now."""

    original: Delivery
    next_at: datetime | None
    remind: bool = False
    ended: str = ""  # why the original's reminders end although the notice still asks for them (audited)

    @property
    def reminders_sent(self) -> int:
        return self.original.reminders_sent + int(self.remind)

    def reminder(self, now: datetime) -> Delivery:
        original = self.original
        return Delivery(
            notice_id=original.notice_id, member_id=original.member_id, platform=original.platform,  # type: ignore[attr-defined]
            kind=DeliveryKind.REMINDER.value, sequence=self.reminders_sent, account_id=original.account_id,  # type: ignore[attr-defined]
            workspace_external_id=original.workspace_external_id, status=DeliveryStatus.PENDING.value,
            next_attempt_at=now, due_since=now, created_at=now, variant=original.variant)


async def _removed_workspaces(conn: BaseDBAsyncClient) -> set[tuple[str, str]]:
    """(platform, workspace) pairs Herald was removed from: their reminders could only fail."""
    return set(await Workspace.filter(active=False).using_db(conn).values_list("platform", "external_id"))


async def _removed_accounts(account_ids: list[int | None], conn: BaseDBAsyncClient) -> set[int]:
    """Those of the accounts whose member removed Herald (Teams: bot.core.directory.app_installs)."""
    ids = sorted({i for i in account_ids if i is not None})
    if not ids:
        return set()
    return set(await PlatformAccount.filter(id__in=ids, app_removed_at__isnull=False).using_db(conn).values_list(
        "id", flat=True))


def _plan_one(original: Delivery, now: datetime, catalog: TopicCatalog, acknowledged: bool,
              removed: Collection[tuple[str, str]] = (), *, app_removed: bool = False) -> _Plan:
    notice: Notice = original.notice
    member = original.member
    organisation = member.organisation
    past_deadline = notice.deadline is not None and now >= notice.deadline  # escalation takes over
    if notice.status not in LIVE or past_deadline or acknowledged:
        return _Plan(original, None)
    if not member.active:
        # left out of the directory: nothing is sent to them any more. Their reminders end here
        # (audited) rather than being looked at hourly for as long as the notice lives; an import
        # that brings them back resumes them (rejoining.resume_reminders).
        return _Plan(original, None, ended=LEFT_DIRECTORY)
    if (original.platform, original.workspace_external_id) in removed:
        # a reminder row would only fail (and be audited) at every slot: they wait for the
        # reconnection (workspaces.requeue_removed_copies resumes them)
        return _Plan(original, None, ended=WORKSPACE_REMOVED)
    if app_removed:
        return _Plan(original, None, ended=TEAMS_APP_REMOVED)  # app_installs.app_added resumes them
    if is_paused(organisation, now):
        # no automated reminders until the pause runs out, or the CAM resumes (pauses.resume_organisation)
        if organisation.paused_until is None:
            return _Plan(original, None, ended=PAUSED)
        return _Plan(original, organisation.paused_until)
    working = next_working_moment(now, member.timezone, quiet_start=member.quiet_start_hour,
                                  quiet_end=member.quiet_end_hour)
    if working > now:
        return _Plan(original, working)
    number = original.reminders_sent + 1
    schedule = schedule_for(notice, catalog)
    following = schedule.due_at(original.delivered_at, number + 1, notice.deadline)
    if following is not None and following <= now:  # behind after a pause or quiet hours: space them out
        following = now + timedelta(hours=schedule.then_every_hours)
        if notice.deadline is not None and following >= notice.deadline:
            following = None
    return _Plan(original, following, remind=True)


async def _acknowledged_among(originals: list[Delivery], conn: BaseDBAsyncClient) -> set[tuple[int, int]]:
    """(notice id, member id) of the originals whose member acknowledged the notice's current revision."""
    revision = {d.notice.id: d.notice.ack_revision for d in originals}
    rows = await Acknowledgement.filter(notice_id__in=list(revision), member_id__in=list({
        d.member.id for d in originals})).using_db(conn).values_list("notice_id", "member_id", "revision")
    return {(notice_id, member_id) for notice_id, member_id, rev in rows if revision.get(notice_id) == rev}


# PostgreSQL: every original of a batch moved on in one statement (storage.db.columns), only if it
# is still as it was read; the ids moved come back.
_MOVE_PG = (
    "UPDATE delivery d SET next_reminder_at=v.next_at, reminders_sent=v.sent "
    "FROM unnest($1::int[], $2::timestamptz[], $3::int[], $4::timestamptz[], $5::int[]) "
    "AS v(id, expected_at, expected_sent, next_at, sent) "
    "WHERE d.id=v.id AND d.next_reminder_at IS NOT DISTINCT FROM v.expected_at AND d.reminders_sent=v.expected_sent "
    "RETURNING d.id")


async def _move_all(plans: list[_Plan], conn: BaseDBAsyncClient) -> set[int]:
    """Move each original's next reminder on (and count the reminder going now) if the row is still
    as it was read: a replica that planned it meanwhile, a Remind now, or an acknowledgement that
    cleared it, wins. Returns the ids moved."""
    if not plans:
        return set()
    if storage_db.dialect() == "postgres":
        rows = [(p.original.id, p.original.next_reminder_at, p.original.reminders_sent, p.next_at, p.reminders_sent)
                for p in plans]
        return {r["id"] for r in await conn.execute_query_dict(_MOVE_PG, storage_db.columns(rows))}
    moved = set()
    for plan in plans:  # SQLite: one local statement each, in the batch's transaction
        original = plan.original
        if await Delivery.filter(id=original.id, next_reminder_at=original.next_reminder_at,
                                 reminders_sent=original.reminders_sent).using_db(conn).update(
                next_reminder_at=plan.next_at, reminders_sent=plan.reminders_sent):
            moved.add(original.id)
    return moved


def is_paused(organisation: Organisation, now: datetime) -> bool:
    return organisation.paused_at is not None and (
        organisation.paused_until is None or organisation.paused_until > now)


REMIND_NOW_GAP = timedelta(minutes=15)
_IDS_AT_ONCE = 5000  # member ids in one query: a large partner's would pass asyncpg's 32,767 arguments


async def remind_now(notice: Notice, member_ids: list[int], *, now: datetime) -> int:
    """Queue an immediate reminder for each listed member who is still active and has not
    acknowledged (the CAM's **Remind now**); the regular schedule carries on afterwards.

    A member reminded of the notice within REMIND_NOW_GAP is left alone: a second press (a double
    click arrives as two requests, each signed) must not send everyone the same reminder twice."""
    return (await remind_now_counted(notice, member_ids, now=now))[0]


async def remind_now_counted(notice: Notice, member_ids: list[int], *, now: datetime) -> tuple[int, int]:
    """`remind_now`, and how many of the members it left alone because they were reminded within
    REMIND_NOW_GAP (what the person who pressed it is told when it queues fewer than they expect)."""
    created = recently = 0
    for start in range(0, len(member_ids), _IDS_AT_ONCE):
        queued, recent = await _remind_some(notice, member_ids[start:start + _IDS_AT_ONCE], now=now)
        created, recently = created + queued, recently + recent
    return created, recently


async def _remind_some(notice: Notice, member_ids: list[int], *, now: datetime) -> tuple[int, int]:
    """One transaction: the listed members' originals, one read each of those just reminded and of
    those who acknowledged, the reminder counts raised in one statement (only where unchanged, so a
    concurrent press or the planner cannot remind twice) and the reminders inserted together.
    Returns the reminders queued, and the members left alone as reminded just now."""
    members, ids = storage_db.in_ids("member_id", member_ids)
    async with in_transaction() as conn:
        # locked in id order (PostgreSQL): two presses at once take turns instead of deadlocking
        locked = await storage_db.select_locked(
            "delivery", "id", f"notice_id=? AND kind=? AND status=? AND {members}",
            [notice.id, DeliveryKind.NOTICE.value, DeliveryStatus.DELIVERED.value, ids], conn=conn)
        originals = await Delivery.filter(id__in=[r["id"] for r in locked], member__active=True).using_db(conn)
        recent = set(await Delivery.filter(
            notice_id=notice.id, member_id__in=member_ids, kind=DeliveryKind.REMINDER.value,
            created_at__gt=now - REMIND_NOW_GAP).exclude(status=DeliveryStatus.CANCELLED.value).using_db(
            conn).values_list("member_id", flat=True))
        acked = set(await Acknowledgement.filter(notice_id=notice.id, member_id__in=member_ids,
                                                 revision=notice.ack_revision).using_db(conn).values_list(
            "member_id", flat=True))
        plans = [_Plan(original, original.next_reminder_at, remind=True) for original in originals
                 if original.member_id not in recent and original.member_id not in acked]  # type: ignore[attr-defined]
        return await _queue(plans, now, conn), len(recent - acked)


async def _queue(plans: list[_Plan], now: datetime, conn: BaseDBAsyncClient) -> int:
    """Move the planned originals on (only those still as read: see _move_all) and insert a
    reminder, due now, for each one moved. Returns the reminders queued."""
    moved = await _move_all(plans, conn)
    reminders = [plan.reminder(now) for plan in plans if plan.original.id in moved]
    if reminders:
        await Delivery.bulk_create(reminders, ignore_conflicts=True, using_db=conn)
    return len(reminders)


async def ask_again(notice: Notice, previous_ack_revision: int, catalog: TopicCatalog, *, now: datetime,
                    conn: BaseDBAsyncClient) -> int:
    """After a material edit of a must-know notice (in its transaction, the notice's ack revision
    already moved on): ask everyone to acknowledge the new wording. Returns the members' copies
    asked again at once.

    Those who had acknowledged the previous revision had no reminders left, and the in-place
    update of their message notifies nobody: each gets a reminder now (sent in their working
    hours, as Remind now's), whatever the deadline, then the schedule from the edit on. The others
    still owe an acknowledgement and keep being reminded: their schedule starts again from the
    edit, unless that leaves no reminder before the deadline (they keep the one they had)."""
    first = schedule_for(notice, catalog).due_at(now, 1, notice.deadline)
    acked = set(await Acknowledgement.filter(notice_id=notice.id, revision=previous_ack_revision).using_db(
        conn).values_list("member_id", flat=True))
    originals = Delivery.filter(notice_id=notice.id, kind=DeliveryKind.NOTICE.value,
                                status=DeliveryStatus.DELIVERED.value)
    if first is not None:
        await originals.exclude(member_id__in=acked).using_db(conn).update(next_reminder_at=first)
    if not acked:
        return 0
    # locked in id order (PostgreSQL), as Remind now's: a planner or a press at once takes turns
    members, ids = storage_db.in_ids("member_id", sorted(acked))
    locked = await storage_db.select_locked(
        "delivery", "id", f"notice_id=? AND kind=? AND status=? AND {members}",
        [notice.id, DeliveryKind.NOTICE.value, DeliveryStatus.DELIVERED.value, ids], conn=conn)
    again = await Delivery.filter(id__in=[r["id"] for r in locked], member__active=True).using_db(conn)
    return await _queue([_Plan(original, first, remind=True) for original in again], now, conn)
