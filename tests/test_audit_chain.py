"""The tamper-evident audit chain: appends, verification, tampering of every kind, concurrency, CLI."""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import sqlite3
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner
from tortoise.transactions import in_transaction

from bot.cli import main
from bot.core.compliance.reports import report_chunks
from bot.core.compliance.audit import GENESIS_HASH, audit_event, canonical_encoding, chain_hash, record
from bot.core.compliance.crosscheck import text_digest
from bot.common.errors import UserError
from bot.core.compliance.verify import parse_anchor, verify_chain
from bot.core.directory.importer import import_directory
from bot.core.directory.staff import add_staff
from bot.core.notices import acks
from storage import db as storage_db
from storage.models import (
    Acknowledgement,
    AuditChainHead,
    AuditEvent,
    Delivery,
    Escalation,
    Notice,
    NoticeRevision,
    NoticeVariant,
)
from tests.support import SAMPLE_DIRECTORY, TEAM, Rig
from tests.cli_support import in_process_cli

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


def _event(i: int, kind: str = "delivery.delivered", **data):
    return audit_event(kind, now=T0 + timedelta(seconds=i, microseconds=i), actor=f"user{i}@example.com",
                       notice_id=i % 7 or None, member_id=i, index=i, **data)


async def _append(n: int, *, per_call: int = 1) -> None:
    for start in range(1, n + 1, per_call):
        async with in_transaction() as conn:
            await record([_event(i) for i in range(start, min(start + per_call, n + 1))], using_db=conn)


async def _broken(seq: int | None, *words: str) -> str:
    result = await verify_chain(chunk=4)  # small chunks: problems at page boundaries too
    assert not result.ok, result
    assert result.first_broken_seq == seq, result
    for word in words:
        assert word in result.reason, result.reason
    return result.reason


# ---- appending ----------------------------------------------------------------------------------

async def test_appends_form_a_contiguous_chain_that_verifies(db: str) -> None:
    empty = await verify_chain()
    assert empty.ok and empty.events == 0 and empty.head_seq == 0

    await _append(5)
    await _append(12, per_call=5)  # 17 events in all
    rows = await AuditEvent.all().order_by("seq")
    assert [r.seq for r in rows] == list(range(1, 18))
    assert [r.id for r in rows] == sorted(r.id for r in rows)  # written in chain order
    assert [(r.data["index"], r.notice_id, r.member_id) for r in rows] == [
        (i, i % 7 or None, i) for i in [*range(1, 6), *range(1, 13)]]  # in chain order, nulls kept
    assert rows[0].prev_hash == GENESIS_HASH
    for before, after in zip(rows, rows[1:]):
        assert after.prev_hash == before.hash
    for row in rows:
        assert row.hash == hashlib.sha256((row.prev_hash + canonical_encoding(row)).encode()).hexdigest()
    head = await AuditChainHead.get(id=1)
    assert (head.seq, head.hash) == (17, rows[-1].hash)

    for chunk in (1, 4, 17, 5000):
        result = await verify_chain(chunk=chunk)
        assert result.ok and result.reason == "", result
        assert (result.events, result.head_seq, result.head_hash) == (17, 17, rows[-1].hash)
        assert result.first_broken_seq is None


async def test_canonical_encoding_is_sorted_compact_json() -> None:
    event = audit_event("notice.sent", now=datetime(2024, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=1))),
                        actor="cam@vendor.example", notice_id=4, recipients=2, title="Zürich")
    event.seq = 1
    assert canonical_encoding(event) == (
        '{"actor":"cam@vendor.example","data":{"recipients":2,"title":"Zürich"},"kind":"notice.sent",'
        '"member_id":null,"notice_id":4,"occurred_at":"2024-03-01T09:00:00.000000+00:00","seq":1}')
    assert chain_hash(GENESIS_HASH, event) == hashlib.sha256(
        (GENESIS_HASH + canonical_encoding(event)).encode("utf-8")).hexdigest()


