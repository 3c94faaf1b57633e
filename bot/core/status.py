"""Delivery and acknowledgement counts for a notice."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tortoise.functions import Count

from bot.core.errors import NotFound
from storage.models import Acknowledgement, Delivery, DeliveryStatus, Notice


@dataclass
class NoticeStatusReport:
    notice: Notice
    recipients: int = 0
    delivered: int = 0
    failed: int = 0
    pending: int = 0
    digest: int = 0
    acknowledged: int = 0
    failure_reasons: list[tuple[str, int]] = field(default_factory=list)

    def as_dict(self) -> dict:
        n = self.notice
        return {
            "notice_id": n.id, "title": n.title, "topic": n.topic, "importance": n.importance,
            "status": n.status, "audience": n.audience,
            "sent_at": n.sent_at.isoformat() if n.sent_at else None,
            "deadline": n.deadline.isoformat() if n.deadline else None,
            "recipients": self.recipients, "delivered": self.delivered, "failed": self.failed,
            "pending": self.pending, "digest": self.digest, "acknowledged": self.acknowledged,
            "failure_reasons": [{"reason": r, "count": c} for r, c in self.failure_reasons],
        }


async def notice_status(notice_id: int) -> NoticeStatusReport:
    notice = await Notice.get_or_none(id=notice_id)
    if notice is None:
        raise NotFound(f"notice {notice_id} does not exist")
    report = NoticeStatusReport(notice)
    rows = await Delivery.filter(notice_id=notice_id).annotate(n=Count("id")).group_by("status").values("status", "n")
    counts = {row["status"]: row["n"] for row in rows}
    report.delivered = counts.get(DeliveryStatus.DELIVERED.value, 0)
    report.failed = counts.get(DeliveryStatus.FAILED.value, 0)
    report.digest = counts.get(DeliveryStatus.DIGEST.value, 0)
    report.pending = counts.get(DeliveryStatus.PENDING.value, 0) + counts.get(DeliveryStatus.SENDING.value, 0)
    report.recipients = sum(counts.values()) if counts else notice.recipient_count
    report.acknowledged = await Acknowledgement.filter(notice_id=notice_id).count()
    if report.failed:
        reasons = await Delivery.filter(notice_id=notice_id, status=DeliveryStatus.FAILED.value).annotate(
            n=Count("id")).group_by("error").values("error", "n")
        report.failure_reasons = Counter({r["error"]: r["n"] for r in reasons}).most_common(5)
    return report
