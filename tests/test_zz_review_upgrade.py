"""Review (area: upgrade): upgrading a deployment that has a year of data.

Each test fails on the current code for the reason in its docstring and passes once it is fixed.
The PostgreSQL tests run against the shared test cluster (HERALD_TEST_POSTGRES_URL), each on a
database of its own that an earlier Herald migrated (`migrate_to`), with `herald db upgrade` run as
an operator runs it: a child process.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from storage import db as storage_db
from tests.cli_support import herald, herald_env
from tests.conftest import POSTGRES_ONLY
from tests.test_migrations import MIGRATIONS, empty_db_url, fill_empty_tables, migrate_to  # noqa: F401 - fixture

LAST = MIGRATIONS[-1]  # 0034_outbox_due_since: ALTER TABLE delivery / outbound_message ADD COLUMN due_since


async def _pg(url: str):  # noqa: ANN202
    import asyncpg

    return await asyncpg.connect(storage_db.asyncpg_dsn(url))


async def _start_upgrade(tmp_path: Path, url: str) -> asyncio.subprocess.Process:
    """`herald db upgrade` started as its own process, not waited for."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "db", "upgrade", cwd=tmp_path, env=herald_env(HERALD_DATABASE_URL=url),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _upgrade_backend_waiting(watch, upgrade: asyncio.subprocess.Process) -> int:  # noqa: ANN001
    """The pid of the backend on which `herald db upgrade` waits for a table lock (polled, bounded)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        pid = await watch.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock' AND query NOT ILIKE '%pg_advisory_lock%' LIMIT 1")
        if pid is not None:
            return pid
        if upgrade.returncode is not None:
            out, err = await upgrade.communicate()
            pytest.fail(f"herald db upgrade ended before it waited for a lock: {upgrade.returncode} {err.decode()[-800:]}")
        await asyncio.sleep(0.05)
    pytest.fail("herald db upgrade never waited for a table lock")


async def _finish(upgrade: asyncio.subprocess.Process) -> None:
    try:
        await asyncio.wait_for(upgrade.communicate(), 120)
    except TimeoutError:
        upgrade.kill()
        await upgrade.wait()


async def _run_sql(url: str, *statements: str) -> None:
    await storage_db.connect(url, run_migrations=False)
    try:
        from tortoise import connections

        for statement in statements:
            await connections.get("default").execute_query(statement)
    finally:
        await storage_db.close()


# ---- 1. the applied-migrations record is not in the migration's transaction ---------------------

def _fail_the_record_of(url: str, name: str) -> list[str]:
    """Statements that make the INSERT of `name` into tortoise_migrations fail as a full disk does:
    the moment after the migration's own transaction committed and before its record is written
    (a full disk, a statement timeout, the connection lost, the process killed there)."""
    if url.startswith("sqlite"):
        return [f"CREATE TRIGGER full_disk BEFORE INSERT ON tortoise_migrations WHEN NEW.name = '{name}' "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"]
    return ["CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$",
            "CREATE TRIGGER full_disk BEFORE INSERT ON tortoise_migrations FOR EACH ROW "
            f"WHEN (NEW.name = '{name}') EXECUTE FUNCTION full_disk()"]


async def test_an_upgrade_interrupted_after_a_migration_committed_can_be_run_again(
        empty_db_url: str, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    """tortoise's executor applies a migration in one transaction and writes its row in
    `tortoise_migrations` afterwards, in another statement (MigrationExecutor.migrate: `apply` in
    `in_transaction`, then `recorder.record_applied` outside it). When the upgrade stops between the
    two (here the record's INSERT fails as on a full disk; a kill or a lost connection there does the
    same) the schema has the migration but the database says it is pending. Every command of the new
    version then refuses the database ("run `herald db upgrade` first"), and `herald db upgrade`
    itself now fails for good: it runs the migration again and `ADD COLUMN due_since` finds the
    column there. The operator's only way out is hand-editing tortoise_migrations.

    README, Upgrades: a failed migration stops the upgrade with one line, and (implicitly) running it
    again once the cause is fixed finishes it. The record must commit with the migration."""
    await migrate_to(empty_db_url, MIGRATIONS[-2], *_fail_the_record_of(empty_db_url, LAST))

    first = herald("db", "upgrade", cwd=tmp_path, HERALD_DATABASE_URL=empty_db_url)
    assert first.returncode != 0, first  # the disk was full: this run fails, whatever it says

    await _run_sql(empty_db_url, "DROP TRIGGER full_disk" + (
        "" if empty_db_url.startswith("sqlite") else " ON tortoise_migrations"))  # space freed

    again = herald("db", "upgrade", cwd=tmp_path, HERALD_DATABASE_URL=empty_db_url)
    assert (again.returncode, again.stdout.strip()) == (0, "database is up to date"), (
        f"running `herald db upgrade` again after the failure does not finish the upgrade:\n{again.stderr[-600:]}")


# ---- 2. no lock_timeout: an ALTER TABLE waiting for a report download stalls every query ---------

@pytest.mark.parametrize("empty_db_url", POSTGRES_ONLY, indirect=True)
async def test_an_upgrade_waiting_behind_a_report_download_does_not_stall_the_old_replicas(
        empty_db_url: str, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    """README, Upgrades and docker-compose.yml: `migrate` runs `herald db upgrade` while the old
    version's replicas still serve. A report download (`/reports/download`, `herald report`) reads
    the notice's copies in one REPEATABLE READ snapshot held for as long as the client takes to
    read the stream (storage.db.read_snapshot, reports._in_snapshot). Migration 0034's `ALTER TABLE
    delivery ADD COLUMN` needs ACCESS EXCLUSIVE on `delivery`: it waits for the download to end,
    with no lock_timeout, and every later statement on `delivery` queues behind it, reads too. So
    every acknowledgement, Send, outbox claim and console page of the old replicas hangs for as long
    as the download lasts (measured on a copy of a year's data, 2M deliveries: a one-row SELECT on
    delivery by an old replica took 33.1 s while a 40 s snapshot was open; the migration itself
    needs 0.1 s). Slack wants its acknowledgement within 3 s.

    The old replica's one-row read here must not wait 3 s (the migration should give up waiting
    after a short lock_timeout and try again, not queue the whole service behind it)."""
    await migrate_to(empty_db_url, MIGRATIONS[-2])
    filler = await _pg(empty_db_url)
    await fill_empty_tables(_AsyncpgAsTortoise(filler))
    await filler.close()

    snapshot = await _pg(empty_db_url)  # what read_snapshot does for a report download, on PostgreSQL
    report = snapshot.transaction(isolation="repeatable_read", readonly=True)
    await report.start()
    await snapshot.fetchval("SELECT count(*) FROM delivery WHERE notice_id = (SELECT MIN(id) FROM notice)")

    upgrade = await _start_upgrade(tmp_path, empty_db_url)
    replica = await _pg(empty_db_url)
    watch = await _pg(empty_db_url)
    try:
        await _upgrade_backend_waiting(watch, upgrade)
        await replica.execute("SET statement_timeout = '3s'")
        started = time.monotonic()
        try:
            await replica.fetchval("SELECT id FROM delivery WHERE id = (SELECT MIN(id) FROM delivery)")
        except Exception as exc:  # noqa: BLE001 - asyncpg's QueryCanceledError
            pytest.fail(f"an old replica's one-row read of delivery waited {time.monotonic() - started:.1f} s and was "
                        f"cancelled ({type(exc).__name__}): it queued behind the upgrade's ALTER TABLE, itself "
                        "waiting for a report download's snapshot, with no lock_timeout")
    finally:
        await report.rollback()
        await _finish(upgrade)
        for conn in (snapshot, replica, watch):
            await conn.close()


class _AsyncpgAsTortoise:
    """Just enough of a tortoise client over an asyncpg connection for `fill_empty_tables`."""

    def __init__(self, conn) -> None:  # noqa: ANN001
        self.conn = conn
        self.capabilities = type("Caps", (), {"dialect": "postgres"})()

    async def execute_query_dict(self, sql: str, values=None):  # noqa: ANN001, ANN201
        return [dict(r) for r in await self.conn.fetch(sql, *(values or []))]

    async def execute_query(self, sql: str, values=None):  # noqa: ANN001, ANN201
        return await self.conn.execute(sql, *(values or []))


# ---- 3. an index on a table with millions of rows is built without CONCURRENTLY ------------------

_BLOCKS_WRITES = {"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}


@pytest.mark.parametrize("empty_db_url", POSTGRES_ONLY, indirect=True)
async def test_the_audit_trail_index_is_built_without_stopping_audit_writes(
        empty_db_url: str, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    """Migration 0031 adds an index on audit_event (kind, occurred_at) with tortoise's AddIndex:
    a plain `CREATE INDEX`, which holds a SHARE lock on audit_event for the whole build, so no row
    can be inserted meanwhile. audit_event is the largest table (its docstring: "a year: millions of
    events") and every acknowledgement, Send, edit, survey answer and delivery outcome of the old
    replicas writes to it, in the same transaction as the change it records. Measured on the shared
    PostgreSQL with 5,000,000 events (1.7 GB): the migration took 11.9 s and an audit insert by an
    old replica waited 11.8 s; a Send from Slack stores its audit event before answering Slack, so
    it missed Slack's 3 s. 0017 and 0029 (delivery) and 0030 are built the same way.

    PostgreSQL's answer is CREATE INDEX CONCURRENTLY (SHARE UPDATE EXCLUSIVE: inserts go on), run
    outside the migration's transaction. Here an old replica's audit write is in flight when the
    upgrade starts, which keeps the build from finishing so its lock can be seen."""
    await migrate_to(empty_db_url, "0030_tick_sweep_indexes")
    in_flight = await _pg(empty_db_url)  # an old replica's acknowledgement, its audit event being written
    write = in_flight.transaction()
    await write.start()
    await in_flight.execute("INSERT INTO audit_event (occurred_at, kind, actor, data) "
                            "VALUES (now(), 'notice.acknowledged', 'system', '{}')")

    upgrade = await _start_upgrade(tmp_path, empty_db_url)
    watch = await _pg(empty_db_url)
    try:
        pid = await _upgrade_backend_waiting(watch, upgrade)
        modes = {r["mode"] for r in await watch.fetch(
            "SELECT mode FROM pg_locks WHERE pid = $1 AND relation = 'audit_event'::regclass", pid)}
        assert modes and not modes & _BLOCKS_WRITES, (
            f"the upgrade's index build on audit_event takes {sorted(modes)}: every audit write of the "
            "old replicas waits for the whole build (CREATE INDEX without CONCURRENTLY)")
    finally:
        await write.rollback()
        await _finish(upgrade)
        await in_flight.close()
        await watch.close()
