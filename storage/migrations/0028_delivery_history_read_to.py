"""`delivery.history_read_to`: where a look for a copy in doubt, cut short by the rate limit, goes on.

A copy in doubt is looked for in the DM's history, page by page back to `send_started_at`, before
it is sent again. Outside the Marketplace Slack answers conversations.history once a minute with 15
messages a page, so a look through a busy DM takes a page a minute. Where a paused look went on
was held in the memory of the process that had started it: another replica taking over the lane,
or Herald restarted, began again from the newest page, many minutes per copy. It is now stored with
the copy (the ts of the oldest message read) and cleared when the look concludes.
"""

from tortoise import fields, migrations

from storage.migrations._columns import AddColumn


class Migration(migrations.Migration):
    dependencies = [('models', '0027_delivery_send_started_at')]

    initial = False

    operations = [
        AddColumn("Delivery", "history_read_to", fields.CharField(max_length=32, default=""),
                  sql="ALTER TABLE delivery ADD COLUMN history_read_to VARCHAR(32) NOT NULL DEFAULT ''"),
    ]
