"""Escalation: when a must-know notice's deadline passes, each organisation's CAM gets one DM
listing that organisation's members who have not acknowledged.

Planning (deciding who is told about whom) and sending are separate steps with the intent in
between stored as `Escalation` rows, so a crash between them loses nothing. Sending queues the DM
in the outbox (bot.core.delivery.messages): it goes out in the CAM's workspace lane under the
platform's limits, ahead of journey steps and digests, at most once.

Whom it is for is decided again when the outbox takes the DM (`_escalation_addressee`): the
partner's CAM may have changed (an import, `herald staff remove`) while it waited. It then goes to
whoever the rule names now (the CAM, else the notice's author if a CAM or admin:
`escalation_addressee`), or fails with the reason if nobody, audited `escalation.readdressed`
(the re-addressing itself is the outbox's, `messages.staff_addressee`).

An escalation the partner's CAM cannot receive (no Slack or Teams account on file, or the platform
refused it) goes once to the notice's author instead, if they are another person who may act on it
(an active CAM or admin) and Herald reaches them: the same message, opening with whom it could not
reach and why (`_fall_back_to_author`, purpose `escalation_fallback`). The escalation itself stays
failed (the partner's CAM was not told); its `escalation.failed` event names whom it fell back to,
and `escalation.fallback_delivered` / `escalation.fallback_failed` record how that went. One that
reached nobody is named by `herald doctor` (`unreached_escalations`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.core.compliance.audit import audit_event, record
from bot.core.compliance.crosscheck import members_digest
from bot.core.directory.permissions import may_act_as_cam, may_act_for_partner
from bot.core.directory.staff import cam_for_organisation
from bot.core.notices.reminders import REMIND_NOW_GAP, is_paused, remind_now_counted
from bot.core.notices.views import format_time
from bot.core.delivery.messages import (
    ClaimVerdict,
    MessageResult,
    ResultKind,
    addressed_by,
    enqueue,
    on_result,
    staff_addressee,
    staff_target,
)
from bot.core.ports import Button, Channel, DirectMessage
from storage import db as storage_db
from storage.models import (
    Acknowledgement,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Escalation,
    MessagePurpose,
    Notice,
    NoticeRevision,
    NoticeStatus,
    Organisation,
    OutboundMessage,
    Staff,
)

log = logging.getLogger(__name__)

REMIND_NOW_ACTION = "herald_remind_now"
OPEN_REPORT_ACTION = "herald_open_report"
_LISTED = 40  # members named in one message; the report has the rest
NOBODY_TO_ESCALATE_TO = ("no CAM on file who may act on it, and the notice's author is not an active CAM or admin "
                         "(or it has none)")
NO_CHAT_ACCOUNT = "the escalation recipient has no Slack or Teams account on file"


_ESCALATED_STATUSES = [NoticeStatus.SENDING.value, NoticeStatus.SENT.value]  # a notice still out


async def plan_escalations(now: datetime) -> int:
    """Create escalation rows for notices whose deadline has passed. Returns rows created."""
    due = await Notice.filter(importance="must-know", deadline__lte=now, escalated_at__isnull=True,
                              status__in=_ESCALATED_STATUSES)
    created = 0
    for notice in due:
        created += await _escalate(notice, now)
    return created


async def unacknowledged_by_organisation(notice: Notice, *, organisation_id: int | None = None) -> dict[int, list[int]]:
    """organisation id -> active member ids who received the notice (or were meant to: a copy that
    failed counts) and have not acknowledged. Copies cancelled or held back from an A/B test's
    first share do not count, nor do members the directory has since deactivated.
    `organisation_id`: that organisation's only (Remind now), read as such."""
    acks = Acknowledgement.filter(notice_id=notice.id, revision=notice.ack_revision)
    copies = Delivery.filter(notice_id=notice.id, kind=DeliveryKind.NOTICE.value, member__active=True).exclude(
        status__in=[DeliveryStatus.CANCELLED.value, DeliveryStatus.HELD.value])
    if organisation_id is not None:
        acks = acks.filter(member__organisation_id=organisation_id)
        copies = copies.filter(member__organisation_id=organisation_id)
    acked = set(await acks.values_list("member_id", flat=True))
    missing: dict[int, dict[int, None]] = defaultdict(dict)  # an ordered set per organisation
    for member_id, org_id in await copies.values_list("member_id", "member__organisation_id"):
        if member_id not in acked:
            missing[org_id][member_id] = None
    return {org: list(members) for org, members in missing.items()}


