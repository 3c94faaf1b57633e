"""Survey results: the one function chat, the CLI, the API and the console read them from.

Response rate (answers / members it was delivered to), the distribution of answers, the mean of
a scale, the Net Promoter Score of a 0-10 scale (% 9-10 minus % 0-6), and breakdowns by tier,
region, role and organisation.

Anonymous surveys never show member-level data (no names, no per-member answers; comments only as
an unordered list once five people have answered), and neither the total nor any segment is shown
with fewer than MIN_SEGMENT_ANSWERS answers. What is hidden is chosen once, for every breakdown
alike, at the finest level they split by: an organisation's members of one role (the organisation
fixes tier and region). Such a cell with fewer than five answers is *pooled*; if the pool would hold
fewer than five answers, the smallest other cells join it until it holds five or more. Every
breakdown shows its segments without the pooled cells and the pool as one identical "other" row,
so any difference between shown rows, across breakdowns too, is a union of cells of five or more
answers: subtracting organisation Bolt from region amer cannot single out a one-person partner.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from typing import Any

from tortoise.functions import Count
from tortoise.queryset import QuerySet

from bot.common.errors import NotFound, PermissionDenied
from bot.core.compliance.reports import csv_cell, csv_metadata_row, iso
from bot.core.surveys.spec import SurveySpec, spec_of
from storage.models import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Notice,
    Organisation,
    Staff,
    StaffRole,
    Survey,
    SurveyAnswer,
)

MIN_SEGMENT_ANSWERS = 5
DIMENSIONS = ("tier", "region", "role", "organisation")
OTHER = "other segments (small groups pooled)"


# ---- access ------------------------------------------------------------------------------------

def scope_for(staff: Staff | None, notice: Notice, *, journey: bool, operator: bool = False) -> set[int] | None:
    """Organisations whose answers the person may see (None = all). Compliance and admins see every
    survey; a CAM their own surveys, and for journey surveys (no author) their own partners'."""
    if operator:
        return None
    if staff is None or not staff.active:
        raise PermissionDenied("Only Herald staff can see survey results.")
    if staff.role in (StaffRole.COMPLIANCE.value, StaffRole.ADMIN.value):
        return None
    if staff.role == StaffRole.CAM.value:
        author = notice.author_id  # type: ignore[attr-defined]
        if author == staff.id:
            return None
        if journey:
            return {-1}  # filled in by the caller: the CAM's organisations
    raise PermissionDenied("Only compliance, admins and the survey's CAM can see its results.")


async def cam_organisations(staff: Staff) -> set[int]:
    """The organisations whose CAM `staff` is: a CAM's scope of a journey survey they did not write."""
    return {o["id"] for o in await Organisation.all().values("id", "cam_email")
            if (o["cam_email"] or "").strip().lower() == staff.email.lower()}


# ---- summaries ---------------------------------------------------------------------------------

Values = Counter[int]  # answer value -> how many answered it: every figure is computed from these


def summarise(spec: SurveySpec, counts: Values) -> dict[str, Any]:
    """Distribution, mean (scales) and NPS (0-10) of answers counted per value."""
    n = sum(counts.values())
    out: dict[str, Any] = {"distribution": [
        {"value": value, "label": label, "count": counts.get(value, 0),
         "share": round(counts.get(value, 0) / n, 4) if n else None} for value, label in spec.choices()]}
    if spec.scale:
        out["mean"] = round(sum(value * k for value, k in counts.items()) / n, 2) if n else None
    if spec.is_nps:
        promoters = sum(k for value, k in counts.items() if value >= 9)
        detractors = sum(k for value, k in counts.items() if value <= 6)
        out["nps"] = {"score": round(100 * (promoters - detractors) / n) if n else None, "promoters": promoters,
                      "passives": n - promoters - detractors, "detractors": detractors}
    return out


def _blank(spec: SurveySpec) -> dict[str, Any]:
    """A suppressed summary: the same keys, no numbers."""
    out: dict[str, Any] = {"distribution": None}
    if spec.scale:
        out["mean"] = None
    if spec.is_nps:
        out["nps"] = None
    return out


def _row(spec: SurveySpec, segment: str, recipients: int, counts: Values) -> dict[str, Any]:
    answered = sum(counts.values())
    return {"segment": segment, "recipients": recipients, "answered": answered,
            "response_rate": round(answered / recipients, 4) if recipients else None, **summarise(spec, counts)}


Cell = tuple[Any, str]  # (organisation id, role): the finest level the breakdowns split by


def _pooled_cells(recipients: Counter[Cell], answered: Counter[Cell]) -> set[Cell]:
    """Anonymous surveys: the cells shown only inside the pool (see the module docstring), from the
    number of recipients and of answers per cell. The caller has checked that the survey has at
    least MIN_SEGMENT_ANSWERS answers in all."""
    cells = set(answered) | set(recipients)
    pooled = {cell for cell in cells if answered[cell] < MIN_SEGMENT_ANSWERS}
    while 0 < sum(answered[cell] for cell in pooled) < MIN_SEGMENT_ANSWERS:
        pooled.add(min(cells - pooled, key=lambda cell: (answered[cell], str(cell))))
    return pooled


