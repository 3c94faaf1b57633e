"""Upgrades: every migration applies to a database an earlier Herald left with rows in it, on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.migrations.api import migrate
from tortoise.migrations.migration import Migration

from storage import db as storage_db
from tests.cli_support import herald, herald_env, serve_until_listening
from tests.conftest import BACKENDS, POSTGRES_ONLY, POSTGRES_URL, _admin_execute, _with_database

MIGRATIONS = sorted(p.stem for p in (Path(storage_db.__file__).parent / "migrations").glob("[0-9][0-9][0-9][0-9]_*.py"))
# the migration the interrupted-upgrade and lock-wait tests apply (ALTER TABLE delivery / outbound_message
# ADD COLUMN due_since), named rather than "the last one": later migrations come after it
DUE_SINCE = "0034_outbox_due_since"
BEFORE_DUE_SINCE = MIGRATIONS[MIGRATIONS.index(DUE_SINCE) - 1]


@pytest.fixture(params=BACKENDS)
async def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database with no tables at all (not connected)."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'herald.db'}"
        return
    name = "herald_upgrade_" + uuid.uuid4().hex[:12]
    await _admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(POSTGRES_URL, name)
    finally:
        await storage_db.close()
        await _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def migrate_to(url: str, revision: str, *statements: str) -> None:
    """The database as an earlier Herald left it: migrated up to `revision`, with `statements` run on it."""
    await migrate(config=storage_db.tortoise_config(url), target=f"models.{revision}")
    for statement in statements:
        await connections.get("default").execute_query(statement)
    await Tortoise.close_connections()


# ---- one row in every table, whatever the revision ----------------------------------------------

async def _columns(conn: BaseDBAsyncClient) -> dict[str, list[tuple[str, str, bool]]]:
    """Each table's columns that an INSERT must or may fill: (name, type, nullable), without the
    generated primary keys."""
    tables: dict[str, list[tuple[str, str, bool]]] = {}
    if conn.capabilities.dialect == "postgres":
        rows = await conn.execute_query_dict(
            "SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position")
        for r in rows:
            if not str(r["column_default"] or "").startswith("nextval("):
                tables.setdefault(r["table_name"], []).append((r["column_name"], r["data_type"],
                                                               r["is_nullable"] == "YES"))
        return tables
    names = await conn.execute_query_dict("SELECT name FROM sqlite_master WHERE type = 'table' "
                                          "AND name NOT LIKE 'sqlite_%'")
    for table in (n["name"] for n in names):
        for r in await conn.execute_query_dict(f'PRAGMA table_info("{table}")'):
            if not (r["pk"] and r["type"].upper() == "INTEGER"):  # INTEGER PRIMARY KEY: the rowid
                tables.setdefault(table, []).append((r["name"], r["type"], not r["notnull"]))
    return tables


async def _foreign_keys(conn: BaseDBAsyncClient) -> dict[tuple[str, str], tuple[str, str]]:
    """(table, column) -> (referenced table, referenced column)."""
    if conn.capabilities.dialect == "postgres":
        rows = await conn.execute_query_dict(
            "SELECT kcu.table_name, kcu.column_name, ccu.table_name AS ref_table, ccu.column_name AS ref_column "
            "FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = tc.constraint_name "
            "JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = tc.constraint_name "
            "WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = 'public'")
        return {(r["table_name"], r["column_name"]): (r["ref_table"], r["ref_column"]) for r in rows}
    keys = {}
    for table in await _columns(conn):
        for r in await conn.execute_query_dict(f'PRAGMA foreign_key_list("{table}")'):
            keys[(table, r["from"])] = (r["table"], r["to"])
    return keys


def _literal(column_type: str) -> str:
    kind = column_type.lower()
    if kind in ("boolean", "bool"):
        return "TRUE"
    if kind.startswith(("int", "smallint", "bigint", "real", "double")):
        return "1"
    if kind.startswith("json"):
        return "'[]'"
    if kind.startswith("timestamp"):
        return "'2026-11-28 09:00:00+00:00'"
    return "'x'"  # text, varchar(n) and char(n) columns: one character fits every length


async def fill_empty_tables(conn: BaseDBAsyncClient) -> None:
    """One row in every empty table, every column filled (a foreign key points at the row of the
    table it references, which is filled first)."""
    tables = {t: cols for t, cols in (await _columns(conn)).items() if t != "tortoise_migrations"}
    keys = await _foreign_keys(conn)
    done = [t for t, n in (await _row_counts(conn, list(tables))).items() if n]
    while len(done) < len(tables):
        ready = [t for t in tables if t not in done
                 and all(ref in done or ref == t for (table, _), (ref, _) in keys.items() if table == t)]
        assert ready, f"foreign keys in a cycle among {sorted(set(tables) - set(done))}"
        for table in sorted(ready):
            values = []
            for name, column_type, _ in tables[table]:
                ref = keys.get((table, name))
                if ref is not None and ref[0] == table:
                    values.append("NULL")  # a row pointing at itself: none here to point at
                elif ref is not None:
                    values.append(f'(SELECT MIN("{ref[1]}") FROM "{ref[0]}")')
                else:
                    values.append(_literal(column_type))
            names = ", ".join(f'"{name}"' for name, _, _ in tables[table])
            await conn.execute_query(f'INSERT INTO "{table}" ({names}) VALUES ({", ".join(values)})')
            done.append(table)


async def _row_counts(conn: BaseDBAsyncClient, tables: list[str]) -> dict[str, int]:
    return {t: (await conn.execute_query_dict(f'SELECT COUNT(*) AS n FROM "{t}"'))[0]["n"] for t in tables}


# ---- upgrades ----------------------------------------------------------------------------------

async def test_each_migration_applies_to_a_database_with_rows_in_every_table(
        empty_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each migration runs on a database an earlier Herald left with a row in every table (every
    column filled), and the rows stay. A migration that adds a NOT NULL column without a DEFAULT,
    or a backfill or index that trips on existing rows, fails here: 0002 did, so no database with a
    connected Slack workspace could upgrade from 0001. The rows are written just before each
    migration, in its transaction: one upgrade instead of one per earlier revision (tortoise
    rebuilds its model state from the first migration on every run, seconds each)."""
    apply = Migration.apply
    filled: set[str] = set()  # the tables given a row (those the last migration creates get none)

    async def apply_to_rows(self: Migration, state: Any, *, dry_run: bool = False,
                            schema_editor: Any = None, collect_sql: bool = False) -> Any:
        if schema_editor is not None and not dry_run and not collect_sql:
            await fill_empty_tables(schema_editor.client)
            filled.update(t for t in await _columns(schema_editor.client) if t != "tortoise_migrations")
        return await apply(self, state, dry_run=dry_run, schema_editor=schema_editor, collect_sql=collect_sql)

    monkeypatch.setattr(Migration, "apply", apply_to_rows)
    await storage_db.upgrade(empty_db_url)
    monkeypatch.undo()

    await storage_db.connect(empty_db_url, run_migrations=False)
    try:
        conn = connections.get("default")
        applied = await conn.execute_query_dict("SELECT name FROM tortoise_migrations ORDER BY name")
        assert [r["name"] for r in applied] == MIGRATIONS
        tables = [t for t in await _columns(conn) if t != "tortoise_migrations"]
        counts = await _row_counts(conn, tables)
        assert {counts[t] for t in filled} == {1}
        assert all(counts[t] == 0 for t in set(tables) - filled)  # new in the last migration
    finally:
        await storage_db.close()


