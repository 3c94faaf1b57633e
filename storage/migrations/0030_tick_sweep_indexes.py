"""Indexes for two sweeps the periodic tick makes every minute on every replica over tables that
only grow.

`run_digests` first looks for runs left pending (digest_run: status 'pending', created before a
cut-off) and `send_escalations` for escalations to send (escalation: status pending or sending,
by claim). Neither table had an index on status (only their unique keys), so with nothing to
do, the normal case, each sweep read every digest run (a row per member per period) and every
escalation ever written. New indexes: digest_run (status, created_at) and escalation (status,
claimed_until).

On PostgreSQL the indexes are built CONCURRENTLY
(storage/migrations/_columns.py): the migration is not atomic (`atomic = False`), and every
operation is safe to run again. Same end schema as before.
"""

from tortoise import migrations
from tortoise.indexes import Index

from storage.migrations._columns import AddIndexConcurrently


class Migration(migrations.Migration):
    dependencies = [('models', '0029_delivery_claimed')]

    initial = False
    atomic = False  # PostgreSQL: CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [
        AddIndexConcurrently(model_name='DigestRun', index=Index(fields=['status', 'created_at'])),
        AddIndexConcurrently(model_name='Escalation', index=Index(fields=['status', 'claimed_until'])),
    ]