async def not_asked_again(notice: Notice) -> set[int]:
    """Members who acknowledged an earlier wording of the notice, and whom nothing asked to
    acknowledge the current one before its deadline: no reminder created after the material edit
    that superseded their acknowledgement was delivered to them by then (the edit came too close to
    the deadline for their working hours, or after it). Their in-place updated message notified
    nobody, so the escalation does not name them as not having acknowledged."""
    if notice.ack_revision <= 1 or notice.deadline is None:
        return set()
    latest: dict[int, int] = {}
    for member_id, revision in await Acknowledgement.filter(notice_id=notice.id).values_list("member_id", "revision"):
        latest[member_id] = max(latest.get(member_id, 0), revision)
    earlier = {m: r for m, r in latest.items() if r < notice.ack_revision}
    if not earlier:
        return set()
    material = sorted(await NoticeRevision.filter(notice_id=notice.id, material=True).values_list(
        "revision", "edited_at"))

    def superseded_at(revision: int) -> datetime | None:  # the edit that asked again after `revision`
        return next((at for number, at in material if number > revision), None)
    asked = {member_id for member_id, created_at in await Delivery.filter(
        notice_id=notice.id, kind=DeliveryKind.REMINDER.value, status=DeliveryStatus.DELIVERED.value,
        delivered_at__lte=notice.deadline).values_list("member_id", "created_at")
        if member_id in earlier and (edited := superseded_at(earlier[member_id])) is not None and created_at >= edited}
    return set(earlier) - asked


async def _escalate(notice: Notice, now: datetime) -> int:
    missing = await unacknowledged_by_organisation(notice)
    if not_asked := await not_asked_again(notice):
        missing = {org: kept for org, members in missing.items()
                   if (kept := [m for m in members if m not in not_asked])}
    organisations = {o.id: o for o in await Organisation.filter(id__in=list(missing))}
    author = await Staff.get_or_none(id=notice.author_id) if notice.author_id else None  # type: ignore[attr-defined]
    async with in_transaction() as conn:
        # the status again in the claim: a notice retracted since it was read is not escalated
        claimed = await Notice.filter(id=notice.id, escalated_at__isnull=True, status__in=_ESCALATED_STATUSES).using_db(
            conn).update(escalated_at=now)
        if not claimed:
            return 0  # another replica escalated it, or it was retracted meanwhile
        rows, events = [], []
        for org_id, member_ids in missing.items():
            organisation = organisations[org_id]
            staff = await escalation_addressee(organisation, author)
            row = Escalation(notice_id=notice.id, organisation_id=org_id, staff=staff, member_ids=member_ids,
                             created_at=now)
            if staff is None:
                row.status, row.error = DeliveryStatus.FAILED.value, NOBODY_TO_ESCALATE_TO
            rows.append(row)
            events.append(audit_event("notice.escalated", now=now, notice_id=notice.id, organisation=organisation.external_id,
                                      escalated_to=staff.email if staff else None, unacknowledged=len(member_ids),
                                      members_sha256=members_digest(member_ids)))
        await Escalation.bulk_create(rows, using_db=conn)
        await record(events, using_db=conn)
    return len(rows)


async def escalation_addressee(organisation: Organisation, author: Staff | None) -> Staff | None:
    """Who is told about the organisation's members: its CAM (active, a CAM or admin), else the
    notice's author if they are an active CAM or admin; None when neither."""
    return await cam_for_organisation(organisation) or (author if may_act_as_cam(author) else None)