async def test_upgrading_a_database_with_a_connected_slack_workspace_from_0001_succeeds(empty_db_url: str) -> None:
    """Migration 0002 adds `workspace.refresh_token` / `refresh_claimed_by` NOT NULL: with tortoise's
    plain AddField (no DEFAULT) any database with a stored Slack workspace (`herald slack
    add-workspace`, "Add to Slack") failed its first upgrade: SQLite "Cannot add a NOT NULL column
    with default value NULL", PostgreSQL 'column "refresh_token" ... contains null values'. The
    workspace keeps its token and gets empty rotation fields."""
    await migrate_to(empty_db_url, "0001_initial",
                     "INSERT INTO workspace (platform, external_id, name, bot_token, bot_user_id, active, "
                     "created_at, updated_at) VALUES ('slack', 'T0ACME', 'Acme', 'xoxb-acme', 'UBOT', TRUE, "
                     "'2026-11-28 09:00:00', '2026-11-28 09:00:00')")
    await storage_db.upgrade(empty_db_url)
    await storage_db.connect(empty_db_url, run_migrations=False)
    try:
        assert await storage_db.pending_migrations() == []
        rows = await connections.get("default").execute_query_dict(
            "SELECT external_id, bot_token, refresh_token, refresh_claimed_by, token_expires_at FROM workspace")
        assert rows == [{"external_id": "T0ACME", "bot_token": "xoxb-acme", "refresh_token": "",
                         "refresh_claimed_by": "", "token_expires_at": None}]
    finally:
        await storage_db.close()


