"""Acknowledgement reports: what compliance pulls as proof that partners were told.

A report streams from the database page by page (keyset pagination over ``Delivery.id``), so an
export of a notice with 100,000 recipients runs in the same memory as one with five:

* one query per page for the original deliveries with their member and organisation,
* one for those members' acknowledgements of the notice,
* one for their delivered reminders (grouped by member and platform: each copy its own),
* escalations once per notice, the summary with GROUP BY queries before the first row.

The head, the summary and every row are read in one read-only snapshot (`storage.db.read_snapshot`,
on SQLite a connection of its own, so writers are not blocked while a slow client downloads): a
click that lands meanwhile is in none of them, and the totals agree with the rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import difflib
import io
import json
from array import array
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from tortoise import connections
from tortoise.expressions import Q, Subquery
from tortoise.functions import Count
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from bot.common.errors import NotFound, UserError
from bot.common.progress import Progress, no_progress
from bot.core.compliance.audit import audit_event, record
from bot.core.compliance.pause_history import PausePeriod, pause_periods
from bot.core.directory.permissions import partner_scope
from storage import db as storage_db
from storage.models import (
    Acknowledgement,
    AuditChainHead,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Escalation,
    Notice,
    NoticeRevision,
    NoticeVariant,
    Organisation,
    Staff,
    StaffRole,
    UnreachedReason,
)

PAGE_SIZE = 2000
ID_BATCH = 500  # ids per `IN (...)` list in the cross-notice summary
FORMATS = ("csv", "json")

COLUMNS = (
    "organisation_id", "organisation", "member", "email", "role", "platform", "delivered_at",
    "failure_reason", "reminders_sent", "acknowledged_at", "acknowledged_revision", "escalated_at", "variant",
)

Format = Literal["csv", "json"]

_PENDING = (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# ---- access ---------------------------------------------------------------------------------

async def can_read_notice(staff: Staff | None, notice: Notice) -> bool:
    """Compliance and admins read every notice; a CAM the notices they authored, and those escalated
    for an organisation they are the CAM of now (a partner's CAM gets the escalation of a
    colleague's notice, with an **Open report** button): one rule for chat, the console, the API
    and report downloads. Access follows the organisation, as Remind now and open hand-offs do: a
    CAM the directory names for it later reads the report; the one it replaced no longer does."""
    if staff is None or not staff.active:
        return False
    if staff.role in (StaffRole.COMPLIANCE.value, StaffRole.ADMIN.value):
        return True
    if staff.role != StaffRole.CAM.value:
        return False
    if notice.author_id is not None and notice.author_id == staff.id:  # type: ignore[attr-defined]
        return True
    return await Escalation.filter(notice_id=notice.id, organisation__cam_email__iexact=staff.email.strip()).exists()


def readable_notices(staff: Staff) -> QuerySet[Notice]:
    """`can_read_notice` as a query, for lists (the API's and the console's): every notice for
    compliance and admins; for a CAM their own and those escalated for an organisation they are
    the CAM of now; nothing for anyone else (an inactive person)."""
    if not staff.active or staff.role not in (StaffRole.CAM.value, StaffRole.COMPLIANCE.value, StaffRole.ADMIN.value):
        return Notice.filter(id__in=[])
    if staff.role != StaffRole.CAM.value:
        return Notice.all()
    escalated = Escalation.filter(organisation__cam_email__iexact=staff.email.strip()).values("notice_id")
    return Notice.filter(Q(author_id=staff.id) | Q(id__in=Subquery(escalated)))


@dataclass(frozen=True)
class PartnerScope:
    """A report limited to the partners that name one CAM: a CAM who reads a colleague's notice
    only because it was escalated for a partner of theirs gets those partners' rows, not every
    partner's members (as their directory and engagement views, `partner_scope`)."""

    cam_email: str
    organisations: dict[int, str]  # organisation id -> external id

    def covers(self, organisation_id: int) -> bool:
        return organisation_id in self.organisations

    def audit_data(self) -> dict[str, Any]:
        """What the export's audit event records of the scope."""
        return {"scope": "partners", "cam": self.cam_email, "organisations": sorted(self.organisations.values())}


async def report_scope(reader: Staff | None, notice: Notice) -> PartnerScope | None:
    """Whose rows of `notice` `reader` gets (call after `can_read_notice`): None for the whole
    notice (the operator on the command line, passed as None; compliance, admins, the author);
    a `PartnerScope` for any other CAM."""
    if reader is None:
        return None
    cam_email = partner_scope(reader)
    if cam_email is None or (notice.author_id is not None and notice.author_id == reader.id):  # type: ignore[attr-defined]
        return None
    found = await Organisation.filter(cam_email__iexact=cam_email).values_list("id", "external_id")
    return PartnerScope(cam_email, dict(found))


async def scoped_recipient_counts(notice_ids: list[int], scope: PartnerScope) -> dict[int, int]:
    """Each notice's recipients among `scope`'s partners (members with an original copy, by the
    organisation the copy was written with, else the member's, as the scoped report picks them):
    the `recipient_count` a CAM reading a colleague's escalated notice is shown, not the whole
    notice's reach."""
    ids = list(scope.organisations)
    if not notice_ids or not ids:
        return {}
    rows = await (Delivery.filter(notice_id__in=notice_ids, kind=DeliveryKind.NOTICE.value)
                  .filter(Q(organisation_id__in=ids) | Q(organisation_id__isnull=True, member__organisation_id__in=ids))
                  .annotate(n=Count("member_id", distinct=True)).group_by("notice_id").values("notice_id", "n"))
    return {r["notice_id"]: r["n"] for r in rows}


def scope_line(scope: dict[str, Any]) -> str:
    """The sentence a limited report opens with, so nobody takes it for the whole notice."""
    return (f"limited to your partners: {scope['organisations']} of {scope['of_organisations']} organisations "
            f"(those that name {scope['cam']} as CAM)")


# ---- small helpers --------------------------------------------------------------------------

def iso(moment: datetime | None) -> str | None:
    """UTC ISO-8601 with a `Z` suffix (microseconds only when there are any); None stays None."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def rate(acknowledged: int, delivered: int) -> float | None:
    """Acknowledged / delivered, rounded to 4 places; None when nothing was delivered."""
    return round(acknowledged / delivered, 4) if delivered else None


def parse_moment(value: str, *, what: str, end_of_day: bool = False) -> datetime:
    """`YYYY-MM-DD` or an ISO-8601 time (naive = UTC). A bare date as an upper bound means the
    end of that day (the next midnight, exclusive): any ISO-8601 date without a time, the basic
    form `YYYYMMDD` too (a time parser reads that as the day's first instant, leaving the day out)."""
    text = (value or "").strip()
    if not text:
        raise UserError(f"{what} is required (YYYY-MM-DD or an ISO-8601 time)")
    try:
        day = _bare_date(text)
        if day is not None:
            moment = datetime.combine(day, time(0), tzinfo=UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except ValueError:
        raise UserError(f"{what} '{text[:40]}' is not a date (YYYY-MM-DD) or an ISO-8601 time") from None
    except OverflowError:
        raise UserError(f"{what} '{text[:40]}' is out of range") from None


def _bare_date(text: str) -> date | None:
    """The date `text` names when it is a date and nothing more (2026-01-31, 20260131)."""
    if len(text) > 10 or any(c in text for c in "Tt :"):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def parse_window(since: str, until: str) -> tuple[datetime, datetime]:
    """The half-open window [since, until) for `summary_report`; a date `until` includes that day."""
    start = parse_moment(since, what="since")
    end = parse_moment(until, what="until", end_of_day=True)
    if end <= start:
        raise UserError("until must be after since")
    return start, end


def _one_line(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def _cell(value: Any) -> Any:
    """A CSV cell: None is empty; text that a spreadsheet would run as a formula gets a leading
    apostrophe (OWASP CSV-injection advice; names and errors come from outside Herald)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


csv_cell = _cell  # for other CSV exports (survey results)


def csv_metadata_row(key: str, value: Any) -> list[str]:
    """A `# key: value` line of a CSV export as one cell that starts with "#": quoted by the CSV
    writer when the text holds a comma or a quote, so a title such as 'Recall, =HYPERLINK("...")'
    cannot become a cell of its own that a spreadsheet runs as a formula; line breaks escaped."""
    return [f"# {key}: {_one_line(value)}"]


def _batches(ids: list[int], size: int = ID_BATCH) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


# ---- the notice, its revisions, the chain head ------------------------------------------------

async def load_notice(notice_id: int) -> Notice:
    notice = await Notice.filter(id=notice_id).select_related("author").first()
    if notice is None:
        raise NotFound(f"notice {notice_id} does not exist")
    return notice


def _author_email(notice: Notice) -> str | None:
    if notice.author_id is None:  # type: ignore[attr-defined]
        return None
    author = notice.author
    return getattr(author, "email", None)


def notice_document(notice: Notice) -> dict[str, Any]:
    """The notice's metadata as JSON-ready values (load it with `load_notice` for the author)."""
    return {
        "id": notice.id, "title": notice.title, "topic": notice.topic, "importance": notice.importance,
        "status": notice.status, "audience": notice.audience, "author": _author_email(notice),
        "body": notice.body, "link": notice.link,
        "created_at": iso(notice.created_at), "sent_at": iso(notice.sent_at), "deadline": iso(notice.deadline),
        "completed_at": iso(notice.completed_at), "escalated_at": iso(notice.escalated_at),
        "retracted_at": iso(notice.retracted_at), "retract_reason": notice.retract_reason or None,
        "revision": notice.revision, "ack_revision": notice.ack_revision,
        "recipient_count": notice.recipient_count,
    }


async def notice_revisions(notice: Notice) -> list[dict[str, Any]]:
    """Every revision, oldest first; revision 1 is the original as sent."""
    stored = await NoticeRevision.filter(notice_id=notice.id).order_by("revision").values(
        "revision", "title", "material", "edited_by", "edited_at")
    author = _author_email(notice) or ""
    # The first edit stores the original as revision 1 with no editor: its author wrote it.
    revisions = [{"revision": r["revision"], "title": r["title"], "edited_at": iso(r["edited_at"]),
                  "edited_by": r["edited_by"] or (author if r["revision"] == 1 else ""),
                  "material": bool(r["material"]), "original": r["revision"] == 1}
                 for r in stored]
    if not any(r["revision"] == 1 for r in revisions):
        # Never edited (or edited before revision 1 was kept): the original is the notice as
        # sent; its title is known only while it has never been edited.
        revisions.insert(0, {"revision": 1, "title": None if stored else notice.title,
                             "edited_at": iso(notice.sent_at or notice.created_at),
                             "edited_by": author, "material": False, "original": True})
    return revisions


async def chain_head(using_db: Any = None) -> dict[str, Any]:
    head = await AuditChainHead.get_or_none(id=1, using_db=using_db)
    return {"seq": int(head.seq) if head else 0, "hash": (head.hash or "") if head else ""}


# ---- the summary (GROUP BY queries only) -------------------------------------------------------

def funnel_counts() -> dict[str, int]:
    return {"recipients": 0, "delivered": 0, "failed": 0, "pending": 0, "digest": 0, "cancelled": 0,
            "held": 0, "acknowledged": 0}


def add_status(counts: dict[str, int], status: str, n: int) -> None:
    counts["recipients"] += n
    if status == DeliveryStatus.DELIVERED.value:
        counts["delivered"] += n
    elif status == DeliveryStatus.FAILED.value:
        counts["failed"] += n
    elif status in _PENDING:
        counts["pending"] += n
    elif status == DeliveryStatus.DIGEST.value:
        counts["digest"] += n
    elif status == DeliveryStatus.CANCELLED.value:
        counts["cancelled"] += n
    elif status == DeliveryStatus.HELD.value:
        counts["held"] += n


async def _variant_summary(notice: Notice) -> list[dict[str, Any]]:
    """A/B tests: recipients, delivered, held and acknowledged per variant ("" = held, none yet),
    the experiment's members and the rollout's (`rolled_out`: held back, then sent the winner) apart."""
    if not await NoticeVariant.filter(notice_id=notice.id).exists():
        return []
    by_variant: dict[tuple[str, bool], dict[str, int]] = {}
    statuses = await _by_member_on_several_platforms(notice.id, await (
        Delivery.filter(notice_id=notice.id, kind=DeliveryKind.NOTICE.value).annotate(n=Count("id"))
        .group_by("variant", "rolled_out", "status", "platform")
        .values("variant", "rolled_out", "status", "platform", "n")), by="variant")
    for row in statuses:
        key = (row["variant"], bool(row["rolled_out"]))
        add_status(by_variant.setdefault(key, funnel_counts()), row["status"], row["n"])
    for row in await (Acknowledgement.filter(notice_id=notice.id, revision__gte=notice.ack_revision)
                      .annotate(n=Count("member_id", distinct=True)).group_by("delivery__variant", "delivery__rolled_out")
                      .values("delivery__variant", "delivery__rolled_out", "n")):
        key = (row["delivery__variant"] or "", bool(row["delivery__rolled_out"]))
        by_variant.setdefault(key, funnel_counts())["acknowledged"] += row["n"]
    return [{"variant": variant or None, "rolled_out": rolled_out, **counts,
             "rate": rate(counts["acknowledged"], counts["delivered"])}
            for (variant, rolled_out), counts in sorted(by_variant.items(),
                                                        key=lambda item: (not item[0][0], item[0][1], item[0][0]))]


async def _reminders_paused(notice: Notice, names: dict[int, tuple[str, str]]) -> dict[int, dict[str, Any]]:
    """Reminders paused by the CAM (part of the record): organisation id -> the latest pause that
    overlapped the notice's time out (sending to deadline, or on if it has none) as `since`, `until`
    (resumed, ran out or will run out; None: until resumed) and `reason`, with any `earlier` ones.
    From the audit trail (pause_history): a pause resumed since still counts, a later one does not."""
    start = notice.sent_at or notice.created_at
    periods = await pause_periods(start, notice.deadline)
    paused: dict[int, dict[str, Any]] = {}
    for org_id, (external_id, _name) in names.items():
        *earlier, latest = periods.get(external_id) or [None]
        if latest is not None:
            paused[org_id] = {**_pause_entry(latest),
                              **({"earlier": [_pause_entry(p) for p in earlier]} if earlier else {})}
    return paused


def _pause_entry(period: PausePeriod) -> dict[str, Any]:
    return {"since": iso(period.since), "until": iso(period.until), "reason": period.reason}


def _csv_pause(pause: dict[str, Any]) -> str:
    """One pause on an organisation's CSV summary line (oldest first when there were several)."""
    return " reminders_paused_since={since} until={until} reason={reason}".format(
        since=pause["since"], until=pause["until"] or "", reason=json.dumps(pause["reason"], ensure_ascii=False))


async def _notice_summary(notice: Notice, scope: PartnerScope | None = None) -> dict[str, Any]:
    by_org: dict[int, dict[str, int]] = {}
    statuses, acknowledged, variants = await asyncio.gather(  # at once on PostgreSQL's pool
        _status_by_organisation(notice.id), _acknowledged_by_organisation(notice), _variant_summary(notice))
    statuses = await _by_member_on_several_platforms(notice.id, statuses, by="organisation_id")
    for row in statuses:
        add_status(by_org.setdefault(row["organisation_id"], funnel_counts()), row["status"], row["n"])
    for row in acknowledged:
        by_org.setdefault(row["organisation_id"], funnel_counts())["acknowledged"] += row["n"]

    unreached = {org_id: reason for org_id, reason in _unreached(notice) if org_id not in by_org}
    limited: dict[str, Any] | None = None
    if scope is not None:  # the totals are then the scoped partners' sums; the variants (whole notice) left out
        whole = len({*by_org, *unreached})
        by_org = {org_id: counts for org_id, counts in by_org.items() if scope.covers(org_id)}
        unreached = {org_id: reason for org_id, reason in unreached.items() if scope.covers(org_id)}
        variants = []
        limited = {"cam": scope.cam_email, "organisations": len({*by_org, *unreached}), "of_organisations": whole}
    names: dict[int, tuple[str, str]] = {}
    for batch in _batches(sorted({*by_org, *unreached})):
        for org in await Organisation.filter(id__in=batch).values("id", "external_id", "name"):
            names[org["id"]] = (org["external_id"], org["name"])
    paused = await _reminders_paused(notice, names)
    total = funnel_counts()
    organisations = []
    for org_id, counts in by_org.items():
        for key, value in counts.items():
            total[key] += value
        external_id, name = names.get(org_id, ("", ""))
        organisations.append({"organisation_id": external_id, "organisation": name, **counts,
                              "rate": rate(counts["acknowledged"], counts["delivered"]),
                              **({"reminders_paused": paused[org_id]} if org_id in paused else {})})
    organisations += [_unreached_entry(names[org_id], reason) for org_id, reason in unreached.items()
                      if org_id in names]
    organisations.sort(key=lambda o: (o["organisation_id"], o["organisation"]))
    summary = {"notice_id": notice.id, "ack_revision": notice.ack_revision, **total,
               "rate": rate(total["acknowledged"], total["delivered"]), "organisations": organisations}
    if variants:
        summary["variants"] = variants
    if limited is not None:
        summary["scope"] = limited
    return summary


UNREACHED_NOTES = {
    UnreachedReason.NO_ACTIVE_MEMBER.value: "no active recipient (no active member in the directory)",
    UnreachedReason.NOT_IN_AUDIENCE.value: "no active recipient (none of its active members is in the audience)",
    UnreachedReason.OPTED_OUT.value: "no recipient (its members in the audience opted out of the topic)",
}


def _unreached(notice: Notice) -> Iterable[tuple[int, str]]:
    """(organisation id, UnreachedReason) of each organisation the audience matched that got no
    copy, as `publish` recorded them (nothing for notices sent before migration 0021)."""
    for reason, org_ids in sorted((notice.unreached_organisations or {}).items()):
        for org_id in org_ids:
            yield int(org_id), reason


def _unreached_entry(name: tuple[str, str], reason: str) -> dict[str, Any]:
    """A matched organisation nobody received the notice at: in the roll-up, with 0 recipients
    and why, so the list of partners is the audience's and not only those written to."""
    return {"organisation_id": name[0], "organisation": name[1], **funnel_counts(), "rate": None,
            "unreached": reason, "note": UNREACHED_NOTES.get(reason, "no recipient")}


async def _status_by_organisation(notice_id: int) -> list[dict[str, Any]]:
    """Notice deliveries per (organisation, status): the organisation each row was written with
    (one index), and the member's for rows written without one (from before migration 0010)."""
    rows = await (Delivery.filter(notice_id=notice_id, kind=DeliveryKind.NOTICE.value, organisation_id__isnull=False)
                  .annotate(n=Count("id")).group_by("organisation_id", "status", "platform")
                  .values("organisation_id", "status", "platform", "n"))
    older = await (Delivery.filter(notice_id=notice_id, kind=DeliveryKind.NOTICE.value, organisation_id__isnull=True)
                   .annotate(n=Count("id")).group_by("member__organisation_id", "status", "platform")
                   .values("member__organisation_id", "status", "platform", "n"))
    return rows + [{"organisation_id": r["member__organisation_id"], "status": r["status"], "platform": r["platform"],
                    "n": r["n"]} for r in older]


# A member with copies on several platforms (HERALD_PLATFORM_POLICY=all) counts once, by their best
# copy: delivered if any was, else still to be sent, held, in a digest, failed only if all failed.
_BEST = [DeliveryStatus.DELIVERED.value, *_PENDING, DeliveryStatus.HELD.value, DeliveryStatus.DIGEST.value,
         DeliveryStatus.FAILED.value, DeliveryStatus.CANCELLED.value]
# What a member's copies are counted under: their organisation, or their A/B variant and whether
# the rollout sent it (the same on every copy of a member: one assignment per member), as
# column -> SQL expression.
_SEGMENTS = {"organisation_id": {"organisation_id": "COALESCE(d.organisation_id, m.organisation_id)"},
             "variant": {"variant": "d.variant", "rolled_out": "d.rolled_out"}}


def _best_sql(segment: dict[str, str]) -> str:
    columns, expressions = ", ".join(segment), ", ".join(segment.values())
    ranks = " ".join(f"WHEN '{status}' THEN {rank}" for rank, status in enumerate(_BEST))
    return ("SELECT " + columns + ", best, COUNT(*) AS n FROM (SELECT d.member_id, "
            + ", ".join(f"{expression} AS {column}" for column, expression in segment.items())
            + f", MIN(CASE d.status {ranks} ELSE {len(_BEST)} END) AS best "
            "FROM delivery d JOIN member m ON m.id = d.member_id WHERE d.notice_id = ? AND d.kind = '"
            + DeliveryKind.NOTICE.value + "' GROUP BY d.member_id, " + expressions + ") AS x GROUP BY "
            + columns + ", best")


_BEST_SQL = {by: _best_sql(segment) for by, segment in _SEGMENTS.items()}


async def member_status_counts(notice_id: int, *, by: Literal["organisation_id", "variant"] = "organisation_id",
                               ) -> list[dict[str, Any]]:
    """Members per (organisation, or variant and rolled out, best copy's status) of a notice (see _BEST)."""
    rows = await connections.get("default").execute_query_dict(storage_db.placeholders(_BEST_SQL[by]), [notice_id])
    return [{**{column: r[column] for column in _SEGMENTS[by]},
             "status": _BEST[r["best"]] if r["best"] < len(_BEST) else "", "n": r["n"]} for r in rows]


async def _by_member_on_several_platforms(notice_id: int, copies: list[dict[str, Any]], *,
                                          by: Literal["organisation_id", "variant"]) -> list[dict[str, Any]]:
    """`copies` (per `by`, status and platform) as they are when each copy is a member; when the
    notice has copies on more than one platform (HERALD_PLATFORM_POLICY=all), its members by their
    best copy instead (`member_status_counts`)."""
    if len({row["platform"] for row in copies}) > 1:
        return await member_status_counts(notice_id, by=by)
    return copies


async def funnels_by_notice(copies: list[dict[str, Any]]) -> dict[int, dict[str, int]]:
    """Each notice's funnel (`funnel_counts`) from its copies per (notice_id, status, platform, n):
    a copy is a member, unless the notice has copies on more than one platform
    (HERALD_PLATFORM_POLICY=all); then its members are counted by their best copy (`_BEST`)."""
    platforms: dict[int, set[str]] = {}
    for row in copies:
        platforms.setdefault(row["notice_id"], set()).add(row["platform"])
    funnels: dict[int, dict[str, int]] = {}
    for row in copies:
        if len(platforms[row["notice_id"]]) == 1:
            add_status(funnels.setdefault(row["notice_id"], funnel_counts()), row["status"], row["n"])
    for notice_id in (n for n, found in platforms.items() if len(found) > 1):
        for row in await member_status_counts(notice_id):
            add_status(funnels.setdefault(notice_id, funnel_counts()), row["status"], row["n"])
    return funnels


async def _acknowledged_by_organisation(notice: Notice) -> list[dict[str, Any]]:
    """Members who acknowledged the revision that counts, once each, per organisation (as
    `_status_by_organisation`: the member's when some row was written without one)."""
    counted, repeats = await acknowledgements_that_count(notice)
    key = "member__organisation_id" if await counted.filter(organisation_id__isnull=True).exists() else "organisation_id"
    n = Count("member_id", distinct=True) if repeats else Count("id")
    return [{"organisation_id": r[key], "n": r["n"]} for r in await counted.annotate(n=n).group_by(key).values(key, "n")]


async def acknowledgements_that_count(notice: Notice) -> tuple[QuerySet[Acknowledgement], bool]:
    """The acknowledgements of the notice's ack_revision or a later one, and whether a member can
    appear more than once among them (then count distinct members). While nobody has acknowledged
    a later revision, each row is a different member (unique key): counts read straight off the
    index, without a DISTINCT's sort."""
    latest = await Acknowledgement.filter(notice_id=notice.id).order_by("-revision").first().values_list(
        "revision", flat=True)
    if latest == notice.ack_revision:
        return Acknowledgement.filter(notice_id=notice.id, revision=notice.ack_revision), False
    return Acknowledgement.filter(notice_id=notice.id, revision__gte=notice.ack_revision), True


async def notice_summary(notice_id: int, scope: PartnerScope | None = None) -> dict[str, Any]:
    """Recipients, delivered, failed, pending, digest, cancelled and acknowledged (of the current
    ack_revision) with the acknowledgement rate, in total and per organisation. The organisations
    include those the audience matched that got no copy (0 recipients, `unreached` and `note`).
    With a `scope` (`report_scope`), only its partners, and `scope` says how many of how many."""
    return await _notice_summary(await load_notice(notice_id), scope)


async def summary_report(*, since: datetime, until: datetime, topic: str | None = None,
                         importance: str | None = None, author_id: int | None = None) -> list[dict[str, Any]]:
    """One line per notice sent in [since, until): counts and acknowledgement rate.

    `author_id` limits it to one CAM's notices."""
    query = Notice.filter(sent_at__gte=since, sent_at__lt=until)
    if topic:
        query = query.filter(topic=topic)
    if importance:
        query = query.filter(importance=importance)
    if author_id is not None:
        query = query.filter(author_id=author_id)
    notices = await query.order_by("sent_at", "id").values(
        "id", "title", "topic", "importance", "status", "sent_at", "ack_revision")
    counts: dict[int, dict[str, int]] = {n["id"]: funnel_counts() for n in notices}
    for batch in _batches([n["id"] for n in notices]):
        copies = await (Delivery.filter(notice_id__in=batch, kind=DeliveryKind.NOTICE.value).annotate(n=Count("id"))
                        .group_by("notice_id", "status", "platform").values("notice_id", "status", "platform", "n"))
        for notice_id, funnel in (await funnels_by_notice(copies)).items():
            counts[notice_id].update(funnel)  # acknowledged: counted next
        by_ack_revision: dict[int, list[int]] = {}
        for n in notices:
            if n["id"] in batch:
                by_ack_revision.setdefault(n["ack_revision"], []).append(n["id"])
        for ack_revision, ids in by_ack_revision.items():
            acked = await (Acknowledgement.filter(notice_id__in=ids, revision__gte=ack_revision)
                           .annotate(n=Count("member_id", distinct=True)).group_by("notice_id")
                           .values("notice_id", "n"))
            for row in acked:
                counts[row["notice_id"]]["acknowledged"] = row["n"]
    out = []
    for n in notices:
        c = counts[n["id"]]
        out.append({"id": n["id"], "title": n["title"], "topic": n["topic"], "importance": n["importance"],
                     "status": n["status"], "sent_at": iso(n["sent_at"]), **c,
                     "rate": rate(c["acknowledged"], c["delivered"])})
    return out


SUMMARY_COLUMNS = ("id", "title", "topic", "importance", "status", "sent_at", "recipients", "delivered",
                   "failed", "pending", "digest", "cancelled", "held", "acknowledged", "rate")


SUMMARY_REPORT = "herald acknowledgement summary"


_TOPICS_NAMED = 20  # at most this many known topics listed in the refusal of an unknown one


async def summary_topic(topic: str | None, known_topics: Iterable[str] = ()) -> str | None:
    """The topic filter of a period summary as notices store it (a catalog key, in lower case), or
    None for any topic. One that is neither in the catalog (`known_topics`) nor on any notice is
    refused, with the closest: a typo, or 'Operations' for 'operations', would otherwise give an
    empty summary that a compliance system takes for 'nothing was sent'."""
    text = (topic or "").strip()
    if not text:
        return None
    key = text.lower()
    catalog = {str(t).lower() for t in known_topics}
    if key in catalog or await Notice.filter(topic=key).exists():
        return key
    known = sorted(catalog | set(await Notice.all().distinct().values_list("topic", flat=True)))
    hint = difflib.get_close_matches(key, known, n=1)
    listed = ", ".join(known[:_TOPICS_NAMED]) + (f" and {len(known) - _TOPICS_NAMED} more"
                                                  if len(known) > _TOPICS_NAMED else "")
    raise UserError(f"unknown topic '{text[:50]}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                    + (f"; topics: {listed}" if known else "; no notice has a topic yet"))


async def export_summary(*, since: datetime, until: datetime, now: datetime, actor: str, fmt: Format,
                         topic: str | None = None, importance: str | None = None,
                         author_id: int | None = None, known_topics: Iterable[str] = ()) -> dict[str, Any]:
    """The period summary as handed to an auditor: its window and filters, when it was produced and
    the audit chain head it was produced from, and one line per notice (`summary_report`).

    `topic` is checked against the catalog's topics (`known_topics`) and those of the notices
    (`summary_topic`); an unknown one is refused before anything is exported.

    Writes one `report.exported` event first, as the report of one notice does, so the head the
    summary names includes its own export. On PostgreSQL the head and the counts are read in one
    snapshot (`storage.db.read_snapshot`: a click landing meanwhile is in neither)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown report format '{fmt}'; use csv or json")
    topic = await summary_topic(topic, known_topics)
    async with in_transaction() as conn:
        await record([audit_event("report.exported", now=now, actor=actor, report="summary", format=fmt,
                                  since=since, until=until, topic=topic, importance=importance,
                                  **({"author_id": author_id} if author_id is not None else {}))], using_db=conn)

    async def read() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        head = await chain_head()
        return head, await summary_report(since=since, until=until, topic=topic, importance=importance,
                                          author_id=author_id)

    async with storage_db.read_snapshot():
        head, rows = await read()
    return {"since": iso(since), "until": iso(until), "topic": topic, "importance": importance,
            "produced_at": iso(now), "audit_chain_head": head, "notices": rows}


def summary_csv(document: dict[str, Any]) -> str:
    """The summary (`export_summary`) as CSV: `#` metadata lines (what it covers, when it was
    produced, from which chain head), then the column header and one line per notice."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for key, value in (("report", SUMMARY_REPORT), ("since", f"{document['since']} (UTC, inclusive)"),
                       ("until", f"{document['until']} (UTC, exclusive)"), ("topic", document["topic"] or "any"),
                       ("importance", document["importance"] or "any"), ("produced_at", document["produced_at"]),
                       ("audit_chain_head_seq", document["audit_chain_head"]["seq"]),
                       ("audit_chain_head_hash", document["audit_chain_head"]["hash"])):
        writer.writerow(csv_metadata_row(key, value))
    writer.writerow(SUMMARY_COLUMNS)
    for row in document["notices"]:
        writer.writerow([_cell(row[c]) for c in SUMMARY_COLUMNS])
    return out.getvalue()


# ---- the rows (keyset pagination) -----------------------------------------------------------

class _Escalated:
    """Per organisation: when its CAM was told, and the members named (a sorted array of ids:
    8 bytes a member, the only part of a report that grows with the notice's size)."""

    __slots__ = ("at", "members")

    def __init__(self, at: str | None, members: Iterable[int]) -> None:
        self.at = at
        self.members = array("q", sorted(set(members)))

    def names(self, member_id: int) -> bool:
        i = bisect_left(self.members, member_id)
        return i < len(self.members) and self.members[i] == member_id


async def _escalations(notice_id: int, *, batch: int = 100) -> dict[int, _Escalated]:
    """organisation id -> its escalation, read `batch` escalations at a time. One cancelled before
    it went out (`cancel_escalations`: the notice was retracted) or one that failed (nobody who may
    act on it, no chat account, the platform refused it) told nobody: it is left out."""
    result: dict[int, _Escalated] = {}
    last_id = 0
    while True:
        rows = await (Escalation.filter(notice_id=notice_id, id__gt=last_id)
                      .exclude(status__in=[DeliveryStatus.CANCELLED.value, DeliveryStatus.FAILED.value])
                      .order_by("id").limit(batch)
                      .values("id", "organisation_id", "member_ids", "sent_at", "created_at"))
        for esc in rows:
            members = esc["member_ids"] or []
            if isinstance(members, str):  # defensive: a JSON column read back as text
                members = json.loads(members)
            ids = (int(m) for m in members if isinstance(m, int) or str(m).lstrip("-").isdigit())
            result[esc["organisation_id"]] = _Escalated(iso(esc["sent_at"] or esc["created_at"]), ids)
        if len(rows) < batch:
            return result
        last_id = rows[-1]["id"]


async def _delivered_reminders(notice_id: int, member_ids: list[int]) -> dict[tuple[int, str], int]:
    """(member id, platform) -> reminders delivered. Each copy has its own reminders, written on
    the copy's platform (bot.core.notices.reminders), so under HERALD_PLATFORM_POLICY=all a member's
    Slack row and Teams row each count their own, not the sum of both."""
    return {(r["member_id"], r["platform"]): r["n"] for r in await (
        Delivery.filter(notice_id=notice_id, kind=DeliveryKind.REMINDER.value,
                        status=DeliveryStatus.DELIVERED.value, member_id__in=member_ids)
        .annotate(n=Count("id")).group_by("member_id", "platform").values("member_id", "platform", "n"))}


def _original_copies(notice: Notice, scope: PartnerScope | None) -> QuerySet[Delivery]:
    """The notice's original deliveries; with a scope, those of its partners (by the organisation
    the row was written with, else the member's: as the summary counts them)."""
    copies = Delivery.filter(notice_id=notice.id, kind=DeliveryKind.NOTICE.value)
    if scope is None:
        return copies
    ids = list(scope.organisations)
    return copies.filter(Q(organisation_id__in=ids) | Q(organisation_id__isnull=True, member__organisation_id__in=ids))


async def iter_report_rows(notice: Notice, *, page_size: int = PAGE_SIZE,
                           escalations: dict[int, _Escalated] | None = None, scope: PartnerScope | None = None,
                           ) -> AsyncIterator[list[dict[str, Any]]]:
    """Pages of report rows (dicts keyed by COLUMNS), one per original delivery, by delivery id."""
    if escalations is None:
        escalations = await _escalations(notice.id)
    last_id = 0
    while True:
        page = await (_original_copies(notice, scope).filter(id__gt=last_id)
                      .order_by("id").limit(page_size)
                      .values("id", "member_id", "platform", "status", "delivered_at", "error", "variant",
                              "member__name", "member__email", "member__role", "member__organisation_id",
                              "member__organisation__external_id", "member__organisation__name"))
        if not page:
            return
        last_id = page[-1]["id"]
        member_ids = sorted({r["member_id"] for r in page})
        latest: dict[int, tuple[int, datetime]] = {}
        for ack in await Acknowledgement.filter(notice_id=notice.id, member_id__in=member_ids).values(
                "member_id", "revision", "acknowledged_at"):
            seen = latest.get(ack["member_id"])
            if seen is None or ack["revision"] > seen[0]:
                latest[ack["member_id"]] = (ack["revision"], ack["acknowledged_at"])
        reminders = await _delivered_reminders(notice.id, member_ids)
        rows = []
        for r in page:
            member_id = r["member_id"]
            ack = latest.get(member_id)
            escalated = escalations.get(r["member__organisation_id"])
            failure = ""
            if r["status"] == DeliveryStatus.FAILED.value:
                failure = r["error"] or "failed (no reason recorded)"
            elif r["status"] == DeliveryStatus.CANCELLED.value:  # e.g. retracted before it was sent
                failure = r["error"] or "cancelled before it was sent"
            elif r["status"] == DeliveryStatus.HELD.value:
                failure = "held back for the A/B test's winning variant"
            rows.append({
                "organisation_id": r["member__organisation__external_id"],
                "organisation": r["member__organisation__name"],
                "member": r["member__name"],
                "email": r["member__email"],
                "role": r["member__role"],
                "platform": r["platform"],
                "delivered_at": iso(r["delivered_at"]) if r["status"] == DeliveryStatus.DELIVERED.value else None,
                "failure_reason": failure,
                "reminders_sent": reminders.get((member_id, r["platform"]), 0),
                "acknowledged_at": iso(ack[1]) if ack else None,
                "acknowledged_revision": ack[0] if ack else None,
                "escalated_at": escalated.at if escalated is not None and escalated.names(member_id) else None,
                "variant": r["variant"] or None,
            })
        yield rows
        if len(page) < page_size:
            return


# ---- the export -----------------------------------------------------------------------------

def _csv_preamble(notice: dict[str, Any], revisions: list[dict[str, Any]], produced_at: str | None,
                  head: dict[str, Any], summary: dict[str, Any]) -> str:
    lines: list[tuple[str, Any]] = [("report", "herald acknowledgement report")]
    if "scope" in summary:
        lines.append(("scope", scope_line(summary["scope"])))
    for key in ("id", "title", "topic", "importance", "status", "audience", "author", "created_at", "sent_at",
                "deadline", "retracted_at", "retract_reason", "revision", "ack_revision"):
        lines.append(("notice_id" if key == "id" else key, notice[key]))
    for rev in revisions:
        lines.append((f"revision_{rev['revision']}",
                      f"edited_at={rev['edited_at'] or ''} edited_by={rev['edited_by'] or ''} "
                      f"material={'yes' if rev['material'] else 'no'}{' original' if rev['original'] else ''}"))
    lines += [("produced_at", produced_at), ("audit_chain_head_seq", head["seq"]),
              ("audit_chain_head_hash", head["hash"])]
    for key in ("recipients", "delivered", "failed", "pending", "digest", "cancelled", "held", "acknowledged"):
        lines.append((key, summary[key]))
    lines.append(("acknowledgement_rate", summary["rate"]))
    for v in summary.get("variants", []):  # the rollout's members apart: they were not in the experiment
        lines.append(("variant_rollout" if v.get("rolled_out") else "variant",
                      f"variant={v['variant'] or 'held'} recipients={v['recipients']} "
                      f"delivered={v['delivered']} held={v['held']} acknowledged={v['acknowledged']} "
                      f"rate={'' if v['rate'] is None else v['rate']}"))
    for org in summary["organisations"]:
        lines.append(("organisation",
                      f"id={json.dumps(org['organisation_id'], ensure_ascii=False)} "
                      f"name={json.dumps(org['organisation'], ensure_ascii=False)} "
                      f"recipients={org['recipients']} delivered={org['delivered']} failed={org['failed']} "
                      f"pending={org['pending']} digest={org['digest']} cancelled={org['cancelled']} "
                      f"held={org['held']} acknowledged={org['acknowledged']} "
                      f"rate={'' if org['rate'] is None else org['rate']}"
                      + (f" note={json.dumps(org['note'], ensure_ascii=False)}" if "note" in org else "")
                      + "".join(_csv_pause(pause) for pause in [
                          *org.get("reminders_paused", {}).get("earlier", []),
                          *([org["reminders_paused"]] if "reminders_paused" in org else [])])))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for key, value in lines:
        writer.writerow(csv_metadata_row(key, value))
    writer.writerow(COLUMNS)
    return buffer.getvalue()


def _csv_rows(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow([_cell(row[c]) for c in COLUMNS])
    return buffer.getvalue()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def report_chunks(notice_id: int, fmt: Format, *, now: datetime, actor: str, reader: Staff | None,
                        page_size: int = PAGE_SIZE, progress: Progress = no_progress) -> AsyncIterator[str]:
    """The acknowledgement report of one notice as text chunks (one per page of rows), as
    `reader` may see it (`report_scope`; None is the operator on the command line: all of it).

    Writes one `report.exported` audit event when the export starts (with the scope, when the
    report is limited to a CAM's partners); the audit chain head is read after it, so the head the
    report names includes its own export. The head, the summary and every row are read in one
    snapshot (`_in_snapshot`), so a click that lands while a slow client is still downloading is
    in none of them: the report is the trail as of its head."""
    if fmt not in FORMATS:
        raise UserError(f"unknown report format '{fmt}'; use csv or json")
    notice = await load_notice(notice_id)
    scope = await report_scope(reader, notice)
    limited = scope.audit_data() if scope is not None else {}
    async with in_transaction() as conn:
        await record([audit_event("report.exported", now=now, actor=actor, notice_id=notice.id, format=fmt,
                                  **limited)], using_db=conn)

    def body() -> AsyncIterator[str]:
        return _report_text(notice.id, fmt, now=now, page_size=page_size, progress=progress, scope=scope)

    # closed with the report, not left to the loop's finaliser: a consumer that stops early (`herald
    # report 1 | head`, a client gone) must find the snapshot's task and connection ended on return
    async with contextlib.aclosing(_in_snapshot(body)) as snapshot:
        async for chunk in snapshot:
            yield chunk


async def record_report_delivered(notice_id: int, *, now: datetime, actor: str, platform: str,
                                  fmt: Format = "csv") -> None:
    """Audit that a report pushed to a person (Slack: the CSV shared in their direct messages)
    reached them. `report.exported` is written when the export starts, so that the report names a
    head that includes it; this is its outcome, and an export without it was not delivered."""
    await record([audit_event("report.delivered", now=now, actor=actor, notice_id=notice_id, platform=platform,
                              format=fmt)])


_SNAPSHOT_AHEAD = 2  # chunks read ahead of the client


async def _in_snapshot(body: Callable[[], AsyncIterator[str]]) -> AsyncIterator[str]:
    """`body`'s chunks, read in one read-only snapshot (`storage.db.read_snapshot`) of their own
    task: the snapshot's connection is bound to that task's context, so the consumer's own queries
    between chunks never run inside it. A consumer that stops early (a client gone) ends it."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=_SNAPSHOT_AHEAD)
    done = object()

    async def produce() -> None:
        try:
            async with storage_db.read_snapshot():
                async for chunk in body():
                    await queue.put(chunk)
            await queue.put(done)
        except Exception as exc:  # noqa: BLE001 - raised again in the consumer
            await queue.put(exc)

    task = asyncio.create_task(produce())
    try:
        while (item := await queue.get()) is not done:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _report_text(notice_id: int, fmt: Format, *, now: datetime, page_size: int,
                       progress: Progress, scope: PartnerScope | None) -> AsyncIterator[str]:
    notice = await load_notice(notice_id)
    head = await chain_head()
    produced_at = iso(now)
    document = notice_document(notice)
    revisions = await notice_revisions(notice)
    summary = await _notice_summary(notice, scope)
    if scope is not None:  # the notice's reach as far as the scope goes, as its summary and rows
        document["recipient_count"] = summary["recipients"]
    escalations = await _escalations(notice.id)

    total = int(summary.get("recipients") or 0)
    written = 0
    if fmt == "csv":
        yield _csv_preamble(document, revisions, produced_at, head, summary)
        async for rows in iter_report_rows(notice, page_size=page_size, escalations=escalations, scope=scope):
            yield _csv_rows(rows)
            written += len(rows)
            progress("rows", written, max(total, written))
        return

    yield ('{"notice":' + _json(document) + ',"revisions":' + _json(revisions)
           + ',"produced_at":' + _json(produced_at) + ',"audit_chain_head":' + _json(head)
           + ',"summary":' + _json(summary) + ',"rows":[')
    first = True
    async for rows in iter_report_rows(notice, page_size=page_size, escalations=escalations, scope=scope):
        parts = []
        for row in rows:
            parts.append(("\n" if first else ",\n") + _json(row))
            first = False
        yield "".join(parts)
        written += len(rows)
        progress("rows", written, max(total, written))
    yield "\n]}\n"
