"""Engagement: how partners take up notices and onboarding, in aggregate.

Per topic and per segment (tier, region, role), for notices sent in a window: deliveries,
must-know deliveries and acknowledgements (of the revision that counts), the acknowledgement
rate, the median time from the send to a first acknowledgement (revision 1), and opt-outs. For
onboarding: members at each stage of their journey, what became of their questions, and the
questions asked most often that the knowledge base could not answer.

Every figure is a GROUP BY in the database, shaped so that each row is touched once and looked
up as little as possible (the page must stay fast with 100,000 recipients on a notice):
deliveries are counted per (notice, organisation, role), reading the delivery index and the
member only, and rolled up to topic, tier, region and role here from the window's notices and
the organisations (small tables); acknowledgements are one pass that counts the revision that
matters and buckets the times to a first acknowledgement together; opt-outs read only members
who have any. A CAM's view covers the organisations that name them as CAM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.core.directory.permissions import partner_scope
from bot.core.insights.sql import as_datetime, postgres, rows, seconds_between
from storage.models import Staff

GROUPS = ("topic", "tier", "region", "role")
_SEGMENTS = {"tier": "o.tier", "region": "o.region", "role": "m.role"}
_IN_WINDOW = "IN (SELECT id FROM notice WHERE sent_at >= ?)"
_SCOPED = " AND m.organisation_id IN (SELECT id FROM organisation WHERE LOWER(cam_email) = ?)"


@dataclass
class Row:
    key: str
    delivered: int = 0
    must_delivered: int = 0
    acknowledged: int = 0
    median_seconds: float | None = None
    opt_outs: int = 0

    @property
    def rate(self) -> float | None:
        return self.acknowledged / self.must_delivered if self.must_delivered else None


class _Tables:
    """Rows by grouping and key, filled in by the passes below."""

    def __init__(self) -> None:
        self.found: dict[str, dict[str, Row]] = {by: {} for by in GROUPS}

    def row(self, by: str, key: Any) -> Row:
        key = str(key or "")
        return self.found[by].setdefault(key, Row(key))

    def each(self, keys: dict[str, Any]) -> list[Row]:
        return [self.row(by, keys[by]) for by in GROUPS]

    def sorted(self) -> dict[str, list[Row]]:
        return {by: sorted(rows_.values(), key=lambda r: (-r.delivered, r.key)) for by, rows_ in self.found.items()}


async def breakdowns(staff: Staff | None, *, since: datetime) -> dict[str, list[Row]]:
    """Rows by topic, tier, region and role, for notices sent since `since`."""
    scope = partner_scope(staff)
    scope_sql, scope_params = (_SCOPED, [scope]) if scope is not None else ("", [])
    tables = _Tables()
    notices = {r["id"]: r for r in await rows("SELECT id, topic, importance FROM notice WHERE sent_at >= ?", [since])}
    orgs = {r["id"]: r for r in await rows("SELECT id, tier, region, LOWER(cam_email) AS cam FROM organisation")}
    # the scope is applied to the grouped rows: a filter in the query hides the row count from
    # PostgreSQL's planner, which then sorts 100,000 rows on disk instead of hashing them
    for r in await rows(
            "SELECT d.notice_id, m.organisation_id AS org, m.role, COUNT(*) AS n FROM delivery d "
            f"JOIN member m ON m.id = d.member_id WHERE d.notice_id {_IN_WINDOW} AND d.kind = 'notice' "
            "AND d.status = 'delivered' GROUP BY d.notice_id, m.organisation_id, m.role", [since]):
        notice, org = notices.get(r["notice_id"]), orgs.get(r["org"]) or {}
        if notice is None or (scope is not None and org.get("cam") != scope):
            continue
        keys = {"topic": notice["topic"], "tier": org.get("tier"), "region": org.get("region"), "role": r["role"]}
        for target in tables.each(keys):
            target.delivered += r["n"]
            if notice["importance"] == "must-know":
                target.must_delivered += r["n"]
    if scope is not None and postgres():  # an array of ids, which the planner can count
        scope_sql, scope_params = " AND m.organisation_id = ANY(?)", [[i for i, o in orgs.items() if o["cam"] == scope]]
    await _acknowledgements(tables, since, scope_sql, scope_params)
    for by, counts in (await _opt_outs(scope, orgs)).items():
        for key, count in counts.items():
            tables.row(by, key).opt_outs = count
    return tables.sorted()


async def breakdown(staff: Staff | None, by: str, *, since: datetime) -> list[Row]:
    """Rows for one grouping: `topic`, `tier`, `region` or `role`."""
    return (await breakdowns(staff, since=since))[by]


async def _acknowledgements(tables: _Tables, since: datetime, scope_sql: str, scope_params: list[Any]) -> None:
    """One pass over the window's acknowledgements: those of the revision that counts, and the
    times to a first acknowledgement (revision 1) as histograms, per topic and segment; the
    medians come from the histograms of every grouping (see `median_of`)."""
    columns = ", ".join(f"{expr} AS {by}" for by, expr in _SEGMENTS.items())
    # the inner query works out each row's seconds once; the fence keeps the database from
    # inlining it into every branch of the bucket's CASE
    fence = " OFFSET 0" if postgres() else " LIMIT -1"
    found = await rows(
        f"SELECT topic, {', '.join(_SEGMENTS)}, counts, first, {_bucket_sql()} AS b, "
        f"COUNT(*) AS n FROM (SELECT n.topic AS topic, {columns}, "
        "CASE WHEN a.revision = n.ack_revision THEN 1 ELSE 0 END AS counts, "
        "CASE WHEN a.revision = 1 THEN 1 ELSE 0 END AS first, "
        f"{seconds_between('a.acknowledged_at', 'n.sent_at')} AS s FROM acknowledgement a "
        "JOIN notice n ON n.id = a.notice_id JOIN member m ON m.id = a.member_id "
        f"JOIN organisation o ON o.id = m.organisation_id WHERE a.notice_id {_IN_WINDOW}{scope_sql}{fence}) t "
        f"GROUP BY topic, {', '.join(_SEGMENTS)}, counts, first, b", [since, *scope_params])
    histograms: dict[str, dict[str, dict[int, int]]] = {by: {} for by in GROUPS}
    for r in found:
        for by, target in zip(GROUPS, tables.each(r), strict=True):
            if r["counts"]:
                target.acknowledged += r["n"]
            if r["first"]:
                bucket = max(int(r["b"] or 0), 0)  # a clock a little behind counts as at once
                histogram = histograms[by].setdefault(target.key, {})
                histogram[bucket] = histogram.get(bucket, 0) + r["n"]
    for by, values in histograms.items():
        for key, histogram in values.items():
            tables.row(by, key).median_seconds = median_of(histogram)


# Times to acknowledge are counted in buckets that widen with the wait: a minute during the
# first hour, 15 minutes to a day, an hour to a week, then a day. The median is the middle of
# the bucket holding the middle acknowledgement, so it is exact to within those widths.
_BUCKETS = ((3600, 60), (86400, 900), (604800, 3600), (None, 86400))


def _bucket_sql() -> str:
    """SQL for the bucket of the column `s` (seconds)."""
    parts, offset, floor = [], 0, 0
    for upper, width in _BUCKETS:
        expression = f"{offset} + CAST((s - {floor}) / {width} AS INTEGER)"
        if upper is None:
            parts.append(f"ELSE {expression}")
        else:
            parts.append(f"WHEN s < {upper} THEN {expression}")
            offset += (upper - floor) // width
            floor = upper
    return "CASE " + " ".join(parts) + " END"


def bucket_middle(bucket: int) -> float:
    """The seconds in the middle of a bucket of `_bucket_sql`."""
    offset, floor = 0, 0
    for upper, width in _BUCKETS:
        count = (upper - floor) // width if upper is not None else None
        if count is None or bucket < offset + count:
            return floor + (bucket - offset + 0.5) * width
        offset, floor = offset + count, upper
    raise AssertionError("unreachable")


def median_of(histogram: dict[int, int]) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    wanted = ((total + 1) // 2, (total + 2) // 2)  # the middle one, or the two middle ones
    found, seen = [], 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        while len(found) < 2 and seen >= wanted[len(found)]:
            found.append(bucket_middle(bucket))
    return sum(found) / 2


async def _opt_outs(scope: str | None, orgs: dict[int, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per topic: members who left it. Per tier, region and role: members who left at least one
    topic. One pass that returns only the members who left any (few), counted here."""
    scope_sql, params = (_SCOPED, [scope]) if scope is not None else ("", [])
    out: dict[str, dict[str, int]] = {by: {} for by in GROUPS}
    for r in await rows("SELECT m.organisation_id AS org, m.role, m.topic_opt_outs AS topics FROM member m "
                        f"WHERE m.active AND m.topic_opt_outs <> '[]'{scope_sql}", params):
        topics = json.loads(r["topics"]) if isinstance(r["topics"], str) else r["topics"]
        if not topics:
            continue
        for topic in set(topics):
            out["topic"][str(topic)] = out["topic"].get(str(topic), 0) + 1
        org = orgs.get(r["org"]) or {}
        for by, key in (("tier", org.get("tier")), ("region", org.get("region")), ("role", r["role"])):
            out[by][str(key or "")] = out[by].get(str(key or ""), 0) + 1
    return out