async def _copy_row(conn: BaseDBAsyncClient, table: str, **values: str) -> None:
    """A second row in `table`: a copy of its first, with `values` (SQL expressions) in place."""
    columns = [name for name, _, _ in (await _columns(conn))[table]]
    values.setdefault("id", f'(SELECT MAX(id) + 1 FROM "{table}")')  # a BIGINT key SQLite does not generate
    names = ", ".join(f'"{c}"' for c in columns)
    chosen = ", ".join(values.get(c, f'"{c}"') for c in columns)
    await conn.execute_query(f'INSERT INTO "{table}" ({names}) SELECT {chosen} FROM "{table}" '
                             f'WHERE id = (SELECT MIN(id) FROM "{table}")')


async def test_copies_rolled_out_before_0022_are_marked_from_the_audit_trail(empty_db_url: str) -> None:
    """Before 0022 a rolled-out copy had the winner's variant and nothing else told it apart, so the
    A/B comparison counted its member in the experiment. The upgrade marks `rolled_out` the
    original copies that have a variant and whose member's `notice.variant_assigned` event says
    `held: true` (held back at the send), as JSON text on SQLite and JSONB on PostgreSQL; the
    experiment's members' copies stay unmarked."""
    await migrate(config=storage_db.tortoise_config(empty_db_url), target="models.0021_notice_unreached_organisations")
    try:
        conn = connections.get("default")
        await fill_empty_tables(conn)
        await conn.execute_query("UPDATE delivery SET kind = 'notice', variant = 'B'")  # held back, then rolled out
        await _copy_row(conn, "member", email="'first-wave@acme.example'")
        await _copy_row(conn, "delivery", member_id="(SELECT MAX(id) FROM member)", variant="'A'")
        await _copy_row(conn, "audit_event", member_id="(SELECT MAX(id) FROM member)", seq="2")
        await conn.execute_query(
            "UPDATE audit_event SET kind = 'notice.variant_assigned', notice_id = (SELECT MIN(notice_id) FROM delivery)")
        await conn.execute_query("UPDATE audit_event SET data = '{\"held\":true,\"variant\":null}' "
                                 "WHERE member_id = (SELECT MIN(id) FROM member)")
        await conn.execute_query("UPDATE audit_event SET data = '{\"held\":false,\"variant\":\"A\"}' "
                                 "WHERE member_id = (SELECT MAX(id) FROM member)")
    finally:
        await Tortoise.close_connections()

    await storage_db.upgrade(empty_db_url)

    await storage_db.connect(empty_db_url, run_migrations=False)
    try:
        rows = await connections.get("default").execute_query_dict(
            "SELECT variant, rolled_out FROM delivery ORDER BY id")
        assert [(r["variant"], bool(r["rolled_out"])) for r in rows] == [("B", True), ("A", False)]
    finally:
        await storage_db.close()


async def test_upgrading_marks_the_zones_an_import_gave(empty_db_url: str) -> None:
    """Migration 0023 adds `member.timezone_from_directory` (Teams' device zone fills in only where
    nobody gave one): a zone other than UTC that the member did not choose came from an import."""
    await migrate_to(empty_db_url, "0022_delivery_rolled_out")
    await storage_db.connect(empty_db_url, run_migrations=False)
    try:
        conn = connections.get("default")
        await fill_empty_tables(conn)
        for email, zone, chosen in (("ann@acme.example", "Europe/Berlin", "FALSE"), ("bo@acme.example", "UTC", "FALSE"),
                                    ("cy@acme.example", "Asia/Tokyo", "TRUE")):
            await _copy_row(conn, "member", email=f"'{email}'", timezone=f"'{zone}'", timezone_chosen=chosen)
    finally:
        await storage_db.close()
    await storage_db.upgrade(empty_db_url)
    await storage_db.connect(empty_db_url, run_migrations=False)
    try:
        rows = await connections.get("default").execute_query_dict(
            "SELECT email, timezone_from_directory FROM member WHERE email <> 'x' ORDER BY email")
        assert [(r["email"], bool(r["timezone_from_directory"])) for r in rows] == [
            ("ann@acme.example", True), ("bo@acme.example", False), ("cy@acme.example", False)]
    finally:
        await storage_db.close()


