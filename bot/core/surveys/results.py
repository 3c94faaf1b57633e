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
import statistics
from collections import Counter, defaultdict
from typing import Any

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

def summarise(spec: SurveySpec, values: list[int]) -> dict[str, Any]:
    """Distribution, mean (scales) and NPS (0-10) of a list of answer values."""
    counts = Counter(values)
    n = len(values)
    out: dict[str, Any] = {"distribution": [
        {"value": value, "label": label, "count": counts.get(value, 0),
         "share": round(counts.get(value, 0) / n, 4) if n else None} for value, label in spec.choices()]}
    if spec.scale:
        out["mean"] = round(statistics.fmean(values), 2) if values else None
    if spec.is_nps:
        promoters = sum(1 for v in values if v >= 9)
        detractors = sum(1 for v in values if v <= 6)
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


def _row(spec: SurveySpec, segment: str, recipients: int, values: list[int]) -> dict[str, Any]:
    return {"segment": segment, "recipients": recipients, "answered": len(values),
            "response_rate": round(len(values) / recipients, 4) if recipients else None, **summarise(spec, values)}


Cell = tuple[Any, str]  # (organisation id, role): the finest level the breakdowns split by


def _pooled_cells(recipients: dict[int, tuple[int, str]], answers: list[dict]) -> set[Cell]:
    """Anonymous surveys: the cells shown only inside the pool (see the module docstring). The
    caller has checked that the survey has at least MIN_SEGMENT_ANSWERS answers in all."""
    counts: Counter[Cell] = Counter((a["organisation_id"], a["role"]) for a in answers)
    cells = set(counts) | set(recipients.values())
    pooled = {cell for cell in cells if counts[cell] < MIN_SEGMENT_ANSWERS}
    while 0 < sum(counts[cell] for cell in pooled) < MIN_SEGMENT_ANSWERS:
        pooled.add(min(cells - pooled, key=lambda cell: (counts[cell], str(cell))))
    return pooled


# ---- the results -------------------------------------------------------------------------------

async def _survey(notice_id: int) -> Survey:
    survey = await Survey.filter(notice_id=notice_id).select_related("notice__author").first()
    if survey is None:
        raise NotFound(f"survey #{notice_id} does not exist")
    return survey


async def survey_results(notice_id: int, staff: Staff | None, *, operator: bool = False) -> dict[str, Any]:
    """Everything any surface shows about a survey's answers, already filtered for anonymity."""
    survey = await _survey(notice_id)
    notice: Notice = survey.notice
    scope = scope_for(staff, notice, journey=survey.key is not None, operator=operator)
    if scope == {-1}:
        scope = await cam_organisations(staff)  # type: ignore[arg-type]
    spec = spec_of(survey)
    recipients: dict[int, tuple[int, str]] = {}
    for row in await Delivery.filter(notice_id=notice.id, kind=DeliveryKind.NOTICE.value,
                                     status=DeliveryStatus.DELIVERED.value).values(
            "member_id", "member__organisation_id", "member__role"):
        if scope is None or row["member__organisation_id"] in scope:
            recipients[row["member_id"]] = (row["member__organisation_id"], row["member__role"])
    answers = [a for a in await SurveyAnswer.filter(survey_id=survey.id).order_by("id").values(
        "organisation_id", "role", "value", "comment", "changes", "answered_at", "changed_at", "platform",
        "member__name", "member__email") if scope is None or a["organisation_id"] in scope]
    org_ids = {org for org, _ in recipients.values()} | {a["organisation_id"] for a in answers}
    orgs = {o["id"]: o for o in await Organisation.filter(id__in=[i for i in org_ids if i is not None]).values(
        "id", "external_id", "name", "tier", "region")}
    anonymous = survey.anonymous
    values = [a["value"] for a in answers]
    enough = not anonymous or len(values) >= MIN_SEGMENT_ANSWERS
    pooled = _pooled_cells(recipients, answers) if anonymous and enough else None
    total = {"recipients": len(recipients), "answered": len(values),
             "response_rate": round(len(values) / len(recipients), 4) if recipients else None,
             "changed_answers": sum(1 for a in answers if a["changes"]),
             **(summarise(spec, values) if enough else _blank(spec))}
    return {
        "survey": _document(survey, spec, notice),
        "anonymous": anonymous, "threshold": MIN_SEGMENT_ANSWERS if anonymous else None,
        "suppressed": not enough, "total": total,
        "breakdowns": {dim: _breakdown(spec, dim, recipients, answers, orgs, pooled) if enough else []
                       for dim in DIMENSIONS},
        "comments": _comments(answers, anonymous, enough),
        "answers": None if anonymous else [_named(a, spec, orgs) for a in answers],
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


def _breakdown(spec: SurveySpec, dim: str, recipients: dict[int, tuple[int, str]], answers: list[dict],
               orgs: dict[int, dict], pooled: set[Cell] | None) -> list[dict[str, Any]]:
    """One breakdown's rows; `pooled` (anonymous surveys): the cells counted only in the "other" row."""
    pooled = pooled or set()
    sizes: Counter[str] = Counter()
    values: dict[str, list[int]] = defaultdict(list)
    other_size, other_values, other_segments = 0, [], set()
    for org, role in recipients.values():
        segment = _segment_of(dim, org, role, orgs)
        if (org, role) in pooled:
            other_size += 1
            other_segments.add(segment)
        else:
            sizes[segment] += 1
    for a in answers:
        segment = _segment_of(dim, a["organisation_id"], a["role"], orgs)
        if (a["organisation_id"], a["role"]) in pooled:
            other_values.append(a["value"])
            other_segments.add(segment)
        else:
            values[segment].append(a["value"])
    rows = [_row(spec, segment, sizes.get(segment, 0), values.get(segment, []))
            for segment in sorted(set(sizes) | set(values))]
    if other_values:  # never fewer than MIN_SEGMENT_ANSWERS (see _pooled_cells)
        other = _row(spec, OTHER, other_size, other_values)
        other["segments"] = len(other_segments)
        rows.append(other)
    return rows


def _comments(answers: list[dict], anonymous: bool, enough: bool) -> list[Any]:
    if not anonymous:
        return [{"member": a["member__name"] or a["member__email"], "email": a["member__email"],
                 "comment": a["comment"]} for a in answers if a["comment"]]
    if not enough:
        return []
    return sorted(a["comment"] for a in answers if a["comment"])  # no order that could hint who wrote what


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
