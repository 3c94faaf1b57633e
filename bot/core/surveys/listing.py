"""The surveys a person may read, newest first, a page at a time: for the API's list and the
console's. Compliance and admins see every survey; a CAM the surveys they wrote and the journeys'
surveys (whose results `results.survey_results` then scopes to the CAM's own partners)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.expressions import Q
from tortoise.functions import Count

from bot.core.directory.permissions import require_viewer
from bot.core.surveys.spec import spec_of
from storage.models import Staff, StaffRole, Survey, SurveyAnswer


@dataclass(frozen=True)
class SurveyListPage:
    surveys: list[dict[str, Any]]
    next_before: int | None  # the `before` of the next page, None on the last


async def list_surveys(staff: Staff | None, *, before: int | None = None, limit: int = 50) -> SurveyListPage:
    """One page of surveys (keyset on the notice id) with their answer counts (one GROUP BY)."""
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
    items = [_item(s, answered.get(s.id, 0)) for s in page]
    return SurveyListPage(items, page[-1].notice.id if len(found) > limit and page else None)


def _item(survey: Survey, answered: int) -> dict[str, Any]:
    notice = survey.notice
    spec = spec_of(survey)
    return {"id": notice.id, "question": survey.question, "kind": survey.kind,
            "scale": list(spec.scale) if spec.scale else None, "anonymous": survey.anonymous,
            "status": notice.status, "open": survey.closed_at is None, "closes_at": survey.closes_at,
            "journey_step": survey.key.split(":")[1] if survey.key else None,
            "recipients": notice.recipient_count, "answered": answered, "sent_at": notice.sent_at}
