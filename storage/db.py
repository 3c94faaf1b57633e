"""Database connection and schema migrations (tortoise-orm's own migration engine)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.migrations.executor import MigrationExecutor
from tortoise.transactions import in_transaction

from storage.migrating import BlockerWatch, LockWaits, RecordingExecutor

log = logging.getLogger(__name__)


def _sqlite_timestamp(value: datetime) -> str:
    """How SQLite is given a timestamp, by the ORM and by raw statements alike. It keeps them as
    text and compares them as text, so an aware one is written in UTC: the ORM normalised the
    values of the rows it creates but wrote `.update()` and filter values with their own offset,
    and `paused_until <= now` then compared 09:00+01:00 with 08:30+00:00 as text (the pause ended
    an hour late). PostgreSQL's timestamptz compares instants anyway."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.isoformat(" ")


importlib.import_module("tortoise.backends.sqlite.executor")  # registers tortoise's adapters, so ours replaces its
sqlite3.register_adapter(datetime, _sqlite_timestamp)

MODELS_MODULE = "storage.models"
MIGRATIONS_MODULE = "storage.migrations"
LOCK_WAITS = LockWaits()  # how long migrations wait for a lock on PostgreSQL, and how often they try


def tortoise_config(db_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": _connection_config(db_url)},
        "apps": {
            "models": {
                "models": [MODELS_MODULE],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _is_postgres(db_url: str) -> bool:
    return db_url.startswith(("postgres://", "postgresql://", "asyncpg://"))


def _connection_config(db_url: str) -> str | dict[str, Any]:
    """The URL, and on PostgreSQL the pool's `reset` hook (see `_keep_session`)."""
    if not _is_postgres(db_url):
        return db_url
    from tortoise.backends.base.config_generator import expand_db_url

    config = expand_db_url(db_url)
    config["credentials"]["reset"] = _keep_session
    return config


async def _keep_session(connection: Any) -> None:
    """What asyncpg's pool runs when a connection comes back, instead of its default
    `Connection.reset()`: that sends one more statement (`SELECT pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL`) after EVERY query run outside a transaction, doubling its
    round trips. Herald leaves no session state on pooled connections (no advisory locks,
    cursors, LISTEN or SET: LISTEN has a connection of its own, see `storage.wakeups`), and the
    pool still rolls back a transaction left open before this hook is called."""


def sqlite_file(db_url: str) -> Path | None:
    """The file a SQLite URL names (None for PostgreSQL and in-memory databases)."""
    if not db_url.startswith("sqlite:"):
        return None
    from tortoise.backends.base.config_generator import expand_db_url

    path = str(expand_db_url(db_url)["credentials"].get("file_path", ""))
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path).expanduser().resolve()


def check_sqlite_folder(db_url: str) -> None:
    """Raise FileNotFoundError (an OSError, which the CLI reports as one line) when a SQLite URL
    names a file in a folder that does not exist: tortoise's migration engine then waited forever
    instead of failing (a typo in the path, an unmounted volume)."""
    path = sqlite_file(db_url)
    if path is not None and not path.parent.is_dir():
        raise FileNotFoundError(f"the SQLite file {path} is in a folder that does not exist: {path.parent}")


# pg_advisory_lock's key for migrations: fixed, so every Herald process on a database takes the same one
MIGRATION_LOCK_KEY = 0x4845_5241_4C44_4442  # "HERALDDB"
MIGRATION_LOCK_POLL_SECONDS = 0.5
# pg_advisory_xact_lock's key for directory imports (`take_turns`): one import at a time
DIRECTORY_IMPORT_LOCK_KEY = 0x4845_5241_4C44_4449  # "HERALDDI"
# pg_advisory_xact_lock's key for knowledge-base approvals: each checks what the others approved
KB_APPROVAL_LOCK_KEY = 0x4845_5241_4C44_4B42  # "HERALDKB"
# pg_advisory_xact_lock's class for a script's send (`take_turns(..., of=author id)`): one author's
# identical-command check and draft at a time (a 32-bit key: the two-key form, apart from those above)
SCRIPT_SEND_LOCK_CLASS = 0x4853_4E44  # "HSND"


async def take_turns(conn: Any, key: int, *, of: int | None = None) -> None:
    """Inside a transaction on `conn`: wait until no other transaction holds `key` (with `of`: the
    pair (key, of), e.g. one author's turn; `key` then fits 32 bits), and hold it until this one
    ends (PostgreSQL's pg_advisory_xact_lock). On SQLite nothing: one writer at a time already,
    as long as what must take turns reads inside the write transaction."""
    if dialect(conn) != "postgres":
        return
    if of is None:
        await conn.execute_query("SELECT pg_advisory_xact_lock($1)", [key])
    else:
        await conn.execute_query("SELECT pg_advisory_xact_lock($1::int4, $2::int4)", [key, of])


class SchemaNotCurrent(RuntimeError):
    """The database's schema is not the one this version of Herald was written for (migrations
    missing, or applied by a newer Herald); the message names them and what to do."""


class NoHeraldDatabase(RuntimeError):
    """The URL names no Herald database: a SQLite file that does not exist, or a database no Herald
    migration was applied to (a restore that did not happen, a wrong HERALD_DATABASE_URL)."""


def shown_url(db_url: str) -> str:
    """`db_url` fit to print: without its password and query (pool size, TLS options)."""
    parts = urlsplit(db_url)
    if parts.password is None and not parts.query:
        return db_url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1) if parts.password else parts.netloc
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class UpgradeFailed(RuntimeError):
    """`upgrade` failed; the message is one line (the traceback is logged at DEBUG)."""


class MigrationFailed(UpgradeFailed):
    """A migration raised while it was applied, or never got its locks; `name` is the migration, `reason` one line of why
    (the traceback is logged at DEBUG)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"migration {name} failed: {reason}")
        self.name = name
        self.reason = reason


async def upgrade(db_url: str, *, lock_waits: LockWaits = LOCK_WAITS) -> None:
    """Apply every pending migration, each recorded in its own transaction (storage.migrating).
    Safe to run on every start and on every replica: on PostgreSQL they take turns
    (`_migration_lock`), so a second replica waits for the first and then finds nothing to do;
    before, the loser of the race crashed on a unique violation. On PostgreSQL a statement waits
    at most `lock_waits.timeout` for a lock, and a migration that timed out is tried again.

    Raises SchemaNotCurrent, before changing anything, on a database a newer Herald migrated,
    MigrationFailed when a migration raises or never gets its locks, UpgradeFailed for anything
    else but an unreachable database. Its connections are closed whatever happens: an aiosqlite
    connection left open keeps the process alive after the error."""
    check_sqlite_folder(db_url)
    _forget_compiled_sql()
    running: list[str] = []  # the migration being applied, while it is

    def track(event: str, app_label: str, name: str) -> None:
        if event == "apply_start":
            running[:] = [name]
        elif event == "apply_done":
            running.clear()

    config = _migration_config(db_url, lock_waits)
    async with _migration_lock(db_url) as lock_connection:
        try:
            await Tortoise.init(config=config, init_connections=False)
            connection = connections.get("default")
            await _refuse_unknown_migrations(connection)
            async with _blocker_watch(lock_connection, lock_waits) as watch:
                executor = RecordingExecutor(connection, config["apps"], lock_waits=lock_waits, watch=watch)
                await executor.apply_pending(progress=track)
        except Exception as exc:
            raise _upgrade_failure(exc, running[0] if running else None) from exc
        finally:
            await Tortoise.close_connections()


def _upgrade_failure(exc: Exception, migration: str | None) -> Exception:
    """What `upgrade` raises for `exc`: one line for a person, the traceback logged at DEBUG."""
    if isinstance(exc, SchemaNotCurrent) or unavailable(exc) is not None:
        return exc
    log.debug("upgrade failed (migration %s)", migration, exc_info=exc)
    if migration is not None:
        return MigrationFailed(migration, _one_line(exc))
    return UpgradeFailed(f"upgrade failed: {_one_line(exc)}")


def _migration_config(db_url: str, lock_waits: LockWaits) -> dict[str, Any]:
    """tortoise's config for the migrations: on PostgreSQL every session of their pool has a
    `lock_timeout` and an application_name of this process's own (what `_blocker_watch` looks for)."""
    config = tortoise_config(db_url)
    connection = config["connections"]["default"]
    if isinstance(connection, dict):
        connection["credentials"]["server_settings"] = {
            "lock_timeout": f"{int(lock_waits.timeout * 1000)}ms", "application_name": _MIGRATION_APPLICATION}
    return config


_MIGRATION_APPLICATION = f"herald db upgrade {os.getpid()}"


@contextlib.asynccontextmanager
async def _blocker_watch(lock_connection: Any, lock_waits: LockWaits) -> AsyncIterator[BlockerWatch | None]:
    if lock_connection is None:
        yield None
        return
    async with BlockerWatch(lock_connection, _MIGRATION_APPLICATION, min(0.25, lock_waits.timeout / 4)) as watch:
        yield watch


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.asynccontextmanager
async def _migration_lock(db_url: str) -> AsyncIterator[Any]:
    """On PostgreSQL, a session-level advisory lock held around the migrations on a connection of
    its own (tortoise's migration engine opens and closes its own); closing it releases the lock,
    whatever happened. It yields that connection (None on SQLite: one process's file, nothing to
    take turns for). The lock is tried every MIGRATION_LOCK_POLL_SECONDS rather than waited for: a
    session waiting in pg_advisory_lock holds a snapshot, which the other replica's CREATE INDEX
    CONCURRENTLY waits to see end, while it holds the lock (a deadlock PostgreSQL cannot see)."""
    if not _is_postgres(db_url):
        yield None
        return
    import asyncpg

    connection = await asyncpg.connect(asyncpg_dsn(db_url))
    try:
        while not await connection.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY):
            await asyncio.sleep(MIGRATION_LOCK_POLL_SECONDS)
        yield connection
    finally:
        await connection.close()


