"""`outbound_message.request_started`: the platform request of the row's current claim may have started.

A lane claims up to HERALD_DELIVERY_LANE_INFLIGHT rows at once and they then wait for the
workspace's pace and the replica's concurrency before their request. After a kill -9 every row
taken back from an expired claim was settled as *interrupted* (at most once: a plain message
cannot be looked for afterwards), also those whose request never left, so they were never sent.
The flag is set just before the request; a row taken back without it is sent normally.
"""

from tortoise import fields, migrations

from storage.migrations._columns import AddColumn


class Migration(migrations.Migration):
    dependencies = [('models', '0022_delivery_rolled_out')]

    initial = False

    operations = [
        AddColumn("OutboundMessage", "request_started", fields.BooleanField(default=False),
                  sql="ALTER TABLE outbound_message ADD COLUMN request_started BOOL NOT NULL DEFAULT FALSE"),
    ]
