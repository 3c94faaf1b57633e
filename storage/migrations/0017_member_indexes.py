"""Indexes for the per-member reads of the periodic jobs at 100,000 members.

`platform_account` had no index on member_id, so a member's accounts (the target of a journey
step, a digest, a hand-off relay) were a sequential scan of the whole table; `delivery` had none
starting with member_id, so a member's digest rows were a scan of the whole unique index, growing
with every notice ever sent (bench/periodic_scale.py). New indexes: platform_account (member_id)
and delivery (member_id, status, created_at), which also serves run_digests' page of members with
digest rows (keyset on member_id).

On PostgreSQL the indexes are built CONCURRENTLY
(storage/migrations/_columns.py): the migration is not atomic (`atomic = False`), and every
operation is safe to run again. Same end schema as before.
"""

from tortoise import migrations
from tortoise.indexes import Index

from storage.migrations._columns import AddIndexConcurrently


class Migration(migrations.Migration):
    dependencies = [('models', '0016_workspace_token_fingerprint')]

    initial = False
    atomic = False  # PostgreSQL: CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [
        AddIndexConcurrently(model_name='PlatformAccount', index=Index(fields=['member_id'])),
        AddIndexConcurrently(model_name='Delivery', index=Index(fields=['member_id', 'status', 'created_at'])),
    ]
