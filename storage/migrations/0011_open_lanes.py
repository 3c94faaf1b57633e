"""The outbox at 100,000 recipients: partial indexes on the rows still to be sent, by lane.

Claiming a lane's next rows walked the primary key past every row already delivered, and finding
the lanes with due work read every unfinished row of every lane (a DISTINCT over 60,000 rows,
about 170 ms of PostgreSQL CPU, several times a second while a broadcast runs:
bench/scale.py). With an index holding only the unfinished rows, keyed by lane and id, a claim
reads the lane's next rows directly and the lanes are found by skipping from one lane to the next
(bot/core/delivery/notice_rows.due_send_lanes).

Partial indexes are plain SQL: the ORM's index declarations cannot say WHERE. The same statement
works on SQLite and PostgreSQL.

On PostgreSQL the indexes are built CONCURRENTLY (storage/migrations/_columns.py): the migration is not
atomic (`atomic = False`), and building again is harmless. Same end schema as before.
"""

from tortoise import migrations

from storage.migrations._columns import CreateIndexConcurrently


class Migration(migrations.Migration):
    dependencies = [('models', '0010_notice_counts')]

    initial = False
    atomic = False  # PostgreSQL: CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [
        CreateIndexConcurrently(
            "delivery_open_lane",
            sqlite="CREATE INDEX IF NOT EXISTS delivery_open_lane ON delivery "
                   "(platform, workspace_external_id, id) WHERE status IN ('pending', 'sending')"),
        CreateIndexConcurrently(
            "outbound_message_open_lane",
            sqlite="CREATE INDEX IF NOT EXISTS outbound_message_open_lane ON outbound_message "
                   "(platform, workspace_external_id, id) WHERE status IN ('pending', 'sending')"),
    ]