async def test_data_is_normalised_so_stored_rows_hash_the_same(db: str) -> None:
    berlin = timezone(timedelta(hours=2))
    awkward = {
        "when": datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=berlin),
        "naive": datetime(2024, 5, 6, 7, 8, 9),
        "day": date(2024, 5, 6),
        "colour": Colour.RED, "level": Level.HIGH,
        "ids": {3, 1, 2}, "pair": (1, "a"), "nested": {1: [Colour.RED, (2.5, None)], "k": {"x": True}},
        "big": 1e16, "huge": 1e300, "tiny": 1e-7, "neg_zero": -0.0, "third": 1 / 3, "one": 1.0,
        "nan": float("nan"), "inf": float("inf"), "money": Decimal("12.30"), "uid": uuid.UUID(int=7),
        "text": "é ✓ \u2028 \"quoted\" \\ back", "large_int": 2**70,
    }
    event = audit_event("test.awkward", now=datetime(2024, 5, 6, 9, 8, 9, 123456, tzinfo=berlin),
                        actor="a", notice_id=Level.HIGH, **awkward)
    assert event.occurred_at == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert event.data["when"] == "2024-05-06T05:08:09.123456+00:00"
    assert event.data["naive"] == "2024-05-06T07:08:09.000000+00:00"
    assert event.data["ids"] == [1, 2, 3] and event.data["pair"] == [1, "a"]
    assert event.data["nested"] == {"1": ["red", [2.5, None]], "k": {"x": True}}
    assert event.data["colour"] == "red" and type(event.data["colour"]) is str and event.data["level"] == 3
    assert event.data["big"] == 10**16 and isinstance(event.data["big"], int)
    assert event.data["nan"] == "nan" and event.data["money"] == "12.30" and event.notice_id == 3
    naive = audit_event("test.naive", now=datetime(2024, 5, 6, 7, 8, 9))
    await record([event, naive, AuditEvent(kind="test.direct", occurred_at=T0, data={"at": T0})])

    stored = await AuditEvent.get(seq=1)
    assert stored.data == event.data
    assert stored.hash == chain_hash(stored.prev_hash, stored)
    assert (await AuditEvent.get(seq=3)).data == {"at": "2024-03-01T09:00:00.000000+00:00"}
    assert (await verify_chain()).ok

    with pytest.raises(TypeError, match="cannot hold a object"):
        audit_event("test.bad", now=T0, thing=object())
    with pytest.raises(TypeError):
        audit_event("test.bad", now="2024-01-01")  # type: ignore[arg-type]


async def test_record_is_part_of_the_callers_transaction(db: str) -> None:
    await _append(2)
    with pytest.raises(RuntimeError):
        async with in_transaction() as conn:
            await record([_event(3), _event(4)], using_db=conn)
            raise RuntimeError("the state change failed")
    assert await AuditEvent.all().count() == 2
    assert (await AuditChainHead.get(id=1)).seq == 2
    async with in_transaction():
        await record([_event(3)])  # no using_db: joins the surrounding transaction
    assert (await verify_chain()).head_seq == 3
    await record([])  # nothing to do, no head lock taken
    event = _event(4)
    await record([event])
    with pytest.raises(ValueError, match="only once"):
        await record([event])
    assert (await verify_chain()).ok


async def test_concurrent_appends_make_one_gap_free_chain(db: str) -> None:
    # Starts with no head row: the first appenders also race to create it.
    async def appender(worker: int) -> None:
        for round_ in range(3):
            events = [_event(worker * 100 + round_ * 10 + k, kind=f"test.w{worker}") for k in range(worker % 4 + 1)]
            if worker % 2:
                async with in_transaction():
                    await record(events)
            else:
                async with in_transaction() as conn:
                    await AuditEvent.filter(seq=-1).using_db(conn).count()  # some work first
                    await asyncio.sleep(0)
                    await record(events, using_db=conn)

    await asyncio.gather(*(appender(w) for w in range(30)))
    expected = sum(3 * (w % 4 + 1) for w in range(30))
    seqs = await AuditEvent.all().order_by("seq").values_list("seq", flat=True)
    assert list(seqs) == list(range(1, expected + 1))
    # Each call's events are adjacent and in order.
    rows = await AuditEvent.all().order_by("seq")
    runs = {}
    for row in rows:
        runs.setdefault((row.kind, row.data["index"] // 10), []).append(row.seq)
    assert all(seq == list(range(seq[0], seq[0] + len(seq))) for seq in runs.values())
    result = await verify_chain(chunk=50)
    assert result.ok and result.events == expected, result


async def test_ten_thousand_events_in_one_record_call(db: str) -> None:
    await _append(1)
    async with in_transaction() as conn:
        await record([_event(i, kind="delivery.failed", reason="no Slack account") for i in range(2, 10_002)],
                     using_db=conn)
    head = await AuditChainHead.get(id=1)
    assert head.seq == 10_001
    result = await verify_chain()
    assert result.ok and result.events == 10_001, result
    assert (await verify_chain(chunk=999)).ok


# ---- tampering ----------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [
    {"kind": "notice.acknowledged"},
    {"data": {"index": 5, "channel": "D999"}},
    {"occurred_at": T0 + timedelta(seconds=5, microseconds=6)},  # one microsecond later
    {"actor": "someone.else@example.com"},
    {"notice_id": None},
    {"member_id": 99},
    {"prev_hash": "f" * 64},
    {"hash": "0" * 64},
])
async def test_altering_any_field_is_detected_at_that_event(db: str, change: dict) -> None:
    await _append(9)
    await AuditEvent.filter(seq=5).update(**change)
    kind = change.get("kind", "delivery.delivered")
    assert await _broken(5, f"event 5 ({kind}) was altered") == f"event 5 ({kind}) was altered"


async def test_altered_and_rehashed_event_breaks_the_next_link(db: str) -> None:
    await _append(9)
    row = await AuditEvent.get(seq=5)
    row.data = {**row.data, "channel": "forged"}
    row.hash = chain_hash(row.prev_hash, row)
    await row.save()
    await _broken(5, "event 5 (delivery.delivered) was altered or replaced", "event 6 no longer links to it")


