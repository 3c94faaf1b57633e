"""Editing and retracting a notice after it went out.

Both write their intent with the state change: every delivered copy is flagged `update_pending`
in the same transaction, and the outbox pushes the new rendering to Slack/Teams.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.core.commands.parser import parse_link
from bot.core.compliance.audit import audit_event, record
from bot.core.compliance.crosscheck import text_digest
from bot.core.notices.escalations import cancel_escalations
from bot.core.notices.reminders import ask_again
from bot.core.notices.sending import MAX_BODY, MAX_TITLE
from bot.topics import TopicCatalog
from storage.models import (
    Delivery,
    DeliveryStatus,
    Notice,
    NoticeRevision,
    NoticeStatus,
    NoticeVariant,
    Staff,
    StaffRole,
    Survey,
)

EDITABLE = [NoticeStatus.SCHEDULED.value, NoticeStatus.SENDING.value, NoticeStatus.SENT.value]
_LIVE_COPIES = [DeliveryStatus.DELIVERED.value, DeliveryStatus.SENDING.value]


async def _flag_copies(notice: Notice, conn) -> int:  # noqa: ANN001
    """Flag the delivered messages that show this notice on their own for an in-place update.
    A nice-to-know notice only reaches people inside a digest, which lists many notices: that
    message is left as it was."""
    if notice.importance == "nice-to-know":
        return 0
    return await Delivery.filter(notice_id=notice.id, status__in=_LIVE_COPIES).using_db(conn).update(
        update_pending=True, update_seq=F("update_seq") + 1)


class AlreadyRetracted(UserError):
    """A retraction of a notice already retracted: nothing to do. Chat and the console show it as
    any refusal; `herald retract` run again (a retried script) reports it done, as `staff remove`
    does an inactive member."""

    def __init__(self, notice: Notice) -> None:
        super().__init__(f"notice #{notice.id} is retracted and cannot be retracted")
        self.notice = notice


@dataclass(frozen=True)
class EditResult:
    notice: Notice
    revision: NoticeRevision | None  # None: corrected before it went out (nothing was sent)
    copies_to_update: int
    reacknowledge: bool

    @property
    def summary(self) -> str:
        """What happened, after "Notice #N ": the same words on every surface."""
        if self.revision is None:
            return "was corrected before it went out: members will get the new text"
        copies = "copy" if self.copies_to_update == 1 else "copies"
        return f"is now revision {self.revision.revision}; updating {self.copies_to_update} delivered {copies}"


async def _authorised(notice_id: int, staff: Staff | None, operator: str) -> tuple[Notice, str]:
    notice = await Notice.get_or_none(id=notice_id)
    if notice is None:
        raise NotFound(f"notice {notice_id} does not exist")
    if operator:
        return notice, f"operator:{operator}"
    if staff is None or not staff.active or staff.role not in (StaffRole.CAM.value, StaffRole.ADMIN.value):
        raise PermissionDenied("Only the notice's author or an admin can change it.")
    if staff.role != StaffRole.ADMIN.value and notice.author_id != staff.id:  # type: ignore[attr-defined]
        raise PermissionDenied("Only the notice's author or an admin can change it.")
    return notice, staff.email


authorise_change = _authorised  # for other changes to a sent notice (A/B rollout, closing a survey)


async def _refuse_fixed_text(notice: Notice) -> None:
    """Surveys and A/B tests keep their text: answers and comparisons refer to what was sent."""
    if await Survey.filter(notice_id=notice.id).exists():
        raise UserError(f"survey #{notice.id} cannot be edited: the answers given refer to its question. "
                        "Retract it and send a new one.")
    if await NoticeVariant.filter(notice_id=notice.id).exists():
        raise UserError(f"notice #{notice.id} is an A/B test and its variants cannot be edited. "
                        "Retract it and send a corrected one.")


async def editable_notice(notice_id: int, staff: Staff | None) -> Notice:
    """The notice, if this person may edit it now (for opening an edit form)."""
    notice, _ = await _authorised(notice_id, staff, "")
    if notice.status not in EDITABLE:
        raise UserError(f"notice #{notice.id} is {notice.status} and cannot be edited")
    await _refuse_fixed_text(notice)
    return notice


def _diff(notice: Notice, title: str, body: str, link: str) -> str:
    before = [f"title: {notice.title}", *notice.body.splitlines(), f"link: {notice.link}"]
    after = [f"title: {title}", *body.splitlines(), f"link: {link}"]
    return "\n".join(difflib.unified_diff(before, after, f"revision {notice.revision}",
                                          f"revision {notice.revision + 1}", lineterm=""))


async def edit_notice(notice_id: int, staff: Staff | None, catalog: TopicCatalog, *, now: datetime,
                      title: str | None = None, body: str | None = None, link: str | None = None,
                      material: bool = False, operator: str = "") -> EditResult:
    """Record a new revision and flag every delivered copy for an in-place update. A material
    edit of a must-know notice asks everyone to acknowledge again (earlier acks are kept)."""
    notice, actor = await _authorised(notice_id, staff, operator)
    if notice.status not in EDITABLE:
        raise UserError(f"notice #{notice.id} is {notice.status} and cannot be edited")
    await _refuse_fixed_text(notice)
    new_title = (title if title is not None else notice.title).strip()
    new_body = (body if body is not None else notice.body).strip()
    new_link = parse_link(link) if link else ("" if link == "" else notice.link)
    if not new_title or not new_body:
        raise UserError("the title and the body cannot be empty")
    if len(new_title) > MAX_TITLE or len(new_body) > MAX_BODY:
        raise UserError(f"keep the title under {MAX_TITLE} and the body under {MAX_BODY} characters")
    diff = _diff(notice, new_title, new_body, new_link)
    if not diff:
        raise UserError("nothing changed")
    if notice.status == NoticeStatus.SCHEDULED.value:
        return await _correct_before_send(notice, actor, now, new_title, new_body, new_link, diff)
    reack = material and notice.importance == "must-know"
    async with in_transaction() as conn:
        changes = dict(title=new_title, body=new_body, link=new_link, revision=notice.revision + 1)
        if reack:
            changes["ack_revision"] = notice.revision + 1
        # conditional: of two edits at once (a double click, two tabs), the second finds the
        # revision moved on and is refused instead of failing on the revisions' unique key
        if not await Notice.filter(id=notice.id, revision=notice.revision, status__in=EDITABLE).using_db(
                conn).update(**changes):
            raise UserError(_CHANGED_MEANWHILE.format(id=notice.id))
        if not await NoticeRevision.filter(notice_id=notice.id).using_db(conn).exists():
            await NoticeRevision.create(  # keep the original wording: revision 1
                notice_id=notice.id, revision=1, title=notice.title, body=notice.body, link=notice.link,
                edited_by="", edited_at=notice.sent_at or notice.created_at, using_db=conn)
        revision = await NoticeRevision.create(
            notice_id=notice.id, revision=notice.revision + 1, title=new_title, body=new_body, link=new_link,
            material=material, edited_by=actor, edited_at=now, diff=diff, using_db=conn)
        flagged = await _flag_copies(notice, conn)
        asked = await ask_again(notice, notice.ack_revision, catalog, now=now, conn=conn) if reack else 0
        await record([audit_event("notice.edited", now=now, actor=actor, notice_id=notice.id,
                                  revision=revision.revision, material=material, reacknowledge=reack, diff=diff,
                                  copies=flagged, asked_again=asked,
                                  text_sha256=text_digest(new_title, new_body, new_link))],
                     using_db=conn)
    return EditResult(await Notice.get(id=notice.id), revision, flagged, reack)


_CHANGED_MEANWHILE = "notice #{id} changed meanwhile (another edit, or it went out); look at it again and retry"


async def _correct_before_send(notice: Notice, actor: str, now: datetime, title: str, body: str, link: str,
                               diff: str) -> EditResult:
    """A scheduled notice corrected before it goes out: nobody has it yet, so the text is replaced
    and stays revision 1 (members get the corrected text as the original, and acknowledge it as
    such); the audit trail keeps the change."""
    async with in_transaction() as conn:
        if not await Notice.filter(id=notice.id, revision=notice.revision,
                                   status=NoticeStatus.SCHEDULED.value).using_db(conn).update(
                title=title, body=body, link=link):
            raise UserError(_CHANGED_MEANWHILE.format(id=notice.id))
        await record([audit_event("notice.edited", now=now, actor=actor, notice_id=notice.id,
                                  revision=notice.revision, before_send=True, material=False, reacknowledge=False,
                                  diff=diff, copies=0, text_sha256=text_digest(title, body, link))], using_db=conn)
    return EditResult(await Notice.get(id=notice.id), None, 0, False)


async def retract_notice(notice_id: int, staff: Staff | None, *, reason: str, now: datetime,
                         operator: str = "") -> tuple[Notice, int, int]:
    """Withdraw a notice: copies become "Retracted: <reason>", nothing more is sent.

    Returns (notice, copies to update, deliveries and reminders cancelled).
    """
    notice, actor = await _authorised(notice_id, staff, operator)
    reason = reason.strip()
    if not reason:
        raise UserError("say why the notice is retracted: `retract <notice-id> <reason>`")
    if notice.status == NoticeStatus.RETRACTED.value:
        raise AlreadyRetracted(notice)
    if notice.status not in EDITABLE:
        raise UserError(f"notice #{notice.id} is {notice.status} and cannot be retracted")
    async with in_transaction() as conn:
        changed = await Notice.filter(id=notice.id, status__in=EDITABLE).using_db(conn).update(
            status=NoticeStatus.RETRACTED.value, retracted_at=now, retract_reason=reason[:500])
        if not changed:
            current = await Notice.get(id=notice.id).using_db(conn)
            if current.status == NoticeStatus.RETRACTED.value:  # by a concurrent retraction: a double click
                raise AlreadyRetracted(current)
            raise UserError(f"notice #{notice.id} changed meanwhile; try again")
        mine = Delivery.filter(notice_id=notice.id)
        cancelled = await mine.filter(status__in=[DeliveryStatus.PENDING.value, DeliveryStatus.HELD.value]).using_db(
            conn).update(
            status=DeliveryStatus.CANCELLED.value, error=f"retracted: {reason[:200]}")
        flagged = await _flag_copies(notice, conn)
        await mine.using_db(conn).update(next_reminder_at=None)
        escalations = await cancel_escalations(notice.id, f"retracted: {reason[:200]}", conn=conn)
        await record([audit_event("notice.retracted", now=now, actor=actor, notice_id=notice.id, reason=reason,
                                  copies=flagged, cancelled=cancelled, escalations_cancelled=escalations)],
                     using_db=conn)
    return await Notice.get(id=notice.id), flagged, cancelled
