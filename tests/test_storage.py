import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from bot.core.replays import first_sighting
from storage import db as storage_db
from storage.models import Delivery, Organisation, PlatformAccount, SeenRequest
from tests.conftest import POSTGRES_URL, _admin_execute, _with_database

ROOT = Path(__file__).resolve().parent.parent


async def test_migrated_database_round_trips_a_row(db: str) -> None:
    await Organisation.create(external_id="acme", name="Acme")
    assert (await Organisation.get(external_id="acme")).name == "Acme"
    assert await storage_db.ping()


async def test_a_time_with_another_offset_is_stored_and_compared_as_the_same_moment(db: str) -> None:
    """SQLite keeps timestamps as text and compares them as text: a pause end given as 10:00+01:00
    through `.update()` was stored so, and `paused_until <= 09:30Z` was false for an hour after it
    (PostgreSQL compared the moments). Every aware timestamp SQLite is given, by the ORM's updates
    and filters or by raw statements, is now in UTC."""
    plus_one = timezone(timedelta(hours=1))
    org = await Organisation.create(external_id="acme", name="Acme")
    await Organisation.filter(id=org.id).update(paused_until=datetime(2026, 1, 7, 10, 0, tzinfo=plus_one))
    ended = datetime(2026, 1, 7, 9, 0, tzinfo=UTC)
    assert await Organisation.filter(paused_until__lte=ended + timedelta(minutes=30)).count() == 1
    assert await Organisation.filter(paused_until__lte=ended - timedelta(seconds=1)).count() == 0
    assert (await Organisation.get(id=org.id)).paused_until == ended
    # a filter's value in another zone, against a value the ORM stored (created_at, in UTC)
    created = (await Organisation.get(id=org.id)).created_at
    assert await Organisation.filter(created_at__lt=(created + timedelta(hours=1)).astimezone(
        timezone(timedelta(hours=-6)))).count() == 1
    # and a raw statement's parameter
    found = await connections.get("default").execute_query_dict(storage_db.placeholders(
        "SELECT id FROM organisation WHERE paused_until <= ?"), [ended.astimezone(plus_one)])
    assert [r["id"] for r in found] == [org.id]


async def test_write_rows_writes_every_row_or_none(db: str) -> None:
    """Many rows, all or none, on both databases: on PostgreSQL one statement for every row (its
    columns as arrays), on SQLite one per row in a transaction, or in the caller's."""
    sql = "INSERT INTO seen_request (key, seen_at, expires_at) VALUES (?, ?, ?)"
    pg = ("INSERT INTO seen_request (key, seen_at, expires_at) "
          "SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])")
    now = await storage_db.database_now()
    await storage_db.write_rows(sql, [("a", now, now), ("b", now, now)], postgres=pg)
    await storage_db.write_rows(sql, [], postgres=pg)
    assert await SeenRequest.all().order_by("key").values_list("key", flat=True) == ["a", "b"]
    with pytest.raises(Exception):  # noqa: B017, PT011 - each driver raises its own unique-constraint error
        await storage_db.write_rows(sql, [("c", now, now), ("a", now, now)], postgres=pg)
    assert await SeenRequest.all().order_by("key").values_list("key", flat=True) == ["a", "b"]
    with pytest.raises(RuntimeError):
        async with in_transaction() as conn:
            await storage_db.write_rows(sql, [("d", now, now), ("e", now, now)], postgres=pg, using_db=conn)
            raise RuntimeError("the caller's transaction rolls back")
    assert await SeenRequest.all().order_by("key").values_list("key", flat=True) == ["a", "b"]


async def test_concurrent_first_sightings_let_each_request_act_once(db: str) -> None:
    """Requests arriving together are stored together on PostgreSQL (one statement per group): still,
    of several sightings of one key, in one group or across groups, exactly one is the first."""
    now = await storage_db.database_now()
    assert await first_sighting("old", now=now, window=timedelta(minutes=5))
    keys = ["old", *(f"k{i}" for i in range(30))] * 3
    firsts = await asyncio.gather(*(first_sighting(k, now=now, window=timedelta(minutes=5)) for k in keys))
    won = [k for k, first in zip(keys, firsts, strict=True) if first]
    assert sorted(won) == sorted(f"k{i}" for i in range(30))
    assert await SeenRequest.all().count() == 31
    # a key whose record outlived its window is a first sighting again, once
    later = now + timedelta(minutes=6)
    assert [await first_sighting("old", now=later, window=timedelta(minutes=5)) for _ in range(2)] == [True, False]


@pytest.mark.skipif(not POSTGRES_URL, reason="needs HERALD_TEST_POSTGRES_URL")
async def test_two_replicas_migrating_a_fresh_postgres_database_at_once_both_succeed(tmp_path: Path) -> None:
    """`herald serve` migrates on start (HERALD_MIGRATE_ON_START=true): two replicas started together
    take turns under an advisory lock. Before, one crashed (type "tortoise_migrations" already exists)."""
    name = "herald_migrate_" + uuid.uuid4().hex[:12]
    await _admin_execute(f'CREATE DATABASE "{name}"')
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HERALD_DATABASE_URL": _with_database(POSTGRES_URL, name)}
        replicas = [subprocess.Popen([sys.executable, "-m", "bot.cli", "db", "upgrade"], env=env, cwd=tmp_path,
                                     text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
        results = [(p.wait(timeout=120), p.stderr.read()) for p in replicas]  # type: ignore[union-attr]
        failed = [err.strip().splitlines()[-1] for code, err in results if code != 0]
        assert not failed, f"{len(failed)} of 2 replicas failed to migrate a fresh database: {failed[0]}"
        await storage_db.connect(_with_database(POSTGRES_URL, name), run_migrations=False)
        try:
            assert await storage_db.pending_migrations() == []
        finally:
            await storage_db.close()
    finally:
        await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("what,query", [
    ("a member's accounts (journey steps' and digests' target, the hand-off relay, the directory)",
     lambda: PlatformAccount.filter(member_id=1).order_by("id")),
    ("a member's digest rows (run_digests, per member, every tick)",
     lambda: Delivery.filter(member_id=1, status="digest", created_at__lt=datetime(2026, 1, 6, 8, tzinfo=UTC))),
])
async def test_per_member_reads_use_an_index(db: str, what: str, query) -> None:  # noqa: ANN001
    """The periodic jobs read a member's accounts and digest rows once per member they handle.
    Without an index starting with member_id (migration 0016) those were, on PostgreSQL with
    100,000 members (bench/periodic_scale.py), a sequential scan of all of platform_account
    (~12 ms) and a scan of the whole delivery unique index (growing with every notice ever
    sent), for each step and digest, every minute. PostgreSQL: an index of the table starts with
    member_id; SQLite: the query plan uses an index on member_id."""
    sql = query().sql(params_inline=True)
    conn = connections.get("default")
    if storage_db.dialect() == "postgres":
        _, found = await conn.execute_query(
            "SELECT indexdef FROM pg_indexes WHERE tablename = $1", [query().model._meta.db_table])
        leading = [r["indexdef"].split("(", 1)[1].split(",")[0].split(")")[0].strip() for r in found]
        assert "member_id" in leading, f"{what}: no index of {query().model._meta.db_table} starts with member_id"
        return
    _, plan = await conn.execute_query(f"EXPLAIN QUERY PLAN {sql}")
    details = " | ".join(str(dict(r).get("detail")) for r in plan)
    assert "USING INDEX" in details and "member_id=?" in details.replace(" ", ""), (
        f"{what}: {sql} -> {details}")
