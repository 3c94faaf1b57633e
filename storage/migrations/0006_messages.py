"""One engine for everything Herald sends (issue 12, item 4): `outbound_message` holds the direct
messages (journey steps and nudges, CAM notes, digests, escalations, hand-offs, relayed answers)
that the outbox sends in each workspace's lane, after the notices, under the platform's limits.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0005_lanes')]

    initial = False

    operations = [
        ops.CreateModel(
            name='OutboundMessage',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('key', fields.CharField(unique=True, max_length=200)),
                ('purpose', fields.CharField(max_length=20)),
                ('reference', fields.IntField(default=0)),
                ('priority', fields.SmallIntField(default=3)),
                ('member', fields.ForeignKeyField('models.Member', source_field='member_id', null=True, db_constraint=True, to_field='id', related_name='outbound_messages', on_delete=OnDelete.CASCADE)),
                ('staff', fields.ForeignKeyField('models.Staff', source_field='staff_id', null=True, db_constraint=True, to_field='id', related_name='outbound_messages', on_delete=OnDelete.SET_NULL)),
                ('account', fields.ForeignKeyField('models.PlatformAccount', source_field='account_id', null=True, db_constraint=True, to_field='id', related_name='outbound_messages', on_delete=OnDelete.SET_NULL)),
                ('platform', fields.CharField(max_length=10)),
                ('workspace_external_id', fields.CharField(default='', max_length=100)),
                ('recipient', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('message', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('status', fields.CharField(default='pending', max_length=20)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('claimed_by', fields.CharField(default='', max_length=64)),
                ('claimed_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('channel_id', fields.CharField(default='', max_length=200)),
                ('message_id', fields.CharField(default='', max_length=200)),
                ('error', fields.TextField(default='', unique=False)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'outbound_message', 'app': 'models', 'indexes': [Index(fields=['status', 'next_attempt_at']), Index(fields=['purpose', 'reference'])], 'pk_attr': 'id', 'table_description': 'A direct message (not a notice) waiting for, or sent by, the outbox: everything Herald sends'},
            bases=['Model'],
        ),
    ]
