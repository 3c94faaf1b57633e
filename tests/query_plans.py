"""What a statement costs as history grows: whether the database can answer it from an index, on
SQLite and PostgreSQL, and the statements a piece of code sends (observed, passed on unchanged).

For reads the periodic jobs or every click repeat over tables nothing ever empties (delivery,
audit_event, digest_run, escalation): an empty test database cannot show the cost, its plan can."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tortoise import connections

from storage import db as storage_db


async def uses_an_index_on(query: Any, column: str) -> tuple[bool, str]:
    """Whether the database can answer `query` (a tortoise QuerySet) from an index on `column`
    (PostgreSQL: an index of the table starts with `column`, or is partial on it; SQLite: the plan
    searches an index with it) rather than reading the whole table. Returns (answer, what was seen)."""
    conn = connections.get("default")
    table = query.model._meta.db_table
    if storage_db.dialect() == "postgres":
        _, found = await conn.execute_query("SELECT indexdef FROM pg_indexes WHERE tablename = $1", [table])
        defs = [r["indexdef"] for r in found]
        leading = [d.split("(", 1)[1].split(",")[0].split(")")[0].strip().strip('"') for d in defs]
        partial = [d for d in defs if re.search(rf"WHERE .*\b{column}\b", d)]
        return column in leading or bool(partial), "; ".join(defs)
    _, plan = await conn.execute_query(f"EXPLAIN QUERY PLAN {query.sql(params_inline=True)}")
    details = " | ".join(str(dict(r).get("detail")) for r in plan)
    searched = re.search(rf"SEARCH {table} USING (COVERING )?INDEX \S+ \([^)]*\b{column}\b", details)
    return bool(searched), details


async def captured(monkeypatch: pytest.MonkeyPatch, work: Callable[[], Awaitable[Any]]) -> list[tuple[str, list]]:
    """The statements `work()` sends to the database (observed, then passed on unchanged)."""
    conn = connections.get("default")
    seen: list[tuple[str, list]] = []
    originals = {name: getattr(conn, name) for name in ("execute_query", "execute_query_dict")}

    def recorder(original):  # noqa: ANN001, ANN202
        async def recording(sql: str, values=None):  # noqa: ANN001, ANN202
            seen.append((sql, list(values or [])))
            return await original(sql, values)
        return recording

    for name, original in originals.items():
        monkeypatch.setattr(conn, name, recorder(original))
    try:
        await work()
    finally:
        for name, original in originals.items():
            monkeypatch.setattr(conn, name, original)
    return seen


async def plan_of(sql: str, values: list) -> str:
    """The plan of one statement; on PostgreSQL with sequential scans priced out, so an index that
    can serve it is used whatever the table's size."""
    conn = connections.get("default")
    if storage_db.dialect() == "postgres":
        async with conn._in_transaction() as tx:  # noqa: SLF001 - SET LOCAL needs one connection
            await tx.execute_script("SET LOCAL enable_seqscan = off")
            _, plan = await tx.execute_query(f"EXPLAIN {sql}", values)
        return " | ".join(str(next(iter(dict(r).values()))) for r in plan)
    _, plan = await conn.execute_query(f"EXPLAIN QUERY PLAN {sql}", values)
    return " | ".join(str(dict(r).get("detail")) for r in plan)
