"""Acknowledgements: one per recipient per notice revision, however many times the click arrives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from bot.common import metrics
from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.core.compliance.audit import audit_event, record
from storage.models import (
    Acknowledgement,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Member,
    Notice,
    NoticeStatus,
)

NOT_YOURS = "This notice was not sent to you, so you cannot acknowledge it."


@dataclass(frozen=True)
class AckResult:
    notice: Notice
    member: Member
    acknowledgement: Acknowledgement
    newly_recorded: bool
    copy_ids: list[int]  # every delivered copy (original and reminders) to update in place


async def acknowledge(notice_id: int, *, platform: str, workspace_id: str, user_id: str, now: datetime) -> AckResult:
    """Record that the platform user acknowledged the notice delivered to them (any copy)."""
    notice = await Notice.get_or_none(id=notice_id)
    if notice is None:
        raise NotFound(f"notice {notice_id} does not exist")
    delivery = await Delivery.filter(
        notice_id=notice_id, platform=platform, status=DeliveryStatus.DELIVERED.value,
        account__workspace_external_id=workspace_id, account__user_id=user_id,
    ).select_related("member").first()
    if delivery is None:
        raise PermissionDenied(NOT_YOURS)
    if notice.status == NoticeStatus.RETRACTED.value:
        raise UserError(f"Notice #{notice.id} was retracted, so there is nothing to acknowledge.")
    member = delivery.member
    ack, created = await _record_once(notice, member, delivery, platform, now)
    copy_ids = await Delivery.filter(notice_id=notice_id, member_id=member.id,
                                     status=DeliveryStatus.DELIVERED.value).values_list("id", flat=True)
    return AckResult(notice, member, ack, created, list(copy_ids))


async def _record_once(notice: Notice, member: Member, delivery: Delivery, platform: str,
                       now: datetime) -> tuple[Acknowledgement, bool]:
    revision = notice.ack_revision
    existing = await Acknowledgement.get_or_none(notice_id=notice.id, member_id=member.id, revision=revision)
    if existing is not None:
        return existing, False
    try:
        async with in_transaction() as conn:
            ack = await Acknowledgement.create(notice=notice, member=member, delivery=delivery, platform=platform,
                                               revision=revision, acknowledged_at=now, using_db=conn)
            mine = Delivery.filter(notice_id=notice.id, member_id=member.id)
            await mine.filter(status=DeliveryStatus.DELIVERED.value).using_db(conn).update(
                update_pending=True, next_reminder_at=None)
            await mine.filter(kind=DeliveryKind.REMINDER.value, status=DeliveryStatus.PENDING.value).using_db(
                conn).update(status=DeliveryStatus.CANCELLED.value, error="acknowledged before it was sent")
            await record([audit_event("notice.acknowledged", now=now, actor=member.email, notice_id=notice.id,
                                      member_id=member.id, platform=platform, revision=revision,
                                      delivery_id=delivery.id, via=delivery.kind)], using_db=conn)
        metrics.acknowledged(platform, (now - (delivery.delivered_at or now)).total_seconds())
        return ack, True
    except IntegrityError:  # a concurrent click won the race; the unique constraint kept one
        return await Acknowledgement.get(notice_id=notice.id, member_id=member.id, revision=revision), False
