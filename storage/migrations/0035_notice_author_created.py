"""An index on notice (author_id, created_at), for an author's recent notices.

`herald send` looks for a notice its author sent from the identical command in the last minutes
(bot.core.notices.sending.identical_recent_notice), so a retried script does not send it twice.
notice had no index on its author (only (status, scheduled_at)), so every send from a script
would read every notice ever written.

On PostgreSQL the index is built CONCURRENTLY (storage/migrations/_columns.py): the migration is
not atomic, and running it again is safe.
"""

from tortoise import migrations
from tortoise.indexes import Index

from storage.migrations._columns import AddIndexConcurrently


class Migration(migrations.Migration):
    dependencies = [('models', '0034_outbox_due_since')]

    initial = False
    atomic = False  # PostgreSQL: CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [
        AddIndexConcurrently(model_name='Notice', index=Index(fields=['author_id', 'created_at'])),
    ]