async def test_tokens_created_before_0036_keep_their_persons_role_and_no_expiry(empty_db_url: str) -> None:
    """Migration 0036 binds each API token to a role (it acted with its person's current role, so
    a CAM's token read every partner once they were promoted): a token created before it takes the
    role its person has at the upgrade, and has no expiry (it never had one)."""
    await migrate_to(empty_db_url, "0035_notice_author_created")
    await storage_db.connect(empty_db_url, run_migrations=False)
    try:
        conn = connections.get("default")
        await fill_empty_tables(conn)
        await conn.execute_query("UPDATE staff SET role = 'compliance'")
        await _copy_row(conn, "staff", email="'cam@vendor.example'", role="'cam'")
        await _copy_row(conn, "api_token", staff_id="(SELECT MAX(id) FROM staff)", token_hash="'y'")
    finally:
        await storage_db.close()
    await storage_db.upgrade(empty_db_url)
    await storage_db.connect(empty_db_url, run_migrations=False)
    try:
        rows = await connections.get("default").execute_query_dict(
            "SELECT role, expires_at FROM api_token ORDER BY id")
        assert [(r["role"], r["expires_at"]) for r in rows] == [("compliance", None), ("cam", None)]
    finally:
        await storage_db.close()


# ---- a migration that fails, a database from a newer Herald ---------------------------------------

