"""Delivery and acknowledgement counts for a notice."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from tortoise.expressions import Q, Subquery
from tortoise.functions import Count

from bot.common.errors import NotFound
from storage.models import (
    Acknowledgement,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Escalation,
    MessagePurpose,
    Notice,
    OutboundMessage,
    Organisation,
    Survey,
    SurveyAnswer,
)


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
    reminders_sent: int = 0
    escalations: int = 0  # sent or on their way to a partner's CAM (not failed, not cancelled)
    escalation_failures: list[tuple[str, int]] = field(default_factory=list)  # (reason, count): nobody was told
    # (reason, count): the partner's CAM could not be reached, the notice's author was told instead
    escalation_fallbacks: list[tuple[str, int]] = field(default_factory=list)
    paused_organisations: list[str] = field(default_factory=list)
    held: int = 0  # A/B test: held back until a variant is rolled out
    variants: dict[str, int] = field(default_factory=dict)  # A/B test: variant -> delivered
    survey_answers: int | None = None  # surveys: members who answered (details: `survey results`)

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
            "revision": n.revision, "scheduled_at": n.scheduled_at.isoformat() if n.scheduled_at else None,
            "retract_reason": n.retract_reason or None, "failure_reason": n.failure_reason or None,
            "reminders_sent": self.reminders_sent,
            "escalations": self.escalations,
            "escalation_failures": [{"reason": r, "count": c} for r, c in self.escalation_failures],
            "escalation_fallbacks": [{"reason": r, "count": c} for r, c in self.escalation_fallbacks],
            "paused_organisations": self.paused_organisations,
            "held": self.held, "variants": self.variants, "survey_answers": self.survey_answers,
        }


async def notice_status(notice_id: int, *, now: datetime) -> NoticeStatusReport:
    notice = await Notice.get_or_none(id=notice_id)
    if notice is None:
        raise NotFound(f"notice {notice_id} does not exist")
    report = NoticeStatusReport(notice)
    rows = await Delivery.filter(notice_id=notice_id, kind=DeliveryKind.NOTICE.value).annotate(
        n=Count("id")).group_by("status").values("status", "n")
    counts = {row["status"]: row["n"] for row in rows}
    report.delivered = counts.get(DeliveryStatus.DELIVERED.value, 0)
    report.failed = counts.get(DeliveryStatus.FAILED.value, 0)
    report.digest = counts.get(DeliveryStatus.DIGEST.value, 0)
    report.pending = counts.get(DeliveryStatus.PENDING.value, 0) + counts.get(DeliveryStatus.SENDING.value, 0)
    report.held = counts.get(DeliveryStatus.HELD.value, 0)
    report.recipients = sum(counts.values()) if counts else notice.recipient_count
    report.variants = {row["variant"]: row["n"] for row in await Delivery.filter(
        notice_id=notice_id, kind=DeliveryKind.NOTICE.value, status=DeliveryStatus.DELIVERED.value).exclude(
        variant="").annotate(n=Count("id")).group_by("variant").values("variant", "n")}
    report.acknowledged = await Acknowledgement.filter(notice_id=notice_id, revision=notice.ack_revision).count()
    report.reminders_sent = await Delivery.filter(notice_id=notice_id, kind=DeliveryKind.REMINDER.value,
                                                  status=DeliveryStatus.DELIVERED.value).count()
    # a failed escalation did not tell the partner's CAM and a cancelled one (a retraction) was never
    # sent: not counted as escalations; the failed ones are listed with why, as failed copies are,
    # apart those that went to the notice's author instead (sent or on their way)
    escalations = await Escalation.filter(notice_id=notice_id).exclude(status=DeliveryStatus.CANCELLED.value).annotate(
        n=Count("id")).group_by("status", "error").values("status", "error", "n")
    report.escalations = sum(r["n"] for r in escalations if r["status"] != DeliveryStatus.FAILED.value)
    failures: Counter[str] = Counter()
    for r in escalations:
        if r["status"] == DeliveryStatus.FAILED.value:
            failures[r["error"] or "failed (no reason recorded)"] += r["n"]
    if failures:
        fallbacks: Counter[str] = Counter(
            error or "failed (no reason recorded)" for error in await Escalation.filter(
                notice_id=notice_id, status=DeliveryStatus.FAILED.value, id__in=Subquery(OutboundMessage.filter(
                    purpose=MessagePurpose.ESCALATION_FALLBACK.value, status__in=[
                        DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value, DeliveryStatus.DELIVERED.value],
                ).values("reference"))).values_list("error", flat=True))
        failures -= fallbacks
        report.escalation_fallbacks = fallbacks.most_common(5)
    report.escalation_failures = failures.most_common(5)
    survey = await Survey.get_or_none(notice_id=notice_id)
    if survey is not None:
        report.survey_answers = await SurveyAnswer.filter(survey_id=survey.id).count()
    report.paused_organisations = sorted(set(await Organisation.filter(  # paused now: not a pause that ran out
        Q(paused_until__isnull=True) | Q(paused_until__gt=now), paused_at__isnull=False,
        members__deliveries__notice_id=notice_id).values_list("name", flat=True)))
    if report.failed:
        reasons = await Delivery.filter(notice_id=notice_id, kind=DeliveryKind.NOTICE.value,
                                        status=DeliveryStatus.FAILED.value).annotate(
            n=Count("id")).group_by("error").values("error", "n")
        report.failure_reasons = Counter({r["error"]: r["n"] for r in reasons}).most_common(5)
    return report
