"""What the console shows about notices: the filtered list, a notice's funnel, acknowledgements
over time, the breakdown by organisation, tier and region, who has not acknowledged (and why a
delivery failed), reminders, escalations, revisions and the notice's audit events.

Who may read what is the reports' rule (`compliance.reports.can_read_notice`, also used by the
reports API and `report` in chat): compliance and admins every notice, a CAM their own and those
escalated to them.
The counts come from `compliance.reports.notice_summary`, so the console and the CSV report
can never disagree.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import Q
from tortoise.functions import Count

from bot.common.errors import NotFound, PermissionDenied
from bot.core.compliance.reports import (
    PartnerScope,
    acknowledgements_that_count,
    can_read_notice,
    chain_head,
    funnel_counts,
    funnels_by_notice,
    notice_revisions,
    notice_summary,
    readable_notices,
)
from bot.core.directory.permissions import require_viewer
from bot.core.insights.sql import as_datetime, rows, seconds_between
from bot.core.surveys.answers import ANSWER_EVENTS
from storage.models import Notice, Staff, StaffRole, Survey

PAGE = 25
PEOPLE_PAGE = 50
_AUDITORS = (StaffRole.COMPLIANCE.value, StaffRole.ADMIN.value)
# (bucket width, used while the span since the send is at most this long)
# The breakdown's label for organisations without a tier (or region); filtering people on it means
# "empty or unset" (`not_acknowledged`), so a row's count and its drill-down agree.
NO_VALUE = "(none)"
_BUCKETS = ((timedelta(minutes=1), timedelta(hours=2)), (timedelta(minutes=15), timedelta(hours=24)),
            (timedelta(hours=1), timedelta(days=4)), (timedelta(hours=6), timedelta(days=21)))


async def readable_notice(notice_id: int, staff: Staff | None) -> Notice:
    notice = await Notice.filter(id=notice_id).select_related("author").first()
    if notice is None:
        raise NotFound(f"notice {notice_id} does not exist")
    if not await can_read_notice(staff, notice):
        raise PermissionDenied(f"You may not see notice #{notice_id}: it is another CAM's.")
    return notice


# ---- the list -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NoticeFilters:
    topic: str = ""
    importance: str = ""
    status: str = ""
    author: str = ""  # e-mail
    # on the date the list shows (`shown_at`): sent, else scheduled for, else (a draft) made
    since: datetime | None = None  # at or after
    until: datetime | None = None  # before


@dataclass
class NoticeRow:
    notice: Notice
    recipients: int = 0
    delivered: int = 0
    failed: int = 0
    pending: int = 0
    acknowledged: int = 0

    @property
    def rate(self) -> float | None:
        return self.acknowledged / self.delivered if self.delivered else None


@dataclass
class NoticePage:
    rows: list[NoticeRow]
    next_before: int | None
    authors: list[str] = field(default_factory=list)  # for the author filter


async def list_notices(staff: Staff | None, filters: NoticeFilters, *, before: int | None = None,
                       limit: int = PAGE) -> NoticePage:
    """Newest first, `limit` at a time (keyset on the id); a CAM sees the notices they may open
    (`readable_notices`: their own and those escalated to them as a partner's CAM)."""
    staff = require_viewer(staff)
    query = readable_notices(staff)
    if filters.topic:
        query = query.filter(topic=filters.topic)
    if filters.importance:
        query = query.filter(importance=filters.importance)
    if filters.status:
        query = query.filter(status=filters.status)
    if filters.author:
        query = query.filter(author__email=filters.author.strip().lower())
    if filters.since:
        query = query.filter(_shown_at("gte", filters.since))
    if filters.until:
        query = query.filter(_shown_at("lt", filters.until))
    if before:
        query = query.filter(id__lt=before)
    found = await query.select_related("author").order_by("-id").limit(limit + 1)
    page = found[:limit]
    counted = await _counts(page)
    if staff.role in _AUDITORS:
        authors = sorted(set(await Staff.filter(notices__id__isnull=False).values_list("email", flat=True)))
    else:
        authors = sorted(set(await readable_notices(staff).filter(author_id__isnull=False).values_list(
            "author__email", flat=True)))
    return NoticePage([counted.get(n.id) or NoticeRow(n) for n in page],
                      page[-1].id if len(found) > limit else None, authors)


def _shown_at(op: str, moment: datetime) -> Q:
    """COALESCE(sent_at, scheduled_at, created_at) `op` `moment`: the date the list shows (sent,
    else scheduled for, else a draft's making), spelled out so the ORM names the notice's columns
    (the author's row joined beside them has a created_at too)."""
    return (Q(**{f"sent_at__{op}": moment})
            | Q(sent_at__isnull=True, **{f"scheduled_at__{op}": moment})
            | Q(sent_at__isnull=True, scheduled_at__isnull=True, **{f"created_at__{op}": moment}))


async def _counts(notices: list[Notice]) -> dict[int, NoticeRow]:
    """Delivery and acknowledgement counts of a page of notices, in two GROUP BY queries."""
    if not notices:
        return {}
    ids = [n.id for n in notices]
    marks = ",".join("?" * len(ids))
    out = {n.id: NoticeRow(n) for n in notices}
    by_status = await rows(f"SELECT notice_id, status, platform, COUNT(*) AS n FROM delivery WHERE notice_id IN "
                           f"({marks}) AND kind = 'notice' GROUP BY notice_id, status, platform", ids)
    for notice_id, counts in (await funnels_by_notice(by_status)).items():
        row = out[notice_id]
        row.recipients, row.delivered, row.failed, row.pending = (
            counts["recipients"], counts["delivered"], counts["failed"], counts["pending"])
    for r in await rows("SELECT a.notice_id, COUNT(DISTINCT a.member_id) AS n FROM acknowledgement a "
                        f"JOIN notice n ON n.id = a.notice_id WHERE a.notice_id IN ({marks}) "
                        "AND a.revision >= n.ack_revision GROUP BY a.notice_id", ids):
        out[r["notice_id"]].acknowledged = r["n"]
    return out


# ---- one notice -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Segment:
    """Counts for one organisation, tier or region."""

    key: str  # organisation external id, tier or region
    label: str
    recipients: int
    delivered: int
    failed: int
    pending: int
    acknowledged: int
    paused: bool = False

    @property
    def outstanding(self) -> int:
        return max(self.delivered - self.acknowledged, 0)

    @property
    def rate(self) -> float | None:
        return self.acknowledged / self.delivered if self.delivered else None


@dataclass
class Overview:
    notice: Notice
    summary: dict[str, Any]  # compliance.reports.notice_summary: totals and per organisation
    organisations: list[Segment]
    tiers: list[Segment]
    regions: list[Segment]
    failure_reasons: list[tuple[str, int]]
    reminders: list[tuple[int, int]]  # (reminder number, delivered)
    escalations: list[dict[str, Any]]
    revisions: list[dict[str, Any]]
    audit: dict[str, Any]


async def overview(notice: Notice, scope: PartnerScope | None = None) -> Overview:
    """Everything the notice's page shows but the chart; with a `scope` (`report_scope`: a CAM
    reading a colleague's escalated notice), the counts, reasons, reminders and escalations of its
    partners only, as their report. The reads are independent: on PostgreSQL they run at once on
    the pool's connections (SQLite runs them in turn)."""
    summary, reasons, reminders, escalations, revisions, audit = await asyncio.gather(
        notice_summary(notice.id, scope), failure_reasons(notice.id, scope), _reminders(notice.id, scope),
        _escalations(notice.id, scope), notice_revisions(notice), audit_state(notice.id))
    attributes = await _organisation_attributes([o["organisation_id"] for o in summary["organisations"]])
    organisations = [_segment(o["organisation_id"], o["organisation"], o, paused="reminders_paused" in o)
                     for o in summary["organisations"]]
    tiers, regions = _roll_up(summary["organisations"], attributes, "tier"), _roll_up(
        summary["organisations"], attributes, "region")
    organisations.sort(key=lambda s: (-s.outstanding, s.label))
    return Overview(notice, summary, organisations, tiers, regions, reasons, reminders, escalations, revisions, audit)


def _segment(key: str, label: str, counts: dict[str, Any], *, paused: bool = False) -> Segment:
    return Segment(key, label, counts["recipients"], counts["delivered"], counts["failed"], counts["pending"],
                   counts["acknowledged"], paused)


async def _organisation_attributes(external_ids: list[str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for start in range(0, len(external_ids), 500):
        chunk = external_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for r in await rows(f"SELECT external_id, tier, region FROM organisation WHERE external_id IN ({marks})", chunk):
            found[r["external_id"]] = r
    return found


def _roll_up(organisations: list[dict[str, Any]], attributes: dict[str, dict[str, str]], key: str) -> list[Segment]:
    totals: dict[str, dict[str, int]] = {}
    for org in organisations:
        value = attributes.get(org["organisation_id"], {}).get(key) or NO_VALUE
        bucket = totals.setdefault(value, {"recipients": 0, "delivered": 0, "failed": 0, "pending": 0,
                                           "acknowledged": 0})
        for name in bucket:
            bucket[name] += org[name]
    segments = [_segment(value, value, counts) for value, counts in totals.items()]
    return sorted(segments, key=lambda s: (-s.outstanding, s.label))


def _in_scope(scope: PartnerScope | None, copy: str = "d") -> tuple[str, list[int]]:
    """A condition (" AND ...") keeping the delivery rows `copy` of `scope`'s partners: by the
    organisation the row was written with, else the member's (as the report); none without a scope."""
    if scope is None:
        return "", []
    ids = sorted(scope.organisations) or [0]
    return (f" AND COALESCE({copy}.organisation_id, (SELECT m.organisation_id FROM member m WHERE m.id = "
            f"{copy}.member_id)) IN ({','.join('?' * len(ids))})", ids)


async def failure_reasons(notice_id: int, scope: PartnerScope | None = None) -> list[tuple[str, int]]:
    scoped, ids = _in_scope(scope)
    found = await rows("SELECT error, COUNT(*) AS n FROM delivery d WHERE notice_id = ? AND kind = 'notice' "
                       f"AND status = 'failed'{scoped} GROUP BY error ORDER BY n DESC LIMIT 20", [notice_id, *ids])
    return [(r["error"] or "failed (no reason recorded)", r["n"]) for r in found]


async def _reminders(notice_id: int, scope: PartnerScope | None) -> list[tuple[int, int]]:
    scoped, ids = _in_scope(scope)
    found = await rows("SELECT sequence, COUNT(*) AS n FROM delivery d WHERE notice_id = ? AND kind = 'reminder' "
                       f"AND status = 'delivered'{scoped} GROUP BY sequence ORDER BY sequence", [notice_id, *ids])
    return [(r["sequence"], r["n"]) for r in found]


async def _escalations(notice_id: int, scope: PartnerScope | None) -> list[dict[str, Any]]:
    ids = [] if scope is None else sorted(scope.organisations) or [0]
    scoped = f" AND e.organisation_id IN ({','.join('?' * len(ids))})" if scope is not None else ""
    found = await rows(
        "SELECT o.external_id, o.name, e.status, e.created_at, e.sent_at, e.error, s.email AS cam, e.member_ids "
        "FROM escalation e JOIN organisation o ON o.id = e.organisation_id LEFT JOIN staff s ON s.id = e.staff_id "
        f"WHERE e.notice_id = ?{scoped} ORDER BY o.name LIMIT 200", [notice_id, *ids])
    out = []
    for r in found:
        members = r.pop("member_ids")
        if isinstance(members, str):  # a JSON column read back as text (SQLite)
            members = json.loads(members)
        out.append({**r, "members": len(members or []), "created_at": as_datetime(r["created_at"]),
                    "sent_at": as_datetime(r["sent_at"])})
    return out


async def audit_state(notice_id: int) -> dict[str, Any]:
    """The notice's events by kind, its latest event, and the chain's head (indexes only). An
    anonymous survey's answer events are left out (`answers_hidden`): their count, kinds and times
    would tell how many answered and when (the trail and its export keep them)."""
    hidden = ANSWER_EVENTS if await Survey.exists(notice_id=notice_id, anonymous=True) else ()
    shown = f" AND kind NOT IN ({', '.join('?' * len(hidden))})" if hidden else ""
    kinds = await rows(f"SELECT kind, COUNT(*) AS n FROM audit_event WHERE notice_id = ?{shown} GROUP BY kind "
                       "ORDER BY n DESC, kind", [notice_id, *hidden])
    latest = await rows(f"SELECT seq, kind, occurred_at FROM audit_event WHERE notice_id = ?{shown} "
                        "ORDER BY id DESC LIMIT 1", [notice_id, *hidden])
    last = latest[0] if latest else None
    if last is not None:
        last["occurred_at"] = as_datetime(last["occurred_at"])
    return {"kinds": kinds, "events": sum(k["n"] for k in kinds), "last": last, "head": await chain_head(),
            "answers_hidden": bool(hidden)}


async def live_counts(notice: Notice, scope: PartnerScope | None = None) -> dict[str, int]:
    """The funnel's numbers for the page's refresh: two index-only queries (the same definitions
    as `compliance.reports.notice_summary`); with a `scope`, the scoped summary's."""
    if scope is not None:
        summary = await notice_summary(notice.id, scope)
        return {key: summary[key] for key in ("recipients", "delivered", "failed", "pending", "acknowledged")}
    by_status = [{**r, "notice_id": notice.id} for r in await rows(
        "SELECT status, platform, COUNT(*) AS n FROM delivery WHERE notice_id = ? AND kind = 'notice' "
        "GROUP BY status, platform", [notice.id])]
    funnel = (await funnels_by_notice(by_status)).get(notice.id) or funnel_counts()
    counts = {key: funnel[key] for key in ("recipients", "delivered", "failed", "pending")} | {"acknowledged": 0}
    counted, repeats = await acknowledgements_that_count(notice)
    if repeats:
        [counts["acknowledged"]] = await counted.annotate(n=Count("member_id", distinct=True)).values_list(
            "n", flat=True)
    else:
        counts["acknowledged"] = await counted.count()
    return counts


# ---- acknowledgements over time ---------------------------------------------------------------

@dataclass(frozen=True)
class Timeline:
    start: datetime
    bucket: timedelta
    acknowledged: list[int]  # cumulative, per bucket

    def moment(self, index: int) -> datetime:
        return self.start + self.bucket * (index + 1)


def _bucket_for(span: timedelta) -> timedelta:
    for width, up_to in _BUCKETS:
        if span <= up_to:
            return width
    return timedelta(days=1)


async def timeline(notice: Notice, *, now: datetime, max_points: int = 120,
                   scope: PartnerScope | None = None) -> Timeline | None:
    """Acknowledgements (of the revision that counts), cumulative, from the send to now: one
    GROUP BY over the acknowledgement index; with a `scope`, of its partners' copies."""
    if notice.sent_at is None:
        return None
    start = notice.sent_at
    end = max(now, start)
    width = _bucket_for(end - start)
    count = min(int((end - start) / width) + 1, max_points)
    seconds = max(max(width, (end - start) / count).total_seconds(), 1.0)
    buckets = [0] * count
    scoped, ids = _in_scope(scope)
    if scoped:
        scoped = (" AND EXISTS (SELECT 1 FROM delivery d WHERE d.notice_id = a.notice_id AND d.member_id = a.member_id "
                  f"AND d.kind = 'notice'{scoped})")
    for r in await rows(
            f"SELECT CAST({seconds_between('acknowledged_at', '?')} / ? AS INTEGER) AS b, COUNT(*) AS n "
            f"FROM acknowledgement a WHERE notice_id = ? AND revision = ?{scoped} GROUP BY b",
            [start, seconds, notice.id, notice.ack_revision, *ids]):
        buckets[min(max(int(r["b"] or 0), 0), count - 1)] += r["n"]
    total, cumulative = 0, []
    for n in buckets:
        total += n
        cumulative.append(total)
    return Timeline(start, timedelta(seconds=seconds), cumulative)


# ---- the people who have not acknowledged ------------------------------------------------------

@dataclass(frozen=True)
class PeopleFilter:
    organisation: str = ""  # external id
    tier: str = ""
    region: str = ""
    state: str = ""  # "" (not acknowledged), delivered, failed, pending


@dataclass
class PeoplePage:
    rows: list[dict[str, Any]]
    next_after: str | None  # "<member id>-<platform>" of the last row, for the next page


def _after(value: str) -> tuple[int, str]:
    member, _, platform = (value or "").partition("-")
    return (int(member), platform[:10]) if member.isascii() and member.isdigit() and len(member) < 10 else (0, "")


def _matches(column: str, value: str) -> tuple[str, list[Any]]:
    """The condition for one filter of the people list; NO_VALUE (the breakdown's "(none)")
    matches what `_roll_up` put under it: empty, unset, or that very text."""
    if value == NO_VALUE:
        return f"(COALESCE({column}, '') IN ('', ?))", [NO_VALUE]
    return f"{column} = ?", [value]


async def not_acknowledged(notice: Notice, wanted: PeopleFilter, *, scope: PartnerScope | None, after: str = "",
                           limit: int = PEOPLE_PAGE) -> PeoplePage:
    """Recipients without an acknowledgement of the revision that counts, by member (keyset on
    member and platform, the delivery table's own order, so a page stops after `limit` rows);
    with a `scope` (`report_scope`: a CAM reading a colleague's escalated notice), its partners'.

    Each copy belongs to the organisation it was sent for (the member's only for copies written
    without one), as the breakdown and the report count it: after a directory import moved a
    recipient, a row's count and its list still agree."""
    member_after, platform_after = _after(after)
    where = ["d.notice_id = ?", "d.kind = 'notice'", "(d.member_id > ? OR (d.member_id = ? AND d.platform > ?))",
             "NOT EXISTS (SELECT 1 FROM acknowledgement a WHERE a.notice_id = d.notice_id "
             "AND a.member_id = d.member_id AND a.revision >= ?)"]
    params: list[Any] = [notice.id, member_after, member_after, platform_after, notice.ack_revision]
    if scope is not None:  # the organisation the copy was written with, else the member's (as the report)
        ids = sorted(scope.organisations) or [0]
        where.append(f"COALESCE(d.organisation_id, m.organisation_id) IN ({','.join('?' * len(ids))})")
        params += ids
    for column, value in (("o.external_id", wanted.organisation), ("o.tier", wanted.tier),
                          ("o.region", wanted.region)):
        if value:
            condition, values = _matches(column, value)
            where.append(condition)
            params += values
    if wanted.state == "pending":
        where.append("d.status IN ('pending', 'sending')")
    elif wanted.state in ("delivered", "failed", "digest", "cancelled"):
        where.append("d.status = ?")
        params.append(wanted.state)
    found = await rows(
        "SELECT d.id, d.member_id, d.platform, d.status, d.error, d.delivered_at, d.reminders_sent, d.attempts, "
        "m.name, m.email, m.role, o.external_id AS org_id, o.name AS organisation, o.tier, o.region "
        "FROM delivery d JOIN member m ON m.id = d.member_id "
        "JOIN organisation o ON o.id = COALESCE(d.organisation_id, m.organisation_id) "
        f"WHERE {' AND '.join(where)} ORDER BY d.member_id, d.platform LIMIT ?", [*params, limit + 1])
    page = found[:limit]
    for r in page:
        r["delivered_at"] = as_datetime(r["delivered_at"])
    last = page[-1] if page else None
    return PeoplePage(page, f"{last['member_id']}-{last['platform']}" if last and len(found) > limit else None)
