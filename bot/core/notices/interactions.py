"""Presses of a notice's buttons other than Acknowledge (the link), for comparing A/B variants.

Slack reports a press of a link button to the app (a block_actions payload) before opening the
link; Teams opens links itself and tells nobody, so Teams link presses are not counted. Variants
are assigned without regard to platform, so every variant has the same expected share of Teams
members and the comparison between variants stays fair.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from bot.core.compliance.audit import audit_event, record
from storage.models import Delivery, DeliveryStatus, NoticeInteraction

LINK = "link"


async def record_press(notice_id: int, kind: str, *, platform: str, workspace_id: str, user_id: str,
                       now: datetime) -> bool:
    """Count a press by the member the notice was delivered to; False for anyone else (e.g. a
    forwarded message). The first press is an audit event; later ones only raise the count."""
    delivery = await Delivery.filter(
        notice_id=notice_id, platform=platform, status=DeliveryStatus.DELIVERED.value,
        account__workspace_external_id=workspace_id, account__user_id=user_id).first()
    if delivery is None:
        return False
    member_id = delivery.member_id  # type: ignore[attr-defined]
    try:
        async with in_transaction() as conn:
            await NoticeInteraction.create(notice_id=notice_id, member_id=member_id, kind=kind, platform=platform,
                                           first_at=now, using_db=conn)
            await record([audit_event("notice.button_pressed", now=now, notice_id=notice_id, member_id=member_id,
                                      button=kind, platform=platform, variant=delivery.variant or None)],
                         using_db=conn)
    except IntegrityError:
        await NoticeInteraction.filter(notice_id=notice_id, member_id=member_id, kind=kind).update(
            presses=F("presses") + 1)
    return True