def due_escalations(now: datetime, batch: int) -> QuerySet[Escalation]:
    """The next `batch` escalations to send, oldest first. Read every tick on every replica over a
    table that keeps every escalation: the index on (status, claimed_until) serves it (migration
    0030), not a read of the whole table. "sending" with a claim that ran out: a row claimed for a
    direct send before the upgrade to the outbox."""
    pending = Q(status=DeliveryStatus.PENDING.value) & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
    stranded = Q(status=DeliveryStatus.SENDING.value, claimed_until__lt=now)
    return Escalation.filter(pending | stranded).order_by("id").limit(batch)


async def send_escalations(channels: dict[str, Channel], now: datetime, *, batch: int = 50) -> int:
    """Queue pending escalation DMs in the outbox, each in the transaction that claims its row
    (pending -> sending); `_escalation_result` records the outcome. Returns rows handled."""
    handled = 0
    for row in await due_escalations(now, batch).select_related("notice", "organisation", "staff"):
        if await OutboundMessage.filter(key=_key(row)).exists():
            continue  # already with the outbox
        target = await staff_target(row.staff, channels) if row.staff is not None else None
        same_claim = {"claimed_until__isnull": True} if row.claimed_until is None else {"claimed_until": row.claimed_until}
        async with in_transaction() as conn:
            claimed = await Escalation.filter(id=row.id, status=row.status, attempts=row.attempts, **same_claim).using_db(
                conn).update(status=DeliveryStatus.SENDING.value, claimed_until=None, attempts=row.attempts + 1)
            if claimed and target is not None:
                await enqueue(key=_key(row), purpose=MessagePurpose.ESCALATION, reference=row.id,
                              target=target, message=await escalation_message(row, now=now),
                              now=now, staff_id=row.staff.id, using_db=conn)  # type: ignore[union-attr]
        if claimed and target is None:
            await _finish(row, now, failed=NO_CHAT_ACCOUNT, channels=channels)
        handled += bool(claimed)
    return handled


def _key(row: Escalation) -> str:
    return f"{MessagePurpose.ESCALATION.value}:{row.id}"


async def cancel_escalations(notice_id: int, reason: str, *, conn: Any) -> int:
    """Cancel the notice's escalations not sent yet (its retraction: nothing more goes out about
    it), in the caller's transaction: those still to be queued, and those whose DM waits in the
    outbox (the DM too). A DM the outbox has taken already goes, and its row records how it went.
    Rows still to be queued first: one being queued meanwhile is then waited for, and its DM is
    found pending by the next statement. Returns the escalations cancelled."""
    error = reason[:2000]
    mine = Escalation.filter(notice_id=notice_id)
    await OutboundMessage.filter(  # one to the notice's author not taken by the outbox yet stops too
        purpose=MessagePurpose.ESCALATION_FALLBACK.value, status=DeliveryStatus.PENDING.value,
        reference__in=Subquery(mine.values("id"))).using_db(conn).update(
        status=DeliveryStatus.CANCELLED.value, error=error, claimed_by="", claimed_until=None)
    cancelled = await mine.filter(status=DeliveryStatus.PENDING.value).using_db(conn).update(
        status=DeliveryStatus.CANCELLED.value, error=error, claimed_until=None)
    queued = await mine.filter(status=DeliveryStatus.SENDING.value).using_db(conn).values_list("id", flat=True)
    if not queued:
        return cancelled
    messages = OutboundMessage.filter(purpose=MessagePurpose.ESCALATION.value, reference__in=list(queued))
    await messages.filter(status=DeliveryStatus.PENDING.value).using_db(conn).update(
        status=DeliveryStatus.CANCELLED.value, error=error, claimed_by="", claimed_until=None)
    stopped = await messages.filter(status=DeliveryStatus.CANCELLED.value).using_db(conn).values_list(
        "reference", flat=True)
    return cancelled + await Escalation.filter(id__in=list(stopped), status=DeliveryStatus.SENDING.value).using_db(
        conn).update(status=DeliveryStatus.CANCELLED.value, error=error, claimed_until=None)


