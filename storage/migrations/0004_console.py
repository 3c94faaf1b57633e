"""The console (issue 15): sign-in links and sessions, and the sandbox platform's inbox.

New tables: `console_sign_in` (single-use links, hashed), `console_session` (hashed session
tokens), `sandbox_message` (what the sandbox channel "sent"). New indexes, so the console's
per-notice counts, timeline and audit summary read indexes instead of 100,000 rows
(bench/console.py): delivery (notice_id, kind, status, delivered_at, member_id), acknowledgement
(notice_id, revision, acknowledged_at, member_id), audit_event (notice_id, kind).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0003_surveys')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ConsoleSession',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('staff', fields.ForeignKeyField('models.Staff', source_field='staff_id', db_constraint=True, to_field='id', related_name='console_sessions', on_delete=OnDelete.CASCADE)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ended_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'console_session', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A signed-in console session (the browser holds the token in an HttpOnly cookie, the'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ConsoleSignIn',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('staff', fields.ForeignKeyField('models.Staff', source_field='staff_id', db_constraint=True, to_field='id', related_name='console_sign_ins', on_delete=OnDelete.CASCADE)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('issued_via', fields.CharField(default='', max_length=20)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'console_sign_in', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A single-use sign-in link to the console, handed out in chat or by the CLI. Only a SHA-256'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SandboxMessage',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user_id', fields.CharField(db_index=True, max_length=100)),
                ('delivery_id', fields.IntField(null=True, unique=True)),
                ('notice_id', fields.IntField(null=True)),
                ('title', fields.CharField(default='', max_length=300)),
                ('blocks', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('card', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('version', fields.IntField(default=1)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'sandbox_message', 'app': 'models', 'pk_attr': 'id', 'table_description': 'What Herald "sent" a member on the sandbox platform, as Slack and as Teams would show it:'},
            bases=['Model'],
        ),
        ops.AddIndex(
            model_name='Acknowledgement',
            index=Index(fields=['notice_id', 'revision', 'acknowledged_at', 'member_id']),
        ),
        ops.AddIndex(
            model_name='AuditEvent',
            index=Index(fields=['notice_id', 'kind']),
        ),
        ops.AddIndex(
            model_name='Delivery',
            index=Index(fields=['notice_id', 'kind', 'status', 'delivered_at', 'member_id']),
        ),
    ]
