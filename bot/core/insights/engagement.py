"""Engagement: how partners take up notices and onboarding, in aggregate.

Per topic and per segment (tier, region, role), for notices sent in a window: deliveries,
must-know deliveries and acknowledgements (of the revision that counts), the acknowledgement
rate, the median time from the send to a first acknowledgement (revision 1), and opt-outs. For
onboarding: members at each stage of their journey, what became of their questions, and the
questions asked most often that the knowledge base could not answer.

The notices' figures are not read at page load: with 100,000 recipients on a notice, reading
every delivery and acknowledgement of a window takes 0.3-0.5 s. The clock (`refresh_engagement`,
from `Herald.tick`) works each notice's figures out, per partner CAM by tier, region and role,
whenever they change (never merely because time passed: a year's notices would all be read
again) and keeps them in `notice_engagement`: deliveries counted
from the delivery index and the member, acknowledgements in one pass that counts the revision
that matters and buckets the times to a first acknowledgement together. The page adds those up
(all CAMs' for compliance and admins, one CAM's for a CAM) and says as of when.
Opt-outs read only members who have any. A CAM's view covers the organisations that name them
as CAM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.common.budget import TimeBudget
from bot.core.directory.permissions import partner_scope
from bot.core.insights.recount import RECOUNT as _RECOUNT
from bot.core.insights.sql import as_datetime, execute, postgres, rows, seconds_between
from storage.db import in_ids
from storage.models import NoticeStatus, Staff

if TYPE_CHECKING:
    from bot.core.onboarding.journeys import JourneyCatalog

GROUPS = ("topic", "tier", "region", "role")
_IN_WINDOW = "IN (SELECT id FROM notice WHERE sent_at >= ?)"


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

    def sorted(self) -> dict[str, list[Row]]:
        return {by: sorted(rows_.values(), key=lambda r: (-r.delivered, r.key)) for by, rows_ in self.found.items()}


@dataclass(frozen=True)
class Breakdowns:
    """Rows by topic, tier, region and role, and how fresh they are: `as_of` is when the clock
    last worked figures out (None when it never did: figures are worked out when they change, so
    each one is current as of then), `uncounted` the window's notices the clock has not worked out
    yet, or not again since the directory changed what they count (sent within the last minute or
    so, or a directory import just now)."""

    tables: dict[str, list[Row]]
    as_of: datetime | None
    uncounted: int


async def breakdowns(staff: Staff | None, *, since: datetime) -> Breakdowns:
    """Rows by topic, tier, region and role, for notices sent since `since`, added up from the
    notices' figures as the clock worked them out (`refresh_engagement`)."""
    scope = partner_scope(staff)
    tables = _Tables()
    notices = {r["id"]: r for r in await rows("SELECT id, topic, importance FROM notice WHERE sent_at >= ?", [since])}
    found = await rows(f"SELECT notice_id, computed_at, fingerprint, figures FROM notice_engagement "
                       f"WHERE notice_id {_IN_WINDOW}", [since])
    histograms: dict[str, dict[str, dict[int, int]]] = {by: {} for by in GROUPS}
    for stored in found:
        notice = notices.get(stored["notice_id"])
        if notice is None:
            continue
        figures = json.loads(stored["figures"])
        for cam in (figures if scope is None else [scope] if scope in figures else []):
            _add_up(tables, histograms, notice, figures[cam])
    for by, values in histograms.items():
        for key, histogram in values.items():
            tables.row(by, key).median_seconds = median_of(histogram)
    orgs = {r["id"]: r for r in await rows("SELECT id, tier, region FROM organisation")}
    for by, counts in (await _opt_outs(scope, orgs)).items():
        for key, count in counts.items():
            tables.row(by, key).opt_outs = count
    as_of = max((as_datetime(f["computed_at"]) for f in found), default=None)
    counted = {f["notice_id"] for f in found if f["fingerprint"] != _RECOUNT}
    return Breakdowns(tables.sorted(), as_of, len(notices) - len(counted & notices.keys()))


def _add_up(tables: _Tables, histograms: dict[str, dict[str, dict[int, int]]], notice: dict[str, Any],
            part: dict[str, Any]) -> None:
    """Add one notice's figures for one CAM's partners (see `_fold`) to the rows and histograms."""
    must = notice["importance"] == "must-know"
    for by in GROUPS:
        own = notice["topic"] if by == "topic" else ""  # stored under "": the topic is the notice's own
        for key, n in part["delivered"][by].items():
            row = tables.row(by, own or key)
            row.delivered += n
            row.must_delivered += n if must else 0
        for key, n in part["acknowledged"][by].items():
            tables.row(by, own or key).acknowledged += n
        for key, buckets in part["first"][by].items():
            histogram = histograms[by].setdefault(own or key, {})
            for bucket, n in buckets.items():
                histogram[int(bucket)] = histogram.get(int(bucket), 0) + n


