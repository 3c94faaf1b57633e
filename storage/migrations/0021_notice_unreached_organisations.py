"""`notice.unreached_organisations`: the partners a notice's audience matched that got no copy.

A report's per-organisation roll-up was built from the copies written, so a partner the audience
matched but nobody there received (its one contact deactivated by a directory import, no member
with the topic's roles, everyone opted out) was simply missing from "proof this recall reached
every distributor". Sending now records those organisations with the reason, as of the send, and
the report lists each with 0 recipients. Null for notices sent before: not known.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0020_question_thread')]

    initial = False

    operations = [
        ops.AddField(model_name='Notice', name='unreached_organisations', field=fields.JSONField(null=True)),
    ]
