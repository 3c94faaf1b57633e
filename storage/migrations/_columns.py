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


class AddColumn(ops.AddField):
    def __init__(self, model_name: str, name: str, field: Any, *, sql: str) -> None:
        super().__init__(model_name, name, field)
        self._sql = sql

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:  # noqa: ANN001
        if state_editor is not None:
            await state_editor._run_sql(self._sql)


class RunSQLByDialect(ops.RunSQL):
    """RunSQL whose statements differ by database (`postgres` for PostgreSQL, `sqlite` otherwise):
    an index's COLLATE clause, say, has no spelling both accept."""

    def __init__(self, *, sqlite: list[str], postgres: list[str], reverse_sql: list[str]) -> None:
        super().__init__(sqlite, reverse_sql=reverse_sql)
        self._postgres = postgres

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:  # noqa: ANN001
        if state_editor is not None and state_editor.client.capabilities.dialect == "postgres":
            await self._run_sql(state_editor, self._postgres)
            return
        await super().database_forward(app_label, old_state, new_state, state_editor)
