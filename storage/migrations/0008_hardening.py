"""Hardening (issue 10): `seen_request`, the requests already acted on, so that a replayed Slack
request or a repeated Teams activity has no second effect."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0007_kb_learning')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SeenRequest',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('key', fields.CharField(unique=True, max_length=100)),
                ('seen_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'seen_request', 'app': 'models', 'pk_attr': 'id', 'table_description': 'An inbound request Herald has acted on, remembered until a replay of it could no longer'},
            bases=['Model'],
        ),
    ]