async def test_altered_and_rehashed_newest_event_is_caught_by_the_head(db: str) -> None:
    await _append(6)
    row = await AuditEvent.get(seq=6)
    row.actor = "forger"
    row.hash = chain_hash(row.prev_hash, row)
    await row.save()
    await _broken(6, "event 6 (delivery.delivered) was replaced: the chain head records another hash")


async def test_deleting_a_middle_event_is_detected(db: str) -> None:
    await _append(10)
    await AuditEvent.filter(seq=5).delete()
    assert await _broken(5) == "event 5 is missing (deleted)"
    await AuditEvent.filter(seq__in=[6, 7]).delete()
    assert await _broken(5) == "events 5 to 7 are missing (deleted)"


async def test_deleting_the_first_event_is_detected(db: str) -> None:
    await _append(3)
    await AuditEvent.filter(seq=1).delete()
    assert await _broken(1) == "event 1 is missing (deleted)"


async def test_deleting_the_tail_is_detected_through_the_head(db: str) -> None:
    await _append(10)
    await AuditEvent.filter(seq__gte=8).delete()
    reason = await _broken(8, "the last 3 events were deleted")
    assert "head is at event 10" in reason and "ends at event 7" in reason
    await AuditEvent.all().delete()
    await _broken(1, "the last 10 events were deleted")


async def test_a_truncated_tail_with_the_head_rewound_is_caught_only_against_an_anchor(db: str) -> None:
    """The head row lives in the database it guards: deleting the newest events and setting the
    head to the new last event (one UPDATE, no hashing) passes the plain check. An anchor kept
    outside (a report's chain head, `herald audit head`) catches it."""
    await _append(10)
    kept = await AuditEvent.get(seq=8)
    await AuditEvent.filter(seq__gte=9).delete()
    await AuditChainHead.filter(id=1).update(seq=8, hash=kept.hash)
    assert (await verify_chain()).ok  # what the database alone can show
    assert (await verify_chain(anchor=(8, kept.hash))).ok
    result = await verify_chain(chunk=4, anchor=(10, "a" * 64))
    assert not result.ok and result.first_broken_seq == 9, result
    assert "the anchor names event 10, but the trail ends at event 8" in result.reason
    assert "deleted" in result.reason


async def test_a_rehashed_trail_is_caught_against_an_anchor(db: str) -> None:
    """Events rewritten and every later hash recomputed, head included, pass the plain check; the
    anchored event's hash no longer matches."""
    await _append(6)
    anchor = (6, (await AuditEvent.get(seq=6)).hash)
    prev = (await AuditEvent.get(seq=3)).hash
    for seq in range(4, 7):
        row = await AuditEvent.get(seq=seq)
        row.actor = "forger" if seq == 4 else row.actor
        row.prev_hash, row.hash = prev, chain_hash(prev, row)
        await row.save()
        prev = row.hash
    await AuditChainHead.filter(id=1).update(hash=prev)
    assert (await verify_chain()).ok
    result = await verify_chain(chunk=4, anchor=anchor)
    assert not result.ok and result.first_broken_seq == 6
    assert "is not the event the anchor names" in result.reason and "re-hashed" in result.reason


def test_parse_anchor() -> None:
    assert parse_anchor(f" 12:{'AB' * 32} ") == (12, "ab" * 32)
    for bad in ("", "12", f"0:{'a' * 64}", f"x:{'a' * 64}", "12:abc", f"12:{'g' * 64}"):
        with pytest.raises(UserError, match="is not a chain head"):
            parse_anchor(bad)


async def test_deleting_the_head_is_detected(db: str) -> None:
    await _append(3)
    await AuditChainHead.all().delete()
    await _broken(1, "chain head is missing")


@pytest.mark.parametrize("columns", [
    ["occurred_at", "kind", "actor", "notice_id", "member_id", "data"],  # the contents
    ["occurred_at", "kind", "actor", "notice_id", "member_id", "data", "prev_hash", "hash"],  # all but seq
])
async def test_swapping_two_events_is_detected_at_the_first(db: str, columns: list[str]) -> None:
    await _append(10)
    a, b = await AuditEvent.get(seq=4), await AuditEvent.get(seq=8)
    await AuditEvent.filter(id=a.id).update(**{c: getattr(b, c) for c in columns})
    await AuditEvent.filter(id=b.id).update(**{c: getattr(a, c) for c in columns})
    assert (await AuditEvent.get(seq=4)).data["index"] == 8
    await _broken(4, "event 4 (delivery.delivered) was altered")


