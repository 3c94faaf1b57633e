"""The surveys a person may read, newest first, a page at a time: for the API's list and the
console's. Compliance and admins see every survey; a CAM the surveys they wrote and the journeys'
surveys, whose counts here, as their results (`results.survey_results`), cover only the CAM's
own partners."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.expressions import Q
from tortoise.functions import Count

from bot.core.directory.permissions import require_viewer
from bot.core.surveys.results import cam_organisations
from bot.core.surveys.spec import spec_of
from storage.models import Delivery, DeliveryKind, DeliveryStatus, Staff, StaffRole, Survey, SurveyAnswer


@dataclass(frozen=True)
class SurveyListPage:
    surveys: list[dict[str, Any]]
    next_before: int | None  # the `before` of the next page, None on the last


async def list_surveys(staff: Staff | None, *, before: int | None = None, limit: int = 50) -> SurveyListPage:
    """One page of surveys (keyset on the notice id) with their answer counts and the members each
    was delivered to (one GROUP BY each): the response rate's denominator, as a survey's results
    count it, not the notice's recipient count (which holds the copies cancelled at the close,
    held or failed)."""
    staff = require_viewer(staff)
    query = Survey.all().select_related("notice")
    if staff.role == StaffRole.CAM.value:
        query = query.filter(Q(notice__author_id=staff.id) | Q(key__isnull=False))
    if before is not None:
        query = query.filter(notice_id__lt=before)
    found = await query.order_by("-notice_id").limit(limit + 1)
    page = found[:limit]
    answered = {r["survey_id"]: r["n"] for r in await SurveyAnswer.filter(
        survey_id__in=[s.id for s in page]).annotate(n=Count("id")).group_by("survey_id").values("survey_id", "n")}
    delivered = await _delivered_members([s.notice.id for s in page])
    items = [_item(s, answered.get(s.id, 0), delivered.get(s.notice.id, 0)) for s in page]
    scoped = [item for item, s in zip(items, page, strict=True)
              if staff.role == StaffRole.CAM.value and s.notice.author_id != staff.id]  # type: ignore[attr-defined]
    if scoped:
        await _scope_counts(scoped, {s.notice.id: s.id for s in page}, await cam_organisations(staff))
    return SurveyListPage(items, page[-1].notice.id if len(found) > limit and page else None)


async def _scope_counts(items: list[dict[str, Any]], survey_ids: dict[int, int], organisations: set[int]) -> None:
    """A journey survey's answers and recipients (members it was delivered to) among the CAM's
    own partners, as its results show them: not every partner's participation."""
    notice_ids = [item["id"] for item in items]
    answered = {r["survey_id"]: r["n"] for r in await SurveyAnswer.filter(
        survey_id__in=[survey_ids[n] for n in notice_ids], organisation_id__in=organisations).annotate(
        n=Count("id")).group_by("survey_id").values("survey_id", "n")}
    delivered = await _delivered_members(notice_ids, organisations)
    for item in items:
        item["answered"] = answered.get(survey_ids[item["id"]], 0)
        item["recipients"] = delivered.get(item["id"], 0)


async def _delivered_members(notice_ids: list[int], organisations: set[int] | None = None) -> dict[int, int]:
    """Members each survey was delivered to (once each, whatever their number of copies), by
    notice id, in one grouped query; only those of `organisations` when given."""
    if not notice_ids:
        return {}
    query = Delivery.filter(notice_id__in=notice_ids, kind=DeliveryKind.NOTICE.value,
                            status=DeliveryStatus.DELIVERED.value)
    if organisations is not None:
        query = query.filter(member__organisation_id__in=organisations)
    return {r["notice_id"]: r["n"] for r in await query.annotate(n=Count("member_id", distinct=True)).group_by(
        "notice_id").values("notice_id", "n")}


def _item(survey: Survey, answered: int, delivered: int) -> dict[str, Any]:
    notice = survey.notice
    spec = spec_of(survey)
    return {"id": notice.id, "question": survey.question, "kind": survey.kind,
            "scale": list(spec.scale) if spec.scale else None, "anonymous": survey.anonymous,
            "status": notice.status, "open": survey.closed_at is None, "closes_at": survey.closes_at,
            "journey_step": survey.key.split(":")[1] if survey.key else None,
            "recipients": delivered, "answered": answered, "sent_at": notice.sent_at}
