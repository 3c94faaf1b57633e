"""The per-row parts of a message view that a notice's shared view does not hold: the A/B variant
a member sees, and a survey's question, answers and open/closed state.

The delivery engine loads them once per batch (two small queries, only for notices that have
variants or a survey) and applies them to each row's view; nothing here is cached, so a survey
that closes, or a variant rolled out, is drawn correctly by the next batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from bot.core.notices.interactions import LinkTracker
from bot.core.notices.views import NoticeView, SurveyView
from bot.core.surveys.spec import spec_of
from storage.models import NoticeVariant, Survey


def survey_view(survey: Survey, *, now: datetime, answered: int | None = None, comment: str = "") -> SurveyView:
    """The neutral survey part of a message; a survey whose close date has passed counts as closed."""
    spec = spec_of(survey)
    closed_at = survey.closed_at
    if closed_at is None and survey.closes_at is not None and survey.closes_at <= now:
        closed_at = survey.closes_at
    return SurveyView(question=spec.question, choices=tuple(spec.choices()), scale=spec.scale,
                      follow_up=spec.follow_up, anonymous=spec.anonymous, closes_at=survey.closes_at,
                      closed_at=closed_at, answered=answered, comment=comment)


@dataclass
class RowExtras:
    variants: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)  # (notice, label) -> text
    surveys: dict[int, SurveyView] = field(default_factory=dict)  # notice id -> survey part

    @classmethod
    async def load(cls, notice_ids: Iterable[int], *, now: datetime, variants: bool = True) -> RowExtras:
        """`variants=False`: none of the rows shows a variant, so their texts are not read."""
        ids = sorted(set(notice_ids))
        extras = cls()
        if not ids:
            return extras
        if variants:
            for label, notice_id, title, body in await NoticeVariant.filter(notice_id__in=ids).values_list(
                    "label", "notice_id", "title", "body"):
                extras.variants[(notice_id, label)] = (title, body)
        for survey in await Survey.filter(notice_id__in=ids):
            extras.surveys[survey.notice_id] = survey_view(survey, now=now)  # type: ignore[attr-defined]
        return extras

    def apply(self, view: NoticeView, notice_id: int, variant: str, *, member_id: int | None = None,
              tracker: LinkTracker | None = None) -> NoticeView:
        """`view` (the notice's shared view) as this row shows it; with a tracker, an A/B test's
        link goes through Herald so that a press is counted on every platform."""
        if variant and (notice_id, variant) in self.variants:
            title, body = self.variants[(notice_id, variant)]
            link = tracker.url(notice_id, member_id) if tracker is not None and member_id is not None else ""
            view = view.with_variant(variant, title, body, link)
        survey = self.surveys.get(notice_id)
        return view.with_survey(survey) if survey is not None else view