async def test_swapping_adjacent_events_is_detected_at_the_first(db: str) -> None:
    await _append(6)
    a, b = await AuditEvent.get(seq=3), await AuditEvent.get(seq=4)
    columns = ["occurred_at", "kind", "actor", "notice_id", "member_id", "data", "prev_hash", "hash"]
    await AuditEvent.filter(id=a.id).update(**{c: getattr(b, c) for c in columns})
    await AuditEvent.filter(id=b.id).update(**{c: getattr(a, c) for c in columns})
    await _broken(3, "event 3")


async def test_event_written_without_seq_is_detected(db: str) -> None:
    await _append(4)
    await AuditEvent.create(kind="notice.sent", occurred_at=T0, actor="forger", data={})
    reason = await _broken(None, "no seq", "notice.sent", "outside the chain")
    assert reason.startswith("an event with no seq (id ")
    await AuditEvent.create(kind="notice.sent", occurred_at=T0, actor="forger", data={})
    await _broken(None, "and 1 more")


async def test_event_with_a_seq_beyond_the_head_is_detected(db: str) -> None:
    await _append(4)
    forged = AuditEvent(kind="notice.sent", occurred_at=T0, actor="", data={})  # written around record()
    forged.seq, forged.prev_hash = 5, (await AuditEvent.get(seq=4)).hash
    forged.hash = chain_hash(forged.prev_hash, forged)
    await forged.save()
    await _broken(5, "event 5 (notice.sent) was added outside the chain (the chain head is at event 4)")


async def test_events_recorded_by_every_operation_stay_in_the_chain(db: str) -> None:
    await add_staff("cam@vendor.example", "cam", now=T0, actor="test")
    await import_directory(SAMPLE_DIRECTORY, now=T0, actor="test")
    result = await verify_chain()
    assert result.ok, result.reason
    assert await AuditEvent.filter(seq__isnull=True).count() == 0


# ---- command line -------------------------------------------------------------------------------

@pytest.fixture
def cli_env(db_url: str, monkeypatch) -> CliRunner:
    return in_process_cli(monkeypatch, db_url)


