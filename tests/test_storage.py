import pytest

from storage import db as storage_db
from storage.models import Organisation, SeenRequest


async def test_migrated_database_round_trips_a_row(db: str) -> None:
    await Organisation.create(external_id="acme", name="Acme")
    assert (await Organisation.get(external_id="acme")).name == "Acme"
    assert await storage_db.ping()


async def test_execute_many_atomic_writes_every_row_or_none(db: str) -> None:
    """One statement for many rows, all or none, on both databases (on PostgreSQL without the
    BEGIN/COMMIT round trips: asyncpg's executemany is atomic by itself)."""
    sql = "INSERT INTO seen_request (key, seen_at, expires_at) VALUES (?, ?, ?)"
    now = await storage_db.database_now()
    await storage_db.execute_many_atomic(sql, [("a", now, now), ("b", now, now)])
    assert await SeenRequest.all().order_by("key").values_list("key", flat=True) == ["a", "b"]
    with pytest.raises(Exception):  # noqa: B017, PT011 - each driver raises its own unique-constraint error
        await storage_db.execute_many_atomic(sql, [("c", now, now), ("a", now, now)])
    assert await SeenRequest.all().order_by("key").values_list("key", flat=True) == ["a", "b"]
