"""Acknowledgement reports: exact contents on a small fixture, summaries, audit, API tokens, CLI."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.common.clock import ManualClock
from bot.core.compliance import api_tokens, reports
from bot.core.compliance.audit import audit_event, record
from bot.core.compliance.crosscheck import members_digest
from bot.common.errors import NotFound, UserError
from bot.core.directory.importer import import_directory
from bot.core.notices.revisions import retract_notice
from storage import db as storage_db
from storage.models import (
    Acknowledgement,
    ApiToken,
    AuditEvent,
    Delivery,
    Escalation,
    Member,
    Notice,
    NoticeRevision,
    Organisation,
    Staff,
)
from tests.support import SAMPLE_DIRECTORY, Rig
from tests.cli_support import in_process_cli

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 12, 8, 0, tzinfo=UTC)


def at(minutes: float = 0, **delta: float) -> datetime:
    return T0 + timedelta(minutes=minutes, **delta)


@dataclass
class Fixture:
    cam: Staff
    other_cam: Staff
    compliance: Staff
    admin: Staff
    retired: Staff
    notice: Notice  # must-know, by `cam`, five recipients in two organisations
    other: Notice  # need-to-know, by `other_cam`
    draft: Notice  # a draft by `cam`: listed, never in a summary
    members: dict[str, Member]


async def seed_reports() -> Fixture:
    """Two organisations, five members, one must-know notice with every kind of outcome:

    anna  delivered, acknowledged revision 1 and then the current revision 2
    bo    delivered, acknowledged only revision 1 (before the material edit), one reminder
          delivered (and one that failed), escalated to the CAM (not yet sent: created_at counts)
    cy    delivered (with microseconds), never acknowledged, escalated (sent)
    di    failed, with a reason
    ed    still pending; named in the escalation; a name a spreadsheet would run as a formula
    """
    cam = await Staff.create(email="cam@vendor.example", name="Casey CAM", role="cam")
    other_cam = await Staff.create(email="other@vendor.example", name="Olga CAM", role="cam")
    compliance = await Staff.create(email="audit@vendor.example", name="Avery Audit", role="compliance")
    admin = await Staff.create(email="admin@vendor.example", role="admin")
    retired = await Staff.create(email="gone@vendor.example", role="compliance", active=False)
    acme = await Organisation.create(external_id="acme", name="Acme Locks", tier="gold")
    bolt = await Organisation.create(external_id="bolt", name="Bolt Supply, Inc.", tier="silver")
    members = {}
    for key, org, name, role in [("anna", acme, "Anna Berg", "sales"), ("bo", acme, "Bo Chen", "support"),
                                 ("cy", bolt, "Cy Diaz", "operations"), ("di", bolt, "Di Evans", "executive"),
                                 ("ed", bolt, "=Ed Fox", "sales")]:
        members[key] = await Member.create(organisation=org, email=f"{key}@{org.external_id}.example", name=name,
                                           role=role)
    notice = await Notice.create(topic="operations", importance="must-know", title="Recall of LX-200",
                                 body="Stop selling LX-200.\nReturn stock.", audience="tier:gold tier:silver",
                                 author=cam, status="sent", revision=2, ack_revision=2, recipient_count=5,
                                 created_at=at(0), sent_at=at(1), deadline=datetime(2026, 1, 10, 17, 0, tzinfo=UTC))
    await NoticeRevision.create(notice=notice, revision=1, title="Recall of LX-200", body="Stop selling LX-200.",
                                edited_by="", edited_at=at(1))  # the original, as bot.core.notices.revisions keeps it
    await NoticeRevision.create(notice=notice, revision=2, title="Recall of LX-200 and LX-210", body="b",
                                material=True, edited_by="cam@vendor.example", edited_at=at(days=1, hours=1))

    def delivery(member: Member, status: str, **extra) -> Delivery:
        return Delivery(notice=notice, member=member, platform="slack", status=status, next_attempt_at=at(1),
                        created_at=at(1), **extra)

    rows = {
        "anna": delivery(members["anna"], "delivered", delivered_at=at(2)),
        "bo": delivery(members["bo"], "delivered", delivered_at=at(2), reminders_sent=7),  # the count column is authoritative
        "cy": delivery(members["cy"], "delivered", delivered_at=at(3, microseconds=500000)),
        "di": delivery(members["di"], "failed", error="UDI does not exist in workspace T0PARTNER", attempts=1),
        "ed": delivery(members["ed"], "pending", error="HTTP 500 from Slack; retrying"),
    }
    for row in rows.values():
        await row.save()
    reminded = await Delivery.create(notice=notice, member=members["bo"], platform="slack", kind="reminder", sequence=1,
                                     status="delivered", delivered_at=at(days=1), next_attempt_at=at(days=1),
                                     created_at=at(days=1))
    unreminded = await Delivery.create(notice=notice, member=members["bo"], platform="slack", kind="reminder",
                                       sequence=2, status="failed", error="x", next_attempt_at=at(days=2),
                                       created_at=at(days=2))
    # each copy's outcome with its audit event, as the outbox writes them (`herald audit verify` checks the pairs)
    for row, kind in ((rows["anna"], "delivery.delivered"), (rows["bo"], "delivery.delivered"),
                      (rows["cy"], "delivery.delivered"), (rows["di"], "delivery.failed"),
                      (reminded, "notice.reminded"), (unreminded, "reminder.failed")):
        await record([audit_event(kind, now=row.delivered_at or at(1), notice_id=notice.id, member_id=row.member_id,
                                  platform="slack", delivery_id=row.id, reason=row.error or None)])
    for who, revision, when in (("anna", 1, at(30)), ("anna", 2, at(days=1, hours=2)), ("bo", 1, at(40))):
        # each with its audit event, as acknowledge() writes them (`herald audit verify` checks the pair)
        await Acknowledgement.create(notice=notice, member=members[who], delivery=rows[who], platform="slack",
                                     revision=revision, acknowledged_at=when)
        await record([audit_event("notice.acknowledged", now=when, actor=members[who].email, notice_id=notice.id,
                                  member_id=members[who].id, platform="slack", revision=revision)])
    deadline = datetime(2026, 1, 10, 17, 5, tzinfo=UTC)
    await Escalation.create(notice=notice, organisation=acme, staff=cam, member_ids=[members["bo"].id],
                            status="pending", created_at=deadline)
    await Escalation.create(notice=notice, organisation=bolt, staff=cam,
                            member_ids=[members["cy"].id, members["ed"].id], status="delivered",
                            created_at=deadline, sent_at=deadline + timedelta(minutes=1))
    await record([audit_event("notice.escalated", now=deadline, notice_id=notice.id, organisation=org,
                              unacknowledged=len(named), members_sha256=members_digest(named))
                  for org, named in (("acme", [members["bo"].id]), ("bolt", [members["cy"].id, members["ed"].id]))])
    await record([audit_event("escalation.delivered", now=deadline + timedelta(minutes=1), notice_id=notice.id,
                              organisation="bolt")])

    other = await Notice.create(topic="announcements", importance="need-to-know", title="Price list", body="New prices",
                                audience="all", author=other_cam, status="sent", created_at=at(days=2),
                                sent_at=at(days=2), recipient_count=1)
    copy = await Delivery.create(notice=other, member=members["anna"], platform="slack", status="delivered",
                                 delivered_at=at(days=2), next_attempt_at=at(days=2), created_at=at(days=2))
    await record([audit_event("delivery.delivered", now=copy.delivered_at, notice_id=other.id,
                              member_id=copy.member_id, platform="slack", delivery_id=copy.id)])
    draft = await Notice.create(topic="operations", importance="must-know", title="Draft", body="d", audience="all",
                                author=cam, status="draft", created_at=at(days=3))
    return Fixture(cam, other_cam, compliance, admin, retired, notice, other, draft, members)


EXPECTED_HEADER = ["organisation_id", "organisation", "member", "email", "role", "platform", "delivered_at",
                   "failure_reason", "reminders_sent", "acknowledged_at", "acknowledged_revision", "escalated_at",
                   "variant"]
EXPECTED_ROWS = [
    ["acme", "Acme Locks", "Anna Berg", "anna@acme.example", "sales", "slack", "2026-01-05T09:02:00Z", "", "0",
     "2026-01-06T11:00:00Z", "2", "", ""],
    ["acme", "Acme Locks", "Bo Chen", "bo@acme.example", "support", "slack", "2026-01-05T09:02:00Z", "", "1",
     "2026-01-05T09:40:00Z", "1", "2026-01-10T17:05:00Z", ""],
    ["bolt", "Bolt Supply, Inc.", "Cy Diaz", "cy@bolt.example", "operations", "slack",
     "2026-01-05T09:03:00.500000Z", "", "0", "", "", "2026-01-10T17:06:00Z", ""],
    ["bolt", "Bolt Supply, Inc.", "Di Evans", "di@bolt.example", "executive", "slack", "",
     "UDI does not exist in workspace T0PARTNER", "0", "", "", "", ""],
    ["bolt", "Bolt Supply, Inc.", "'=Ed Fox", "ed@bolt.example", "sales", "slack", "", "", "0", "", "",
     "2026-01-10T17:06:00Z", ""],
]
EXPECTED_ORGS = [
    {"organisation_id": "acme", "organisation": "Acme Locks", "recipients": 2, "delivered": 2, "failed": 0,
     "pending": 0, "digest": 0, "cancelled": 0, "held": 0, "acknowledged": 1, "rate": 0.5},
    {"organisation_id": "bolt", "organisation": "Bolt Supply, Inc.", "recipients": 3, "delivered": 1, "failed": 1,
     "pending": 1, "digest": 0, "cancelled": 0, "held": 0, "acknowledged": 0, "rate": 0.0},
]


def expected_summary(notice_id: int) -> dict:
    return {"notice_id": notice_id, "ack_revision": 2, "recipients": 5, "delivered": 3, "failed": 1, "pending": 1,
            "digest": 0, "cancelled": 0, "held": 0, "acknowledged": 1, "rate": 0.3333, "organisations": EXPECTED_ORGS}


def expected_json_rows() -> list[dict]:
    out = []
    for row in EXPECTED_ROWS:
        item = dict(zip(EXPECTED_HEADER, row, strict=True))
        for key in ("delivered_at", "acknowledged_at", "escalated_at", "variant"):
            item[key] = item[key] or None
        item["member"] = item["member"].removeprefix("'")  # the apostrophe guards spreadsheets only
        item["reminders_sent"] = int(item["reminders_sent"])
        item["acknowledged_revision"] = int(item["acknowledged_revision"]) if item["acknowledged_revision"] else None
        out.append(item)
    return out


async def collect(notice_id: int, fmt: str, **kwargs) -> str:
    return "".join([chunk async for chunk in reports.report_chunks(notice_id, fmt, reader=None, now=NOW, actor="audit@vendor.example",
                                                                   **kwargs)])


def split_csv(text: str) -> tuple[dict[str, str], list[list[str]]]:
    """The metadata (each line one cell that starts with "# ") and the table after it."""
    rows = list(csv.reader(io.StringIO(text)))
    meta_rows = [row for row in rows if len(row) == 1 and row[0].startswith("# ")]
    assert rows[:len(meta_rows)] == meta_rows, "metadata comes first"
    meta: dict[str, str] = {}
    for (line,) in meta_rows:
        key, _, value = line[2:].partition(": ")
        meta[key] = value if key not in meta else meta[key] + "\n" + value
    return meta, rows[len(meta_rows):]


# ---- the report ---------------------------------------------------------------------------------

async def test_csv_report_cells_metadata_and_summary(db: str) -> None:
    fx = await seed_reports()
    text = await collect(fx.notice.id, "csv")
    meta, table = split_csv(text)
    assert table[0] == EXPECTED_HEADER
    assert table[1:] == EXPECTED_ROWS

    event = await AuditEvent.get(kind="report.exported", notice_id=fx.notice.id)
    assert event.actor == "audit@vendor.example" and event.data["format"] == "csv"
    assert meta["notice_id"] == str(fx.notice.id)
    assert meta["title"] == "Recall of LX-200" and meta["topic"] == "operations"
    assert meta["importance"] == "must-know" and meta["status"] == "sent"
    assert meta["audience"] == "tier:gold tier:silver" and meta["author"] == "cam@vendor.example"
    assert meta["created_at"] == "2026-01-05T09:00:00Z" and meta["sent_at"] == "2026-01-05T09:01:00Z"
    assert meta["deadline"] == "2026-01-10T17:00:00Z"
    assert meta["revision"] == "2" and meta["ack_revision"] == "2"
    assert meta["revision_1"] == "edited_at=2026-01-05T09:01:00Z edited_by=cam@vendor.example material=no original"
    assert meta["revision_2"] == "edited_at=2026-01-06T10:00:00Z edited_by=cam@vendor.example material=yes"
    assert meta["produced_at"] == "2026-01-12T08:00:00Z"
    # The chain head is read right after the export's own audit event was appended.
    assert meta["audit_chain_head_seq"] == str(event.seq) and int(meta["audit_chain_head_seq"]) >= 1
    assert meta["audit_chain_head_hash"] == event.hash and len(event.hash) == 64
    assert (meta["recipients"], meta["delivered"], meta["failed"], meta["pending"], meta["acknowledged"]) == \
        ("5", "3", "1", "1", "1")
    assert meta["acknowledgement_rate"] == "0.3333"
    assert meta["organisation"].splitlines() == [
        'id="acme" name="Acme Locks" recipients=2 delivered=2 failed=0 pending=0 digest=0 cancelled=0 '
        'held=0 acknowledged=1 rate=0.5',
        'id="bolt" name="Bolt Supply, Inc." recipients=3 delivered=1 failed=1 pending=1 digest=0 cancelled=0 '
        'held=0 acknowledged=0 rate=0.0',
    ]


async def test_json_report_is_one_valid_object(db: str) -> None:
    fx = await seed_reports()
    chunks = [c async for c in reports.report_chunks(fx.notice.id, "json", reader=None, now=NOW, actor="x", page_size=2)]
    assert len(chunks) == 1 + 3 + 1  # opening, three pages of rows (2 + 2 + 1), closing
    data = json.loads("".join(chunks))
    assert list(data) == ["notice", "revisions", "produced_at", "audit_chain_head", "summary", "rows"]
    assert data["notice"] == {
        "id": fx.notice.id, "title": "Recall of LX-200", "topic": "operations", "importance": "must-know",
        "status": "sent", "audience": "tier:gold tier:silver", "author": "cam@vendor.example",
        "body": "Stop selling LX-200.\nReturn stock.", "link": "",
        "created_at": "2026-01-05T09:00:00Z", "sent_at": "2026-01-05T09:01:00Z", "deadline": "2026-01-10T17:00:00Z",
        "completed_at": None, "escalated_at": None, "retracted_at": None, "retract_reason": None,
        "revision": 2, "ack_revision": 2, "recipient_count": 5,
    }
    assert data["revisions"] == [
        {"revision": 1, "title": "Recall of LX-200", "edited_at": "2026-01-05T09:01:00Z", "edited_by": "cam@vendor.example",
         "material": False, "original": True},
        {"revision": 2, "title": "Recall of LX-200 and LX-210", "edited_at": "2026-01-06T10:00:00Z",
         "edited_by": "cam@vendor.example", "material": True, "original": False},
    ]
    assert data["produced_at"] == "2026-01-12T08:00:00Z"
    event = await AuditEvent.get(kind="report.exported", notice_id=fx.notice.id)
    assert event.data == {"format": "json"}
    assert data["audit_chain_head"] == {"seq": event.seq, "hash": event.hash}
    assert data["summary"] == expected_summary(fx.notice.id)
    assert data["rows"] == expected_json_rows()


@pytest.mark.parametrize("fmt", ["csv", "json"])
async def test_a_click_while_the_report_streams_is_in_neither_its_summary_nor_its_rows(db: str, fmt: str) -> None:
    """Cy acknowledges after the report's first chunk (its head and summary) went out and before
    its rows are read: on both databases the report is one snapshot, so its totals agree with its
    rows and its chain head, and the click is in the next report."""
    fx = await seed_reports()
    chunks = reports.report_chunks(fx.notice.id, fmt, reader=None, now=NOW, actor="audit@vendor.example", page_size=1)
    first = await anext(chunks)
    cy = fx.members["cy"]
    delivery = await Delivery.get(notice_id=fx.notice.id, member_id=cy.id, kind="notice")
    await Acknowledgement.create(notice=fx.notice, member=cy, delivery=delivery, platform="slack", revision=2,
                                 acknowledged_at=NOW)
    await record([audit_event("notice.acknowledged", now=NOW, actor=cy.email, notice_id=fx.notice.id,
                              member_id=cy.id, platform="slack", revision=2)])
    text = first + "".join([chunk async for chunk in chunks])

    if fmt == "csv":
        meta, table = split_csv(text)
        rows = [dict(zip(table[0], row, strict=True)) for row in table[1:]]
        acknowledged, head_seq = int(meta["acknowledged"]), int(meta["audit_chain_head_seq"])
        acked_rows = [r["email"] for r in rows if r["acknowledged_revision"] == "2"]
    else:
        data = json.loads(text)
        acknowledged, head_seq = data["summary"]["acknowledged"], data["audit_chain_head"]["seq"]
        acked_rows = [r["email"] for r in data["rows"] if r["acknowledged_revision"] == 2]
    assert acked_rows == ["anna@acme.example"], f"the rows show a click made after the summary: {acked_rows}"
    assert acknowledged == len(acked_rows) == 1
    assert head_seq < (await AuditEvent.get(kind="notice.acknowledged", member_id=cy.id)).seq
    meta, _ = split_csv(await collect(fx.notice.id, "csv"))
    assert meta["acknowledged"] == "2"


async def test_a_report_closed_after_its_first_chunk_has_ended_its_snapshot_when_aclose_returns(db: str) -> None:
    """`herald report 1 | head`, a client gone mid-download: the consumer closes the report. Its
    snapshot (a reading task, and on SQLite a connection of its own) must be over when aclose()
    returns, before the caller closes the database and the event loop; left to the loop's
    async-generator finaliser, the reader's thread answered a closed loop ("Exception in thread
    ... Event loop is closed" on the CLI's standard error, under load)."""
    fx = await seed_reports()
    before = asyncio.all_tasks()
    chunks = reports.report_chunks(fx.notice.id, "csv", reader=None, now=NOW, actor="x", page_size=1)
    assert await anext(chunks)
    assert asyncio.all_tasks() - before, "the snapshot's reading task is running"
    await chunks.aclose()
    assert not [t for t in asyncio.all_tasks() - before if not t.done()], "the snapshot outlived the report"