def test_cli_audit_verify(cli_env: CliRunner, db_url: str) -> None:
    empty = cli_env.invoke(main, ["audit", "verify"])
    assert empty.exit_code == 0 and "audit trail intact: 0 events" in empty.output, empty.output
    for team in ("T01", "T02", "T01"):
        added = cli_env.invoke(main, ["slack", "add-workspace", team, "--token", "xoxb-x"])
        assert added.exit_code == 0, added.output

    intact = cli_env.invoke(main, ["audit", "verify"])
    assert intact.exit_code == 0, intact.output
    report = json.loads(cli_env.invoke(main, ["audit", "verify", "--json"]).output)
    assert report["ok"] and report["events"] == 3 and report["first_broken_seq"] is None
    assert intact.stdout.strip() == f"audit trail intact: 3 events, head {report['head_hash']}"

    async def tamper() -> None:
        await storage_db.connect(db_url, run_migrations=False)
        try:
            await AuditEvent.filter(seq=2).update(actor="someone-else")
        finally:
            await storage_db.close()

    asyncio.run(tamper())
    broken = cli_env.invoke(main, ["audit", "verify"])
    assert broken.exit_code == 1
    assert broken.stdout.strip() == "audit trail broken: event 2 (workspace.added) was altered"
    as_json = cli_env.invoke(main, ["audit", "verify", "--json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.output) == {
        "ok": False, "events": 1, "head_seq": 3, "head_hash": report["head_hash"],
        "first_broken_seq": 2, "reason": "event 2 (workspace.added) was altered"}


@pytest.mark.parametrize("command", [["audit", "verify"], ["audit", "verify", "--json"], ["audit", "head"]])
def test_audit_commands_on_no_herald_database_say_so_create_nothing_and_exit_2(
        tmp_path, monkeypatch, command: list[str]) -> None:  # noqa: ANN001
    """README (Upgrades): `herald audit verify` "exits 0, or 1 naming the first altered, deleted or
    reordered event". Run on a new database (a restore that did not happen, a wrong
    HERALD_DATABASE_URL) it died with "no such table: audit_chain_head" and exit 1, the code that
    says the trail was altered, and left an empty SQLite file behind. A URL with no Herald database
    (no file, or a database Herald never migrated) is one line and exit 2, and nothing is created."""
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE something_else (x INTEGER)")
    for path in (tmp_path / "fresh.db", other):
        url = f"sqlite://{path}"
        result = in_process_cli(monkeypatch, url).invoke(main, command)
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (
            f"`herald {' '.join(command)}` on {path.name}: exit {result.exit_code}\n{result.output[-600:]}")
        assert result.stdout == "" and result.stderr.strip() == f"herald: no Herald database at {url}: nothing to check"
    assert not (tmp_path / "fresh.db").exists()
    with sqlite3.connect(other) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert tables == ["something_else"]


def _with_rig(db_url: str, work):  # noqa: ANN001, ANN202
    """Run `work(rig)` against the database in an event loop of its own (the CLI runs its own)."""
    from tests.support import start_rig, stop_rig

    async def go():  # noqa: ANN202
        await storage_db.connect(db_url, run_migrations=False)
        rig = await start_rig(db_url)
        try:
            return await work(rig)
        finally:
            await stop_rig(rig)
            await storage_db.close()

    return asyncio.run(go())


async def _json_report(rig: Rig, notice_id: int) -> dict:
    return json.loads("".join([c async for c in report_chunks(notice_id, "json", reader=None, now=rig.clock.now(),
                                                               actor="auditor")]))


def _acknowledged_at(document: dict, email: str) -> str | None:
    [row] = [r for r in document["rows"] if r["email"] == email]
    return row["acknowledged_at"]


def test_verify_against_a_reports_head_notices_the_newest_events_deleted(cli_env: CliRunner, db_url: str) -> None:
    """The head row lives in the database: an operator deletes Anna's acknowledgement (row and
    event) and the export event after it, and sets `audit_chain_head` to the new last event's seq
    and hash (copied, no hashing). The compliance officer kept the report they exported, which
    names its chain head (SPEC: "every report states the chain head it was produced from"):
    `herald audit verify --head SEQ:HASH` checks the trail against it and names the deletion,
    where the plain check cannot. `herald audit head` prints the head in that form."""

    async def story(rig: Rig) -> dict:
        notice_id = await rig.broadcast("all")
        await rig.herald.outbox.drain()
        rig.clock.advance(hours=2)
        await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UANNA", now=rig.clock.now())
        document = await _json_report(rig, notice_id)  # compliance exports and files the report
        assert _acknowledged_at(document, "anna@acme.example") is not None

        # the operator, later, with database access
        ack_event = await AuditEvent.get(kind="notice.acknowledged", notice_id=notice_id)
        await Acknowledgement.filter(notice_id=notice_id).delete()
        await AuditEvent.filter(seq__gte=ack_event.seq).delete()
        last = await AuditEvent.filter(seq=ack_event.seq - 1).first()
        await AuditChainHead.filter(id=1).update(seq=last.seq, hash=last.hash)
        assert _acknowledged_at(await _json_report(rig, notice_id), "anna@acme.example") is None
        await AuditEvent.filter(seq__gt=last.seq).delete()  # and the forged report's export
        await AuditChainHead.filter(id=1).update(seq=last.seq, hash=last.hash)
        return {"filed": document["audit_chain_head"], "forged": {"seq": last.seq, "hash": last.hash}}

    heads = _with_rig(db_url, story)
    filed, forged = heads["filed"], heads["forged"]
    plain = cli_env.invoke(main, ["audit", "verify"])
    assert plain.exit_code == 0, plain.output  # the database alone cannot show it
    printed = cli_env.invoke(main, ["audit", "head"])
    assert printed.exit_code == 0 and printed.stdout.strip() == f"{forged['seq']}:{forged['hash']}"
    anchored = cli_env.invoke(main, ["audit", "verify", "--head", f"{filed['seq']}:{filed['hash']}"])
    assert anchored.exit_code == 1, anchored.output
    assert "deleted" in anchored.output and f"the anchor names event {filed['seq']}" in anchored.output
    current = cli_env.invoke(main, ["audit", "verify", "--head", printed.stdout.strip()])
    assert current.exit_code == 0 and f"event {forged['seq']} matches the given head" in current.output
    malformed = cli_env.invoke(main, ["audit", "verify", "--head", "12"])
    assert malformed.exit_code == 2 and "is not a chain head" in malformed.output


async def test_an_acknowledgement_the_chain_does_not_record_is_found(rig: Rig) -> None:
    """Reports read acknowledgements from their table: a row inserted (or back-dated) there with
    database access must not pass as part of an intact trail."""
    notice_id = await rig.broadcast("all")
    await rig.herald.outbox.drain()
    await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UANNA", now=rig.clock.now())
    assert (await verify_chain()).ok

    real = await Acknowledgement.get(notice_id=notice_id)
    await Acknowledgement.filter(id=real.id).update(acknowledged_at=real.acknowledged_at - timedelta(days=1))
    dated = await verify_chain()
    assert not dated.ok and "is not in the chain" in dated.reason
    await Acknowledgement.filter(id=real.id).update(acknowledged_at=real.acknowledged_at)
    assert (await verify_chain()).ok

    bo = await Delivery.get(notice_id=notice_id, member__email="bo@acme.example")
    await Acknowledgement.create(notice_id=notice_id, member_id=bo.member_id, delivery_id=bo.id, platform="slack",
                                 revision=1, acknowledged_at=rig.clock.now())
    forged = await verify_chain()
    assert not forged.ok and f"member {bo.member_id}" in forged.reason


# ---- the tables reports read, against the chain -------------------------------------------------

MONDAY_9 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


async def _click(rig: Rig, notice_id: int, user: str) -> None:
    await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id=user, now=rig.clock.now())