async def breakdown(staff: Staff | None, by: str, *, since: datetime) -> list[Row]:
    """Rows for one grouping: `topic`, `tier`, `region` or `role`."""
    return (await breakdowns(staff, since=since)).tables[by]


# ---- the figures per notice, worked out by the clock ---------------------------------------------

LONGEST_WINDOW = timedelta(days=365)  # the page's longest window: older notices are left alone
RECENT = timedelta(days=14)  # notices sent (or done sending) lately: their counts are read every time
# An acknowledgement's id is taken before its transaction commits, so one may land after a refresh
# that saw a higher id: look this far back.
ACK_ID_MARGIN = 10_000


async def refresh_engagement(now: datetime, *, not_within: timedelta = timedelta(0),
                             budget: TimeBudget | None = None) -> int:
    """Work out again the figures of every notice sent within the longest window whose
    deliveries, acknowledgements or revision changed since, or that the directory marked
    (`mark_for_recount`). Returns how many were. Safe on every replica at once: figures are
    written whole.

    Finding what changed costs little however many notices the window holds: the counts are read
    only for the notices sent, or done sending, within the last fortnight (a settled notice's
    copies change only when they are sent again, which makes it `sending` again); an older notice
    is looked at again when an acknowledgement newer than those already counted arrives for it.

    `budget`: the tick's (shared with digests and reminders): once it is spent no further notice
    is worked out (one at least, so the figures always move on); the rest wait for the next ticks,
    those never worked out first, then the longest waiting. `not_within`: a notice worked out
    less than this long ago is left as it is (`Herald.tick` passes most of its period: with
    several replicas each notice is worked out once a tick, not once per replica)."""
    orgs = {r["id"]: r for r in await rows("SELECT id, tier, region, LOWER(cam_email) AS cam FROM organisation")}
    notices = {r["id"]: _Notice(r["ack_revision"], as_datetime(r["sent_at"]), r["status"],
                                as_datetime(r["completed_at"]) if r["completed_at"] else None) for r in await rows(
        "SELECT id, ack_revision, sent_at, status, completed_at FROM notice WHERE sent_at >= ?",
        [now - LONGEST_WINDOW])}
    stored = {r["notice_id"]: (_Fingerprint.parse(r["fingerprint"]), as_datetime(r["computed_at"])) for r in await rows(
        f"SELECT notice_id, fingerprint, computed_at FROM notice_engagement WHERE notice_id {_IN_WINDOW}",
        [now - LONGEST_WINDOW])}
    recent = await _fingerprints([i for i, n in notices.items() if n.settling(now)], notices)
    acked = await _acknowledged_since(max((f.last_ack for f, _ in stored.values() if f is not None), default=0)
                                      - ACK_ID_MARGIN)
    changed = [notice_id for notice_id, notice in notices.items()
               if _out_of_date(stored.get(notice_id), recent.get(notice_id), now, revision=notice.ack_revision,
                               newest_ack=acked.get(notice_id, 0), not_within=not_within)]
    changed.sort(key=lambda i: (i in stored, stored[i][1] if i in stored else now, i))
    done = 0
    for notice_id in changed:
        if done and budget is not None and budget.spent():
            break
        fingerprint = recent.get(notice_id) or (await _fingerprints([notice_id], notices))[notice_id]
        await _store(notice_id, fingerprint.text, orgs, now)
        done += 1
    return done


@dataclass(frozen=True)
class _Notice:
    ack_revision: int
    sent_at: datetime
    status: str
    completed_at: datetime | None

    def settling(self, now: datetime) -> bool:
        """Whether its copies may still change: sent within the last fortnight, still being sent
        (again, after a reconnection or a member's return), or done sending within it."""
        return (self.sent_at >= now - RECENT or self.status == NoticeStatus.SENDING.value
                or (self.completed_at is not None and self.completed_at >= now - RECENT))


def _out_of_date(stored: tuple[_Fingerprint | None, datetime] | None, current: _Fingerprint | None, now: datetime,
                 *, revision: int, newest_ack: int, not_within: timedelta) -> bool:
    """Whether a notice's figures are to be worked out again: never worked out (or unreadable, or
    marked by the directory), a settling notice (`current`: its counts now) whose counts moved, or
    a settled one whose revision changed or that has an acknowledgement newer than those counted;
    but not when they were worked out within `not_within`."""
    if stored is None or stored[0] is None:
        return True
    if now - stored[1] < not_within:
        return False
    was = stored[0]
    if current is not None:
        return current != was
    return revision != was.revision or newest_ack > was.last_ack


