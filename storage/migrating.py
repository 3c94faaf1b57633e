"""How `storage.db.upgrade` applies migrations: tortoise's executor, with three differences.

1. A migration's row in `tortoise_migrations` is written in the migration's own transaction.
   tortoise's `MigrationExecutor.migrate` commits the migration and then records it in another
   statement: an upgrade stopped between the two (a full disk, a lost connection, a kill) left the
   schema changed and the migration pending, and every later `herald db upgrade` failed on it
   ("column ... already exists"). A migration marked `atomic = False` (on PostgreSQL: indexes built
   CONCURRENTLY, backfills in batches; see storage/migrations/_columns.py) cannot be one
   transaction: its operations are each safe to run again instead, and its record follows them.
   On SQLite every migration is one transaction, as before.
2. On PostgreSQL every statement waits at most `LockWaits.timeout` for a lock (`lock_timeout`). A
   statement waiting for an ACCESS EXCLUSIVE lock (ALTER TABLE) queues every later statement on its
   table behind it, plain reads included: behind a report download's snapshot the old replicas'
   acknowledgements, sends and console pages hung for as long as the download lasted. A migration
   that timed out is rolled back and tried again after a pause (`LockWaits`), and when it never
   gets its lock the upgrade fails naming the sessions it waited for.
3. Forward only: `herald db upgrade` never migrates backwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tortoise.migrations.executor import MigrationExecutor
from tortoise.migrations.migration import Migration
from tortoise.migrations.recorder import MigrationRecorder
from tortoise.migrations.schema_generator.state import State
from tortoise.transactions import in_transaction

log = logging.getLogger(__name__)

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout (and NOWAIT) failure


@dataclass(frozen=True)
class LockWaits:
    """How long a migration's statement waits for a lock on PostgreSQL, and how often the
    migration is tried: `tries` attempts with pauses of `first_pause`, doubled each time between
    them up to `longest_pause` (the defaults: 10 tries, 0.5 s waits, pauses 0.5+1+2+4+8+8+8+8+8 s:
    about 50 s in all). Every wait stalls the old replicas' statements on that table for as long
    (they queue behind the waiting ALTER), so it stays well inside Slack's 3 s."""

    timeout: float = 0.5
    tries: int = 10
    first_pause: float = 0.5
    longest_pause: float = 8.0

    def pauses(self) -> list[float]:
        return [min(self.first_pause * 2 ** i, self.longest_pause) for i in range(self.tries - 1)]


@dataclass(frozen=True)
class Blocker:
    """A session a migration waited for (from pg_stat_activity)."""

    pid: int
    application_name: str
    state: str
    transaction_seconds: float | None

    def describe(self) -> str:
        open_for = ("" if self.transaction_seconds is None
                    else f", its transaction open for {self.transaction_seconds:.0f} s")
        return f"pid {self.pid} ({self.application_name or 'no application_name'}, {self.state or 'unknown'}{open_for})"


class LockNotAcquired(RuntimeError):
    """A migration did not get a lock in any of its tries; the message names who held it."""


def waited_for_a_lock(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) is PostgreSQL's lock_timeout."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class BlockerWatch:
    """Which sessions the upgrade's statements wait for, read every `interval` seconds on a
    connection of its own (an asyncpg connection not used for anything else meanwhile): once a
    lock_timeout has fired the wait is over and PostgreSQL no longer says who was in the way."""

    _QUERY = ("SELECT b.pid, b.application_name, b.state, EXTRACT(EPOCH FROM now() - b.xact_start)::float8 AS open_s "
              "FROM pg_stat_activity w CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid) "
              "JOIN pg_stat_activity b ON b.pid = bp.pid "
              "WHERE w.application_name = $1 AND w.wait_event_type = 'Lock' ORDER BY b.pid")

    def __init__(self, connection: Any, application_name: str, interval: float) -> None:
        self._connection = connection
        self._application_name = application_name
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.seen: dict[int, Blocker] = {}

    async def __aenter__(self) -> BlockerWatch:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            try:
                for row in await self._connection.fetch(self._QUERY, self._application_name):
                    self.seen[row["pid"]] = Blocker(row["pid"], row["application_name"] or "", row["state"] or "",
                                                    row["open_s"])
            except Exception:  # noqa: BLE001 - the watch only adds detail to a message
                log.debug("could not read the sessions the upgrade waits for", exc_info=True)
            await asyncio.sleep(self._interval)


class RecordingExecutor(MigrationExecutor):
    """tortoise's executor applying the pending migrations as the module docstring says."""

    def __init__(self, connection: Any, apps_config: dict[str, dict], *, lock_waits: LockWaits,
                 watch: BlockerWatch | None) -> None:
        super().__init__(connection, apps_config)
        self.lock_waits = lock_waits
        self.watch = watch

    async def apply_pending(self, progress: Callable[[str, str, str], object]) -> None:
        await self.loader.build_graph()
        await self.recorder.ensure_schema(self._schema_editor(atomic=False))
        applied = set(await self.recorder.applied_migrations())
        plan = self._migration_plan(None, applied, self.loader.graph)
        state = await self._project_state(applied)
        for step in plan:
            progress("apply_start", step.migration.app_label, step.migration.name)
            state = await self._apply_with_retries(step.migration, state)
            progress("apply_done", step.migration.app_label, step.migration.name)

    async def _apply_with_retries(self, migration: Migration, state: State) -> State:
        if self.watch is not None:
            self.watch.seen.clear()
        for pause in [*self.lock_waits.pauses(), None]:
            try:
                return await self._apply(migration, state.clone())
            except Exception as exc:
                if not (self.watch is not None and waited_for_a_lock(exc)):
                    raise
                if pause is None:
                    raise LockNotAcquired(self._gave_up(migration)) from exc
                log.warning("migration %s waited %.1f s for a lock (held by %s); trying again in %.1f s",
                            migration.name, self.lock_waits.timeout, self._blockers(), pause)
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _apply(self, migration: Migration, state: State) -> State:
        """Apply `migration` to a copy of the state and record it: in one transaction, unless it is
        marked `atomic = False` and this is PostgreSQL."""
        if migration.atomic or self.connection.capabilities.dialect != "postgres":
            async with in_transaction(self.connection.connection_name) as transaction:
                editor = self._schema_editor(atomic=True)
                editor.client = transaction
                state = await migration.apply(state, schema_editor=editor)
                await MigrationRecorder(transaction).record_applied(migration.app_label, migration.name)
            return state
        state = await migration.apply(state, schema_editor=self._schema_editor(atomic=False))
        await self.recorder.record_applied(migration.app_label, migration.name)
        return state

    def _blockers(self) -> str:
        seen = self.watch.seen.values() if self.watch is not None else ()
        return ", ".join(b.describe() for b in seen) or "a session that had ended when looked for"

    def _gave_up(self, migration: Migration) -> str:
        waits = self.lock_waits
        total = waits.tries * waits.timeout + sum(waits.pauses())
        return (f"could not lock its tables in {waits.tries} tries over {total:.0f} s, held by "
                f"{self._blockers()}; try again once that has ended")