async def test_a_busy_trail_verifies_clean_and_its_tables_are_checked(rig: Rig) -> None:
    """Everything that changes delivery rows after their events (retries, a member with no account,
    edits' in-place updates, a material edit's new round of acknowledgements, reminders, an
    escalation, a retraction cancelling pending copies, a digest) leaves a trail that verifies,
    and then each table reports read is checked against it: a reminder row deleted, an
    escalation naming another member, a digest copy back-dated."""
    from bot.core.notices.revisions import edit_notice, retract_notice

    rig.clock.set(MONDAY_9)
    recall = await rig.broadcast("all", deadline=MONDAY_9 + timedelta(days=2))
    rig.fake.fail_next("chat.postMessage", status=500)  # one copy is retried
    await rig.herald.outbox.drain()
    rig.clock.advance(minutes=5)
    await rig.herald.outbox.drain()
    assert await Delivery.filter(notice_id=recall, status="failed").count() == 1  # Ed: no account
    await _click(rig, recall, "UANNA")
    await edit_notice(recall, None, rig.herald.catalog, now=rig.clock.now(), operator="test",
                      body="Stop selling LX-200 and LX-210", material=True)
    await rig.herald.outbox.drain()
    await _click(rig, recall, "UBO")
    for _ in range(6):  # reminders, then the deadline's escalation
        rig.clock.advance(hours=12)
        await rig.herald.tick()
        await rig.herald.outbox.drain()
    assert await Delivery.filter(notice_id=recall, kind="reminder", status="delivered").exists()
    assert await AuditEvent.filter(notice_id=recall, kind="escalation.delivered").exists()

    withdrawn = await rig.broadcast("tier:gold", importance="need-to-know")
    rig.fake.fail_next("chat.postMessage", status=500)
    await rig.herald.outbox.drain()
    await retract_notice(withdrawn, None, reason="wrong list", now=rig.clock.now(), operator="test")
    await rig.herald.outbox.drain()
    digest = await rig.broadcast("all", importance="nice-to-know")
    for _ in range(4):
        rig.clock.advance(hours=12)
        await rig.herald.tick()
        await rig.herald.outbox.drain()
    assert await Delivery.filter(notice_id=withdrawn, status="cancelled").exists()
    digested = await Delivery.filter(notice_id=digest, status="delivered").first()
    assert digested is not None and await AuditEvent.filter(kind="digest.sent").exists()

    result = await verify_chain(chunk=3)
    assert result.ok, result.reason

    reminder = await Delivery.filter(notice_id=recall, kind="reminder", status="delivered").first()
    await Delivery.filter(id=reminder.id).delete()
    assert f"delivery {reminder.id}, recorded in the chain as delivered" in (await verify_chain()).reason
    await Delivery.create(**{k: v for k, v in reminder.__dict__.items() if not k.startswith("_")})
    assert (await verify_chain()).ok

    escalation = await Escalation.filter(notice_id=recall).first()
    named = list(escalation.member_ids)
    others = [m for m in await Delivery.filter(notice_id=recall).values_list("member_id", flat=True) if m not in named]
    await Escalation.filter(id=escalation.id).update(member_ids=[*named[1:], others[0]])
    assert "names other members than its notice.escalated event records" in (await verify_chain()).reason
    await Escalation.filter(id=escalation.id).update(member_ids=named)

    await Delivery.filter(id=digested.id).update(delivered_at=digested.delivered_at - timedelta(hours=1))
    assert f"delivery {digested.id} (copy of notice {digest}" in (await verify_chain()).reason
    await Delivery.filter(id=digested.id).update(delivered_at=digested.delivered_at)
    assert (await verify_chain()).ok


async def test_a_trail_with_an_ab_test_and_a_survey_verifies_clean(srig) -> None:  # noqa: ANN001
    """Held-back A/B members released by the roll-out, a survey answered and closed: clean."""
    from bot.core.notices.rollout import roll_out
    from bot.core.surveys.answers import close_survey

    ab = await srig.notice("need-to-know announcements all share:50% | Title A | Body A || Title B | Body B")
    await srig.herald.outbox.drain()
    assert await Delivery.filter(notice_id=ab, status="held").exists()
    await roll_out(ab, "B", None, catalog=srig.herald.catalog, now=srig.clock.now(), operator="test")
    await srig.herald.outbox.drain()
    survey = await srig.survey("announcements all | How useful was the webinar? | scale:1-5")
    await srig.herald.outbox.drain()
    await srig.answer(survey, "UACME1", 4)
    await close_survey(survey, None, now=srig.clock.now(), operator="test")
    await srig.herald.outbox.drain()
    assert not await Delivery.filter(status__in=["held", "pending", "sending"]).exists()
    result = await verify_chain(chunk=5)
    assert result.ok, result.reason