def asyncpg_dsn(db_url: str) -> str:
    """A tortoise PostgreSQL URL as asyncpg's DSN, without its query (pool options asyncpg does not know)."""
    parts = urlsplit(db_url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))


def unavailable(exc: BaseException) -> str | None:
    """One line for a person when `exc` says the database cannot be reached or refused the login
    (the drivers' messages name the host, database or role, never the password); None for any
    other error. asyncpg's refusals (a role that does not exist, a wrong password, a database
    that does not exist) are not OSErrors and used to come out as a traceback."""
    import asyncpg

    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):  # and InvalidPasswordError
        return f"the database refused the login ({exc})"
    if isinstance(exc, (OSError, ConnectionError, asyncpg.PostgresConnectionError, asyncpg.InvalidCatalogNameError,
                        asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)):
        return f"cannot reach the database ({exc})"
    return None


def _forget_compiled_sql() -> None:
    """tortoise caches compiled SQL per table name, not per dialect; one process that talks to
    SQLite and then PostgreSQL (tests, `herald` tools) must not reuse the other's placeholders."""
    EXECUTOR_CACHE.clear()


async def connect(db_url: str, *, run_migrations: bool = True) -> None:
    check_sqlite_folder(db_url)
    _forget_compiled_sql()
    if run_migrations:
        await upgrade(db_url)
    await Tortoise.init(config=tortoise_config(db_url))


