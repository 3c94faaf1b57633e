"""Engagement: how partners take up notices and onboarding, in aggregate.

Per topic and per segment (tier, region, role), for notices sent in a window: deliveries,
must-know deliveries and acknowledgements (of the revision that counts), the acknowledgement
rate, the median time from the send to a first acknowledgement (revision 1), and opt-outs. For
onboarding: members at each stage of their journey, what became of their questions, and the
questions asked most often that the knowledge base could not answer.

Every figure is a GROUP BY in the database: deliveries, acknowledgements and the times to
acknowledge are each one pass, grouped by topic, tier, region and role at once and rolled up. A CAM's view covers the organisations that name them as CAM.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.core.directory.permissions import partner_scope
from bot.core.insights.sql import as_datetime, postgres, rows, seconds_between
from storage.models import Staff

GROUPS = {"topic": "n.topic", "tier": "o.tier", "region": "o.region", "role": "m.role"}
_JOINS = ("JOIN notice n ON n.id = {t}.notice_id JOIN member m ON m.id = {t}.member_id "
          "JOIN organisation o ON o.id = m.organisation_id")


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


def _where(since: datetime, scope: str | None) -> tuple[str, list[Any]]:
    where, params = ["n.sent_at >= ?"], [since]
    if scope is not None:
        where.append("LOWER(o.cam_email) = ?")
        params.append(scope)
    return " AND ".join(where), params


async def breakdowns(staff: Staff | None, *, since: datetime) -> dict[str, list[Row]]:
    """Rows by topic, tier, region and role. Deliveries and acknowledgements are each counted
    in one pass, grouped by all four at once and rolled up here; the medians are one window
    query per grouping."""
    scope = partner_scope(staff)
    where, params = _where(since, scope)
    tables: dict[str, dict[str, Row]] = {by: {} for by in GROUPS}
    columns = ", ".join(f"{expr} AS {by}" for by, expr in GROUPS.items())
    keys = ", ".join(GROUPS.values())

    def row(by: str, key: Any) -> Row:
        key = str(key or "")
        return tables[by].setdefault(key, Row(key))

    for r in await rows(
            f"SELECT {columns}, COUNT(*) AS n, SUM(CASE WHEN n.importance = 'must-know' THEN 1 ELSE 0 END) AS must "
            f"FROM delivery d {_JOINS.format(t='d')} WHERE d.kind = 'notice' AND d.status = 'delivered' "
            f"AND {where} GROUP BY {keys}", params):
        for by in GROUPS:
            target = row(by, r[by])
            target.delivered += r["n"]
            target.must_delivered += int(r["must"] or 0)
    for r in await rows(f"SELECT {columns}, COUNT(*) AS n FROM acknowledgement a {_JOINS.format(t='a')} "
                        f"WHERE a.revision = n.ack_revision AND {where} GROUP BY {keys}", params):
        for by in GROUPS:
            row(by, r[by]).acknowledged += r["n"]
    for by, medians in (await _medians(where, params)).items():
        for key, median in medians.items():
            row(by, key).median_seconds = median
    for by, counts in (await _opt_outs(scope)).items():
        for key, count in counts.items():
            row(by, key).opt_outs = count
    return {by: sorted(found.values(), key=lambda r: (-r.delivered, r.key)) for by, found in tables.items()}


async def breakdown(staff: Staff | None, by: str, *, since: datetime) -> list[Row]:
    """Rows for one grouping: `topic`, `tier`, `region` or `role`."""
    return (await breakdowns(staff, since=since))[by]


# Times to acknowledge are counted in buckets that widen with the wait: a minute during the
# first hour, 15 minutes to a day, an hour to a week, then a day. The median is the middle of
# the bucket holding the middle acknowledgement, so it is exact to within those widths.
_BUCKETS = ((3600, 60), (86400, 900), (604800, 3600), (None, 86400))


def _bucket_sql() -> str:
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


async def _medians(where: str, params: list[Any]) -> dict[str, dict[str, float | None]]:
    """Median seconds to a first acknowledgement per value of every grouping, from one GROUP BY
    (all groupings and time buckets together), rolled up here."""
    columns = ", ".join(f"{expr} AS {by}" for by, expr in GROUPS.items())
    found = await rows(
        f"WITH t AS MATERIALIZED (SELECT {columns}, {seconds_between('a.acknowledged_at', 'n.sent_at')} AS s "
        f"FROM acknowledgement a {_JOINS.format(t='a')} WHERE a.revision = 1 AND {where}) "
        f"SELECT {', '.join(GROUPS)}, {_bucket_sql()} AS b, COUNT(*) AS n FROM t "
        f"GROUP BY {', '.join(GROUPS)}, b", params)
    histograms: dict[str, dict[str, dict[int, int]]] = {by: {} for by in GROUPS}
    for r in found:
        bucket = max(int(r["b"]), 0)
        for by in GROUPS:
            histogram = histograms[by].setdefault(str(r[by] or ""), {})
            histogram[bucket] = histogram.get(bucket, 0) + r["n"]
    return {by: {key: median_of(h) for key, h in values.items()} for by, values in histograms.items()}


async def _opt_outs(scope: str | None) -> dict[str, dict[str, int]]:
    """Per topic: members who left it. Per tier, region and role: members who left at least one
    topic (one pass, grouped by all three and rolled up)."""
    scope_sql = " AND LOWER(o.cam_email) = ?" if scope is not None else ""
    params = [scope] if scope is not None else []
    base = "FROM member m JOIN organisation o ON o.id = m.organisation_id"
    each = ("jsonb_array_elements_text(m.topic_opt_outs) AS j(value)" if postgres()
            else "json_each(m.topic_opt_outs) AS j")
    out: dict[str, dict[str, int]] = {by: {} for by in GROUPS}
    for r in await rows(f"SELECT j.value AS g, COUNT(*) AS n {base}, {each} WHERE m.active{scope_sql} "
                        "GROUP BY j.value", params):
        out["topic"][str(r["g"])] = r["n"]
    length = "jsonb_array_length" if postgres() else "json_array_length"
    segments = [by for by in GROUPS if by != "topic"]
    for r in await rows(f"SELECT {', '.join(f'{GROUPS[by]} AS {by}' for by in segments)}, COUNT(*) AS n {base} "
                        f"WHERE m.active{scope_sql} AND {length}(m.topic_opt_outs) > 0 "
                        f"GROUP BY {', '.join(GROUPS[by] for by in segments)}", params):
        for by in segments:
            key = str(r[by] or "")
            out[by][key] = out[by].get(key, 0) + r["n"]
    return out


# ---- onboarding -------------------------------------------------------------------------------

async def journey_stages(staff: Staff | None) -> list[dict[str, Any]]:
    """Active members by role and number of journey steps done (the page maps roles to journeys)."""
    scope = partner_scope(staff)
    scope_sql = " AND LOWER(o.cam_email) = ?" if scope is not None else ""
    return await rows(
        "SELECT m.role, COALESCE(x.done, 0) AS done, COUNT(*) AS n FROM member m "
        "JOIN organisation o ON o.id = m.organisation_id LEFT JOIN (SELECT member_id, COUNT(*) AS done "
        "FROM journey_step WHERE position >= 1 AND done_at IS NOT NULL GROUP BY member_id) x ON x.member_id = m.id "
        f"WHERE m.active{scope_sql} GROUP BY m.role, COALESCE(x.done, 0) ORDER BY m.role, done",
        [scope] if scope is not None else [])


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
