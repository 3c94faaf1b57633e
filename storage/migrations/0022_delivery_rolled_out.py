"""`delivery.rolled_out`: the copy went to a member held back from an A/B test's first share.

The rollout gave the held-back members' copies the winner's variant and nothing else told them
apart, so the A/B comparison counted them in the winner's delivered, acknowledged and time to
acknowledge figures, and in its significance tests, as if they had been in the experiment. The
rollout now marks the copies it releases, and the comparison and the report show them apart.

Copies rolled out before this migration are marked from the audit trail: a member whose
`notice.variant_assigned` event says `held: true` was held back at the send, so their original
copies of that notice that have a variant now got it from the rollout (or, back in the directory
after it, with the winner). The event's data is JSON text on SQLite (compact) and JSONB on
PostgreSQL (", " and ": "), hence the two patterns.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

from storage.migrations._columns import AddColumn

_HELD_BACK = (
    "EXISTS (SELECT 1 FROM audit_event a WHERE a.notice_id = delivery.notice_id "
    "AND a.member_id = delivery.member_id AND a.kind = 'notice.variant_assigned' "
    "AND (CAST(a.data AS TEXT) LIKE '%\"held\":true%' OR CAST(a.data AS TEXT) LIKE '%\"held\": true%'))"
)


class Migration(migrations.Migration):
    dependencies = [('models', '0021_notice_unreached_organisations')]

    initial = False

    operations = [
        AddColumn("Delivery", "rolled_out", fields.BooleanField(default=False),
                  sql="ALTER TABLE delivery ADD COLUMN rolled_out BOOL NOT NULL DEFAULT FALSE"),
        ops.RunSQL(["UPDATE delivery SET rolled_out = TRUE WHERE kind = 'notice' AND variant <> '' AND " + _HELD_BACK]),
    ]