@addressed_by(MessagePurpose.ESCALATION)
async def _escalation_addressee(message: OutboundMessage, channels: dict[str, Channel],
                                now: datetime) -> ClaimVerdict | None:
    """When the outbox takes an escalation DM: None if it is still for the person it was queued for,
    else where it goes now (the addressee rule applied again), or why it cannot go."""
    row = await Escalation.get_or_none(id=message.reference).select_related("notice", "organisation", "staff")
    if row is None:
        return None
    author = await Staff.get_or_none(id=row.notice.author_id) if row.notice.author_id else None  # type: ignore[attr-defined]
    now_for = await staff_addressee(message, await escalation_addressee(row.organisation, author), channels,
                                    nobody=NOBODY_TO_ESCALATE_TO, no_account=NO_CHAT_ACCOUNT)
    if now_for is None:
        return None
    staff, before = now_for.staff, now_for.before

    async def record_it() -> None:
        await Escalation.filter(id=row.id).update(staff_id=staff.id if staff is not None else None)
        await record([audit_event("escalation.readdressed", now=now, notice_id=row.notice_id,
                                  organisation=row.organisation.external_id,
                                  from_staff=before.email if before is not None else None,
                                  escalated_to=staff.email if staff is not None else None,
                                  reason=now_for.why("the partner's CAM changed or is no longer active staff"))])
    return now_for.readdress(record_it)


@on_result(MessagePurpose.ESCALATION)
async def _escalation_result(message: OutboundMessage, result: MessageResult) -> None:
    """The outbox's outcome for an escalation DM: the row and its audit event, as before."""
    row = await Escalation.get_or_none(id=message.reference).select_related("notice", "organisation", "staff")
    if row is None:
        return
    if result.sent and result.ref is not None:
        await _finish(row, result.now, ref=(result.ref.channel_id, result.ref.message_id))
    else:  # refused or given up (not one interrupted, which may have arrived): the author is told instead
        await _finish(row, result.now, failed=result.reason,
                      channels=result.channels if result.kind is ResultKind.FAILED else None)


async def _finish(row: Escalation, now: datetime, *, ref: tuple[str, str] | None = None, failed: str = "",
                  channels: dict[str, Channel] | None = None) -> None:
    """Record the escalation's outcome. A failure with `channels` (the partner's CAM could not be
    reached) falls back to the notice's author, queued in the same transaction."""
    async with in_transaction() as conn:
        fallback_to = None
        if ref is None and channels is not None:
            fallback_to = await _fall_back_to_author(row, failed, now, channels, using_db=conn)
        if ref is not None:
            await Escalation.filter(id=row.id).using_db(conn).update(
                status=DeliveryStatus.DELIVERED.value, channel_id=ref[0], message_id=ref[1], sent_at=now,
                claimed_until=None, error="")
        else:
            await Escalation.filter(id=row.id).using_db(conn).update(
                status=DeliveryStatus.FAILED.value, error=failed, claimed_until=None)
        await record([audit_event("escalation.delivered" if ref else "escalation.failed", now=now,
                                  notice_id=row.notice_id, organisation=row.organisation.external_id,  # type: ignore[attr-defined]
                                  escalated_to=row.staff.email if row.staff else None, reason=failed or None,
                                  **({"fallback_to": fallback_to} if fallback_to else {}))],
                     using_db=conn)


def _fallback_key(row: Escalation) -> str:
    return f"{MessagePurpose.ESCALATION_FALLBACK.value}:{row.id}"


async def _fall_back_to_author(row: Escalation, reason: str, now: datetime, channels: dict[str, Channel], *,
                               using_db: Any) -> str | None:
    """Queue the escalation to the notice's author, once, when they are not whom it failed to
    reach, may act on it (an active CAM or admin: Remind now is theirs) and have a chat account
    Herald reaches. Returns their email when queued, else None (nobody else to tell)."""
    author_id = row.notice.author_id  # type: ignore[attr-defined]
    if author_id is None or author_id == row.staff_id:  # type: ignore[attr-defined]
        return None
    author = await Staff.get_or_none(id=author_id)
    if not may_act_as_cam(author):
        return None
    target = await staff_target(author, channels)  # type: ignore[arg-type]
    if target is None:
        return None
    queued = await enqueue(key=_fallback_key(row), purpose=MessagePurpose.ESCALATION_FALLBACK, reference=row.id,
                           target=target, message=await fallback_message(row, reason, now=now), now=now,
                           staff_id=author.id, using_db=using_db)  # type: ignore[union-attr]
    return author.email if queued else None  # type: ignore[union-attr]


