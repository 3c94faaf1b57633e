"""Delivery lanes (issue 12): one row per (platform, workspace/tenant) with the lease that lets
one replica at a time send in it, and the 429 pause every replica honours.

New table: `delivery_lane`. New index: delivery (status, claimed_until) for rows whose claim ran
out (in doubt after a crash).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0004_console')]

    initial = False

    operations = [
        ops.CreateModel(
            name='DeliveryLane',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('platform', fields.CharField(max_length=10)),
                ('workspace_external_id', fields.CharField(max_length=100)),
                ('leased_by', fields.CharField(default='', max_length=64)),
                ('lease_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('paused_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_served_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'delivery_lane', 'app': 'models', 'unique_together': (('platform', 'workspace_external_id'),), 'pk_attr': 'id', 'table_description': 'One (platform, workspace/tenant) queue of outbound requests: its lease (one replica works a'},
            bases=['Model'],
        ),
        ops.AddIndex(
            model_name='Delivery',
            index=Index(fields=['status', 'claimed_until']),
        ),
    ]
