"""Hand-offs nobody answers: the CAM is reminded, and the partner told it is still with them.

A partner's question handed off with **Ask my CAM** waits in the CAM's `questions` list until
someone answers it. Once it has waited `HERALD_HANDOFF_REMIND_HOURS` (default 24; 0: never) after
its CAM got the hand-off in chat, the periodic tick queues that CAM a reminder: the partner, the
member, the question and how long they have waited, with **Reply** and the knowledge-base buttons,
as the hand-off has. It goes in the partner's working hours (weekdays 08:00-20:00 in the member's
time zone, where the CAM working with them is at work too). Once per question and CAM (the
outbox's unique key, written before anything is sent: a restart, another tick or another replica
queue nothing more); a hand-off moved to another CAM reminds that CAM once the same time has
passed since they got it.

When the reminder reaches the CAM, its completion hook queues the partner a note, once per
question, in their language and in the conversation they asked in, that their question is still
with the CAM, who has been reminded (held for the member's working hours like journey messages).

Both are looked at again when the outbox takes them: one whose question was answered meanwhile, or
(the reminder) moved to another CAM, or whose CAM may no longer answer partners, is cancelled with
why. Audited: `question.handoff_reminded` / `question.handoff_reminder_not_delivered`,
`question.handoff_waiting_told` / `question.handoff_waiting_not_delivered`.

A partner's pause does not hold either: it stops reminders to acknowledge notices, and this is the
partner's own question (escalations to the CAM are not paused either).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from bot.common.schedule import next_working_moment
from bot.core.compliance.audit import audit_event, record
from bot.core.delivery.messages import (
    ClaimVerdict,
    MessageResult,
    Target,
    enqueue,
    message_from_json,
    on_result,
    rendered_by,
    staff_target,
)
from bot.core.directory.permissions import may_act_as_cam
from bot.core.onboarding.assistant import handoff_buttons, handoff_message, question_locale
from bot.core.onboarding.phrases import phrase
from bot.core.ports import Channel, DirectMessage
from bot.topics import TopicCatalog
from storage import db as storage_db
from storage.models import MessagePurpose, OutboundMessage, PlatformAccount, Question, Staff

log = logging.getLogger(__name__)

# Open hand-offs of active members, handed off before the cut-off, whose CAM got the hand-off (the
# partner's request or the tick's announcement: delivered, or settled as failed) before it, and
# that this CAM has not been reminded of. `got_at`: when the CAM last got it.
_DUE_SQL = (
    "SELECT q.id, q.cam_id, q.handed_off_at, m.timezone, "
    "(SELECT MAX(COALESCE(h.sent_at, h.created_at)) FROM outbound_message h WHERE h.purpose = ? "
    "AND h.reference = q.id AND h.staff_id = q.cam_id AND h.status IN ('delivered', 'failed')) AS got_at "
    "FROM question q JOIN member m ON m.id = q.member_id "
    "WHERE q.handoff_status = 'open' AND q.cam_id IS NOT NULL AND m.active AND q.handed_off_at <= ? "
    "AND EXISTS (SELECT 1 FROM outbound_message h WHERE h.purpose = ? AND h.reference = q.id "
    "AND h.staff_id = q.cam_id AND h.status IN ('delivered', 'failed') AND COALESCE(h.sent_at, h.created_at) <= ?) "
    "AND NOT EXISTS (SELECT 1 FROM outbound_message o WHERE o.purpose = ? AND o.reference = q.id "
    "AND o.staff_id = q.cam_id) ORDER BY q.id")


async def remind_waiting_handoffs(channels: dict[str, Channel], now: datetime, *, after: timedelta) -> int:
    """Queue a reminder to the CAM of every open hand-off that has waited `after` since they got
    it (and the partner's working hours have come), once per question and CAM; returns how many."""
    if after <= timedelta(0):
        return 0
    cutoff = now - after
    handoff, reminder = MessagePurpose.HANDOFF.value, MessagePurpose.HANDOFF_REMINDER.value
    rows = await connections.get("default").execute_query_dict(
        storage_db.placeholders(_DUE_SQL), [handoff, cutoff, handoff, cutoff, reminder])
    due = [r for r in rows if next_working_moment(
        max(storage_db.as_datetime(r["handed_off_at"]), storage_db.as_datetime(r["got_at"])) + after,  # type: ignore[type-var, operator]
        r["timezone"]) <= now]
    if not due:
        return 0
    cams = {s.id: s for s in await Staff.filter(id__in=sorted({r["cam_id"] for r in due}))}
    queued = 0
    for row in due:
        cam = cams.get(row["cam_id"])
        if not may_act_as_cam(cam):
            continue  # `herald doctor` flags it; an admin answers it from the list
        target = await staff_target(cam, channels)  # type: ignore[arg-type]
        if target is None:
            continue  # no chat account any more: it is in their list and console page
        question = await Question.get(id=row["id"]).select_related("member__organisation")
        try:
            async with in_transaction() as conn:
                queued += await enqueue(key=f"{reminder}:{question.id}:{cam.id}",  # type: ignore[union-attr]
                                        purpose=MessagePurpose.HANDOFF_REMINDER, reference=question.id,
                                        target=target, message=reminder_message(question, now), now=now,
                                        staff_id=cam.id, using_db=conn)  # type: ignore[union-attr]
        except IntegrityError:  # another replica queued it at the same moment
            continue
    return queued


def waited(delta: timedelta) -> str:
    """How long a partner has waited, as a person says it: hours up to two days, then days."""
    hours = max(0, int(delta.total_seconds() // 3600))
    if hours < 48:
        return f"{hours} hour{'' if hours == 1 else 's'}"
    return f"{hours // 24} days"


def reminder_message(question: Question, now: datetime) -> DirectMessage:
    """The reminder as the CAM gets it: how long the partner has waited, then the hand-off (who
    asked, the question, what the knowledge base had) with its buttons. `question.member` and
    its organisation loaded."""
    handed = handoff_message(question)
    member = question.member
    since = storage_db.as_datetime(question.handed_off_at) or now
    return DirectMessage(
        title="A partner's question is still waiting for your answer",
        lines=(f"{member.name or member.email} has waited {waited(now - since)} for your answer "
               f"(asked {since:%Y-%m-%d %H:%M} UTC).", *handed.lines),
        buttons=handoff_buttons(question))


async def _nothing() -> None:
    return None


def _not_waiting(question: Question | None, staff_id: int | None) -> str:
    """Why a reminder for `question` to the CAM `staff_id` is no longer to be sent ("" if it is)."""
    if question is None:
        return "the question no longer exists"
    if not question.member.active:
        return "the member was removed from the partner directory"
    if question.handoff_status != "open":
        return "the question was answered before the reminder went"
    if question.cam_id != staff_id:  # type: ignore[attr-defined]
        cam = question.cam
        return f"the question is now with {cam.email if cam is not None else 'nobody'}"
    if not may_act_as_cam(question.cam):
        return "the CAM it is filed under may no longer answer partners"
    return ""


@rendered_by(MessagePurpose.HANDOFF_REMINDER)
async def _reminder_now(message: OutboundMessage, catalog: TopicCatalog, now: datetime) -> ClaimVerdict | None:
    """When the outbox takes the reminder: cancelled if nobody waits for its CAM's answer any more
    (answered, moved to another CAM, who is reminded in their turn); else with the wait as of now."""
    question = await Question.get_or_none(id=message.reference).select_related("member__organisation", "cam")
    why = _not_waiting(question, message.staff_id)  # type: ignore[attr-defined]
    if why:
        return ClaimVerdict.rerender(None, _nothing, reason=why)
    fresh = reminder_message(question, now)  # type: ignore[arg-type]
    return None if fresh == message_from_json(message.message) else ClaimVerdict.rerender(fresh, _nothing)


def waiting_note(question: Question, cam: Staff) -> DirectMessage:
    """The partner's note, in the language of the answer to their question."""
    locale, name = question_locale(question), cam.name or cam.email
    return DirectMessage(title=phrase("handoff_waiting_title", locale, name=name),
                         lines=(phrase("you_asked", locale, question=question.text),
                                phrase("handoff_waiting", locale, name=name)))


@rendered_by(MessagePurpose.HANDOFF_WAITING)
async def _note_now(message: OutboundMessage, catalog: TopicCatalog, now: datetime) -> ClaimVerdict | None:
    """When the outbox takes the partner's note (held for their hours, perhaps): cancelled if the
    question was answered meanwhile; naming the CAM it is with now."""
    question = await Question.get_or_none(id=message.reference).select_related("member", "cam")
    if question is None or question.handoff_status != "open" or question.cam is None:
        return ClaimVerdict.rerender(None, _nothing, reason="the question was answered before the note went")
    fresh = waiting_note(question, question.cam)
    return None if fresh == message_from_json(message.message) else ClaimVerdict.rerender(fresh, _nothing)


@on_result(MessagePurpose.HANDOFF_REMINDER)
async def _reminder_result(message: OutboundMessage, result: MessageResult) -> None:
    """Reminded: audited, and the partner's note queued (once per question) in this transaction."""
    question = await Question.get_or_none(id=message.reference).select_related("member__organisation", "cam")
    if question is None:
        return
    cam = await Staff.get_or_none(id=message.staff_id) if message.staff_id else None  # type: ignore[attr-defined]
    if not result.sent:
        log.info("reminder of hand-off %s not delivered: %s", question.id, result.reason)
        await record([audit_event("question.handoff_reminder_not_delivered", now=result.now,
                                  member_id=question.member_id, question_id=question.id,  # type: ignore[attr-defined]
                                  cam=cam.email if cam else None, reason=result.reason)])
        return
    since = storage_db.as_datetime(question.handed_off_at) or result.now
    await record([audit_event("question.handoff_reminded", now=result.now, member_id=question.member_id,  # type: ignore[attr-defined]
                              question_id=question.id, cam=cam.email if cam else None,
                              waited_hours=round((result.now - since).total_seconds() / 3600, 1))])
    if cam is None or not question.member.active:
        return
    account = await PlatformAccount.filter(member_id=question.member_id, platform=question.platform).first()  # type: ignore[attr-defined]
    if account is None:
        return  # the partner's chat account is gone: nowhere to tell them
    target = Target.of_account(account, dm_channel=question.channel_id, thread_id=question.thread_id)
    await enqueue(key=f"{MessagePurpose.HANDOFF_WAITING.value}:{question.id}", purpose=MessagePurpose.HANDOFF_WAITING,
                  reference=question.id, target=target, message=waiting_note(question, cam), now=result.now,
                  member_id=question.member_id)  # type: ignore[attr-defined]


@on_result(MessagePurpose.HANDOFF_WAITING)
async def _note_result(message: OutboundMessage, result: MessageResult) -> None:
    question = await Question.get_or_none(id=message.reference).select_related("cam")
    if question is None:
        return
    cam = question.cam
    if result.sent:
        await record([audit_event("question.handoff_waiting_told", now=result.now, member_id=question.member_id,  # type: ignore[attr-defined]
                                  question_id=question.id, cam=cam.email if cam else None)])
        return
    log.info("note that question %s is still with its CAM not delivered: %s", question.id, result.reason)
    await record([audit_event("question.handoff_waiting_not_delivered", now=result.now,
                              member_id=question.member_id, question_id=question.id,  # type: ignore[attr-defined]
                              reason=result.reason)])