# ---- the results -------------------------------------------------------------------------------

async def _survey(notice_id: int) -> Survey:
    survey = await Survey.filter(notice_id=notice_id).select_related("notice__author").first()
    if survey is None:
        raise NotFound(f"survey #{notice_id} does not exist")
    return survey


async def _recipients_per_cell(notice_id: int, scope: set[int] | None) -> Counter[Cell]:
    """Members the survey was delivered to (once each, whatever their number of copies), counted
    per cell of their current organisation and role: one row per cell, not per member."""
    query = Delivery.filter(notice_id=notice_id, kind=DeliveryKind.NOTICE.value, status=DeliveryStatus.DELIVERED.value)
    if scope is not None:
        query = query.filter(member__organisation_id__in=sorted(scope))
    rows = await (query.annotate(n=Count("member_id", distinct=True))
                  .group_by("member__organisation_id", "member__role")
                  .values("member__organisation_id", "member__role", "n"))
    return Counter({(r["member__organisation_id"], r["member__role"]): r["n"] for r in rows})


async def _answers_per_cell(survey_id: int, scope: set[int] | None) -> dict[Cell, Values]:
    """The answers counted per cell (the organisation and role stored with each answer) and value,
    by the database: one row per cell and value, however many answered."""
    rows = await (_answers(survey_id, scope).annotate(n=Count("id")).group_by("organisation_id", "role", "value")
                  .values("organisation_id", "role", "value", "n"))
    cells: dict[Cell, Values] = defaultdict(Counter)
    for r in rows:
        cells[(r["organisation_id"], r["role"])][r["value"]] += r["n"]
    return cells


def _answers(survey_id: int, scope: set[int] | None) -> QuerySet[SurveyAnswer]:
    query = SurveyAnswer.filter(survey_id=survey_id)
    return query if scope is None else query.filter(organisation_id__in=sorted(scope))


async def survey_results(notice_id: int, staff: Staff | None, *, operator: bool = False,
                         answers_listed: int | None = None) -> dict[str, Any]:
    """Everything any surface shows about a survey's answers, already filtered for anonymity.

    Every figure is counted by the database (per cell and value), so the rows read do not grow with
    the answers; only comments and, for a named survey, the list of who answered what are rows.
    `answers_listed` caps that list (None: all of them, as the API gives; `total.answered` says how
    many there are)."""
    survey = await _survey(notice_id)
    notice: Notice = survey.notice
    scope = scope_for(staff, notice, journey=survey.key is not None, operator=operator)
    if scope == {-1}:
        scope = await cam_organisations(staff)  # type: ignore[arg-type]
    spec = spec_of(survey)
    recipients = await _recipients_per_cell(notice.id, scope)
    cells = await _answers_per_cell(survey.id, scope)
    answered = Counter({cell: sum(values.values()) for cell, values in cells.items()})
    org_ids = {org for org, _ in (*recipients, *cells) if org is not None}
    orgs = {o["id"]: o for o in await Organisation.filter(id__in=sorted(org_ids)).values(
        "id", "external_id", "name", "tier", "region")}
    anonymous = survey.anonymous
    values: Values = sum(cells.values(), Counter())
    n_answers, n_recipients = sum(values.values()), sum(recipients.values())
    enough = not anonymous or n_answers >= MIN_SEGMENT_ANSWERS
    pooled = _pooled_cells(recipients, answered) if anonymous and enough else None
    total = {"recipients": n_recipients, "answered": n_answers,
             "response_rate": round(n_answers / n_recipients, 4) if n_recipients else None,
             "changed_answers": await _answers(survey.id, scope).filter(changes__gt=0).count(),
             **(summarise(spec, values) if enough else _blank(spec))}
    return {
        "survey": _document(survey, spec, notice),
        "anonymous": anonymous, "threshold": MIN_SEGMENT_ANSWERS if anonymous else None,
        "suppressed": not enough, "total": total,
        "breakdowns": {dim: _breakdown(spec, dim, recipients, cells, orgs, pooled) if enough else []
                       for dim in DIMENSIONS},
        "comments": await _comments(survey.id, scope, anonymous, enough),
        "answers": None if anonymous else await _named_answers(survey.id, scope, spec, orgs, answers_listed),
        "scope": "all" if scope is None else "your organisations",
    }


def _segment_of(dim: str, org_id: int | None, role: str, orgs: dict[int, dict]) -> str:
    org = orgs.get(org_id) if org_id is not None else None
    if dim == "role":
        return role or "(none)"
    if org is None:
        return "(unknown)"
    if dim == "organisation":
        return f"{org['name']} ({org['external_id']})"
    return org[dim] or "(none)"


