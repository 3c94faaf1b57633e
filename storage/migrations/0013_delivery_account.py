"""An index on each copy's platform account (`delivery.account_id`).

An Acknowledge click names its presser by platform, workspace and user id. Without this index the
presser's copy could only be found by reading every delivered copy of the notice and matching
their accounts (bench/ack_groups.py: 41.8 ms per group of 10 clicks at 100,000 recipients against
12.1 ms at 1,000); with it, by the account's unique key and then this index, whatever the size of
the notice. It also spares PostgreSQL a read of every copy each time a directory import deletes an
account (`ON DELETE SET NULL` looks for the rows that point at it).

On PostgreSQL the index is built CONCURRENTLY (storage/migrations/_columns.py): the migration is not
atomic (`atomic = False`), and building again is harmless. Same end schema as before.
"""

from tortoise import migrations

from storage.migrations._columns import CreateIndexConcurrently


class Migration(migrations.Migration):
    dependencies = [('models', '0012_notice_engagement')]

    initial = False
    atomic = False  # PostgreSQL: CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [
        CreateIndexConcurrently(
            "delivery_account", sqlite="CREATE INDEX IF NOT EXISTS delivery_account ON delivery (account_id)"),
    ]