async def connect_current(db_url: str) -> None:
    """Connect for a command other than `serve` and `herald db upgrade`. A new database (no
    migration applied yet) gets the schema, as the first command on a fresh install needs; an
    existing one must already be current (SchemaNotCurrent otherwise). Migrating it is
    `herald db upgrade`'s job, run when the operator chooses (README, Upgrades): a command of a new
    version must not change the schema under replicas of the old one that still serve from it."""
    await connect(db_url, run_migrations=False)
    try:
        if not await _executor(connections.get("default")).recorder.applied_migrations():
            await upgrade(db_url)  # closes every connection, ours too
            await connect(db_url, run_migrations=False)
        else:
            await require_current_schema()
    except BaseException:
        await close()
        raise


async def connect_existing(db_url: str) -> None:
    """Connect to a Herald database as it is, for a command that only reads it (`herald audit
    verify`): NoHeraldDatabase, with nothing created, when there is none. Connecting would create a
    missing SQLite file, and a check run on a database without the schema must not look like a
    trail that was altered."""
    missing = sqlite_file(db_url)
    if missing is not None and not missing.exists():
        raise NoHeraldDatabase(f"no Herald database at {shown_url(db_url)}")
    await connect(db_url, run_migrations=False)
    if not await _executor(connections.get("default")).recorder.applied_migrations():
        await close()
        raise NoHeraldDatabase(f"no Herald database at {shown_url(db_url)}")


