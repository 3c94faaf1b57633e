"""The console's engagement page: active members by role (and organisation, for a CAM's view)
read from an index instead of every member row.

On PostgreSQL the indexes are built CONCURRENTLY
(storage/migrations/_columns.py): the migration is not atomic (`atomic = False`), and every
operation is safe to run again. Same end schema as before.
"""

from tortoise import migrations
from tortoise.indexes import Index

from storage.migrations._columns import AddIndexConcurrently


class Migration(migrations.Migration):
    dependencies = [('models', '0008_hardening')]

    initial = False
    atomic = False  # PostgreSQL: CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [
        AddIndexConcurrently(
            model_name='Member',
            index=Index(fields=['active', 'role', 'organisation_id']),
        ),
    ]
