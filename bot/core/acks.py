"""Acknowledgements: one per recipient per notice, however many times the click arrives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from bot.core.audit import audit_event, record
from bot.core.errors import NotFound, PermissionDenied
from storage.models import Acknowledgement, Delivery, DeliveryStatus, Member, Notice

NOT_YOURS = "This notice was not sent to you, so you cannot acknowledge it."


@dataclass(frozen=True)
class AckResult:
    notice: Notice
    member: Member
    acknowledgement: Acknowledgement
    newly_recorded: bool
    copies: list[Delivery]  # every delivered copy of the notice for this member, to update in place


async def acknowledge(notice_id: int, *, platform: str, workspace_id: str, user_id: str, now: datetime) -> AckResult:
    """Record that the platform user acknowledged the notice delivered to them."""
    notice = await Notice.get_or_none(id=notice_id)
    if notice is None:
        raise NotFound(f"notice {notice_id} does not exist")
    delivery = await Delivery.filter(
        notice_id=notice_id, platform=platform, status=DeliveryStatus.DELIVERED.value,
        account__workspace_external_id=workspace_id, account__user_id=user_id,
    ).select_related("member").first()
    if delivery is None:
        raise PermissionDenied(NOT_YOURS)
    member = delivery.member
    ack, created = await _record_once(notice, member, delivery, platform, now)
    copies = await Delivery.filter(notice_id=notice_id, member_id=member.id,
                                   status=DeliveryStatus.DELIVERED.value)
    return AckResult(notice, member, ack, created, copies)


async def _record_once(notice: Notice, member: Member, delivery: Delivery, platform: str,
                       now: datetime) -> tuple[Acknowledgement, bool]:
    existing = await Acknowledgement.get_or_none(notice_id=notice.id, member_id=member.id)
    if existing is not None:
        return existing, False
    try:
        async with in_transaction() as conn:
            ack = await Acknowledgement.create(notice=notice, member=member, delivery=delivery,
                                               platform=platform, revision=notice.revision,
                                               acknowledged_at=now, using_db=conn)
            await record([audit_event("notice.acknowledged", now=now, actor=member.email,
                                      notice_id=notice.id, member_id=member.id, platform=platform,
                                      revision=notice.revision, delivery_id=delivery.id)], using_db=conn)
        return ack, True
    except IntegrityError:  # a concurrent click won the race; the unique constraint kept one
        return await Acknowledgement.get(notice_id=notice.id, member_id=member.id), False
