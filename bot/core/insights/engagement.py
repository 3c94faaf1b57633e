"""Engagement: how partners take up notices and onboarding, in aggregate.

Per topic and per segment (tier, region, role), for notices sent in a window: deliveries,
must-know deliveries and acknowledgements (of the revision that counts), the acknowledgement
rate, the median time from the send to a first acknowledgement (revision 1), and opt-outs. For
onboarding: members at each stage of their journey, what became of their questions, and the
questions asked most often that the knowledge base could not answer.

Every figure is a GROUP BY in the database (the median with window functions, which SQLite and
PostgreSQL both have). A CAM's view covers the organisations that name them as CAM.
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


def _where(table: str, since: datetime, scope: str | None) -> tuple[str, list[Any]]:
    where, params = [f"n.sent_at >= ?"], [since]
    if scope is not None:
        where.append("LOWER(o.cam_email) = ?")
        params.append(scope)
    return " AND ".join(where), params


async def breakdown(staff: Staff | None, by: str, *, since: datetime) -> list[Row]:
    """Rows for one grouping: `topic`, `tier`, `region` or `role`."""
    scope = partner_scope(staff)
    group = GROUPS[by]
    out: dict[str, Row] = {}
    where, params = _where("d", since, scope)
    for r in await rows(
            f"SELECT {group} AS g, COUNT(*) AS n, SUM(CASE WHEN n.importance = 'must-know' THEN 1 ELSE 0 END) AS must "
            f"FROM delivery d {_JOINS.format(t='d')} WHERE d.kind = 'notice' AND d.status = 'delivered' "
            f"AND {where} GROUP BY {group}", params):
        out.setdefault(r["g"] or "", Row(r["g"] or "")).delivered = r["n"]
        out[r["g"] or ""].must_delivered = int(r["must"] or 0)
    for r in await rows(f"SELECT {group} AS g, COUNT(*) AS n FROM acknowledgement a {_JOINS.format(t='a')} "
                        f"WHERE a.revision = n.ack_revision AND {where} GROUP BY {group}", params):
        out.setdefault(r["g"] or "", Row(r["g"] or "")).acknowledged = r["n"]
    for r in await _medians(group, where, params):
        out.setdefault(r["g"] or "", Row(r["g"] or "")).median_seconds = float(r["med"])
    for key, count in (await _opt_outs(by, scope)).items():
        out.setdefault(key, Row(key)).opt_outs = count
    return sorted(out.values(), key=lambda row: (-row.delivered, row.key))


async def _medians(group: str, where: str, params: list[Any]) -> list[dict[str, Any]]:
    return await rows(
        f"WITH t AS (SELECT {group} AS g, {seconds_between('a.acknowledged_at', 'n.sent_at')} AS s "
        f"FROM acknowledgement a {_JOINS.format(t='a')} WHERE a.revision = 1 AND {where}), "
        "r AS (SELECT g, s, ROW_NUMBER() OVER (PARTITION BY g ORDER BY s) AS rn, COUNT(*) OVER (PARTITION BY g) AS c "
        "FROM t) SELECT g, AVG(s) AS med FROM r WHERE rn IN ((c + 1) / 2, (c + 2) / 2) GROUP BY g", params)


async def _opt_outs(by: str, scope: str | None) -> dict[str, int]:
    """Per topic: members who left it. Per segment: members who left at least one topic."""
    scope_sql = " AND LOWER(o.cam_email) = ?" if scope is not None else ""
    params = [scope] if scope is not None else []
    base = "FROM member m JOIN organisation o ON o.id = m.organisation_id"
    if by == "topic":
        each = ("jsonb_array_elements_text(m.topic_opt_outs) AS j(value)" if postgres()
                else "json_each(m.topic_opt_outs) AS j")
        found = await rows(f"SELECT j.value AS g, COUNT(*) AS n {base}, {each} WHERE m.active{scope_sql} "
                           "GROUP BY j.value", params)
    else:
        length = "jsonb_array_length" if postgres() else "json_array_length"
        found = await rows(f"SELECT {GROUPS[by]} AS g, COUNT(*) AS n {base} WHERE m.active{scope_sql} "
                           f"AND {length}(m.topic_opt_outs) > 0 GROUP BY {GROUPS[by]}", params)
    return {str(r["g"] or ""): r["n"] for r in found}


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