async def test_a_failed_delivery_rewritten_as_delivered_is_found(rig: Rig) -> None:
    """Ed has no chat account: his copy failed (`delivery.failed` in the chain). Rewritten as
    delivered in the delivery table alone, the report would say he was told, at a time of the
    operator's choosing, under a chain head verify called intact."""
    notice_id = await rig.broadcast("all")
    await rig.herald.outbox.drain()
    ed = await Delivery.get(notice_id=notice_id, member__email="ed@keys.example")
    assert ed.status == "failed" and (await verify_chain()).ok

    await Delivery.filter(id=ed.id).update(status="delivered", error="", delivered_at=rig.clock.now() - timedelta(days=1))
    document = await _json_report(rig, notice_id)
    assert document["summary"]["failed"] == 0  # what the report now says
    result = await verify_chain()
    assert not result.ok and f"delivery {ed.id} (copy of notice {notice_id} to member {ed.member_id}" in result.reason
    assert "says delivered at" in result.reason and "no delivery.delivered event records that" in result.reason

    await Delivery.filter(id=ed.id).update(status="failed", error="no account", delivered_at=None)
    reworded = await verify_chain()  # the failure's reason is what the report prints
    assert not reworded.ok and "says failed ('no account')" in reworded.reason


async def test_a_delivery_time_moved_is_found(rig: Rig) -> None:
    """A copy's `delivered_at` (the report's "delivered at", where the reminder and deadline
    clock starts) moved a week earlier: the chain's `delivery.delivered` event says otherwise."""
    notice_id = await rig.broadcast("all")
    await rig.herald.outbox.drain()
    anna = await Delivery.get(notice_id=notice_id, member__email="anna@acme.example")
    await Delivery.filter(id=anna.id).update(delivered_at=anna.delivered_at - timedelta(days=7))
    result = await verify_chain()
    assert not result.ok and f"delivery {anna.id} (copy of notice {notice_id}" in result.reason

    await Delivery.filter(id=anna.id).update(delivered_at=anna.delivered_at, status="cancelled")
    hidden = await verify_chain()  # a delivered copy made to look never sent
    assert not hidden.ok and "as delivered at" in hidden.reason and "its row says cancelled" in hidden.reason


async def test_an_acknowledgement_row_deleted_is_found(rig: Rig) -> None:
    """README: verify checks acknowledgement rows against their events; the other way round too:
    deleting Anna's row makes the report say she never acknowledged, while the chain records
    that she did."""
    notice_id = await rig.broadcast("all")
    await rig.herald.outbox.drain()
    await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UANNA", now=rig.clock.now())
    assert (await verify_chain()).ok

    await Acknowledgement.filter(notice_id=notice_id).delete()
    assert (await _json_report(rig, notice_id))["summary"]["acknowledged"] == 0
    result = await verify_chain()
    assert not result.ok and "recorded in the chain has no row" in result.reason
    assert f"notice {notice_id} by member" in result.reason


async def test_the_text_of_an_acknowledged_notice_rewritten_is_found(rig: Rig) -> None:
    """SPEC: must-know notices are acknowledged "with proof that stands up in an audit". What a
    notice said is held in its mutable row (and its revisions'), which reports print: the chain
    records a digest of it (`text_sha256` in notice.created, notice.sent and notice.edited), so
    a body rewritten after Anna acknowledged it, or a kept revision's, is named."""
    from bot.core.notices.revisions import edit_notice

    notice_id = await rig.broadcast("all")  # body "Stop selling LX-200"
    await rig.herald.outbox.drain()
    await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UANNA", now=rig.clock.now())
    sent = await AuditEvent.get(kind="notice.sent", notice_id=notice_id)
    assert sent.data["text_sha256"] == text_digest("Recall", "Stop selling LX-200", "")
    assert (await verify_chain()).ok

    await Notice.filter(id=notice_id).update(body="For information only: no action needed.")
    assert (await _json_report(rig, notice_id))["notice"]["body"] == "For information only: no action needed."
    result = await verify_chain()
    assert not result.ok and f"the text of notice {notice_id}" in result.reason
    await Notice.filter(id=notice_id).update(body="Stop selling LX-200", link="https://example.com/x")
    assert f"the text of notice {notice_id}" in (await verify_chain()).reason  # the link is part of it
    await Notice.filter(id=notice_id).update(link="")
    assert (await verify_chain()).ok

    await edit_notice(notice_id, None, rig.herald.catalog, now=rig.clock.now(), operator="test",
                      body="Stop selling LX-200 and LX-210", material=True)
    assert (await verify_chain()).ok
    await Notice.filter(id=notice_id).update(revision=1)  # the edit made to look never made
    assert f"the text of notice {notice_id}" in (await verify_chain()).reason
    await Notice.filter(id=notice_id).update(revision=2)
    await NoticeRevision.filter(notice_id=notice_id, revision=1).update(body="Nothing to see.")
    assert f"the text of revision 1 of notice {notice_id}" in (await verify_chain()).reason
    await NoticeRevision.filter(notice_id=notice_id, revision=1).update(body="Stop selling LX-200")
    await NoticeRevision.filter(notice_id=notice_id, revision=2).delete()
    assert f"revision 2 of notice {notice_id}, recorded in the chain (notice.edited), has no row" in (
        await verify_chain()).reason