def _unreached_why(reason: str) -> str:
    if reason == NO_CHAT_ACCOUNT:
        return "they have no Slack or Teams account on file"
    return f"the message to them failed: {reason}" if reason else "the message to them failed"


async def fallback_message(row: Escalation, reason: str, *, now: datetime) -> DirectMessage:
    """The escalation as its partner's CAM would have had it, for the notice's author, opening with
    whom it could not reach and why."""
    escalation = await escalation_message(row, now=now)
    organisation: Organisation = row.organisation
    cam: Staff | None = row.staff
    who = (f"{organisation.name}'s CAM {cam.name or cam.email} <{cam.email}>" if cam is not None
           else f"{organisation.name}'s CAM")
    opening = (f"{who} could not be reached ({_unreached_why(reason)}), so this escalation comes to you "
               "as the notice's author.")
    return DirectMessage(title=escalation.title, lines=(opening, *escalation.lines), buttons=escalation.buttons)


AUTHOR_NO_LONGER_CAM = "the notice's author is no longer an active CAM or admin"


@addressed_by(MessagePurpose.ESCALATION_FALLBACK)
async def _fallback_addressee(message: OutboundMessage, channels: dict[str, Channel],
                              now: datetime) -> ClaimVerdict | None:
    """When the outbox takes the escalation sent to the notice's author instead: still theirs
    while they may act on it (an active CAM or admin, as when it was queued); else it fails, and
    `herald doctor` names the escalation as having told nobody. It is never passed on to someone
    else: the partner's CAM was not reachable, and the author was the one other person to tell."""
    author = await Staff.get_or_none(id=message.staff_id) if message.staff_id else None  # type: ignore[attr-defined]
    if may_act_as_cam(author):
        return None

    async def nothing_more() -> None:  # the outcome's hook records `escalation.fallback_failed`
        return None
    return ClaimVerdict.readdress(None, None, AUTHOR_NO_LONGER_CAM, nothing_more)


@on_result(MessagePurpose.ESCALATION_FALLBACK)
async def _fallback_result(message: OutboundMessage, result: MessageResult) -> None:
    """How the escalation sent to the notice's author went, on the audit trail."""
    row = await Escalation.get_or_none(id=message.reference).select_related("organisation")
    if row is None:
        return
    author = await Staff.get_or_none(id=message.staff_id) if message.staff_id else None  # type: ignore[attr-defined]
    await record([audit_event("escalation.fallback_delivered" if result.sent else "escalation.fallback_failed",
                              now=result.now, notice_id=row.notice_id, organisation=row.organisation.external_id,
                              escalated_to=author.email if author is not None else None,
                              reason=None if result.sent else result.reason or None)])


UNREACHED_WINDOW = timedelta(days=30)  # how far back `herald doctor` looks for escalations that told nobody


@dataclass(frozen=True)
class Unreached:
    """An escalation that told nobody: its CAM was not reached and nobody was told instead."""

    notice_id: int
    organisation: str  # its name
    reason: str


async def unreached_escalations(now: datetime, *, since: timedelta = UNREACHED_WINDOW) -> list[Unreached]:
    """Failed escalations of notices still out, created within `since`, that did not fall back to
    the notice's author (none queued, or it failed too): nobody learnt who is overdue."""
    rows = await Escalation.filter(status=DeliveryStatus.FAILED.value, created_at__gte=now - since,
                                   notice__status__in=_ESCALATED_STATUSES).order_by("id").values_list(
        "id", "notice_id", "organisation__name", "error")
    if not rows:
        return []
    told = set(await OutboundMessage.filter(
        purpose=MessagePurpose.ESCALATION_FALLBACK.value, reference__in=[r[0] for r in rows],
        status__in=[DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value, DeliveryStatus.DELIVERED.value],
    ).values_list("reference", flat=True))
    return [Unreached(notice_id, name, error or "failed (no reason recorded)")
            for row_id, notice_id, name, error in rows if row_id not in told]


