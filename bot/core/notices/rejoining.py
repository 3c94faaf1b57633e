"""A member the directory leaves out and then brings back gets what was still to be sent to them.

An import with `--deactivate-missing` cancels the copies still waiting for the members it leaves
out (`REMOVED_FROM_DIRECTORY`). When a later import brings a member back, their copies of notices
still live (being sent or sent: not retracted) go back to the outbox: a must-know recall must
still reach them, be reminded and, unacknowledged at its deadline, be named to the CAM. A copy
held back from an A/B test's first share is held again until the winner is rolled out (or goes
out with the winner if that happened meanwhile, marked `rolled_out` and audited like the rollout's). A deadline that has passed does not stop it:
the notice still asks for an acknowledgement, and the escalation's Remind now and the report
count the member again. The reminders of copies delivered before they left, which the planner
ended while they were out (`reminder.ended`), resume (`resume_reminders`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from bot.core.compliance.audit import PendingEvent, audit_event
from bot.core.directory.quiet_hours import quiet_hours_ends
from bot.core.notices.reminders import LEFT_DIRECTORY, REMINDER_ENDED, REMINDER_RESUMED
from bot.topics import parse_importance
from bot.topics.importance import Importance
from storage.models import (
    Acknowledgement,
    AuditEvent,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Notice,
    NoticeExperiment,
    NoticeStatus,
)

REMOVED_FROM_DIRECTORY = "removed from the partner directory"
_LIVE = (NoticeStatus.SENDING.value, NoticeStatus.SENT.value)
_CHUNK = 500


def _restorable(member_ids: Sequence[int]):  # noqa: ANN202
    return Delivery.filter(member_id__in=list(member_ids), kind=DeliveryKind.NOTICE.value,
                           status=DeliveryStatus.CANCELLED.value, error=REMOVED_FROM_DIRECTORY,
                           notice__status__in=_LIVE)


async def restorable_copies(member_ids: Sequence[int]) -> int:
    """How many copies `restore_copies` would put back for these members (a dry run's count)."""
    return sum([await _restorable(member_ids[start:start + _CHUNK]).count()
                for start in range(0, len(member_ids), _CHUNK)])


async def restore_copies(member_ids: Sequence[int], *, now: datetime, actor: str) -> list[PendingEvent]:
    """Put the copies the directory cancelled for these (now active again) members back in the
    outbox; one `delivery.restored` event per copy. Runs in the import's transaction."""
    rows: list[dict] = []
    for start in range(0, len(member_ids), _CHUNK):
        rows += await _restorable(member_ids[start:start + _CHUNK]).values(
            "id", "notice_id", "member_id", "platform", "variant")
    by_notice: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_notice[row["notice_id"]].append(row)
    events: list[PendingEvent] = []
    for notice_id, group in sorted(by_notice.items()):
        notice = await Notice.get(id=notice_id)
        states, winner = await _restore_notice(notice, group, now=now)
        events += [audit_event("delivery.restored", now=now, actor=actor, notice_id=notice_id,
                               member_id=row["member_id"], delivery_id=row["id"], platform=row["platform"],
                               status=states[row["id"]], reason="back in the partner directory")
                   for row in group]
        events += [audit_event("notice.variant_assigned", now=now, actor=actor, notice_id=notice_id, member_id=m,
                               variant=winner, held=False, rollout=True)
                   for m in sorted({row["member_id"] for row in group if winner and not row["variant"]})]
    return events


async def _restore_notice(notice: Notice, rows: list[dict], *, now: datetime) -> tuple[dict[int, str], str]:
    """One notice's restored rows, in a few bulk updates: delivery id -> the status it is back in,
    and the A/B winner the held-back rows among them go out with ("" if none was rolled out)."""
    experiment = await NoticeExperiment.get_or_none(notice_id=notice.id)
    winner = experiment.winner if experiment is not None else ""
    policy = parse_importance(notice.importance)
    member_ids = sorted({row["member_id"] for row in rows})
    ends = await quiet_hours_ends(member_ids, now) if policy.respects_quiet_hours else {}
    held: list[int] = []
    pending: dict[tuple[str, bool, datetime], list[int]] = defaultdict(list)  # (variant, rolled out, due) -> ids
    for row in rows:
        held_back = experiment is not None and not row["variant"]
        if held_back and not winner:
            held.append(row["id"])
        else:
            variant = winner if held_back else row["variant"]
            pending[(variant, held_back, ends.get(row["member_id"], now))].append(row["id"])
    for start in range(0, len(held), _CHUNK):
        await Delivery.filter(id__in=held[start:start + _CHUNK]).update(
            status=DeliveryStatus.HELD.value, error="", updated_at=now)
    for (variant, rolled_out, due), ids in pending.items():
        # a copy already rolled out before its member left keeps its mark (not written here)
        extra = {"rolled_out": True} if rolled_out else {}
        for start in range(0, len(ids), _CHUNK):
            await Delivery.filter(id__in=ids[start:start + _CHUNK]).update(
                status=DeliveryStatus.PENDING.value, error="", variant=variant, attempts=0, next_attempt_at=due, due_since=due,
                claimed_by="", claimed_until=None, updated_at=now, **extra)
    if pending and notice.status == NoticeStatus.SENT.value:
        await Notice.filter(id=notice.id, status=NoticeStatus.SENT.value).update(
            status=NoticeStatus.SENDING.value, completed_at=None)  # marked sent again once these are out
    states = {**{i: DeliveryStatus.HELD.value for i in held},
              **{i: DeliveryStatus.PENDING.value for ids in pending.values() for i in ids}}
    return states, winner


async def resume_reminders(member_ids: Sequence[int], *, now: datetime, actor: str) -> list[PendingEvent]:
    """The reminders the planner ended because these (now active again) members were out of the
    directory start again: their delivered originals of live notices, not acknowledged and before
    the deadline, are due for a reminder now (the planner puts it in the member's working hours);
    one `reminder.resumed` event each. Runs in the import's transaction."""
    events: list[PendingEvent] = []
    for start in range(0, len(member_ids), _CHUNK):
        events += await resume_ended_reminders(LEFT_DIRECTORY, now=now, actor=actor, why="back in the partner directory",
                                               member_id__in=list(member_ids[start:start + _CHUNK]))
    return events


async def resume_ended_reminders(ended: str, *, now: datetime, actor: str, why: str, at: datetime | None = None,
                                 **where: object) -> list[PendingEvent]:
    """The originals matching `where` (Delivery filters) whose reminders the planner last ended
    for the reason `ended` are due for a reminder now, or at `at` (the planner puts it in the
    member's working hours, and ends them again if something else still blocks them): one
    `reminder.resumed` event each, saying `why` (and `at`, if given). Runs in the caller's
    transaction (what ended the block)."""
    events: list[PendingEvent] = []
    due = at or now
    when = {"at": due} if at is not None else {}
    for row in await _ended_originals(ended, now, **where):
        if await Delivery.filter(id=row["id"], next_reminder_at__isnull=True).update(next_reminder_at=due):
            events.append(audit_event(REMINDER_RESUMED, now=now, actor=actor, notice_id=row["notice_id"],
                                      member_id=row["member_id"], platform=row["platform"], delivery_id=row["id"],
                                      reason=why, **when))
    return events


async def _ended_originals(ended: str, now: datetime, **where: object) -> list[dict]:
    """The delivered, unacknowledged originals (matching `where`) of live must-know notices whose
    reminders were last ended (not resumed since) for the reason `ended`."""
    rows = [r for r in await Delivery.filter(
        kind=DeliveryKind.NOTICE.value, status=DeliveryStatus.DELIVERED.value, next_reminder_at__isnull=True,
        notice__status__in=_LIVE, notice__importance=Importance.MUST.value, **where).values(
            "id", "notice_id", "member_id", "platform", "notice__deadline", "notice__ack_revision")
        if r["notice__deadline"] is None or r["notice__deadline"] > now]
    if not rows:
        return []
    notice_ids = sorted({r["notice_id"] for r in rows})
    member_ids = sorted({r["member_id"] for r in rows})
    last: dict[int, tuple[str, str]] = {}  # delivery id -> (kind, reason) of its latest event of the two
    for kind, data in await AuditEvent.filter(  # by notice first: the (notice_id, kind) index
            notice_id__in=notice_ids, kind__in=[REMINDER_ENDED, REMINDER_RESUMED], member_id__in=member_ids,
    ).order_by("id").values_list("kind", "data"):
        if isinstance(data, dict) and isinstance(data.get("delivery_id"), int):
            last[data["delivery_id"]] = (kind, str(data.get("reason", "")))
    acknowledged = set(await Acknowledgement.filter(notice_id__in=notice_ids, member_id__in=member_ids).values_list(
        "notice_id", "member_id", "revision"))
    return [r for r in rows if last.get(r["id"]) == (REMINDER_ENDED, ended)
            and (r["notice_id"], r["member_id"], r["notice__ack_revision"]) not in acknowledged]