async def test_the_text_of_an_ab_variant_rewritten_is_found(srig) -> None:  # noqa: ANN001
    notice_id = await srig.notice("need-to-know announcements all | Title A | Body A || Title B | Body B")
    created = await AuditEvent.get(kind="notice.created", notice_id=notice_id)
    assert set(created.data["variants_sha256"]) == {"A", "B"}
    assert (await verify_chain()).ok
    await NoticeVariant.filter(notice_id=notice_id, label="B").update(body="Body C")
    result = await verify_chain()
    assert not result.ok and f"the text of variant B of notice {notice_id}" in result.reason


async def test_a_notices_deadline_sending_retraction_or_audience_altered_is_found(rig: Rig) -> None:
    """The report counts who acknowledged late against the notice row's deadline, and prints its
    audience, sent and retracted times. One UPDATE to the row moved them and verify still said
    intact: the chain records each (notice.created, notice.sent: audience and deadline; the times
    of notice.sent and notice.retracted), so a change made outside Herald is named."""
    from bot.core.notices.revisions import retract_notice

    rig.clock.set(MONDAY_9)
    deadline = MONDAY_9 + timedelta(days=2)
    notice_id = await rig.broadcast("all", deadline=deadline)
    await rig.herald.outbox.drain()
    await _click(rig, notice_id, "UANNA")
    assert (await verify_chain()).ok

    for changes, words in (({"deadline": deadline + timedelta(days=7)}, f"the deadline of notice {notice_id}"),
                           ({"deadline": None}, f"the deadline of notice {notice_id}"),
                           ({"sent_at": MONDAY_9 - timedelta(days=1)}, f"notice {notice_id} says it was sent at"),
                           ({"audience": "tier:gold"}, f"the audience of notice {notice_id}"),
                           ({"retracted_at": MONDAY_9 + timedelta(hours=1)},
                            f"notice {notice_id} says it was retracted at")):
        await Notice.filter(id=notice_id).update(**changes)
        result = await verify_chain(chunk=2)
        assert not result.ok and words in result.reason, (changes, result.reason)
        await Notice.filter(id=notice_id).update(deadline=deadline, sent_at=MONDAY_9, audience="all",
                                                 retracted_at=None)
        assert (await verify_chain()).ok

    rig.clock.advance(hours=3)
    await retract_notice(notice_id, None, reason="wrong list", now=rig.clock.now(), operator="test")
    assert (await verify_chain()).ok
    await Notice.filter(id=notice_id).update(retracted_at=rig.clock.now() + timedelta(days=3))
    assert f"notice {notice_id} says it was retracted at" in (await verify_chain()).reason
    await Notice.filter(id=notice_id).update(retracted_at=None, status="sent")  # the retraction made to look undone
    hidden = await verify_chain()
    assert not hidden.ok and "notice.retracted" in hidden.reason


async def test_a_trail_from_before_text_digests_still_verifies(db: str) -> None:
    """Trails written before the events carried `text_sha256` have nothing to compare a notice's
    text with: they verify as before (README says so)."""
    notice = await Notice.create(topic="announcements", importance="must-know", title="Old", body="Old body",
                                 audience="all", status="sent", created_at=T0, sent_at=T0)
    await record([audit_event("notice.created", now=T0, notice_id=notice.id, title="Old"),
                  audit_event("notice.sent", now=T0, notice_id=notice.id, recipients=0)])
    await Notice.filter(id=notice.id).update(body="Rewritten")
    assert (await verify_chain()).ok


def test_what_verify_keeps_of_each_copy_and_acknowledgement_is_a_few_machine_words() -> None:
    """`herald audit verify` keeps, until it compares the tables, what the chain records of every
    delivery, acknowledgement and digest copy: a year's trail is millions of them. Each must cost
    a few 64-bit words (flat arrays), not a dict entry of Python ints and tuples (about 100 to
    200 bytes: some 500 MB over a year's 3 million events)."""
    import tracemalloc
    from types import SimpleNamespace

    from bot.core.compliance.crosscheck import Ledger

    count, at = 20_000, datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    events = [SimpleNamespace(kind=kind, notice_id=7, member_id=1000 + i, occurred_at=at + timedelta(seconds=i),
                              data={"delivery_id": 5000 + i, "revision": 1, "platform": "slack", "notices": [7]})
              for i in range(count) for kind in ("delivery.delivered", "notice.acknowledged", "digest.sent")]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ledger = Ledger()
        for event in events:
            ledger.note(event)  # type: ignore[arg-type]
        per_event = (tracemalloc.get_traced_memory()[0] - before) / len(events)
    finally:
        tracemalloc.stop()
    assert per_event < 40, f"{per_event:.0f} bytes kept per event"  # 108 with a dict entry each; 25 now
    assert ledger.delivered.get(5000 + 7) is not None and ledger.acknowledged.get((7, 1007, 1)) is not None
    assert ledger.digests.get((7, 1007, "slack")) is not None and ledger.digests.get((7, 1007, "teams")) is None
