"""Survey results per journey stage: one line per journey step that sends a survey (its standing
survey), in the order the steps fall due, with the same figures and anonymity rules as
`survey_results`."""

from __future__ import annotations

from typing import Any

from bot.common.errors import PermissionDenied, UserError
from bot.core.onboarding.journeys import (
    JourneyCatalog,
    JourneyConfigError,
    load_journeys,
)
from bot.core.surveys.results import survey_results
from storage.models import Staff, Survey

_SUMMARY = ("recipients", "answered", "response_rate", "mean", "nps", "distribution")


async def survey_stages(staff: Staff | None, *, operator: bool = False,
                        catalog: JourneyCatalog | None = None) -> list[dict[str, Any]]:
    """Every journey survey: where in which journeys it is asked, and its results summary."""
    if not operator and (staff is None or not staff.active):  # checked first: with no journey survey yet too
        raise PermissionDenied("Only Herald staff can see survey results.")
    try:
        journeys = catalog or load_journeys()
    except JourneyConfigError as exc:
        raise UserError(f"onboarding journeys are not available: {exc}") from None
    places: dict[str, list[dict[str, Any]]] = {}
    for journey in journeys.journeys.values():
        for step in journey.steps:
            places.setdefault(step.key, []).append({"journey": journey.name, "position": step.position,
                                                    "after_days": step.after_days, "title": step.title})
    stages = []
    for survey in await Survey.filter(key__startswith="journey:").order_by("id"):
        step_key = survey.key.split(":")[1]  # type: ignore[union-attr]
        results = await survey_results(survey.notice_id, staff, operator=operator,  # type: ignore[attr-defined]
                                        answers_listed=0)
        where = places.get(step_key, [])
        stages.append({
            "survey_id": survey.notice_id, "step": step_key, "question": survey.question,  # type: ignore[attr-defined]
            "current": bool(where), "journeys": where, "open": survey.closed_at is None,
            "anonymous": survey.anonymous, "suppressed": results["suppressed"],
            **{key: results["total"].get(key) for key in _SUMMARY},
        })
    stages.sort(key=lambda s: (min((p["after_days"] for p in s["journeys"]), default=10**6), s["step"], s["survey_id"]))
    return stages