async def close() -> None:
    await Tortoise.close_connections()
    _forget_compiled_sql()


def _executor(connection: BaseDBAsyncClient) -> MigrationExecutor:
    return MigrationExecutor(connection, tortoise_config("sqlite://:memory:")["apps"])


async def _refuse_unknown_migrations(connection: BaseDBAsyncClient) -> None:
    """Raise SchemaNotCurrent when the database has migrations applied that this code does not
    have: a newer Herald migrated it (an upgrade rolled back to the previous image, an old replica
    beside new ones). Its schema has tables or NOT NULL columns this code does not know and would
    not write; tortoise takes such a database as up to date."""
    executor = _executor(connection)
    await executor.loader.build_graph()
    applied = await executor.recorder.applied_migrations()
    unknown = [key.name for key in applied if key not in executor.loader.graph.nodes]
    if unknown:
        raise SchemaNotCurrent(f"the database was migrated by a newer Herald ({', '.join(unknown)}); "
                               "run that version or newer")


async def pending_migrations() -> list[str]:
    """Names of the migrations not yet applied to the connected database, in the order they run.
    Raises SchemaNotCurrent if a newer Herald migrated it."""
    connection = connections.get("default")
    await _refuse_unknown_migrations(connection)
    steps = await _executor(connection).plan()
    return [f"{step.migration.name}" for step in steps if not step.backward]


async def require_current_schema() -> None:
    """Refuse to serve on a database that `herald db upgrade` has not brought up to date, or that
    a newer Herald migrated."""
    pending = await pending_migrations()
    if pending:
        raise SchemaNotCurrent(f"the database is not up to date ({len(pending)} pending migrations: "
                               f"{', '.join(pending)}); run `herald db upgrade` first")


async def database_now() -> datetime:
    """The database server's clock (UTC), to compare with this machine's."""
    if dialect() == "postgres":
        rows = await connections.get("default").execute_query_dict("SELECT now() AS now")
        value = rows[0]["now"]
    else:
        rows = await connections.get("default").execute_query_dict(
            "SELECT strftime('%Y-%m-%dT%H:%M:%f', 'now') AS now")
        value = rows[0]["now"]
    return as_datetime(value)  # type: ignore[return-value]


def as_datetime(value: Any) -> datetime | None:
    """A timestamp read by raw SQL (text on SQLite, datetime on PostgreSQL) as aware UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def dialect(conn: BaseDBAsyncClient | None = None) -> str:
    """'sqlite' or 'postgres' for `conn` (a connection or transaction), the default connection if None."""
    return (conn if conn is not None else connections.get("default")).capabilities.dialect


def placeholders(query: str, postgres: bool | None = None) -> str:
    """Raw statements are written with `?` placeholders; PostgreSQL (asyncpg) numbers them
    `$1, $2, ...`. `postgres` None: as the default connection's dialect."""
    if not (dialect() == "postgres" if postgres is None else postgres):
        return query
    parts = query.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]


def columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows as one list per column: the parameters of a PostgreSQL ``unnest($1::int[], ...)``, which
    writes any number of rows in one statement (one execution, where an executemany runs one per row)."""
    return [list(column) for column in zip(*rows, strict=True)]


async def write_rows(query: str, rows: Sequence[Sequence[Any]], *, postgres: str,
                     using_db: BaseDBAsyncClient | None = None) -> None:
    """Write `rows`, all or none, in as few executions as each database allows.

    SQLite: `query` (`?` placeholders) once per row, in `using_db`'s transaction or a new one.
    PostgreSQL: `postgres`, one statement for every row, its parameters `$1, $2, ...` the rows'
    columns as arrays (``unnest($1::int[], $2::text[], ...)``): one round trip and one execution
    where an executemany runs the statement once per row on the server. Atomic by itself, so it
    needs no transaction of its own."""
    if not rows:
        return
    conn = using_db or connections.get("default")
    if dialect(conn) == "postgres":
        await conn.execute_query_dict(postgres, columns(rows))
    elif using_db is not None:
        await using_db.execute_many(query, list(rows))
    else:
        async with in_transaction() as tx:
            await tx.execute_many(query, list(rows))


def in_ids(column: str, ids: Sequence[int]) -> tuple[str, Any]:
    """A predicate "`column` is one of `ids`" with one parameter, whatever the number of ids:
    `= ANY(?::int[])` on PostgreSQL, `IN (SELECT value FROM json_each(?))` on SQLite. Building
    and planning an IN list of thousands of placeholders cost more than the query."""
    if dialect() == "postgres":
        return f"{column} = ANY(?::int[])", [int(i) for i in ids]
    return f"{column} IN (SELECT value FROM json_each(?))", json.dumps([int(i) for i in ids])


async def select_locked(table: str, columns: str, where: str, params: list[Any], *, order_by: str = "id",
                        limit: int | None = None, skip_locked: bool = False,
                        conn: Any = None) -> list[dict[str, Any]]:
    """`SELECT columns FROM table WHERE where ORDER BY order_by [LIMIT]`, with the rows locked
    (`FOR UPDATE [SKIP LOCKED]`) on PostgreSQL until the caller's transaction ends; `?`
    placeholders. Use it inside `in_transaction()` (pass its connection, or the default one
    inside it is used). The ORM cannot do this for plain values: tortoise-orm (1.1.9) drops
    `select_for_update()` from `.values()` and `.values_list()` queries without a word, so the
    rows were read but not locked (checked against PostgreSQL 15)."""
    query = f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {order_by}"
    args = list(params)
    if limit is not None:
        query += " LIMIT ?"
        args.append(limit)
    if dialect() == "postgres":
        query += " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"
    client = conn if conn is not None else connections.get("default")
    return await client.execute_query_dict(placeholders(query), args)


@contextlib.asynccontextmanager
async def read_snapshot() -> AsyncIterator[BaseDBAsyncClient]:
    """A read-only transaction in which every query of this context (the current task, and tasks
    it starts) sees the database as of entering it: what compliance reads in several statements
    (a report's head, summary and rows) then agrees with itself, whatever commits meanwhile.

    PostgreSQL: REPEATABLE READ READ ONLY on a pooled connection. SQLite: a connection of its own
    to the same file (`query_only`), in a transaction that starts reading at once; in WAL mode
    (tortoise's default, which Herald keeps) it holds its snapshot without blocking the process's
    connection, so writers go on while a long download streams. (A transaction on the process's
    one connection would hold its lock, and every other query, for the whole download.) An
    in-memory database has no file a second connection could open: its one connection is used."""
    if dialect() == "postgres":
        async with in_transaction() as conn:
            await conn.execute_script("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield conn
        return
    main = connections.get("default")
    path = str(getattr(main, "filename", "") or "")
    if not path or path == ":memory:" or path.startswith("file:"):
        async with in_transaction() as conn:
            yield conn
        return
    from tortoise.backends.sqlite.client import SqliteClient

    reader = SqliteClient(file_path=path, connection_name=main.connection_name, query_only="ON")
    try:
        async with reader._in_transaction() as conn:
            await conn.execute_query("SELECT count(*) FROM sqlite_master")  # BEGIN is deferred: take the snapshot now
            yield conn
    finally:
        await reader.close()


async def ping(timeout: float = 3.0) -> bool:
    try:
        await asyncio.wait_for(connections.get("default").execute_query("SELECT 1"), timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        log.warning("database ping failed", exc_info=True)
        return False
