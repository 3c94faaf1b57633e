"""Indexes for the per-member reads of the periodic jobs at 100,000 members.

`platform_account` had no index on member_id, so a member's accounts (the target of a journey
step, a digest, a hand-off relay) were a sequential scan of the whole table; `delivery` had none
starting with member_id, so a member's digest rows were a scan of the whole unique index, growing
with every notice ever sent (bench/periodic_scale.py). New indexes: platform_account (member_id)
and delivery (member_id, status, created_at), which also serves run_digests' page of members with
digest rows (keyset on member_id).
"""

from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0016_workspace_token_fingerprint')]

    initial = False

    operations = [
        ops.AddIndex(model_name='PlatformAccount', index=Index(fields=['member_id'])),
        ops.AddIndex(model_name='Delivery', index=Index(fields=['member_id', 'status', 'created_at'])),
    ]
