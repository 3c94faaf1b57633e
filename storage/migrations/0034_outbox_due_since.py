"""`delivery.due_since`, `outbound_message.due_since`: when the row became due to be sent.

`herald_outbox_oldest_due_age_seconds` ("how long the oldest has been due", the gauge an operator
alerts on for a stuck broadcast) was read from `next_attempt_at`, which every deferral moves
forward (a 429's Retry-After, a retry's backoff, the re-check of refused credentials): an hour of
429s kept it under a minute. `due_since` is set when the row is queued (or queued again: a
requeue, a roll-out, a hold until quiet hours end) and left alone by retries. Rows still open get
their `next_attempt_at` (the best there is); the others stay null.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0033_workspace_installed_at')]

    initial = False

    operations = [
        ops.AddField(model_name='Delivery', name='due_since', field=fields.DatetimeField(null=True)),
        ops.AddField(model_name='OutboundMessage', name='due_since', field=fields.DatetimeField(null=True)),
        ops.RunSQL([
            "UPDATE delivery SET due_since = next_attempt_at WHERE status IN ('pending', 'sending')",
            "UPDATE outbound_message SET due_since = next_attempt_at WHERE status IN ('pending', 'sending')",
        ]),
    ]
