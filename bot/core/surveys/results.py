"""Survey results: the one function chat, the CLI, the API and the console read them from.

Response rate (answers / members it was delivered to), the distribution of answers, the mean of
a scale, the Net Promoter Score of a 0-10 scale (% 9-10 minus % 0-6), and breakdowns by tier,
region, role and organisation.

Anonymous surveys never show member-level data (no names, no per-member answers; comments only as
an unordered list once five people have answered), and neither the total nor any segment is shown
with fewer than MIN_SEGMENT_ANSWERS answers. Hidden segments are pooled into one "other" row; if
that pool would itself hold fewer than five answers (so that the total minus the rows shown would
give a small segment away), the smallest shown segment joins it until it holds five or more.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter, defaultdict
from typing import Any

from bot.common.errors import NotFound, PermissionDenied
from bot.core.compliance.reports import csv_cell, iso
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
OTHER = "other segments (under 5 answers each)"


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


async def _cam_organisations(staff: Staff) -> set[int]:
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


def _suppress(spec: SurveySpec, rows: list[dict[str, Any]], values: dict[str, list[int]]) -> list[dict[str, Any]]:
    """Anonymous surveys: drop segments under the threshold, pooling them (see the module docstring)."""
    shown = [r for r in rows if r["answered"] >= MIN_SEGMENT_ANSWERS]
    hidden = [r for r in rows if r["answered"] < MIN_SEGMENT_ANSWERS]
    while shown and 0 < sum(r["answered"] for r in hidden) < MIN_SEGMENT_ANSWERS:
        smallest = min(shown, key=lambda r: (r["answered"], r["segment"]))
        shown.remove(smallest)
        hidden.append(smallest)
    if hidden and sum(r["answered"] for r in hidden) >= MIN_SEGMENT_ANSWERS:
        pooled = [v for r in hidden for v in values[r["segment"]]]
        other = _row(spec, OTHER, sum(r["recipients"] for r in hidden), pooled)
        other["segments"] = len(hidden)
        shown.append(other)
    return shown


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
        scope = await _cam_organisations(staff)  # type: ignore[arg-type]
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
    total = {"recipients": len(recipients), "answered": len(values),
             "response_rate": round(len(values) / len(recipients), 4) if recipients else None,
             "changed_answers": sum(1 for a in answers if a["changes"]),
             **(summarise(spec, values) if enough else _blank(spec))}
    return {
        "survey": _document(survey, spec, notice),
        "anonymous": anonymous, "threshold": MIN_SEGMENT_ANSWERS if anonymous else None,
        "suppressed": not enough, "total": total,
        "breakdowns": {dim: _breakdown(spec, dim, recipients, answers, orgs, anonymous) if enough else []
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
               orgs: dict[int, dict], anonymous: bool) -> list[dict[str, Any]]:
    sizes: Counter[str] = Counter(_segment_of(dim, org, role, orgs) for org, role in recipients.values())
    values: dict[str, list[int]] = defaultdict(list)
    for a in answers:
        values[_segment_of(dim, a["organisation_id"], a["role"], orgs)].append(a["value"])
    rows = [_row(spec, segment, sizes.get(segment, 0), values.get(segment, []))
            for segment in sorted(set(sizes) | set(values))]
    return _suppress(spec, rows, values) if anonymous else rows


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
    for key in ("id", "question", "kind", "anonymous", "status", "open", "closes_at", "closed_at", "journey_step"):
        out.write(f"# {key}: {'' if doc[key] is None else doc[key]}\n")
    out.write(f"# suppressed: {results['suppressed']}\n# scope: {results['scope']}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["dimension", "segment", "recipients", "answered", "response_rate", "mean", "nps", *labels])

    def row(dim: str, r: dict[str, Any]) -> list[Any]:
        return [dim, r.get("segment", "all"), r["recipients"], r["answered"], r["response_rate"], r.get("mean"),
                (r.get("nps") or {}).get("score"), *[c["count"] for c in (r["distribution"] or [])]]

    writer.writerow(row("total", results["total"]))
    for dim, rows in results["breakdowns"].items():
        for r in rows:
            writer.writerow([csv_cell(v) for v in row(dim, r)])
    return out.getvalue()


def _labels(doc: dict[str, Any]) -> list[str]:
    if doc["scale"]:
        return [str(p) for p in range(doc["scale"][0], doc["scale"][1] + 1)]
    return list(doc["options"])
