from storage import db as storage_db
from storage.models import Organisation


async def test_migrated_database_round_trips_a_row(db: str) -> None:
    await Organisation.create(external_id="acme", name="Acme")
    assert (await Organisation.get(external_id="acme")).name == "Acme"
    assert await storage_db.ping()