def _breakdown(spec: SurveySpec, dim: str, recipients: Counter[Cell], cells: dict[Cell, Values],
               orgs: dict[int, dict], pooled: set[Cell] | None) -> list[dict[str, Any]]:
    """One breakdown's rows; `pooled` (anonymous surveys): the cells counted only in the "other" row."""
    pooled = pooled or set()
    sizes: Counter[str] = Counter()
    values: dict[str, Values] = defaultdict(Counter)
    other_size, other_values, other_segments = 0, Counter[int](), set()
    for (org, role), size in recipients.items():
        segment = _segment_of(dim, org, role, orgs)
        if (org, role) in pooled:
            other_size += size
            other_segments.add(segment)
        else:
            sizes[segment] += size
    for (org, role), counts in cells.items():
        segment = _segment_of(dim, org, role, orgs)
        if (org, role) in pooled:
            other_values.update(counts)
            other_segments.add(segment)
        else:
            values[segment].update(counts)
    rows = [_row(spec, segment, sizes.get(segment, 0), values.get(segment, Counter()))
            for segment in sorted(set(sizes) | set(values))]
    if other_values:  # never fewer than MIN_SEGMENT_ANSWERS (see _pooled_cells)
        other = _row(spec, OTHER, other_size, other_values)
        other["segments"] = len(other_segments)
        rows.append(other)
    return rows


async def _comments(survey_id: int, scope: set[int] | None, anonymous: bool, enough: bool) -> list[Any]:
    """The answers' comments (only the rows that have one): named, in the order answered;
    anonymous, texts only, sorted (no order that could hint who wrote what), and none below the
    threshold."""
    if anonymous and not enough:
        return []
    with_comment = _answers(survey_id, scope).exclude(comment="")
    if anonymous:
        return sorted(await with_comment.values_list("comment", flat=True))
    return [{"member": a["member__name"] or a["member__email"], "email": a["member__email"], "comment": a["comment"]}
            for a in await with_comment.order_by("id").values("member__name", "member__email", "comment")]


async def _named_answers(survey_id: int, scope: set[int] | None, spec: SurveySpec, orgs: dict[int, dict],
                         limit: int | None) -> list[dict[str, Any]]:
    """Who answered what (a named survey), in the order answered; the first `limit` (None: all)."""
    query = _answers(survey_id, scope).order_by("id")
    if limit is not None:
        query = query.limit(limit)
    return [_named(a, spec, orgs) for a in await query.values(
        "organisation_id", "role", "value", "comment", "changes", "answered_at", "changed_at", "platform",
        "member__name", "member__email")] if limit != 0 else []


def _named(a: dict, spec: SurveySpec, orgs: dict[int, dict]) -> dict[str, Any]:
    org = orgs.get(a["organisation_id"]) or {}
    return {"member": a["member__name"], "email": a["member__email"], "organisation_id": org.get("external_id"),
            "organisation": org.get("name"), "role": a["role"], "value": a["value"], "label": spec.label(a["value"]),
            "comment": a["comment"], "answered_at": iso(a["answered_at"]), "changed_at": iso(a["changed_at"]),
            "changes": a["changes"], "platform": a["platform"]}


def _document(survey: Survey, spec: SurveySpec, notice: Notice) -> dict[str, Any]:
    author = notice.author if notice.author_id is not None else None  # type: ignore[attr-defined]
    return {"id": notice.id, "question": spec.question, "kind": spec.kind, "options": list(spec.options),
            "scale": list(spec.scale) if spec.scale else None, "follow_up": spec.follow_up or None,
            "anonymous": spec.anonymous, "topic": notice.topic, "audience": notice.audience,
            "author": getattr(author, "email", None), "status": notice.status,
            "open": survey.closed_at is None, "closes_at": iso(survey.closes_at), "closed_at": iso(survey.closed_at),
            "sent_at": iso(notice.sent_at), "journey_step": survey.key.split(":")[1] if survey.key else None}


# ---- CSV ---------------------------------------------------------------------------------------

def results_csv(results: dict[str, Any]) -> str:
    """`# key: value` lines about the survey, then one row for the total and one per segment."""
    doc = results["survey"]
    labels = [choice["label"] for choice in (results["total"]["distribution"] or [])] or _labels(doc)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for key in ("id", "question", "kind", "anonymous", "status", "open", "closes_at", "closed_at", "journey_step"):
        writer.writerow(csv_metadata_row(key, doc[key]))
    writer.writerow(csv_metadata_row("suppressed", results["suppressed"]))
    writer.writerow(csv_metadata_row("scope", results["scope"]))
    # the answer options are the CAM's own words: a label such as "=1+2" must stay text
    writer.writerow(["dimension", "segment", "recipients", "answered", "response_rate", "mean", "nps",
                     *[csv_cell(label) for label in labels]])

    def row(dim: str, r: dict[str, Any]) -> list[Any]:
        return [dim, r.get("segment", "all"), r["recipients"], r["answered"], r["response_rate"], r.get("mean"),
                (r.get("nps") or {}).get("score"), *[c["count"] for c in (r["distribution"] or [])]]

    writer.writerow([csv_cell(v) for v in row("total", results["total"])])
    for dim, rows in results["breakdowns"].items():
        for r in rows:
            writer.writerow([csv_cell(v) for v in row(dim, r)])
    return out.getvalue()


def _labels(doc: dict[str, Any]) -> list[str]:
    if doc["scale"]:
        return [str(p) for p in range(doc["scale"][0], doc["scale"][1] + 1)]
    return list(doc["options"])
