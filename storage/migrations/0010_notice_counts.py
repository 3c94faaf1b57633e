"""The console's notice page at 100,000 recipients: deliveries and acknowledgements carry the
member's organisation (as of the send / the click), so the per-organisation counts are read from
one index each instead of joining every row to its member.

New columns: delivery.organisation_id, acknowledgement.organisation_id (plain integers, null for
rows written before this migration and not backfilled; readers fall back to the member's
organisation for those). New indexes: delivery (notice_id, kind, organisation_id, status) and
acknowledgement (notice_id, revision, organisation_id, member_id).
"""

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0009_engagement')]

    initial = False

    operations = [
        ops.AddField(model_name='Delivery', name='organisation_id', field=fields.IntField(null=True)),
        ops.AddField(model_name='Acknowledgement', name='organisation_id', field=fields.IntField(null=True)),
        ops.RunSQL([
            "UPDATE delivery SET organisation_id = (SELECT m.organisation_id FROM member m WHERE m.id = delivery.member_id)",
            "UPDATE acknowledgement SET organisation_id = "
            "(SELECT m.organisation_id FROM member m WHERE m.id = acknowledgement.member_id)",
        ]),
        ops.AddIndex(model_name='Delivery', index=Index(fields=['notice_id', 'kind', 'organisation_id', 'status'])),
        ops.AddIndex(model_name='Acknowledgement',
                     index=Index(fields=['notice_id', 'revision', 'organisation_id', 'member_id'])),
    ]