async def test_pagination_gives_the_same_rows_and_each_export_is_audited(db: str) -> None:
    fx = await seed_reports()
    one_page = split_csv(await collect(fx.notice.id, "csv"))[1]
    for size in (1, 2, 4, 5):
        assert split_csv(await collect(fx.notice.id, "csv", page_size=size))[1] == one_page
    assert await AuditEvent.filter(kind="report.exported", notice_id=fx.notice.id).count() == 5
    heads = [e.seq for e in await AuditEvent.filter(kind="report.exported").order_by("seq")]
    assert heads == sorted(set(heads))


async def test_empty_and_never_edited_notice(db: str) -> None:
    fx = await seed_reports()
    data = json.loads(await collect(fx.draft.id, "json"))
    assert data["rows"] == []
    assert data["revisions"] == [{"revision": 1, "title": "Draft", "edited_at": "2026-01-08T09:00:00Z",
                                  "edited_by": "cam@vendor.example", "material": False, "original": True}]
    assert data["summary"]["recipients"] == 0 and data["summary"]["rate"] is None
    assert data["summary"]["organisations"] == []
    await NoticeRevision.create(notice=fx.other, revision=2, title="Price list v2", body="b", edited_by="x@y",
                                edited_at=at(days=4))  # revision 1 was never kept: its title is unknown
    assert [(r["revision"], r["title"], r["edited_by"]) for r in await reports.notice_revisions(
        await reports.load_notice(fx.other.id))] == [(1, None, "other@vendor.example"), (2, "Price list v2", "x@y")]
    meta, table = split_csv(await collect(fx.draft.id, "csv"))
    assert table == [EXPECTED_HEADER] and meta["acknowledgement_rate"] == ""