# ---- onboarding -------------------------------------------------------------------------------

async def journey_stages(staff: Staff | None) -> list[dict[str, Any]]:
    """Active members by role and number of journey steps done (the page maps roles to journeys):
    members per role from the member index, and the steps done of only the members with any."""
    scope = partner_scope(staff)
    scope_sql, params = (_SCOPED, [scope]) if scope is not None else ("", [])
    members = await rows(f"SELECT m.role, COUNT(*) AS n FROM member m WHERE m.active = TRUE{scope_sql} "
                         "GROUP BY m.role", params)
    started = await rows(
        "SELECT m.role, x.done, COUNT(*) AS n FROM (SELECT member_id, COUNT(*) AS done FROM journey_step "
        "WHERE position >= 1 AND done_at IS NOT NULL GROUP BY member_id) x JOIN member m ON m.id = x.member_id "
        f"WHERE m.active = TRUE{scope_sql} GROUP BY m.role, x.done", params)
    not_started = {r["role"]: r["n"] for r in members}
    for r in started:
        not_started[r["role"]] = not_started.get(r["role"], 0) - r["n"]
    out = [{"role": role, "done": 0, "n": n} for role, n in not_started.items() if n > 0]
    out += [{"role": r["role"], "done": r["done"], "n": r["n"]} for r in started]
    return sorted(out, key=lambda r: (r["role"], r["done"]))


