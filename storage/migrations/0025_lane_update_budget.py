"""`delivery_lane.update_tokens` / `update_tokens_at`: a lane's in-place update budget, shared.

Slack's `chat.update` is Tier 3 (about 50 a minute per workspace). Its token bucket lived in each
replica's memory and started full, so every replica that took a lane spent a whole minute's worth
of updates of its own: two replicas in the same minute sent twice what Slack allows and drew 429s.
The bucket now goes with the lane: the replica taking the lease reads it in the statement that
takes the lease and writes it back in the one that gives the lease up. Null: never spent (full).
A time in the future is a pause: a 429 on `chat.update` (Slack's limits are per method) stops the
workspace's updates, not its new messages, until then.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0024_member_timezone_from_directory')]

    initial = False

    operations = [
        ops.AddField(model_name='DeliveryLane', name='update_tokens', field=fields.FloatField(null=True)),
        ops.AddField(model_name='DeliveryLane', name='update_tokens_at', field=fields.DatetimeField(null=True)),
    ]
