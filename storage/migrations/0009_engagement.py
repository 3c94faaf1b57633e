"""The console's engagement page: active members by role (and organisation, for a CAM's view)
read from an index instead of every member row."""

from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0008_hardening')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='Member',
            index=Index(fields=['active', 'role', 'organisation_id']),
        ),
    ]
