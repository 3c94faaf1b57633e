"""`notice.failure_reason`: why a scheduled notice could not be published at its time.

A scheduled notice whose topic or audience roles were removed from `config/topics.yaml` made
every tick raise, on every replica, and the tick's other jobs (reminders, escalations, digests,
...) never ran again. Such a notice is now marked `failed` with the reason kept here (and in its
`notice.failed` audit event), and its author is told.
"""

from tortoise import fields, migrations

from storage.migrations._columns import AddColumn


class Migration(migrations.Migration):
    dependencies = [('models', '0014_delivery_update_seq')]

    initial = False

    operations = [
        AddColumn("Notice", "failure_reason", fields.CharField(default="", max_length=500),
                  sql="ALTER TABLE notice ADD COLUMN failure_reason VARCHAR(500) NOT NULL DEFAULT ''"),
    ]
