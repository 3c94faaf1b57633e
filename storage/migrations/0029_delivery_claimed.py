"""A partial index on the claimed copies (`delivery.claimed_by`), for the outbox's heartbeat.

While a replica holds any lane its heartbeat renews its rows' claims every few seconds
(bot.core.delivery.lanes.renew_claims). claimed_by had no index and the statement no other indexed
predicate, so each beat read every delivery row ever written (~1.5 million after a year), on
SQLite holding the write lock for the scan. Only the rows in flight hold a claim, so the index
holds only those (WHERE claimed_by <> ''), and the heartbeat finds a worker's rows by a range on
its token prefix. On PostgreSQL the index is in code point order (COLLATE "C"), as the heartbeat's
range compares: under a database's own collation the strings starting with a prefix need not sort
between the prefix and its successor.

On PostgreSQL the index is built CONCURRENTLY (storage/migrations/_columns.py): the migration is not
atomic (`atomic = False`), and building again is harmless. Same end schema as before.
"""

from tortoise import migrations

from storage.migrations._columns import CreateIndexConcurrently


class Migration(migrations.Migration):
    dependencies = [('models', '0028_delivery_history_read_to')]

    initial = False
    atomic = False  # PostgreSQL: CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [
        CreateIndexConcurrently(
            "delivery_claimed",
            sqlite="CREATE INDEX IF NOT EXISTS delivery_claimed ON delivery (claimed_by) WHERE claimed_by <> ''",
            postgres='CREATE INDEX IF NOT EXISTS delivery_claimed ON delivery (claimed_by COLLATE "C") '
                     "WHERE claimed_by <> ''"),
    ]
