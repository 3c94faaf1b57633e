"""`delivery.send_started_at`: when the copy's first attempt that may have posted it was claimed.

A copy in doubt (its earlier attempt may have landed: a crash, a lost answer) is looked for in the
DM's history before it is sent again. Slack's conversations.history gives an app distributed
outside the Marketplace 15 messages a page and 1 request a minute, and the look can come minutes
after the attempt: reading only the newest page missed the earlier copy behind 15 newer messages,
and the member got it twice. The look now reads only what came after this time (`oldest`) and pages
back to it. Written by the statement that claims the row (no extra round trip); null on rows
claimed before, which are looked for without a lower bound.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0026_question_suggested_entry')]

    initial = False

    operations = [
        ops.AddField(model_name='Delivery', name='send_started_at', field=fields.DatetimeField(null=True)),
    ]