async def test_unknown_notice_and_format(db: str) -> None:
    await seed_reports()
    with pytest.raises(NotFound, match="notice 999 does not exist"):
        await collect(999, "csv")
    with pytest.raises(UserError, match="unknown report format"):
        await collect(1, "xml")
    assert await AuditEvent.filter(kind="report.exported").count() == 0


async def test_notice_summary_and_cross_notice_summary(db: str) -> None:
    fx = await seed_reports()
    assert await reports.notice_summary(fx.notice.id) == expected_summary(fx.notice.id)
    with pytest.raises(NotFound):
        await reports.notice_summary(12345)

    since, until = reports.parse_window("2026-01-01", "2026-01-31")
    assert (since, until) == (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    rows = await reports.summary_report(since=since, until=until)
    assert rows == [
        {"id": fx.notice.id, "title": "Recall of LX-200", "topic": "operations", "importance": "must-know",
         "status": "sent", "sent_at": "2026-01-05T09:01:00Z", "recipients": 5, "delivered": 3, "failed": 1,
         "pending": 1, "digest": 0, "cancelled": 0, "held": 0, "acknowledged": 1, "rate": 0.3333},
        {"id": fx.other.id, "title": "Price list", "topic": "announcements", "importance": "need-to-know",
         "status": "sent", "sent_at": "2026-01-07T09:00:00Z", "recipients": 1, "delivered": 1, "failed": 0,
         "pending": 0, "digest": 0, "cancelled": 0, "held": 0, "acknowledged": 0, "rate": 0.0},
    ]
    assert [r["id"] for r in await reports.summary_report(since=since, until=until, topic="operations")] == [fx.notice.id]
    assert [r["id"] for r in await reports.summary_report(since=since, until=until, importance="need-to-know")] \
        == [fx.other.id]
    assert [r["id"] for r in await reports.summary_report(since=since, until=until, author_id=fx.cam.id)] \
        == [fx.notice.id]
    # the window is half-open: a notice sent exactly at `until` belongs to the next one
    assert [r["id"] for r in await reports.summary_report(since=since, until=at(1))] == []
    assert [r["id"] for r in await reports.summary_report(since=at(1), until=at(2))] == [fx.notice.id]


def test_window_parsing() -> None:
    assert reports.parse_window("2026-01-05T10:00:00+02:00", "2026-01-05T12:00Z") == (
        datetime(2026, 1, 5, 8, tzinfo=UTC), datetime(2026, 1, 5, 12, tzinfo=UTC))
    assert reports.parse_moment("2026-01-05T10:00:00", what="x") == datetime(2026, 1, 5, 10, tzinfo=UTC)
    for since, until, message in [("2026-13-01", "2026-01-02", "is not a date"), ("", "2026-01-02", "required"),
                                  ("2026-01-05", "2026-01-04", "until must be after since"),
                                  ("yesterday", "2026-01-02", "is not a date")]:
        with pytest.raises(UserError, match=message):
            reports.parse_window(since, until)


async def test_access_rule(db: str) -> None:
    fx = await seed_reports()
    assert await reports.can_read_notice(fx.compliance, fx.other) and await reports.can_read_notice(fx.admin, fx.notice)
    assert await reports.can_read_notice(fx.cam, fx.notice) and await reports.can_read_notice(fx.cam, fx.draft)
    assert not await reports.can_read_notice(fx.cam, fx.other) and not await reports.can_read_notice(fx.other_cam, fx.notice)
    assert not await reports.can_read_notice(fx.retired, fx.notice)
    assert not await reports.can_read_notice(None, fx.notice)
    stranger = Staff(id=999, email="x@y", role="intern", active=True)
    assert not await reports.can_read_notice(stranger, fx.notice)
    authorless = Notice(id=77, author_id=None)
    assert not await reports.can_read_notice(fx.cam, authorless) and await reports.can_read_notice(fx.compliance, authorless)
    # a partner's CAM reads a colleague's notice escalated to them (its Open report button); an
    # escalation goes to the CAM the directory names for the organisation
    corp = await Organisation.create(external_id="corp", name="Corp", tier="gold", cam_email=fx.other_cam.email)
    await Escalation.create(notice_id=fx.notice.id, organisation=corp, staff=fx.other_cam, member_ids=[],
                            created_at=fx.notice.created_at)
    assert await reports.can_read_notice(fx.other_cam, fx.notice) and not await reports.can_read_notice(fx.other_cam, fx.draft)


async def test_the_report_of_an_escalation_follows_the_organisations_cam(db: str) -> None:
    """The directory gives the partner another CAM after a deadline's escalation: the new CAM, who
    may press its Remind now, reads the notice's report too; the CAM replaced no longer does (the
    partner is not theirs any more), as open hand-offs move to the new CAM."""
    fx = await seed_reports()
    corp = await Organisation.create(external_id="corp", name="Corp", tier="gold", cam_email="Other@Vendor.example")
    await Escalation.create(notice_id=fx.notice.id, organisation=corp, staff=fx.other_cam, member_ids=[],
                            created_at=fx.notice.created_at)
    successor = await Staff.create(email="new@vendor.example", name="Nia CAM", role="cam")
    assert await reports.can_read_notice(fx.other_cam, fx.notice)
    assert not await reports.can_read_notice(successor, fx.notice)

    await Organisation.filter(id=corp.id).update(cam_email=successor.email)

    assert await reports.can_read_notice(successor, fx.notice)
    assert not await reports.can_read_notice(fx.other_cam, fx.notice)
    assert await reports.can_read_notice(fx.cam, fx.notice)  # the author still does


# ---- API tokens ---------------------------------------------------------------------------------

async def test_tokens_are_stored_hashed_and_authenticate(db: str) -> None:
    fx = await seed_reports()
    token, plaintext = await api_tokens.create_token("Audit@Vendor.example", name="dashboard", now=T0)
    assert plaintext.startswith("hrld_") and len(plaintext) > 40
    row = await ApiToken.get(id=token.id)
    assert row.token_hash == hashlib.sha256(plaintext.encode()).hexdigest() and row.name == "dashboard"
    assert plaintext not in json.dumps([e.data for e in await AuditEvent.all()])
    created = await AuditEvent.get(kind="token.created")
    assert created.data["token_id"] == token.id and created.data["staff_email"] == "audit@vendor.example"

    assert (await api_tokens.authenticate(plaintext, now=T0)).id == fx.compliance.id
    assert (await ApiToken.get(id=token.id)).last_used_at == T0
    await api_tokens.authenticate(plaintext, now=T0 + timedelta(seconds=59))
    assert (await ApiToken.get(id=token.id)).last_used_at == T0  # at most once a minute
    await api_tokens.authenticate(plaintext, now=T0 + timedelta(seconds=61))
    assert (await ApiToken.get(id=token.id)).last_used_at == T0 + timedelta(seconds=61)
    assert await api_tokens.authenticate(plaintext + "x", now=T0) is None
    assert await api_tokens.authenticate("", now=T0) is None
    assert await api_tokens.authenticate(None, now=T0) is None

    revoked, newly = await api_tokens.revoke_token(str(token.id), now=T0, actor="test")
    assert newly and revoked.revoked_at == T0 and revoked.staff.email == "audit@vendor.example"
    assert await api_tokens.authenticate(plaintext, now=T0) is None
    assert (await api_tokens.revoke_token(token.id))[1] is False
    assert await AuditEvent.filter(kind="token.revoked").count() == 1

    second, secret = await api_tokens.create_token("cam@vendor.example", now=T0)
    assert (await api_tokens.revoke_token(api_tokens.fingerprint(second)))[0].id == second.id
    third, secret = await api_tokens.create_token("cam@vendor.example", now=T0)
    assert (await api_tokens.revoke_token(secret))[0].id == third.id
    assert [t.id for t in await api_tokens.list_tokens()] == [token.id, second.id, third.id]
    assert [t.staff.email for t in await api_tokens.list_tokens()] == ["audit@vendor.example", "cam@vendor.example",
                                                                      "cam@vendor.example"]


async def test_a_fingerprint_of_digits_only_still_finds_its_token(db: str) -> None:
    """About one fingerprint in 280 has no letter in it; it must not be taken for a missing id."""
    await seed_reports()
    token, _ = await api_tokens.create_token("audit@vendor.example", now=T0)
    await ApiToken.filter(id=token.id).update(token_hash="314159265358" + "a" * 52)
    revoked, newly = await api_tokens.revoke_token("314159265358", now=T0)
    assert revoked.id == token.id and newly
    assert (await api_tokens.revoke_token(str(token.id)))[0].id == token.id  # the id still works
    with pytest.raises(NotFound, match="id or fingerprint"):
        await api_tokens.revoke_token("27182818")
    with pytest.raises(NotFound, match="id or fingerprint"):  # too large for an id: only a fingerprint
        await api_tokens.revoke_token("271828182845")
    other, _ = await api_tokens.create_token("audit@vendor.example", now=T0)
    await ApiToken.filter(id=other.id).update(token_hash=f"{token.id:0>8}" + "b" * 56)
    with pytest.raises(UserError, match="both"):
        await api_tokens.revoke_token(f"{token.id:0>8}")


async def test_token_errors(db: str) -> None:
    fx = await seed_reports()
    with pytest.raises(UserError, match="no staff member"):
        await api_tokens.create_token("nobody@vendor.example", now=T0)
    with pytest.raises(UserError, match="inactive"):
        await api_tokens.create_token("gone@vendor.example", now=T0)
    with pytest.raises(NotFound):
        await api_tokens.revoke_token("424242")
    with pytest.raises(NotFound):
        await api_tokens.revoke_token("abcdef0123")
    with pytest.raises(UserError, match="not a token id"):
        await api_tokens.revoke_token("zz")
    _, plaintext = await api_tokens.create_token("cam@vendor.example", now=T0)
    fx.cam.active = False
    await fx.cam.save()
    assert await api_tokens.authenticate(plaintext, now=T0) is None  # inactive staff: the token stops working


# ---- the CLI ------------------------------------------------------------------------------------

@pytest.fixture
def cli(db_url: str, monkeypatch) -> tuple[CliRunner, Fixture]:
    runner = in_process_cli(monkeypatch, db_url)

    async def seed() -> Fixture:
        await storage_db.connect(db_url, run_migrations=False)
        try:
            return await seed_reports()
        finally:
            await storage_db.close()

    return runner, asyncio.run(seed())


def test_cli_report_csv_json_and_file(cli: tuple[CliRunner, Fixture], tmp_path) -> None:
    runner, fx = cli
    result = runner.invoke(main, ["report", str(fx.notice.id)])
    assert result.exit_code == 0, result.output
    meta, table = split_csv(result.stdout)
    assert table == [EXPECTED_HEADER, *EXPECTED_ROWS] and meta["recipients"] == "5"

    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "r.json"
    result = runner.invoke(main, ["report", str(fx.notice.id), "--format", "json", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and f"written to {out}" in result.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["rows"] == expected_json_rows() and data["summary"] == expected_summary(fx.notice.id)
    assert list(outdir.iterdir()) == [out]  # no .partial left behind

    missing = outdir / "missing.csv"
    result = runner.invoke(main, ["report", "9999", "--output", str(missing)])
    assert result.exit_code == 1 and "notice 9999 does not exist" in result.output
    assert list(outdir.iterdir()) == [out]

    async def exported() -> list[tuple[str, dict]]:
        await storage_db.connect(os.environ["HERALD_DATABASE_URL"], run_migrations=False)
        try:
            return [(e.actor, e.data) for e in await AuditEvent.filter(kind="report.exported").order_by("seq")]
        finally:
            await storage_db.close()

    events = asyncio.run(exported())
    assert [d for _, d in events] == [{"format": "csv"}, {"format": "json"}]
    assert all(actor.startswith("operator:") for actor, _ in events)


def test_cli_summary_and_usage_errors(cli: tuple[CliRunner, Fixture]) -> None:
    runner, fx = cli
    result = runner.invoke(main, ["report", "--since", "2026-01-01", "--until", "2026-01-31", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["since"] == "2026-01-01T00:00:00Z" and data["until"] == "2026-02-01T00:00:00Z"
    assert [(n["id"], n["acknowledged"], n["rate"]) for n in data["notices"]] == [(fx.notice.id, 1, 0.3333),
                                                                                (fx.other.id, 0, 0.0)]
    result = runner.invoke(main, ["report", "--since", "2026-01-01", "--until", "2026-01-31", "--topic", "operations"])
    assert result.exit_code == 0, result.output
    meta, rows = split_csv(result.stdout)
    assert rows[0] == list(reports.SUMMARY_COLUMNS)
    assert (meta["since"], meta["until"], meta["topic"], meta["importance"]) == (
        "2026-01-01T00:00:00Z (UTC, inclusive)", "2026-02-01T00:00:00Z (UTC, exclusive)", "operations", "any")
    assert rows[1:] == [[str(fx.notice.id), "Recall of LX-200", "operations", "must-know", "sent",
                         "2026-01-05T09:01:00Z", "5", "3", "1", "1", "0", "0", "0", "1", "0.3333"]]

    assert runner.invoke(main, ["report"]).exit_code == 2
    assert runner.invoke(main, ["report", str(fx.notice.id), "--since", "2026-01-01"]).exit_code == 2
    bad = runner.invoke(main, ["report", "--since", "2026-01-31", "--until", "2026-01-01"])
    assert bad.exit_code == 1 and "until must be after since" in bad.output
    assert runner.invoke(main, ["report", "--since", "x", "--until", "2026-01-01"]).exit_code == 1
    typo = runner.invoke(main, ["report", "--since", "2026-01-01", "--until", "2026-01-31", "--topic", "operatoins"])
    assert typo.exit_code == 1 and "did you mean 'operations'?" in typo.output


def test_the_period_summary_states_its_chain_head_and_its_window(cli: tuple[CliRunner, Fixture]) -> None:
    """SPEC: "every report states the chain head it was produced from". The period summary (`herald
    report --since --until`, GET /api/v1/reports/summary) says when it was produced and from which
    chain head, in JSON and in CSV (whose `#` lines also say which period and filters it covers, so
    a file handed to an auditor is tied to the trail and told apart from another month's); and it
    is recorded as an export (`report.exported`, its head included), as a notice's report is."""
    runner, fx = cli
    as_json = runner.invoke(main, ["report", "--since", "2026-01-01", "--until", "2026-01-31", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    as_csv = runner.invoke(main, ["report", "--since", "2026-01-01", "--until", "2026-01-31"])
    assert as_csv.exit_code == 0, as_csv.output
    meta, rows = split_csv(as_csv.stdout)
    assert rows[0] == list(reports.SUMMARY_COLUMNS) and len(rows) == 3

    async def exports() -> list[AuditEvent]:
        await storage_db.connect(os.environ["HERALD_DATABASE_URL"], run_migrations=False)
        try:
            return await AuditEvent.filter(kind="report.exported").order_by("seq")
        finally:
            await storage_db.close()

    first, second = asyncio.run(exports())
    assert document["audit_chain_head"] == {"seq": first.seq, "hash": first.hash}  # its own export included
    assert document["produced_at"] and document["notices"][0]["acknowledged"] == 1
    assert (meta["audit_chain_head_seq"], meta["audit_chain_head_hash"]) == (str(second.seq), second.hash)
    assert meta["report"] == reports.SUMMARY_REPORT and meta["produced_at"]
    assert meta["since"].startswith("2026-01-01") and meta["until"].startswith("2026-02-01")
    assert first.notice_id is None and first.actor.startswith("operator:")
    assert (first.data["report"], first.data["format"], second.data["format"]) == ("summary", "json", "csv")
    assert first.data["since"] == "2026-01-01T00:00:00.000000+00:00"


def test_cli_tokens(cli: tuple[CliRunner, Fixture]) -> None:
    runner, fx = cli
    created = runner.invoke(main, ["token", "create", "audit@vendor.example", "--name", "dashboard"])
    assert created.exit_code == 0, created.output
    plaintext = created.stdout.strip()
    assert plaintext.startswith("hrld_") and "\n" not in plaintext
    assert "cannot be shown again" in created.stderr and "created token 1 for audit@vendor.example" in created.stderr
    # what the token reads, so an operator handing it to a tool knows what they hand over
    assert "every notice's acknowledgement report" in created.stderr and "herald token revoke 1" in created.stderr

    listing = runner.invoke(main, ["token", "list"])
    assert listing.exit_code == 0 and "audit@vendor.example" in listing.output and "dashboard" in listing.output
    assert plaintext not in listing.output and "never used" in listing.output and "active" in listing.output
    as_json = json.loads(runner.invoke(main, ["token", "list", "--json"]).output)
    assert as_json[0]["id"] == 1 and as_json[0]["revoked_at"] is None
    assert as_json[0]["fingerprint"] == hashlib.sha256(plaintext.encode()).hexdigest()[:12]

    revoked = runner.invoke(main, ["token", "revoke", "1"])
    assert revoked.exit_code == 0 and "revoked token 1 of audit@vendor.example ('dashboard')" in revoked.output
    again = runner.invoke(main, ["token", "revoke", as_json[0]["fingerprint"]])
    assert again.exit_code == 0 and "was already revoked" in again.output
    assert "revoked 2026" in runner.invoke(main, ["token", "list"]).output

    unknown = runner.invoke(main, ["token", "revoke", "77"])
    assert unknown.exit_code == 1 and "no API token with id 77" in unknown.output
    nobody = runner.invoke(main, ["token", "create", "nobody@vendor.example"])
    assert nobody.exit_code == 1 and "no staff member" in nobody.output
    assert runner.invoke(main, ["token", "list"]).exit_code == 0
    for_cam = runner.invoke(main, ["token", "create", "cam@vendor.example"])
    assert for_cam.exit_code == 0 and "the notices they sent and those escalated to them" in for_cam.stderr
    assert "not the audit chain check" in for_cam.stderr and "every notice's" not in for_cam.stderr


def test_cli_token_list_shows_the_role_a_token_reads_with(cli: tuple[CliRunner, Fixture]) -> None:
    """`token list` showed the person's role, and the token followed it: a CAM's token read every
    partner once they were promoted. A token keeps the role it was created with; `token list`
    shows it, and the person's role when that has changed."""
    runner, _ = cli
    created = runner.invoke(main, ["token", "create", "cam@vendor.example", "--name", "dashboard"])
    assert created.exit_code == 0 and "(cam)" in created.stderr and "It keeps the role cam" in created.stderr
    assert runner.invoke(main, ["token", "create", "audit@vendor.example"]).exit_code == 0

    async def promote() -> None:
        await storage_db.connect(os.environ["HERALD_DATABASE_URL"], run_migrations=False)
        try:
            await Staff.filter(email="cam@vendor.example").update(role="admin")
        finally:
            await storage_db.close()

    asyncio.run(promote())
    listed = json.loads(runner.invoke(main, ["token", "list", "--json"]).output)
    assert [(t["role"], t["staff_role"], t["reads_as"]) for t in listed] == [
        ("cam", "admin", "cam"), ("compliance", "compliance", "compliance")]
    text = runner.invoke(main, ["token", "list"]).output.splitlines()
    assert "cam (now admin)" in text[0] and "(now" not in text[1]


def test_cli_token_expiry(cli: tuple[CliRunner, Fixture], monkeypatch) -> None:
    """`token create` made tokens that never expired. A token now expires (365 days by default;
    --expires-in, --expires, --no-expiry); `token list` shows when, and which have; token.created
    records the expiry with the role."""
    import bot.cli.reports

    monkeypatch.setattr(bot.cli.reports, "CLOCK", ManualClock(NOW))
    runner_invoke = cli[0].invoke
    default = runner_invoke(main, ["token", "create", "cam@vendor.example", "--name", "dashboard"])
    assert default.exit_code == 0, default.output
    assert "(cam), expires 2027-01-12 08:00 UTC" in default.stderr and "It keeps the role cam" in default.stderr
    assert runner_invoke(main, ["token", "create", "audit@vendor.example", "--expires-in", "90d"]).exit_code == 0
    on_date = runner_invoke(main, ["token", "create", "audit@vendor.example", "--expires", "2026-03-31"])
    assert on_date.exit_code == 0 and "expires 2026-04-01 00:00 UTC" in on_date.stderr
    forever = runner_invoke(main, ["token", "create", "admin@vendor.example", "--no-expiry"])
    assert forever.exit_code == 0 and "never expires" in forever.stderr
    for wrong, message in ((["--expires-in", "3m"], "is not a lifetime"), (["--expires", "31/03/2026"], "is not a date"),
                           (["--expires", "2026-01-01"], "is not in the future"),
                           (["--no-expiry", "--expires-in", "9d"], "give one of")):
        refused = runner_invoke(main, ["token", "create", "cam@vendor.example", *wrong])
        assert refused.exit_code != 0 and message in refused.output, (wrong, refused.output)

    async def promote_and_read_events() -> list[AuditEvent]:
        await storage_db.connect(os.environ["HERALD_DATABASE_URL"], run_migrations=False)
        try:
            await Staff.filter(email="cam@vendor.example").update(role="admin")
            return await AuditEvent.filter(kind="token.created").order_by("seq")
        finally:
            await storage_db.close()

    events = asyncio.run(promote_and_read_events())
    assert [(e.data["role"], e.data["expires_at"]) for e in events] == [
        ("cam", "2027-01-12T08:00:00.000000+00:00"), ("compliance", "2026-04-12T08:00:00.000000+00:00"),
        ("compliance", "2026-04-01T00:00:00.000000+00:00"), ("admin", None)]
    listed = json.loads(runner_invoke(main, ["token", "list", "--json"]).output)
    assert [(t["role"], t["staff_role"], t["reads_as"], t["expires_at"]) for t in listed] == [
        ("cam", "admin", "cam", "2027-01-12T08:00:00Z"), ("compliance", "compliance", "compliance", "2026-04-12T08:00:00Z"),
        ("compliance", "compliance", "compliance", "2026-04-01T00:00:00Z"), ("admin", "admin", "admin", None)]
    text = runner_invoke(main, ["token", "list"]).output.splitlines()
    assert "cam (now admin)" in text[0] and "expires 2027-01-12T08:00:00Z" in text[0] and "no expiry" in text[3]
    monkeypatch.setattr(bot.cli.reports, "CLOCK", ManualClock(datetime(2026, 4, 2, tzinfo=UTC)))
    assert "expired 2026-04-01T00:00:00Z" in runner_invoke(main, ["token", "list"]).output.splitlines()[2]


async def test_escalations_are_read_in_batches(db: str) -> None:
    fx = await seed_reports()
    escalations = await reports._escalations(fx.notice.id, batch=1)
    assert len(escalations) == 2
    rows = [r async for page in reports.iter_report_rows(fx.notice, page_size=3, escalations=escalations)
            for r in page]
    assert rows == expected_json_rows()
    acme = escalations[fx.members["bo"].organisation_id]
    assert acme.names(fx.members["bo"].id) and not acme.names(fx.members["anna"].id)


async def test_an_escalation_cancelled_before_it_went_out_is_not_in_the_report(db: str) -> None:
    """Retracting a notice cancels its escalations not sent yet (`cancel_escalations`), but the
    report still said "escalated at" (the row's created_at) for the members such an escalation
    named: the CAM was never told. Only escalations that were not cancelled are in the report."""
    fx = await seed_reports()  # Acme's escalation (Bo) is still to go out; Bolt's (Cy, Ed) went out
    await retract_notice(fx.notice.id, fx.cam, reason="wrong product", now=NOW)
    assert (await Escalation.get(notice=fx.notice, organisation__external_id="acme")).status == "cancelled"

    rows = {row[2]: row for row in split_csv(await collect(fx.notice.id, "csv"))[1][1:]}
    escalated_at = EXPECTED_HEADER.index("escalated_at")
    assert rows["Bo Chen"][escalated_at] == "", rows["Bo Chen"]
    assert [rows[name][escalated_at] for name in ("Cy Diaz", "'=Ed Fox")] == ["2026-01-10T17:06:00Z"] * 2
    document = json.loads(await collect(fx.notice.id, "json"))
    assert {r["member"]: r["escalated_at"] for r in document["rows"] if r["organisation_id"] == "acme"} == {
        "Anna Berg": None, "Bo Chen": None}


async def test_an_escalation_that_failed_is_not_in_the_report_as_escalated(db: str) -> None:
    """Acme's escalation could not go out (its CAM has no Slack or Teams account on file): nobody
    was told Bo had not acknowledged, yet the report said "escalated at" the deadline for him, as
    if the CAM had been. A compliance officer showing it in an audit would claim an escalation that
    never happened. Only escalations that did not fail (or were cancelled) are in the report."""
    from bot.core.notices.escalations import NO_CHAT_ACCOUNT, _finish

    fx = await seed_reports()  # Acme's escalation (Bo) is still to go out; Bolt's (Cy, Ed) went out
    acme = await Escalation.get(notice=fx.notice, organisation__external_id="acme").select_related(
        "organisation", "staff")
    await _finish(acme, NOW, failed=NO_CHAT_ACCOUNT)  # as send_escalations records it

    rows = {row[2]: row for row in split_csv(await collect(fx.notice.id, "csv"))[1][1:]}
    escalated_at = EXPECTED_HEADER.index("escalated_at")
    assert rows["Bo Chen"][escalated_at] == "", rows["Bo Chen"]
    assert [rows[name][escalated_at] for name in ("Cy Diaz", "'=Ed Fox")] == ["2026-01-10T17:06:00Z"] * 2
    document = json.loads(await collect(fx.notice.id, "json"))
    assert {r["member"]: r["escalated_at"] for r in document["rows"] if r["organisation_id"] == "acme"} == {
        "Anna Berg": None, "Bo Chen": None}


async def test_retracted_notice_counts_cancelled_deliveries(db: str) -> None:
    fx = await seed_reports()
    retracted = await Notice.create(topic="operations", importance="must-know", title="Oops", body="b", audience="all",
                                    author=fx.cam, status="retracted", created_at=at(days=1), sent_at=at(days=1),
                                    retracted_at=at(days=1, minutes=5), retract_reason="wrong product")
    await Delivery.create(notice=retracted, member=fx.members["anna"], platform="slack", status="delivered",
                          delivered_at=at(days=1), next_attempt_at=at(days=1), created_at=at(days=1))
    await Delivery.create(notice=retracted, member=fx.members["cy"], platform="teams", status="cancelled",
                          error="retracted: wrong product", next_attempt_at=at(days=1), created_at=at(days=1))
    summary = await reports.notice_summary(retracted.id)
    assert (summary["recipients"], summary["delivered"], summary["cancelled"], summary["pending"]) == (2, 1, 1, 0)
    data = json.loads(await collect(retracted.id, "json"))
    assert [(r["email"], r["platform"], r["delivered_at"], r["failure_reason"]) for r in data["rows"]] == [
        ("anna@acme.example", "slack", "2026-01-06T09:00:00Z", ""),
        ("cy@bolt.example", "teams", None, "retracted: wrong product")]
    assert data["notice"]["status"] == "retracted" and data["notice"]["retract_reason"] == "wrong product"
    meta, _ = split_csv(await collect(retracted.id, "csv"))
    assert meta["retracted_at"] == "2026-01-06T09:05:00Z" and meta["cancelled"] == "1"


async def test_each_copy_row_counts_its_own_reminders(db: str) -> None:
    """HERALD_PLATFORM_POLICY=all: Anna has a Slack and a Teams copy, each reminded once (reminders
    are planned per copy). The rows list each copy, each with its own reminders: 1 and 1, not the
    member's 2 on both rows (4 in a spreadsheet's sum for 2 messages sent)."""
    cam = await Staff.create(email="cam@vendor.example", role="cam")
    org = await Organisation.create(external_id="acme", name="Acme Locks", tier="gold")
    anna = await Member.create(organisation=org, email="anna@acme.example", name="Anna Berg", role="sales")
    notice = await Notice.create(topic="operations", importance="must-know", title="Recall", body="b", audience="all",
                                 author=cam, status="sent", created_at=T0, sent_at=T0, recipient_count=1)
    for platform, minutes in (("slack", 1), ("teams", 2)):
        await Delivery.create(notice=notice, member=anna, platform=platform, status="delivered",
                              delivered_at=at(minutes), next_attempt_at=T0, created_at=T0,
                              organisation_id=org.id, reminders_sent=1)
        await Delivery.create(notice=notice, member=anna, platform=platform, kind="reminder", sequence=1,
                              status="delivered", delivered_at=at(days=1), next_attempt_at=T0, created_at=at(days=1))
    data = json.loads(await collect(notice.id, "json"))
    assert [(r["platform"], r["reminders_sent"]) for r in data["rows"]] == [("slack", 1), ("teams", 1)]


async def test_csv_organisation_line_accounts_for_every_recipient(db: str) -> None:
    """An A/B test with a `share:` first wave holds members back for the winning variant: the CSV's
    `# organisation:` line counts them (held=), as the JSON summary does, so its numbers add up
    to its recipients."""
    cam = await Staff.create(email="cam@vendor.example", role="cam")
    org = await Organisation.create(external_id="acme", name="Acme Locks", tier="gold")
    notice = await Notice.create(topic="operations", importance="must-know", title="Recall", body="b", audience="all",
                                 author=cam, status="sent", created_at=T0, sent_at=T0, recipient_count=3)
    for i, (status, variant) in enumerate((("delivered", "A"), ("held", ""), ("held", ""))):
        member = await Member.create(organisation=org, email=f"m{i}@acme.example", name=f"M {i}", role="sales")
        await Delivery.create(notice=notice, member=member, platform="slack", status=status, variant=variant,
                              delivered_at=T0 if status == "delivered" else None, next_attempt_at=T0, created_at=T0,
                              organisation_id=org.id)
    (acme,) = (await reports.notice_summary(notice.id))["organisations"]
    assert (acme["recipients"], acme["delivered"], acme["held"]) == (3, 1, 2)
    meta, _ = split_csv(await collect(notice.id, "csv"))
    assert meta["organisation"] == ('id="acme" name="Acme Locks" recipients=3 delivered=1 failed=0 pending=0 '
                                    'digest=0 cancelled=0 held=2 acknowledged=0 rate=0.0')


ZETA = "zeta,Zeta Hardware,gold,emea,fr,retail,small,distributor,cam@vendor.example,zoe@zeta.example,Zoe Zed,{role},Europe/Paris,fr,,,,"


async def _add_zeta(rig: Rig, role: str) -> None:
    """Zeta Hardware: a gold distributor with one contact, Zoe (no chat account)."""
    result = await import_directory(SAMPLE_DIRECTORY + ZETA.format(role=role) + "\n", now=rig.clock.now(), actor="test")
    assert not result.rejected


async def test_the_roll_up_names_a_matched_partner_nobody_received(rig: Rig) -> None:
    """A recall to every gold distributor. Zeta Hardware is gold, but its one contact left (a
    directory import with --deactivate-missing deactivated her). The report, compliance's proof
    that the recall reached every distributor, lists Zeta with 0 recipients and why, in JSON and
    CSV, and the send's audit event names it; before, the roll-up was built from the copies written
    and listed Acme and Keys only, reading as complete."""
    await _add_zeta(rig, "operations")
    result = await import_directory(SAMPLE_DIRECTORY, now=rig.clock.now(), actor="test", deactivate_missing=True)
    assert result.deactivated == 1 and not (await Member.get(email="zoe@zeta.example")).active
    notice_id = await rig.broadcast("tier:gold", topic="operations")

    summary = await reports.notice_summary(notice_id)
    assert [o["organisation_id"] for o in summary["organisations"]] == ["acme", "keys", "zeta"]
    zeta = summary["organisations"][2]
    assert (zeta["organisation"], zeta["recipients"], zeta["delivered"], zeta["rate"]) == ("Zeta Hardware", 0, 0, None)
    assert zeta["unreached"] == "no_active_member"
    assert zeta["note"] == "no active recipient (no active member in the directory)"
    assert summary["recipients"] == 4  # anna, bo, di and ed: Zeta adds no recipient

    sent = await AuditEvent.get(kind="notice.sent", notice_id=notice_id)
    assert sent.data["organisations_matched"] == 3
    assert sent.data["organisations_unreached"] == {"no_active_member": ["zeta"]}
    meta, _ = split_csv(await collect(notice_id, "csv"))
    assert meta["organisation"].splitlines()[2] == (
        'id="zeta" name="Zeta Hardware" recipients=0 delivered=0 failed=0 pending=0 digest=0 cancelled=0 held=0 '
        'acknowledged=0 rate= note="no active recipient (no active member in the directory)"')


async def test_a_matched_partner_removed_from_the_roll_up_is_found_by_verify(rig: Rig) -> None:
    """The roll-up's unreached partners are read from the notice row. Emptying it (the recall
    then reads as having reached every gold distributor) or adding a partner to it made outside
    Herald is found by `herald audit verify`: notice.sent records them."""
    from bot.core.compliance.verify import verify_chain

    await _add_zeta(rig, "operations")
    await import_directory(SAMPLE_DIRECTORY, now=rig.clock.now(), actor="test", deactivate_missing=True)
    notice_id = await rig.broadcast("tier:gold", topic="operations")
    assert (await verify_chain()).ok
    zeta = (await Notice.get(id=notice_id)).unreached_organisations
    acme = (await Organisation.get(external_id="acme")).id
    for altered in (None, {}, {"no_active_member": []}, {"no_active_member": [*zeta["no_active_member"], acme]},
                    {"opted_out": zeta["no_active_member"]}):
        await Notice.filter(id=notice_id).update(unreached_organisations=altered)
        result = await verify_chain(chunk=2)
        assert not result.ok and f"the partners notice {notice_id} reached nobody at" in result.reason, (
            altered, result.reason)
    await Notice.filter(id=notice_id).update(unreached_organisations=zeta)
    assert (await verify_chain()).ok


async def test_a_matched_partner_nobody_received_is_named_with_the_reason(rig: Rig) -> None:
    """Why a matched partner got no copy, as of the send: nobody there in the topic's roles (Zeta's
    one contact is in marketing; product updates go to sales, technical and support), or everyone
    in the audience left the topic (Ed, Keys' one salesperson). A silver partner is not matched by
    tier:gold, and an audience of members matches their organisations only."""
    from bot.core.directory.preferences import update_preferences

    await _add_zeta(rig, "marketing")
    ed = await Member.get(email="ed@keys.example")
    await update_preferences(ed.id, rig.herald.catalog, now=rig.clock.now(), subscriptions={"product-updates": False})
    notice_id = await rig.broadcast("tier:gold", "need-to-know", topic="product-updates")

    summary = await reports.notice_summary(notice_id)
    assert [(o["organisation_id"], o["recipients"], o.get("unreached")) for o in summary["organisations"]] == [
        ("acme", 2, None), ("keys", 0, "opted_out"), ("zeta", 0, "not_in_audience")]
    sent = await AuditEvent.get(kind="notice.sent", notice_id=notice_id)
    assert sent.data["organisations_unreached"] == {"not_in_audience": ["zeta"], "opted_out": ["keys"]}

    one = await rig.broadcast("member:cy@bolt.example", "need-to-know", topic="product-updates")
    assert [o["organisation_id"] for o in (await reports.notice_summary(one))["organisations"]] == ["bolt"]
    assert (await AuditEvent.get(kind="notice.sent", notice_id=one)).data["organisations_matched"] == 1


async def _backfill_organisations() -> None:
    """Migration 0010's own backfill statements (as SQLite runs them, in one statement a table;
    PostgreSQL's batches run the same assignment): every row gets its member's organisation."""
    import importlib

    from tortoise import connections

    from storage.migrations._columns import BackfillInBatches

    migration = importlib.import_module("storage.migrations.0010_notice_counts").Migration
    backfills = [op for op in migration.operations if isinstance(op, BackfillInBatches)]
    assert {op.table for op in backfills} == {"delivery", "acknowledgement"}
    for statement in (s for op in backfills for s in op.sql):
        await connections.get("default").execute_query(statement)


async def test_organisation_counts_read_each_rows_organisation_and_older_rows_the_members(db: str) -> None:
    from bot.core.insights.notices import live_counts

    fx = await seed_reports()  # rows written without an organisation, as before migration 0010
    assert await Delivery.filter(organisation_id__isnull=False).count() == 0
    assert await reports.notice_summary(fx.notice.id) == expected_summary(fx.notice.id)

    await _backfill_organisations()
    assert await Delivery.filter(organisation_id__isnull=True).count() == 0
    assert await Acknowledgement.filter(organisation_id=fx.members["anna"].organisation_id).count() == 3  # type: ignore[attr-defined]
    assert await reports.notice_summary(fx.notice.id) == expected_summary(fx.notice.id)
    await Delivery.filter(member_id=fx.members["cy"].id).update(organisation_id=None)  # some rows from before
    assert await reports.notice_summary(fx.notice.id) == expected_summary(fx.notice.id)

    # with acknowledgements of two revisions that count, a member who acknowledged both counts once
    await Notice.filter(id=fx.notice.id).update(ack_revision=1)
    notice = await Notice.get(id=fx.notice.id)
    acme = next(o for o in (await reports.notice_summary(notice.id))["organisations"] if o["organisation_id"] == "acme")
    assert acme["acknowledged"] == 2  # anna (revisions 1 and 2) and bo
    assert (await live_counts(notice))["acknowledged"] == 2
    await Notice.filter(id=fx.notice.id).update(ack_revision=2)
    assert (await live_counts(await Notice.get(id=fx.notice.id)))["acknowledged"] == 1


async def test_text_in_the_metadata_lines_cannot_become_a_formula_cell(db: str) -> None:
    """A title from a CAM, an organisation name from the directory: each metadata line is one cell
    that starts with '#', however many commas and quotes the text holds."""
    fx = await seed_reports()
    title = 'Recall,=HYPERLINK("http://evil.example/x","click"),@SUM(1+1)'
    await Notice.filter(id=fx.notice.id).update(title=title)
    text = await collect(fx.notice.id, "csv")
    meta, table = split_csv(text)
    assert meta["title"] == title
    assert table[0] == EXPECTED_HEADER
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert not [cell for cell in cells if cell.startswith(("=", "@", "+", "-"))]
