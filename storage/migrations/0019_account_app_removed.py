"""`platform_account.app_removed_at`: when the member removed Herald in Teams (installationUpdate
"remove" in their 1:1 chat), None while it is installed.

Herald ignored the removal: every later copy for the member was sent and refused with 403, and
when they added Herald again the copies that failed meanwhile stayed failed. The removal is now
recorded: copies for the account fail at once with the reason, its reminders wait, and the next
install ("add") clears it and puts the failed copies of live notices back in the outbox.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0018_member_timezone_chosen')]

    initial = False

    operations = [
        ops.AddField(model_name="PlatformAccount", name="app_removed_at",
                     field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
    ]
