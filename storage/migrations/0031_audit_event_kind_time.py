"""An index on audit_event (kind, occurred_at), for the recent events of one kind.

"Add to Slack" asks whether its install link was used (bot.core.directory.workspaces.install_used:
the `workspace.installed` events since the link was issued), before the code exchange and again
inside the install's write transaction. audit_event only grows (a year: millions of events) and
had no index on kind or occurred_at (only seq, id and (notice_id, kind)), so every install read
the whole trail, on SQLite holding the write lock. With this index it reads the few recent
installs.

On PostgreSQL the indexes are built CONCURRENTLY
(storage/migrations/_columns.py): the migration is not atomic (`atomic = False`), and every
operation is safe to run again. Same end schema as before.
"""

from tortoise import migrations
from tortoise.indexes import Index

from storage.migrations._columns import AddIndexConcurrently


class Migration(migrations.Migration):
    dependencies = [('models', '0030_tick_sweep_indexes')]

    initial = False
    atomic = False  # PostgreSQL: CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [
        AddIndexConcurrently(model_name='AuditEvent', index=Index(fields=['kind', 'occurred_at'])),
    ]