def _with_a_broken_migration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sql: str) -> None:
    """Migrate from a temporary copy of the shipped migrations, cut after 0001, plus a 0002 whose
    SQL fails on the database as 0001 left it (the shipped migrations stay as they are)."""
    name = "broken_migrations_" + uuid.uuid4().hex[:8]
    package = tmp_path / name
    package.mkdir()
    shipped = Path(storage_db.__file__).parent / "migrations"
    for stem in ("__init__", "_columns", "0001_initial"):
        (package / f"{stem}.py").write_text((shipped / f"{stem}.py").read_text())
    (package / "0002_broken.py").write_text(
        "from tortoise import migrations\nfrom tortoise.migrations import operations as ops\n\n\n"
        "class Migration(migrations.Migration):\n"
        "    dependencies = [('models', '0001_initial')]\n"
        f"    operations = [ops.RunSQL({sql!r})]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(storage_db, "MIGRATIONS_MODULE", name)


async def test_a_migration_whose_sql_fails_ends_the_upgrade_with_the_sql_error(
        empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration's SQL that fails on the old database ends the upgrade with that error at once,
    on SQLite and PostgreSQL: no connection is left in the failed transaction or holding a lock
    (the test's bound only turns a hang into a failure), the migrations before it stay applied,
    and the database can be connected to and dropped straight after."""
    _with_a_broken_migration(tmp_path, monkeypatch, "UPDATE workspace SET no_such_column = 1")
    with pytest.raises(storage_db.MigrationFailed, match="^migration 0002_broken failed: .*no_such_column"):
        await asyncio.wait_for(storage_db.upgrade(empty_db_url), 120)
    await asyncio.wait_for(storage_db.connect(empty_db_url, run_migrations=False), 30)
    try:
        rows = await connections.get("default").execute_query_dict("SELECT name FROM tortoise_migrations")
        assert [r["name"] for r in rows] == ["0001_initial"]
    finally:
        await storage_db.close()


def test_a_failed_migration_ends_db_upgrade_and_serve_with_one_line(tmp_path: Path) -> None:
    """When a migration raised on SQLite, `storage.db.upgrade` left tortoise's aiosqlite connection
    open: `herald db upgrade` printed an 80-line traceback and then never exited (the connection's
    thread kept the process alive), and so did `herald serve` (HERALD_MIGRATE_ON_START=true); a
    deployment's migrate step or an upgrade script waited forever. Now both end with one line
    naming the migration and why, exit code 2 (the traceback is logged at DEBUG). The failure
    here is a table left behind by a half-done manual repair."""
    import asyncio

    url = f"sqlite://{tmp_path / 'herald.db'}"
    asyncio.run(migrate_to(url, "0007_kb_learning", "CREATE TABLE seen_request (id INTEGER PRIMARY KEY)"))

    result = herald("db", "upgrade", cwd=tmp_path, timeout=90, HERALD_DATABASE_URL=url)
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == ["herald: migration 0008_hardening failed: table \"seen_request\" already exists"]

    code, output = serve_until_listening(tmp_path, HERALD_DATABASE_URL=url)
    assert code == 2, output[-800:]
    assert "herald: cannot start: migration 0008_hardening failed: " in output and "Traceback" not in output, output


async def test_a_database_from_a_newer_version_is_refused(db_url: str, tmp_path: Path) -> None:
    """A database already migrated by a newer Herald (an upgrade rolled back to the previous image,
    or an old replica still running beside new ones) was accepted without a word: `herald db
    upgrade` said "database is up to date", `herald doctor` "every migration applied", and `herald
    serve` with HERALD_MIGRATE_ON_START=false served on a schema it does not know (a NOT NULL column
    it never writes fails its inserts). All three refuse it now, naming the unknown migration."""
    await storage_db.connect(db_url, run_migrations=False)
    try:
        await connections.get("default").execute_query(storage_db.placeholders(
            "INSERT INTO tortoise_migrations (app, name, applied_at) VALUES (?, ?, ?)"),
            ["models", "0099_from_a_newer_herald", await storage_db.database_now()])
    finally:
        await storage_db.close()
    refusal = "the database was migrated by a newer Herald (0099_from_a_newer_herald); run that version or newer"

    upgrade = herald("db", "upgrade", cwd=tmp_path, HERALD_DATABASE_URL=db_url)
    assert (upgrade.returncode, upgrade.stdout, upgrade.stderr) == (2, "", f"herald: {refusal}\n")

    doctor = herald("doctor", "--json", cwd=tmp_path, HERALD_DATABASE_URL=db_url)
    schema = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}["schema"]
    assert (doctor.returncode, schema["status"], schema["detail"]) == (1, "fail", refusal)

    for migrate_on_start in ("false", "true"):
        code, output = serve_until_listening(tmp_path, HERALD_DATABASE_URL=db_url,
                                             HERALD_MIGRATE_ON_START=migrate_on_start)
        assert code == 2 and f"herald: cannot start: {refusal}" in output, f"serve went on: exit {code}\n{output[-800:]}"


def test_a_command_refuses_a_database_with_pending_migrations_and_leaves_it_as_it_is(tmp_path: Path) -> None:
    """Every command but `herald audit verify` used to migrate the database first: `herald notices
    list` from a new version's image changed the schema under the old version's replicas still
    serving from it, behind the operator's back (README, Upgrades: `herald db upgrade` runs before
    the new version serves). A command now refuses such a database in one line, as `serve` with
    HERALD_MIGRATE_ON_START=false does; a new database still gets its schema from the first
    command of a fresh install."""
    import asyncio

    url = f"sqlite://{tmp_path / 'herald.db'}"
    asyncio.run(migrate_to(url, MIGRATIONS[-2]))
    refusal = (f"herald: the database is not up to date (1 pending migrations: {MIGRATIONS[-1]}); "
               "run `herald db upgrade` first")
    for command in (("notices", "list"), ("console-link", "cam@vendor.example")):
        result = herald(*command, cwd=tmp_path, HERALD_DATABASE_URL=url)
        assert (result.returncode, result.stderr.strip()) == (2, refusal), result

    async def applied() -> list[str]:
        await storage_db.connect(url, run_migrations=False)
        try:
            rows = await connections.get("default").execute_query_dict("SELECT name FROM tortoise_migrations")
            return sorted(r["name"] for r in rows)
        finally:
            await storage_db.close()

    assert asyncio.run(applied()) == MIGRATIONS[:-1]
    fresh = herald("notices", "list", cwd=tmp_path, HERALD_DATABASE_URL=f"sqlite://{tmp_path / 'new.db'}")
    assert fresh.returncode == 0, fresh
    assert herald("db", "upgrade", cwd=tmp_path, HERALD_DATABASE_URL=url).returncode == 0
    assert herald("notices", "list", cwd=tmp_path, HERALD_DATABASE_URL=url).returncode == 0


# ---- upgrading a deployment that has a year of data, while the old version serves ----------------

async def _pg(url: str):  # noqa: ANN202
    import asyncpg

    return await asyncpg.connect(storage_db.asyncpg_dsn(url))


async def _start_upgrade(tmp_path: Path, url: str) -> asyncio.subprocess.Process:
    """`herald db upgrade` started as its own process, not waited for."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "db", "upgrade", cwd=tmp_path, env=herald_env(HERALD_DATABASE_URL=url),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _upgrade_backend_waiting(watch, upgrade) -> int:  # noqa: ANN001
    """The pid of the backend on which the upgrade (a `herald db upgrade` process, or a task) waits
    for a lock (polled, bounded)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        pid = await watch.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock' AND query NOT ILIKE '%pg_advisory_lock%' LIMIT 1")
        if pid is not None:
            return pid
        if isinstance(upgrade, asyncio.Task) and upgrade.done():
            pytest.fail(f"the upgrade ended before it waited for a lock: {upgrade.exception()!r}")
        if not isinstance(upgrade, asyncio.Task) and upgrade.returncode is not None:
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
    await migrate_to(empty_db_url, BEFORE_DUE_SINCE, *_fail_the_record_of(empty_db_url, DUE_SINCE))

    first = herald("db", "upgrade", cwd=tmp_path, HERALD_DATABASE_URL=empty_db_url)
    assert first.returncode == 2, first  # the disk was full: one line, not a traceback
    assert len(first.stderr.splitlines()) == 1 and first.stderr.startswith(
        f"herald: migration {DUE_SINCE} failed: "), first.stderr[-800:]

    await _run_sql(empty_db_url, "DROP TRIGGER full_disk" + (
        "" if empty_db_url.startswith("sqlite") else " ON tortoise_migrations"))  # space freed

    again = herald("db", "upgrade", cwd=tmp_path, HERALD_DATABASE_URL=empty_db_url)
    assert (again.returncode, again.stdout.strip()) == (0, "database is up to date"), (
        f"running `herald db upgrade` again after the failure does not finish the upgrade:\n{again.stderr[-600:]}")


# ---- 2. no lock_timeout: an ALTER TABLE waiting for a report download stalls every query ---------

_SHORT_WAITS = storage_db.LockWaits(timeout=0.3, tries=40, first_pause=0.05)  # tries for ~15 s in all


async def _with_a_report_download(url: str) -> tuple:  # noqa: ANN202
    """A database as 0033 left it with rows, and a report download's snapshot open on delivery
    (what read_snapshot does on PostgreSQL): (its connection, its transaction)."""
    await migrate_to(url, BEFORE_DUE_SINCE)
    filler = await _pg(url)
    await fill_empty_tables(_AsyncpgAsTortoise(filler))
    await filler.close()
    import asyncpg

    snapshot = await asyncpg.connect(storage_db.asyncpg_dsn(url), server_settings={"application_name": "herald report"})
    report = snapshot.transaction(isolation="repeatable_read", readonly=True)
    await report.start()
    await snapshot.fetchval("SELECT count(*) FROM delivery WHERE notice_id = (SELECT MIN(id) FROM notice)")
    return snapshot, report


@pytest.mark.parametrize("empty_db_url", POSTGRES_ONLY, indirect=True)
async def test_an_upgrade_waiting_behind_a_report_download_does_not_stall_the_old_replicas(
        empty_db_url: str) -> None:  # noqa: F811 - the fixture
    """README, Upgrades and docker-compose.yml: `migrate` runs `herald db upgrade` while the old
    version's replicas still serve. A report download (`/reports/download`, `herald report`) reads
    the notice's copies in one REPEATABLE READ snapshot held for as long as the client takes to
    read the stream (storage.db.read_snapshot, reports._in_snapshot). Migration 0034's `ALTER TABLE
    delivery ADD COLUMN` needs ACCESS EXCLUSIVE on `delivery`: it waited for the download to end,
    with no lock_timeout, and every later statement on `delivery` queued behind it, reads too. So
    every acknowledgement, Send, outbox claim and console page of the old replicas hung for as long
    as the download lasted (measured on a copy of a year's data, 2M deliveries: a one-row SELECT on
    delivery by an old replica took 33.1 s while a 40 s snapshot was open; the migration itself
    needs 0.1 s). Slack wants its acknowledgement within 3 s.

    The migration now gives up waiting after a short lock_timeout (here 0.3 s) and tries again
    later: the old replica's one-row read gets through meanwhile, and the upgrade completes once
    the download has ended."""
    snapshot, report = await _with_a_report_download(empty_db_url)
    upgrade = asyncio.create_task(storage_db.upgrade(empty_db_url, lock_waits=_SHORT_WAITS))
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
        assert not upgrade.done(), "the upgrade gave up while the download was still being read"
        await report.rollback()  # the download ends
        await asyncio.wait_for(upgrade, 60)
        assert await watch.fetchval("SELECT count(*) FROM tortoise_migrations WHERE name = $1", DUE_SINCE) == 1
    finally:
        if not upgrade.done():
            upgrade.cancel()
        for conn in (snapshot, replica, watch):
            await conn.close()


@pytest.mark.parametrize("empty_db_url", POSTGRES_ONLY, indirect=True)
async def test_an_upgrade_that_never_gets_its_lock_names_who_holds_it(
        empty_db_url: str, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811 - the fixture
    """When the download outlasts every try, the upgrade stops with one line that names the session
    in the way (pid, application, state, how long its transaction has been open) and says to try
    again; each try that timed out is logged. Nothing of 0034 is left behind."""
    snapshot, report = await _with_a_report_download(empty_db_url)
    waits = storage_db.LockWaits(timeout=0.2, tries=3, first_pause=0.05)
    try:
        with caplog.at_level("WARNING", logger="storage.migrating"):
            with pytest.raises(storage_db.MigrationFailed) as failed:
                await asyncio.wait_for(storage_db.upgrade(empty_db_url, lock_waits=waits), 60)
        message = str(failed.value)
        assert message.startswith(f"migration {DUE_SINCE} failed: could not lock its tables in 3 tries over 1 s, "
                                  f"held by pid {snapshot.get_server_pid()} (herald report, idle in transaction, "
                                  "its transaction open for "), message
        assert message.endswith("; try again once that has ended") and "\n" not in message, message
        retries = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
        assert len(retries) == 2 and all(f"pid {snapshot.get_server_pid()} (herald report" in r for r in retries), retries
    finally:
        await report.rollback()
        await snapshot.close()
    conn = await _pg(empty_db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM information_schema.columns WHERE column_name = 'due_since'") == 0
        assert await conn.fetchval("SELECT count(*) FROM tortoise_migrations WHERE name = $1", DUE_SINCE) == 0
    finally:
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


# Migrations from before the rule whose index builds on existing tables share the migration with a
# new table (CreateModel): made non-atomic, a re-run after a failure would find the table there.
# They ran in 2026's first weeks, on small tables; every later migration follows the rule.
_INDEXES_BUILT_IN_A_TRANSACTION = {"0004_console", "0005_lanes", "0012_notice_engagement"}


def test_no_migration_builds_an_index_on_an_existing_table_while_holding_it() -> None:
    """Guards future migrations (the audit-trail index above, measured at 11.8 s of stopped audit
    writes, was one): on PostgreSQL an index on a table an earlier migration created is built
    CONCURRENTLY (`AddIndexConcurrently`, `CreateIndexConcurrently` from storage/migrations/_columns.py,
    in a migration marked `atomic = False`), never by tortoise's AddIndex or a raw CREATE INDEX in a
    RunSQL, which hold a SHARE lock on the table (no writes) for the whole build."""
    from tortoise.migrations import operations as ops

    from storage.migrations import _columns

    offences = []
    for name in MIGRATIONS:
        migration = importlib.import_module(f"storage.migrations.{name}").Migration
        created = {op.name.lower() for op in migration.operations if isinstance(op, ops.CreateModel)}
        for op in migration.operations:
            concurrent = isinstance(op, (_columns.AddIndexConcurrently, _columns.CreateIndexConcurrently))
            if concurrent and migration.atomic:
                offences.append(f"{name}: builds an index CONCURRENTLY but is not marked `atomic = False`")
            if concurrent or name in _INDEXES_BUILT_IN_A_TRANSACTION:
                continue
            if isinstance(op, (ops.AddIndex, ops.AddConstraint)) and op.model_name.lower() not in created:
                offences.append(f"{name}: {type(op).__name__} on {op.model_name}")
            if isinstance(op, ops.RunSQL):
                statements = [*op.sql, *getattr(op, "_postgres", [])] if isinstance(op.sql, list) else [op.sql]
                offences += [f"{name}: {sql[:60]}" for sql in statements
                             if "INDEX" in str(sql).upper() and "CREATE" in str(sql).upper()]
    assert not offences, "indexes built while holding their table on PostgreSQL:\n" + "\n".join(offences)


@pytest.mark.parametrize("empty_db_url", POSTGRES_ONLY, indirect=True)
async def test_an_interrupted_0010_is_finished_by_running_the_upgrade_again(
        empty_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811 - the fixture
    """On PostgreSQL 0010 is not one transaction: it adds its columns, backfills them a batch at a
    time (each its own transaction, so old replicas' writes to delivery wait for one batch at most,
    not the whole table: ~74 s at 2 million rows) and builds its indexes CONCURRENTLY. Cut short
    (here: the columns added, part of the rows backfilled, the delivery index left invalid by a
    failed CONCURRENTLY build, the migration unrecorded), running the upgrade again finishes it:
    every row gets its member's organisation, across batches, and the invalid index is rebuilt."""
    migration = importlib.import_module("storage.migrations.0010_notice_counts").Migration
    for op in migration.operations:
        if hasattr(op, "batch"):
            monkeypatch.setattr(op, "batch", 7)
    await migrate_to(empty_db_url, "0009_engagement")
    await storage_db.connect(empty_db_url, run_migrations=False)
    try:
        conn = connections.get("default")
        await fill_empty_tables(conn)
        for i in range(2):
            await _copy_row(conn, "organisation", external_id=f"'org{i}'", name=f"'Org {i}'")
        for i in range(20):
            await _copy_row(conn, "member", email=f"'m{i}@acme.example'",
                            organisation_id=f"(SELECT MIN(id) + {i % 3} FROM organisation)")
        for i in range(30):
            await _copy_row(conn, "delivery", member_id=f"(SELECT MIN(id) + {i % 21} FROM member)", kind=f"'k{i}'")
    finally:
        await storage_db.close()
    await migrate_to(empty_db_url, "0010_notice_counts")
    index = await _index_on(empty_db_url, "delivery", "organisation_id")
    await _run_sql(empty_db_url, "DELETE FROM tortoise_migrations WHERE name = '0010_notice_counts'",
                   "UPDATE delivery SET organisation_id = NULL WHERE id % 2 = 0",
                   f"UPDATE pg_index SET indisvalid = FALSE WHERE indexrelid = '{index}'::regclass")

    await storage_db.upgrade(empty_db_url)

    conn = await _pg(empty_db_url)
    try:
        wrong = await conn.fetch("SELECT d.id, d.organisation_id, m.organisation_id AS member_org FROM delivery d "
                                 "JOIN member m ON m.id = d.member_id "
                                 "WHERE d.organisation_id IS DISTINCT FROM m.organisation_id")
        assert [dict(r) for r in wrong] == []
        assert await conn.fetchval("SELECT count(DISTINCT organisation_id) FROM delivery") == 3
        assert await conn.fetchval("SELECT indisvalid FROM pg_index WHERE indexrelid = $1::regclass", index) is True
        assert await conn.fetchval("SELECT count(*) FROM tortoise_migrations") == len(MIGRATIONS)
    finally:
        await conn.close()


async def _index_on(url: str, table: str, column: str) -> str:
    conn = await _pg(url)
    try:
        return await conn.fetchval("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                   "WHERE i.indrelid = $1::regclass AND pg_get_indexdef(c.oid) LIKE $2",
                                   table, f"%{column}%")
    finally:
        await conn.close()
