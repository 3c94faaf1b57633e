"""`slack_org_team`: the workspaces of an Enterprise Grid organisation its org-wide install may
act in.

A directory entry naming one of the org's workspaces (T...) instead of the org (E...) had no
token: Herald knew the org only by its enterprise id. The mapping is now learnt from
auth.teams.list at the install and from the team_access_granted / team_access_revoked events, and
such entries are served with the org's token and lane.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0031_audit_event_kind_time')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SlackOrgTeam',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('team_id', fields.CharField(unique=True, max_length=100)),
                ('enterprise_id', fields.CharField(db_index=True, max_length=100)),
                ('name', fields.CharField(default='', max_length=200)),
                ('granted_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'slack_org_team', 'app': 'models', 'pk_attr': 'id',
                     'table_description': "A workspace of an Enterprise Grid org its org-wide install may act in"},
            bases=['Model'],
        ),
    ]
