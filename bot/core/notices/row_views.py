"""The per-row parts of a message view that a notice's shared view does not hold: the A/B variant
a member sees, and a survey's question, answers and open/closed state.

The delivery engine loads them with the notice (two small queries), keeps them while the notice
is unchanged (bot.core.delivery.outbox.NoticeSource, see notice_rows.NoticeStamp: a survey that
closes changes the stamp), and applies them to each row's view at the time of the batch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from bot.core.notices.interactions import LinkTracker
from bot.core.notices.views import Acknowledged, NoticeView, SurveyView
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


@dataclass(frozen=True, slots=True)
class NoticeExtras:
    """A notice's A/B variants' texts (label -> title, body) and its survey, as stored; the survey's
    part of a message also depends on the time (RowExtras.of)."""

    variants: dict[str, tuple[str, str]]
    survey: Survey | None


async def load_extras(notice_ids: Iterable[int]) -> dict[int, NoticeExtras]:
    """Every listed notice's extras (two small queries)."""
    ids = sorted(set(notice_ids))
    if not ids:
        return {}
    variants: dict[int, dict[str, tuple[str, str]]] = {i: {} for i in ids}
    for label, notice_id, title, body in await NoticeVariant.filter(notice_id__in=ids).values_list(
            "label", "notice_id", "title", "body"):
        variants[notice_id][label] = (title, body)
    surveys = {s.notice_id: s for s in await Survey.filter(notice_id__in=ids)}  # type: ignore[attr-defined]
    return {i: NoticeExtras(variants[i], surveys.get(i)) for i in ids}


class FixedExtras:
    """Sent notices' extras for drawing a pressed copy (acks.acknowledged_view), per process (one
    per outbox). A notice's A/B variants' texts, and whether it has a survey, are fixed once it is
    sent (neither can be edited: revisions._refuse_fixed_text), so they are read once per notice
    and kept, the last `kept` notices; the survey's own row, whose open or closed state changes,
    is read every time. At hundreds of clicks a second, load_extras' two ORM queries a click took
    a sixth of the server's CPU (bench/acks.py)."""

    def __init__(self, kept: int = 512) -> None:
        self.kept = kept
        self._fixed: OrderedDict[int, tuple[dict[str, tuple[str, str]], int | None]] = OrderedDict()

    async def of(self, notice_id: int) -> NoticeExtras:
        fixed = self._fixed.get(notice_id)
        if fixed is None:
            loaded = (await load_extras([notice_id]))[notice_id]
            self._fixed[notice_id] = (loaded.variants, loaded.survey.id if loaded.survey is not None else None)
            while len(self._fixed) > self.kept:
                self._fixed.popitem(last=False)
            return loaded
        self._fixed.move_to_end(notice_id)
        variants, survey_id = fixed
        return NoticeExtras(variants, await Survey.get(id=survey_id) if survey_id is not None else None)


@dataclass
class RowExtras:
    variants: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)  # (notice, label) -> text
    surveys: dict[int, SurveyView] = field(default_factory=dict)  # notice id -> survey part

    @classmethod
    def of(cls, extras: dict[int, NoticeExtras], *, now: datetime) -> RowExtras:
        """The notices' extras as their messages show them at `now`."""
        return cls(variants={(nid, label): text for nid, e in extras.items() for label, text in e.variants.items()},
                   surveys={nid: survey_view(e.survey, now=now) for nid, e in extras.items() if e.survey is not None})

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


def copy_view(shared: NoticeView, extras: RowExtras, *, notice_id: int, member_id: int, variant: str,
              tracker: LinkTracker | None, acknowledged: Acknowledged | None = None, reminder_number: int = 0,
              original_ref: tuple[str, str] | None = None) -> NoticeView:
    """One delivered copy's view: the notice's shared view with the copy's A/B variant (its
    tracked link), its survey part, the member's acknowledgement and, for a reminder, its number and
    the original it answers. The outbox draws every send and in-place update with it, and an
    Acknowledge press answers with it, so the member sees the same message either way."""
    view = extras.apply(shared, notice_id, variant, member_id=member_id, tracker=tracker)
    if acknowledged is not None:
        view = view.with_ack(acknowledged.by, acknowledged.at)
    if reminder_number:
        view = view.as_reminder(reminder_number, original_ref)
    return view
