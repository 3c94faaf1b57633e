"""Small helpers for the raw SQL the read models need: placeholders, time arithmetic and
timestamps that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tortoise import connections

from storage import db as storage_db


def postgres() -> bool:
    return storage_db.dialect() == "postgres"


placeholders = storage_db.placeholders
as_datetime = storage_db.as_datetime


async def rows(query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    return await connections.get("default").execute_query_dict(placeholders(query), [_param(p) for p in params])


async def execute(query: str, params: Sequence[Any] = ()) -> None:
    await connections.get("default").execute_query(placeholders(query), [_param(p) for p in params])


def _param(value: Any) -> Any:
    """SQLite compares the text tortoise stores ("2026-01-05 09:00:00+00:00"); PostgreSQL wants
    a datetime."""
    if isinstance(value, datetime) and not postgres():
        return value.astimezone(UTC).isoformat(sep=" ")
    return value


def seconds_between(later: str, earlier: str) -> str:
    """SQL for the seconds from `earlier` to `later` (both column expressions or `?`)."""
    if postgres():
        return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"
    return f"((julianday({later}) - julianday({earlier})) * 86400.0)"