async def questions(staff: Staff | None, *, since: datetime) -> dict[str, int]:
    scope = partner_scope(staff)
    scope_sql = " AND LOWER(o.cam_email) = ?" if scope is not None else ""
    found = await rows(
        "SELECT COUNT(*) AS asked, "
        "SUM(CASE WHEN q.abstained THEN 0 ELSE 1 END) AS answered, "
        "SUM(CASE WHEN q.abstained THEN 1 ELSE 0 END) AS abstained, "
        "SUM(CASE WHEN q.feedback = 'helpful' THEN 1 ELSE 0 END) AS helpful, "
        "SUM(CASE WHEN q.feedback = 'not_helpful' THEN 1 ELSE 0 END) AS not_helpful, "
        "SUM(CASE WHEN q.handoff_status <> '' THEN 1 ELSE 0 END) AS handed_off, "
        "SUM(CASE WHEN q.handoff_status = 'answered' THEN 1 ELSE 0 END) AS cam_answered "
        "FROM question q JOIN member m ON m.id = q.member_id JOIN organisation o ON o.id = m.organisation_id "
        f"WHERE q.asked_at >= ?{scope_sql}", [since, *([scope] if scope is not None else [])])
    return {k: int(v or 0) for k, v in (found[0] if found else {}).items()}


async def unanswered(staff: Staff | None, *, since: datetime, limit: int = 10) -> list[dict[str, Any]]:
    """The questions asked most often that the knowledge base abstained on or got a thumbs-down."""
    scope = partner_scope(staff)
    scope_sql = " AND LOWER(o.cam_email) = ?" if scope is not None else ""
    found = await rows(
        "SELECT LOWER(TRIM(q.text)) AS text, COUNT(*) AS n, MAX(q.asked_at) AS last_asked "
        "FROM question q JOIN member m ON m.id = q.member_id JOIN organisation o ON o.id = m.organisation_id "
        f"WHERE q.asked_at >= ? AND (q.abstained OR q.feedback = 'not_helpful'){scope_sql} "
        "GROUP BY LOWER(TRIM(q.text)) ORDER BY n DESC, last_asked DESC LIMIT ?",
        [since, *([scope] if scope is not None else []), limit])
    for r in found:
        r["last_asked"] = as_datetime(r["last_asked"])
    return found
