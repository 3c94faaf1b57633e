"""Reminders for unacknowledged must-know notices.

Each delivered original carries `next_reminder_at`. The planner (run by the scheduler on every
replica) turns due ones into reminder rows in the outbox, in the member's working hours, and
moves `next_reminder_at` on. A conditional update plus the outbox's unique key make a reminder
happen once however many replicas plan at the same moment.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

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
    Workspace,
)

log = logging.getLogger(__name__)

LIVE = [NoticeStatus.SENDING.value, NoticeStatus.SENT.value]
INACTIVE_LOOK_AGAIN = timedelta(hours=1)  # a member out of the directory: when to look at their reminder again
REMOVED_LOOK_AGAIN = timedelta(hours=1)  # a workspace Herald was removed from: when to look at its reminders again


def schedule_for(notice: Notice, catalog: TopicCatalog) -> ReminderSchedule:
    topic = catalog.topics.get(notice.topic)
    fallback = topic.reminders if topic else ReminderSchedule()
    try:
        return ReminderSchedule.parse(notice.reminder_hours, fallback)
    except (TypeError, ValueError):
        log.warning("notice %s has an unusable reminder override; using the topic's", notice.id)
        return fallback


async def plan_reminders(now: datetime, catalog: TopicCatalog, *, batch: int = 500) -> int:
    """Create the reminders that are due now. Returns how many were created."""
    due = await Delivery.filter(
        kind=DeliveryKind.NOTICE.value, status=DeliveryStatus.DELIVERED.value, next_reminder_at__lte=now,
    ).select_related("notice", "member__organisation").order_by("next_reminder_at").limit(batch)
    removed = await _removed_workspaces() if due else set()
    created = 0
    for original in due:
        created += await _plan_one(original, now, catalog, removed)
    return created


async def _removed_workspaces() -> set[tuple[str, str]]:
    """(platform, workspace) pairs Herald was removed from: their reminders could only fail."""
    return set(await Workspace.filter(active=False).values_list("platform", "external_id"))


async def _plan_one(original: Delivery, now: datetime, catalog: TopicCatalog,
                    removed: Collection[tuple[str, str]] = ()) -> int:
    notice: Notice = original.notice
    member = original.member
    organisation = member.organisation
    moved_from = original.next_reminder_at
    past_deadline = notice.deadline is not None and now >= notice.deadline  # escalation takes over
    if notice.status not in LIVE or past_deadline or await _acknowledged(notice, member.id):
        await _move(original, moved_from, None)
        return 0
    if not member.active:
        # left out of the directory: nothing is sent while they are out, but the reminder is kept
        # for when an import brings them back; look again hourly, as for a paused organisation
        await _move(original, moved_from, now + INACTIVE_LOOK_AGAIN)
        return 0
    if (original.platform, original.workspace_external_id) in removed:
        # Herald was removed from the member's workspace: a reminder row would only fail (and be
        # audited) at every slot. Look again hourly, so reminders resume once it is reconnected.
        await _move(original, moved_from, now + REMOVED_LOOK_AGAIN)
        return 0
    if is_paused(organisation, now):
        # no automated reminders until the CAM resumes or the pause runs out; look again hourly
        await _move(original, moved_from, organisation.paused_until or now + timedelta(hours=1))
        return 0
    working = next_working_moment(now, member.timezone, quiet_start=member.quiet_start_hour,
                                  quiet_end=member.quiet_end_hour)
    if working > now:
        await _move(original, moved_from, working)
        return 0
    number = original.reminders_sent + 1
    schedule = schedule_for(notice, catalog)
    following = schedule.due_at(original.delivered_at, number + 1, notice.deadline)
    if following is not None and following <= now:  # behind after a pause or quiet hours: space them out
        following = now + timedelta(hours=schedule.then_every_hours)
        if notice.deadline is not None and following >= notice.deadline:
            following = None
    try:
        async with in_transaction() as conn:
            moved = await Delivery.filter(id=original.id, next_reminder_at=moved_from,
                                          reminders_sent=original.reminders_sent).using_db(conn).update(
                next_reminder_at=following, reminders_sent=number)
            if not moved:
                return 0  # another replica planned it
            await Delivery.create(
                notice_id=notice.id, member_id=member.id, platform=original.platform, kind=DeliveryKind.REMINDER.value,
                sequence=number, account_id=original.account_id, workspace_external_id=original.workspace_external_id,  # type: ignore[attr-defined]
                status=DeliveryStatus.PENDING.value, next_attempt_at=now, created_at=now,
                    variant=original.variant, using_db=conn)
    except IntegrityError:
        return 0
    return 1


async def _move(original: Delivery, expected: datetime | None, to: datetime | None) -> None:
    await Delivery.filter(id=original.id, next_reminder_at=expected).update(next_reminder_at=to)


def is_paused(organisation: Organisation, now: datetime) -> bool:
    return organisation.paused_at is not None and (
        organisation.paused_until is None or organisation.paused_until > now)


async def _acknowledged(notice: Notice, member_id: int) -> bool:
    return await Acknowledgement.filter(notice_id=notice.id, member_id=member_id, revision=notice.ack_revision).exists()


REMIND_NOW_GAP = timedelta(minutes=15)


async def remind_now(notice: Notice, member_ids: list[int], *, now: datetime) -> int:
    """Queue an immediate reminder for each listed member who is still active and has not
    acknowledged (the CAM's **Remind now**); the regular schedule carries on afterwards.

    A member reminded of the notice within REMIND_NOW_GAP is left alone: a second press (a double
    click arrives as two requests, each signed) must not send everyone the same reminder twice."""
    created = 0
    originals = await Delivery.filter(notice_id=notice.id, member_id__in=member_ids, kind=DeliveryKind.NOTICE.value,
                                      status=DeliveryStatus.DELIVERED.value, member__active=True)
    recent = set(await Delivery.filter(
        notice_id=notice.id, member_id__in=member_ids, kind=DeliveryKind.REMINDER.value,
        created_at__gt=now - REMIND_NOW_GAP).exclude(status=DeliveryStatus.CANCELLED.value).values_list(
        "member_id", flat=True))
    for original in originals:
        if original.member_id in recent or await _acknowledged(notice, original.member_id):  # type: ignore[attr-defined]
            continue
        try:
            async with in_transaction() as conn:
                bumped = await Delivery.filter(id=original.id, reminders_sent=original.reminders_sent).using_db(conn).update(
                    reminders_sent=original.reminders_sent + 1)
                if not bumped:
                    continue
                await Delivery.create(
                    notice_id=notice.id, member_id=original.member_id, platform=original.platform,  # type: ignore[attr-defined]
                    kind=DeliveryKind.REMINDER.value, sequence=original.reminders_sent + 1,
                    account_id=original.account_id, workspace_external_id=original.workspace_external_id,  # type: ignore[attr-defined]
                    status=DeliveryStatus.PENDING.value, next_attempt_at=now, created_at=now,
                    variant=original.variant, using_db=conn)
            created += 1
        except IntegrityError:
            continue
    return created
