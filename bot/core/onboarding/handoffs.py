"""Hand-offs, relayed answers and delayed assistant answers through the outbox
(bot.core.delivery.messages).

A partner's question passed to their CAM, and the CAM's answer relayed to the partner, are queued
in the transaction that records them and leave at once (the caller wakes the outbox), ahead of
journey steps and digests in the workspace's lane. The person who acted is told it is on its way;
what happens when it cannot be delivered:

* a hand-off: the question stays open in the CAM's `/herald questions` list and console page
  (where it also is when the CAM has no chat account), and the failure is audited;
* a relayed answer: the question goes back to open in the CAM's list, and the CAM gets a DM saying
  the partner did not get the answer and why (audited too).

A hand-off is for the CAM the question is filed under when the outbox takes it
(`_handoff_addressee`): open hand-offs follow the organisation's CAM
(bot.core.directory.handoff_owners), so one that waited while the directory named another CAM goes
to them, saying whom it was with, and one filed under someone who may no longer answer partners (a
CAM removed or made compliance officer, nobody else named) is not sent: it stays open for the
admins and `herald doctor` flags it (audited `question.handoff_readdressed`). Unlike an escalation
or the journey's note, it follows the question, not the directory: no fallback to anyone else.

The assistant's own answer is sent at once, while the partner waits; only when the platform
throttles that send (429) is it queued here, to leave within the workspace's limits.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.core.commands.parser import command_hint
from bot.core.compliance.audit import audit_event, record
from bot.core.delivery.messages import (
    ClaimVerdict,
    MessageResult,
    ResultKind,
    Target,
    addressed_by,
    enqueue,
    message_from_json,
    on_result,
    staff_addressee,
    staff_target,
)
from bot.core.directory.permissions import may_act_as_cam
from bot.core.ports import Channel, DirectMessage
from storage.models import DeliveryStatus, Member, MessagePurpose, OutboundMessage, PlatformAccount, Question, Staff

log = logging.getLogger(__name__)

# a relay that ended so never reached the partner: the same answer again is a new message
_NOT_SENT = (DeliveryStatus.FAILED.value, DeliveryStatus.CANCELLED.value)
NOBODY_TO_HAND_OFF_TO = ("the CAM the question is filed under may no longer answer partners (removed, or not a CAM "
                         "or admin) and the directory names nobody who may; it stays open for an admin")
NO_CAM_CHAT_ACCOUNT = "the CAM the question is filed under has no Slack or Teams account on file"


async def queue_handoff(question: Question, cam: Staff, message: DirectMessage, target: Target, *, now: datetime,
                        using_db: Any = None) -> bool:
    return await enqueue(key=f"{MessagePurpose.HANDOFF.value}:{question.id}", purpose=MessagePurpose.HANDOFF,
                         reference=question.id, target=target, message=message, now=now, staff_id=cam.id,
                         using_db=using_db)


async def queue_relay(question: Question, staff: Staff, account: PlatformAccount, relay: DirectMessage, text: str, *,
                      now: datetime, using_db: Any = None) -> bool:
    """The answer to the partner, in the conversation (and thread) they asked in. Keyed by the answer's text:
    a replayed submission is not relayed twice while the first is queued or was delivered (False);
    a different answer is a new message, and so is the same answer sent again after its relay
    failed (the CAM was told to reply again), under the key's next attempt number."""
    key = f"{MessagePurpose.RELAY.value}:{question.id}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    earlier = [status for found, status in await OutboundMessage.filter(
        purpose=MessagePurpose.RELAY.value, reference=question.id).using_db(using_db).values_list("key", "status")
        if found == key or found.startswith(f"{key}:")]
    if any(status not in _NOT_SENT for status in earlier):
        return False
    target = Target.of_account(account, dm_channel=question.channel_id, thread_id=question.thread_id)
    return await enqueue(key=f"{key}:{len(earlier) + 1}" if earlier else key, purpose=MessagePurpose.RELAY,
                         reference=question.id, target=target, message=relay, now=now,
                         member_id=question.member_id, staff_id=staff.id, using_db=using_db)  # type: ignore[attr-defined]


async def queue_answer(question: Question, target: Target, answer: DirectMessage, *, now: datetime) -> bool:
    """The assistant's answer to `question`, when the platform throttled sending it at once: the
    outbox sends it in the workspace's lane, within its limits."""
    return await enqueue(key=f"{MessagePurpose.ANSWER.value}:{question.id}", purpose=MessagePurpose.ANSWER,
                         reference=question.id, target=target, message=answer, now=now,
                         member_id=question.member_id)  # type: ignore[attr-defined]