@dataclass(frozen=True)
class RemindedNow:
    """What a press of **Remind now** did, for the person who pressed it."""

    notice_id: int
    organisation: str  # its name
    queued: int  # reminders queued
    waiting: int  # active members who have not acknowledged
    unreached: int  # of them, never received the notice (every copy failed): nothing reaches them
    recently: int  # of them, left alone as reminded within the last REMIND_NOW_GAP

    def text(self) -> str:
        """One short paragraph: how many were queued and, when not everyone waiting, why not."""
        if self.waiting == 0:
            return (f"Nobody at {self.organisation} still has to acknowledge notice #{self.notice_id}: "
                    "no reminder was queued.")
        lines = [f"Queued {_count(self.queued, 'reminder')} for notice #{self.notice_id}." if self.queued
                 else f"No reminder was queued for notice #{self.notice_id}."]
        if self.recently:
            one = self.recently == 1
            lines.append(f"{_count(self.recently, 'member')} of {self.organisation} who {'has' if one else 'have'} "
                         f"not acknowledged {'was' if one else 'were'} reminded in the last "
                         f"{int(REMIND_NOW_GAP.total_seconds() // 60)} minutes and {'is' if one else 'are'} left alone.")
        if self.unreached:
            lines.append(f"{_count(self.unreached, 'member')} never received it (it could not be delivered): "
                         "a reminder cannot reach them.")
        return " ".join(lines)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


async def remind_organisation_now(notice_id: int, org_id: str, staff: Staff | None, *, now: datetime) -> int:
    """The escalation's **Remind now** (`remind_partner_now`): the reminders queued."""
    return (await remind_partner_now(notice_id, org_id, staff, now=now)).queued


async def remind_partner_now(notice_id: int, org_id: str, staff: Staff | None, *, now: datetime) -> RemindedNow:
    """The escalation's **Remind now**: an immediate reminder to every member of the organisation
    who has not acknowledged. Allowed for the organisation's CAM, the notice's author and admins,
    while they hold the cam or admin role (`permissions.may_act_for_partner`)."""
    notice = await Notice.get_or_none(id=notice_id)
    organisation = await Organisation.get_or_none(external_id=org_id)
    if notice is None or organisation is None:
        raise NotFound("that notice or organisation no longer exists")
    if not may_act_for_partner(staff, cam_email=organisation.cam_email,
                               owner_id=notice.author_id):  # type: ignore[attr-defined]
        raise PermissionDenied("Only the partner's CAM, the notice's author (a CAM) or an admin can send reminders.")
    if notice.status not in (NoticeStatus.SENDING.value, NoticeStatus.SENT.value):
        raise UserError(f"notice #{notice.id} is {notice.status}; there is nothing to remind about")
    missing = (await unacknowledged_by_organisation(notice, organisation_id=organisation.id)).get(organisation.id, [])
    queued, recently = await remind_now_counted(notice, missing, now=now)
    async with in_transaction() as conn:
        await record([audit_event("notice.remind_requested", now=now, actor=staff.email, notice_id=notice.id,  # type: ignore[union-attr]
                                  organisation=organisation.external_id, reminders=queued)], using_db=conn)
    unreached = len(await never_reached(notice.id, missing)) if queued + recently < len(missing) else 0
    return RemindedNow(notice.id, organisation.name, queued, len(missing), unreached, recently)


