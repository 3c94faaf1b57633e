"""The console's notice page at 100,000 recipients: deliveries and acknowledgements carry the
member's organisation (as of the send / the click), so the per-organisation counts are read from
one index each instead of joining every row to its member.

New columns: delivery.organisation_id, acknowledgement.organisation_id (plain integers, null for
rows written before this migration and not backfilled; readers fall back to the member's
organisation for those). New indexes: delivery (notice_id, kind, organisation_id, status) and
acknowledgement (notice_id, revision, organisation_id, member_id).

On PostgreSQL the columns are added IF NOT EXISTS, the backfill runs in batches of short transactions
(only the rows not done yet) and the indexes are built CONCURRENTLY
(storage/migrations/_columns.py): the migration is not atomic (`atomic = False`), and every
operation is safe to run again. Same end schema as before.
"""

from tortoise import fields, migrations
from tortoise.indexes import Index

from storage.migrations._columns import AddIndexConcurrently, AddNullableColumn, BackfillInBatches

_ORGANISATION = "organisation_id = (SELECT m.organisation_id FROM member m WHERE m.id = {table}.member_id)"
_NOT_YET = "organisation_id IS NULL"  # the rows a run cut short did not reach


class Migration(migrations.Migration):
    dependencies = [('models', '0009_engagement')]

    initial = False
    atomic = False  # PostgreSQL: CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [
        AddNullableColumn('Delivery', 'organisation_id', fields.IntField(null=True),
                          table='delivery', postgres_type='INT'),
        AddNullableColumn('Acknowledgement', 'organisation_id', fields.IntField(null=True),
                          table='acknowledgement', postgres_type='INT'),
        BackfillInBatches(
            sqlite=["UPDATE delivery SET organisation_id = "
                    "(SELECT m.organisation_id FROM member m WHERE m.id = delivery.member_id)"],
            table='delivery', assignment=_ORGANISATION.format(table='delivery'), pending=_NOT_YET),
        BackfillInBatches(
            sqlite=["UPDATE acknowledgement SET organisation_id = "
                    "(SELECT m.organisation_id FROM member m WHERE m.id = acknowledgement.member_id)"],
            table='acknowledgement', assignment=_ORGANISATION.format(table='acknowledgement'), pending=_NOT_YET),
        AddIndexConcurrently(model_name='Delivery',
                             index=Index(fields=['notice_id', 'kind', 'organisation_id', 'status'])),
        AddIndexConcurrently(model_name='Acknowledgement',
                             index=Index(fields=['notice_id', 'revision', 'organisation_id', 'member_id'])),
    ]
