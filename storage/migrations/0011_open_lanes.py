"""The outbox at 100,000 recipients: partial indexes on the rows still to be sent, by lane.

Claiming a lane's next rows walked the primary key past every row already delivered, and finding
the lanes with due work read every unfinished row of every lane (a DISTINCT over 60,000 rows,
about 170 ms of PostgreSQL CPU, several times a second while a broadcast runs:
bench/scale.py). With an index holding only the unfinished rows, keyed by lane and id, a claim
reads the lane's next rows directly and the lanes are found by skipping from one lane to the next
(bot/core/delivery/notice_rows.due_send_lanes).

Partial indexes are plain SQL: the ORM's index declarations cannot say WHERE. The same statement
works on SQLite and PostgreSQL.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0010_notice_counts')]

    initial = False

    operations = [
        ops.RunSQL(
            [
                "CREATE INDEX IF NOT EXISTS delivery_open_lane ON delivery "
                "(platform, workspace_external_id, id) WHERE status IN ('pending', 'sending')",
                "CREATE INDEX IF NOT EXISTS outbound_message_open_lane ON outbound_message "
                "(platform, workspace_external_id, id) WHERE status IN ('pending', 'sending')",
            ],
            reverse_sql=[
                "DROP INDEX IF EXISTS delivery_open_lane",
                "DROP INDEX IF EXISTS outbound_message_open_lane",
            ],
        ),
    ]