@dataclass(frozen=True)
class _Fingerprint:
    """What a notice's figures were worked out from (the members' roles and the organisations'
    tier, region and CAM are not in it: the directory marks the figures they change)."""

    revision: int
    delivered: int
    acknowledgements: int
    last_ack: int

    @property
    def text(self) -> str:
        return f"{self.revision}:{self.delivered}:{self.acknowledgements}:{self.last_ack}"

    @classmethod
    def parse(cls, text: str) -> _Fingerprint | None:
        parts = text.split(":")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            return None  # worked out again (marked, or written by an older Herald)
        return cls(*(int(p) for p in parts))


async def _fingerprints(ids: list[int], notices: dict[int, _Notice]) -> dict[int, _Fingerprint]:
    """Per notice: its ack revision, delivered count, and acknowledgements' count and last id
    (read from the indexes)."""
    if not ids:
        return {}
    clause, param = in_ids("notice_id", ids)
    delivered = {r["notice_id"]: r["n"] for r in await rows(
        f"SELECT notice_id, COUNT(*) AS n FROM delivery WHERE {clause} AND kind = 'notice' "
        "AND status = 'delivered' GROUP BY notice_id", [param])}
    acknowledged = {r["notice_id"]: (r["n"], r["last"]) for r in await rows(
        f"SELECT notice_id, COUNT(*) AS n, MAX(id) AS last FROM acknowledgement WHERE {clause} "
        "GROUP BY notice_id", [param])}
    return {i: _Fingerprint(notices[i].ack_revision, delivered.get(i, 0), *acknowledged.get(i, (0, 0))) for i in ids}


async def _acknowledged_since(after_id: int) -> dict[int, int]:
    """The last acknowledgement id per notice among those with an id above `after_id` (a range
    of the primary key: the acknowledgements since the last refresh)."""
    return {r["notice_id"]: r["last"] for r in await rows(
        "SELECT notice_id, MAX(id) AS last FROM acknowledgement WHERE id > ? GROUP BY notice_id", [after_id])}


async def _store(notice_id: int, fingerprint: str, orgs: dict[int, dict[str, Any]], now: datetime) -> None:
    deliveries = await rows(
        "SELECT m.organisation_id AS org, m.role, COUNT(*) AS n FROM delivery d JOIN member m ON m.id = d.member_id "
        "WHERE d.notice_id = ? AND d.kind = 'notice' AND d.status = 'delivered' GROUP BY m.organisation_id, m.role",
        [notice_id])
    figures = _fold(deliveries, await _acknowledgement_groups(notice_id), orgs)
    await execute(
        "INSERT INTO notice_engagement (notice_id, computed_at, fingerprint, figures) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (notice_id) DO UPDATE SET computed_at = excluded.computed_at, "
        "fingerprint = excluded.fingerprint, figures = excluded.figures",
        [notice_id, now, fingerprint, json.dumps(figures, separators=(",", ":"))])


