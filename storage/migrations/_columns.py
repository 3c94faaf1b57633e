"""Operations the migrations share (tortoise's loader skips modules whose name starts with `_`).

tortoise's AddField writes `ADD COLUMN ... NOT NULL` without a DEFAULT, which fails on a table that
has rows (SQLite: "Cannot add a NOT NULL column with default value NULL"; PostgreSQL: the column
"contains null values"). A migration that adds a NOT NULL column to an existing table uses
`AddColumn` instead: the same schema state as AddField, the column added by the given statement,
which gives it a DEFAULT for the rows already there.
"""

from __future__ import annotations

from typing import Any

from tortoise.migrations import operations as ops

from storage.db import dialect


class AddColumn(ops.AddField):
    def __init__(self, model_name: str, name: str, field: Any, *, sql: str) -> None:
        super().__init__(model_name, name, field)
        self._sql = sql

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:  # noqa: ANN001
        if state_editor is not None:
            await state_editor._run_sql(self._sql)


# ---- PostgreSQL: indexes and backfills on big tables, without holding them ------------------------
#
# A plain CREATE INDEX holds a SHARE lock on its table for the whole build (no row can be written:
# 11.8 s at 5 million audit events), and an UPDATE of every row in the migration's transaction holds
# every row until it commits. On PostgreSQL these operations build the index CONCURRENTLY (inserts
# and updates go on) and backfill in batches, each batch its own short transaction. Neither can run
# inside a transaction, so a migration using them says `atomic = False`: on PostgreSQL its
# operations then run one by one (storage.migrating), and each must be safe to run again, since a
# failure part-way leaves the earlier ones done and the migration unrecorded. SQLite has one writer
# anyway: there they do what they always did, in the migration's transaction.

def _is_postgres(state_editor: Any) -> bool:
    return dialect(state_editor.client) == "postgres"


async def build_index_concurrently(state_editor: Any, name: str, create_sql: str) -> None:
    """Run `create_sql` (a `CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS name ...`) outside any
    transaction, after dropping an invalid index `name` that an interrupted build left (IF NOT
    EXISTS would keep it: present, never used, and written to by every insert). The build waits for
    the transactions already open on the table (a report download's snapshot, say) without stopping
    anyone, so it has no lock_timeout."""
    if state_editor.collect_sql:
        state_editor.collected_sql.append(create_sql)
        return
    async with state_editor.client.acquire_connection() as connection:  # one session for SET ... RESET
        await connection.execute("SET lock_timeout = 0")
        try:
            invalid = await connection.fetchval(
                "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(quote_ident($1))", name)
            if invalid:
                await connection.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
            await connection.execute(create_sql)
        finally:
            await connection.execute("RESET lock_timeout")


class AddIndexConcurrently(ops.AddIndex):
    """tortoise's AddIndex (same state, same index name); on PostgreSQL built CONCURRENTLY."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:  # noqa: ANN001
        if state_editor is None or not _is_postgres(state_editor):
            await super().database_forward(app_label, old_state, new_state, state_editor)
            return
        model = new_state.apps.get_model(f"{app_label}.{self.model_name}")
        name = state_editor._index_name_for_model(model, self.index)
        sql = state_editor._get_index_sql(model, list(self.index.field_names), index_name=name,
                                          index_type=self.index.INDEX_TYPE, extra=self.index.extra)
        sql = sql.strip().rstrip(";").replace("CREATE INDEX ", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ", 1)
        await build_index_concurrently(state_editor, name, sql)


class CreateIndexConcurrently(ops.RunSQL):
    """A raw `CREATE INDEX IF NOT EXISTS name ON ...` (`sqlite`, and `postgres` where the spelling
    differs); on PostgreSQL built CONCURRENTLY."""

    def __init__(self, name: str, *, sqlite: str, postgres: str | None = None) -> None:
        super().__init__([sqlite], reverse_sql=[f'DROP INDEX IF EXISTS "{name}"'])
        self.name = name
        self._postgres = (postgres or sqlite).replace("CREATE INDEX IF NOT EXISTS ",
                                                      "CREATE INDEX CONCURRENTLY IF NOT EXISTS ", 1)

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:  # noqa: ANN001
        if state_editor is None or not _is_postgres(state_editor):
            await super().database_forward(app_label, old_state, new_state, state_editor)
            return
        await build_index_concurrently(state_editor, self.name, self._postgres)


class AddNullableColumn(ops.AddField):
    """tortoise's AddField of a nullable column; on PostgreSQL `ADD COLUMN IF NOT EXISTS` with
    the type given (`postgres_type`, as AddField spells it), so that running it again is harmless."""

    def __init__(self, model_name: str, name: str, field: Any, *, table: str, postgres_type: str) -> None:
        super().__init__(model_name, name, field)
        self._postgres = f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS "{name}" {postgres_type}'

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:  # noqa: ANN001
        if state_editor is None or not _is_postgres(state_editor):
            await super().database_forward(app_label, old_state, new_state, state_editor)
            return
        await state_editor._run_sql(self._postgres)


class BackfillInBatches(ops.RunSQL):
    """`UPDATE table SET assignment WHERE pending` for every row: `sqlite`'s statements in the
    migration's transaction there; on PostgreSQL `batch` rows at a time in id order, each UPDATE its
    own transaction, so old replicas' writes to the table wait for one batch at most. `pending`
    says which rows are still to do, so a run after an interruption takes up where it stopped."""

    def __init__(self, *, sqlite: list[str], table: str, assignment: str, pending: str, batch: int = 5000) -> None:
        super().__init__(sqlite)
        self.table, self.assignment, self.pending, self.batch = table, assignment, pending, batch

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:  # noqa: ANN001
        if state_editor is None or not _is_postgres(state_editor):
            await super().database_forward(app_label, old_state, new_state, state_editor)
            return
        if state_editor.collect_sql:
            state_editor.collected_sql.append(f"-- in batches: UPDATE {self.table} SET {self.assignment} "
                                              f"WHERE {self.pending}")
            return
        client, after = state_editor.client, 0
        while True:
            rows = await client.execute_query_dict(
                f"SELECT MAX(id) AS upto FROM (SELECT id FROM {self.table} WHERE id > $1 AND {self.pending} "
                f"ORDER BY id LIMIT {int(self.batch)}) AS batch", [after])
            upto = rows[0]["upto"]
            if upto is None:
                return
            await client.execute_query(f"UPDATE {self.table} SET {self.assignment} "
                                       f"WHERE id > $1 AND id <= $2 AND {self.pending}", [after, upto])
            after = upto
