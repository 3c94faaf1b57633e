"""`workspace.installed_at`: when the installation whose token the row holds was stored.

Slack retries an event that did not get its 200 (after 1 and 5 minutes) and does not promise
events in order: the `app_uninstalled` of a removal could arrive after the partner's admin had
added Herald again, and it deactivated the new installation. A removal whose `event_time` is
before `installed_at` is now ignored. Rows stored before this migration have none (removals are
taken as before).
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0032_slack_org_team')]

    initial = False

    operations = [
        ops.AddField(model_name='Workspace', name='installed_at', field=fields.DatetimeField(null=True)),
    ]
