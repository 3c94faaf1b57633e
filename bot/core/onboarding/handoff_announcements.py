"""Open hand-offs announced to the CAM they are filed under, when that CAM never got them.

A hand-off reaches its CAM as a chat message with **Reply** when the partner asks
(`assistant.hand_off`). A question can later be filed under a CAM who never got that message: the
directory names another CAM for the organisation (`bot.core.directory.handoff_owners` moves the
open hand-offs to them), or the CAM had no chat account when the partner asked and has connected
one since. The periodic tick sends each such CAM the hand-off, once per question and CAM (the
outbox's unique key; safe on every replica at once), through the outbox like every message, saying
whom it was with before. Until then the question is in their `questions` list and console page.
A hand-off message the platform refused (or gave up on) told nobody: it is sent again once the CAM
is reached on another account, once per account (the key names it), never again to the account
that refused it. One interrupted by a crash may have arrived and counts as told.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from bot.core.delivery.messages import INTERRUPTED, Target, enqueue, staff_target
from bot.core.onboarding.assistant import handoff_message
from bot.core.ports import Channel
from storage import db as storage_db
from storage.models import DeliveryStatus, MessagePurpose, OutboundMessage, Question, Staff


# The open questions whose CAM has had no hand-off message for them (the one sent when the partner
# asked, or an announcement): open hand-offs wait for a reply as long as it takes, so a year leaves
# many; each tick reads only the few due, probing the outbox's (purpose, reference) index per open
# question in the database instead of fetching them all with every message sent for them.
_DUE_SQL = (
    "SELECT q.id, q.cam_id FROM question q JOIN member m ON m.id = q.member_id "
    "WHERE q.handoff_status = 'open' AND q.cam_id IS NOT NULL AND m.active "
    "AND NOT EXISTS (SELECT 1 FROM outbound_message o WHERE o.purpose = ? AND o.reference = q.id "
    "AND o.staff_id = q.cam_id AND (o.status <> ? OR o.error = ?)) ORDER BY q.id")


async def announce_open_handoffs(channels: dict[str, Channel], now: datetime) -> int:
    """Queue the hand-off for every open question whose CAM has not had it; returns how many."""
    waiting = [(r["id"], r["cam_id"]) for r in await connections.get("default").execute_query_dict(
        storage_db.placeholders(_DUE_SQL), [MessagePurpose.HANDOFF.value, DeliveryStatus.FAILED.value, INTERRUPTED])]
    if not waiting:
        return 0
    told: dict[int, list[int | None]] = {}
    refused: dict[tuple[int, int], set[tuple[str, str, str]]] = {}  # (question, CAM) -> accounts that failed
    for reference, staff_id, status, platform, recipient in await OutboundMessage.filter(
            purpose=MessagePurpose.HANDOFF.value, reference__in=[q for q, _ in waiting]).order_by("id").values_list(
            "reference", "staff_id", "status", "platform", "recipient"):
        told.setdefault(reference, []).append(staff_id)
        if status == DeliveryStatus.FAILED.value and staff_id is not None:
            refused.setdefault((reference, staff_id), set()).add(_account(platform, recipient or {}))
    cams = {s.id: s for s in await Staff.filter(id__in=sorted({cam for _, cam in waiting}), active=True)}
    earlier = {s for q, _ in waiting for s in told.get(q, []) if s}
    emails = dict(await Staff.filter(id__in=sorted(earlier)).values_list("id", "email")) if earlier else {}
    queued = 0
    for question_id, cam_id in waiting:
        cam = cams.get(cam_id)
        target = await staff_target(cam, channels) if cam is not None else None
        if target is None:
            continue  # no chat account (yet): the question is in their list and console page
        failed_at = refused.get((question_id, cam.id))
        account = _account(target.platform, {"workspace_id": target.recipient.workspace_id,
                                             "user_id": target.recipient.user_id})
        if failed_at is not None and account in failed_at:
            continue  # refused on this very account: sent again once they are reached on another
        last_told = [s for s in told.get(question_id, []) if s and s != cam.id]  # in the order they were told
        before = emails.get(last_told[-1], "") if last_told else ""
        again = ":".join(account) if failed_at is not None else ""
        queued += await _queue(question_id, cam, target, before=before, now=now, again=again)
    return queued


def _account(platform: str, recipient: dict) -> tuple[str, str, str]:
    """The chat account a hand-off went (or goes) to: platform, workspace or tenant, user."""
    return platform, str(recipient.get("workspace_id", "")), str(recipient.get("user_id", ""))


async def _queue(question_id: int, cam: Staff, target: Target, *, before: str, now: datetime,
                 again: str = "") -> bool:
    """`again`: the account it goes to after one that failed (its own key, once per account)."""
    question = await Question.get(id=question_id).select_related("member__organisation")
    message = handoff_message(question)
    if before:
        organisation = question.member.organisation
        message = replace(message, lines=(*message.lines, f"It was with {before}; the directory now names you "
                                                          f"as {organisation.name}'s CAM."))
    try:
        async with in_transaction() as conn:
            return await enqueue(key=f"{MessagePurpose.HANDOFF.value}:{question_id}:{cam.id}"
                                     + (f":{again}" if again else ""),
                                 purpose=MessagePurpose.HANDOFF, reference=question_id, target=target,
                                 message=message, now=now, staff_id=cam.id, using_db=conn)
    except IntegrityError:  # another replica queued it at the same moment
        return False