async def never_reached(notice_id: int, member_ids: list[int]) -> dict[int, str]:
    """member id -> why the notice never reached them: every copy of theirs failed (Herald was
    removed from their workspace, their account is gone, ...). Reminders cannot reach them either;
    the reason says what would (reconnecting Herald, fixing the directory)."""
    if not member_ids:
        return {}
    where, ids = storage_db.in_ids("member_id", member_ids)  # one parameter, however many members
    copies = await connections.get("default").execute_query_dict(storage_db.placeholders(
        f"SELECT member_id, status, error FROM delivery WHERE notice_id=? AND kind=? AND status NOT IN (?, ?) "
        f"AND {where} ORDER BY id"), [notice_id, DeliveryKind.NOTICE.value, DeliveryStatus.CANCELLED.value,
                                       DeliveryStatus.HELD.value, ids])
    reached, failed = set(), {}
    for member_id, status, error in ((r["member_id"], r["status"], r["error"]) for r in copies):
        if status == DeliveryStatus.FAILED.value:
            failed.setdefault(member_id, error or "could not be delivered")
        else:
            reached.add(member_id)
    return {member_id: reason for member_id, reason in failed.items() if member_id not in reached}


def _member_lines(members: list[dict], count: int, reasons: dict[int, str] | None = None) -> list[str]:
    """One line per listed member (at most _LISTED of `count`), with why when `reasons` say."""
    lines = [f"• {m['name'] or m['email']} <{m['email']}> ({m['role']})"
             + (f": {reasons[m['id']]}" if reasons else "") for m in members]
    if count > len(members):
        lines.append(f"… and {count - len(members)} more (see the report).")
    return lines


async def escalation_message(row: Escalation, *, now: datetime) -> DirectMessage:
    """The CAM's DM: who has not acknowledged, and, apart, who never received the notice (their
    copy failed) with why, since **Remind now** can do nothing for them; and the organisation's
    pause if it still holds its reminders back at `now` (not one that ran out)."""
    notice: Notice = row.notice
    organisation: Organisation = row.organisation
    members = list(row.member_ids)
    unreached = await never_reached(notice.id, members)
    pending_ids = [m for m in members if m not in unreached]
    pending, pending_count = await _listed_members(pending_ids)
    failed, failed_count = await _listed_members(list(unreached))
    lines = [
        f"The deadline of notice #{notice.id} \"{notice.title}\" passed at {format_time(notice.deadline)}"
        if notice.deadline else f"Notice #{notice.id} \"{notice.title}\" needs attention.",
    ]
    if pending_count or not failed_count:
        lines.append(f"{organisation.name} ({organisation.tier or 'no tier'}): {pending_count} "
                     f"member{'s have' if pending_count != 1 else ' has'} not acknowledged it:")
        lines += _member_lines(pending, pending_count)
    if failed_count:
        lines.append(f"{organisation.name}: {failed_count} member{'s' if failed_count != 1 else ''} never received "
                     "it (it could not be delivered; Remind now cannot reach them):")
        lines += _member_lines(failed, failed_count, unreached)
    if is_paused(organisation, now):
        lines.append(f"Automated reminders for {organisation.name} are paused: {organisation.pause_reason or 'no reason given'}.")
    value = f"{notice.id}:{organisation.external_id}"
    remind = (Button("Remind now", REMIND_NOW_ACTION, value, "primary"),) if pending_count else ()
    return DirectMessage(title=f"Escalation: {notice.title}"[:150], lines=tuple(lines),
                         buttons=(*remind, Button("Open report", OPEN_REPORT_ACTION, str(notice.id))))


async def _listed_members(member_ids: list[int]) -> tuple[list[dict], int]:
    """The first _LISTED of these members by name (id, name, email, role) and how many of them are
    still on file, read with the ids as one parameter (storage.db.in_ids): a large partner's
    unacknowledged members would pass asyncpg's 32,767 arguments, and only _LISTED are shown."""
    if not member_ids:
        return [], 0
    where, ids = storage_db.in_ids("id", member_ids)
    conn = connections.get("default")
    listed = await conn.execute_query_dict(storage_db.placeholders(
        f"SELECT id, name, email, role FROM member WHERE {where} ORDER BY name, email LIMIT ?"), [ids, _LISTED])
    counted = await conn.execute_query_dict(storage_db.placeholders(
        f"SELECT COUNT(*) AS n FROM member WHERE {where}"), [ids])
    return listed, int(counted[0]["n"])