def _fold(deliveries: list[dict[str, Any]], acknowledgements: list[dict[str, Any]],
          orgs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """A notice's grouped rows folded to what the page adds up, per partner CAM (a CAM sees only
    their own): ``{cam: {"delivered" | "acknowledged": {grouping: {key: n}},
    "first": {grouping: {key: {bucket: n}}}}}``; the topic grouping's key is "" (the notice's)."""
    out: dict[str, Any] = {}

    def part(org_id: int) -> tuple[dict[str, Any], dict[str, str]]:
        org = orgs.get(org_id) or {}
        cam = str(org.get("cam") or "")
        if cam not in out:
            out[cam] = {what: {by: {} for by in GROUPS} for what in ("delivered", "acknowledged", "first")}
        return out[cam], {"topic": "", "tier": str(org.get("tier") or ""), "region": str(org.get("region") or "")}

    for r in deliveries:
        target, keys = part(r["org"])
        for by, key in {**keys, "role": str(r["role"] or "")}.items():
            target["delivered"][by][key] = target["delivered"][by].get(key, 0) + r["n"]
    for r in acknowledgements:
        target, keys = part(r["org"])
        bucket = str(max(int(r["b"] or 0), 0))  # a clock a little behind counts as at once
        for by, key in {**keys, "role": str(r["role"] or "")}.items():
            if r["counts"]:
                target["acknowledged"][by][key] = target["acknowledged"][by].get(key, 0) + r["n"]
            if r["first"]:
                histogram = target["first"][by].setdefault(key, {})
                histogram[bucket] = histogram.get(bucket, 0) + r["n"]
    return out


async def _acknowledgement_groups(notice_id: int) -> list[dict[str, Any]]:
    """One pass over a notice's acknowledgements: those of the revision that counts, and the
    times to a first acknowledgement (revision 1) in buckets, per organisation and role; the
    medians come from the buckets added up over every grouping (see `median_of`)."""
    # the inner query works out each row's seconds once; the fence keeps the database from
    # inlining it into every branch of the bucket's CASE
    fence = " OFFSET 0" if postgres() else " LIMIT -1"
    return await rows(
        f"SELECT org, role, counts, first, {_bucket_sql()} AS b, COUNT(*) AS n FROM (SELECT "
        "m.organisation_id AS org, m.role AS role, "
        "CASE WHEN a.revision = n.ack_revision THEN 1 ELSE 0 END AS counts, "
        "CASE WHEN a.revision = 1 THEN 1 ELSE 0 END AS first, "
        f"{seconds_between('a.acknowledged_at', 'n.sent_at')} AS s FROM acknowledgement a "
        "JOIN notice n ON n.id = a.notice_id JOIN member m ON m.id = a.member_id "
        f"WHERE a.notice_id = ?{fence}) t GROUP BY org, role, counts, first, b", [notice_id])


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
    scope_sql, params = await _member_scope(scope)
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


async def _member_scope(scope: str | None) -> tuple[str, list[Any]]:
    """SQL and parameters keeping members (`m`) to the organisations of the CAM `scope`: their
    ids as one array, which the planner can count (a sub-select on LOWER(cam_email) it guesses
    at two organisations, and walks the member index once per organisation)."""
    if scope is None:
        return "", []
    ids = [r["id"] for r in await rows("SELECT id FROM organisation WHERE LOWER(cam_email) = ?", [scope])]
    clause, param = in_ids("m.organisation_id", ids)
    return f" AND {clause}", [param]


# ---- onboarding -------------------------------------------------------------------------------

async def journey_stages(staff: Staff | None, journeys: JourneyCatalog | None = None) -> list[dict[str, Any]]:
    """Active members by role and number of journey steps done (the page maps roles to journeys):
    members per role from the member index, and the steps done of only the members with any.
    With `journeys`, a done step counts only when it is in the member's current journey
    (`Journey.done_count`, as `progress` counts), so a role change does not carry the old
    journey's steps over."""
    scope_sql, params = await _member_scope(partner_scope(staff))
    members = await rows(f"SELECT m.role, COUNT(*) AS n FROM member m WHERE m.active = TRUE{scope_sql} "
                         "GROUP BY m.role", params)
    in_journey, journey_params = _in_current_journey(journeys)
    started = await rows(
        "SELECT m.role, x.done, COUNT(*) AS n FROM (SELECT js.member_id, COUNT(*) AS done FROM journey_step js "
        "JOIN member jm ON jm.id = js.member_id "
        f"WHERE js.position >= 1 AND js.done_at IS NOT NULL{in_journey} GROUP BY js.member_id) x "
        f"JOIN member m ON m.id = x.member_id WHERE m.active = TRUE{scope_sql} GROUP BY m.role, x.done",
        [*journey_params, *params])
    not_started = {r["role"]: r["n"] for r in members}
    for r in started:
        not_started[r["role"]] = not_started.get(r["role"], 0) - r["n"]
    out = [{"role": role, "done": 0, "n": n} for role, n in not_started.items() if n > 0]
    out += [{"role": r["role"], "done": r["done"], "n": r["n"]} for r in started]
    return sorted(out, key=lambda r: (r["role"], r["done"]))


def _in_current_journey(journeys: JourneyCatalog | None) -> tuple[str, list[Any]]:
    """SQL keeping done steps (`js`, of member `jm`) to the keys of the member's current journey:
    their role's own, else the default one (`JourneyCatalog.for_role`)."""
    if journeys is None:
        return "", []
    named, default = journeys.step_keys_by_role()
    role = "LOWER(TRIM(jm.role))"
    parts, params = [], []
    for name, keys in named.items():
        parts.append(f"({role} = ? AND js.step_key IN ({', '.join('?' * len(keys))}))")
        params += [name, *keys]
    others = f"{role} NOT IN ({', '.join('?' * len(named))})" if named else "TRUE"
    parts.append(f"({others} AND js.step_key IN ({', '.join('?' * len(default))}))")
    params += [*named, *default]
    return f" AND ({' OR '.join(parts)})", params


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