@addressed_by(MessagePurpose.HANDOFF)
async def _handoff_addressee(message: OutboundMessage, channels: dict[str, Channel],
                             now: datetime) -> ClaimVerdict | None:
    """When the outbox takes a hand-off: None while it is for the CAM the question is filed under
    and they may answer partners; else it goes to the CAM it is filed under now (saying whom it
    was with), or fails with why: nobody who may answer it, they already have it, no chat account.
    The rule is the question's own (`Question.cam`, kept on the organisation's CAM by
    bot.core.directory.handoff_owners), with no fallback: an admin answers from the list."""
    question = await Question.get_or_none(id=message.reference).select_related("cam", "member__organisation")
    if question is None:
        return None
    filed = question.cam if may_act_as_cam(question.cam) else None
    now_for = await staff_addressee(message, filed, channels, nobody=NOBODY_TO_HAND_OFF_TO,
                                    no_account=NO_CAM_CHAT_ACCOUNT)
    if now_for is None:
        return None
    cam, before = now_for.staff, now_for.before
    if cam is not None and await OutboundMessage.filter(purpose=MessagePurpose.HANDOFF.value, reference=question.id,
                                                        staff_id=cam.id).exclude(id=message.id).exists():
        now_for = replace(now_for, target=None,  # the tick's announcement
                          reason=f"{cam.email} has been sent the hand-off already")

    async def record_it() -> None:
        await record([audit_event("question.handoff_readdressed", now=now, member_id=question.member_id,  # type: ignore[attr-defined]
                                  question_id=question.id, from_cam=before.email if before is not None else None,
                                  cam=cam.email if cam is not None else None,
                                  reason=now_for.why("the question is filed under another CAM, or its CAM may no "
                                                     "longer answer partners"))])
    handed_on = _handed_on(message, before, question) if now_for.target is not None else None
    return now_for.readdress(record_it, handed_on)


def _handed_on(message: OutboundMessage, before: Staff | None, question: Question) -> DirectMessage:
    """The queued hand-off, for the CAM the question moved to: whom it was with, as the tick's
    announcement of a moved hand-off says (bot.core.onboarding.handoff_announcements)."""
    queued = message_from_json(message.message)
    if before is None:
        return queued
    organisation = question.member.organisation
    return replace(queued, lines=(*queued.lines, f"It was with {before.email}; the directory now names you as "
                                                 f"{organisation.name}'s CAM."))


@on_result(MessagePurpose.ANSWER)
async def _answer_result(message: OutboundMessage, result: MessageResult) -> None:
    if result.sent and result.ref is not None:
        await Question.filter(id=message.reference).update(answer_message_id=result.ref.message_id)
    elif not result.sent:
        log.warning("the answer to question %s was not delivered: %s", message.reference, result.reason)


@on_result(MessagePurpose.HANDOFF)
async def _handoff_result(message: OutboundMessage, result: MessageResult) -> None:
    if result.sent:
        return
    question = await Question.get_or_none(id=message.reference)
    if question is None:
        return
    cam = await Staff.get_or_none(id=message.staff_id) if message.staff_id else None  # type: ignore[attr-defined]
    log.warning("hand-off of question %s not delivered: %s", question.id, result.reason)
    await record([audit_event("question.handoff_not_delivered", now=result.now, member_id=question.member_id,  # type: ignore[attr-defined]
                              question_id=question.id, cam=cam.email if cam else None,  # whom it was for
                              reason=result.reason)])


@on_result(MessagePurpose.RELAY)
async def _relay_result(message: OutboundMessage, result: MessageResult) -> None:
    if result.sent:
        return
    question = await Question.get_or_none(id=message.reference).select_related("member")
    staff = await Staff.get_or_none(id=message.staff_id) if message.staff_id else None  # type: ignore[attr-defined]
    if question is None:
        return
    log.warning("answer to question %s not delivered: %s", question.id, result.reason)
    await Question.filter(id=question.id, handoff_status="answered").update(handoff_status="open")
    await record([audit_event("question.reply_not_delivered", now=result.now, member_id=question.member_id,  # type: ignore[attr-defined]
                              question_id=question.id, actor=staff.email if staff else "", reason=result.reason)])
    target = await staff_target(staff, result.channels) if staff is not None else None
    if target is None:
        return  # the question is back in their console list
    await enqueue(key=f"{MessagePurpose.STAFF_NOTE.value}:{message.id}", purpose=MessagePurpose.STAFF_NOTE,
                  reference=message.id, target=target, message=_not_delivered(question, result, target.platform),
                  now=result.now,
                  staff_id=staff.id)  # type: ignore[union-attr]


def _not_delivered(question: Question, result: MessageResult, platform: str) -> DirectMessage:
    """The note to the CAM (on `platform`) whose answer did not reach the partner."""
    member: Member = question.member
    why = ("Herald stopped while sending it, so it may not have arrived" if result.kind is ResultKind.INTERRUPTED
           else result.reason or "the platform refused it")
    return DirectMessage(
        title="Your answer was not delivered"[:150],
        lines=(f"{member.name or member.email} <{member.email}> did not get your answer to \"{question.text[:200]}\": "
               f"{why}.",
               f"The question is back in your list ({command_hint(platform, 'questions')}); please reach them "
               "another way or reply again."))


@on_result(MessagePurpose.STAFF_NOTE)
async def _note_result(message: OutboundMessage, result: MessageResult) -> None:
    if not result.sent:
        log.warning("note to staff (outbound message %s) not delivered: %s", message.id, result.reason)
