"""`question.thread_id`: the thread a partner asked their question in (Slack: the parent's ts).

A question typed in a thread (under a notice in Herald's DM) was answered at the top level of the
conversation, and so was the CAM's relayed reply, queued later from the question row: neither was
in the thread the partner was reading. Both are now replies in that thread; "" is the top level.
"""

from tortoise import fields, migrations

from storage.migrations._columns import AddColumn as _AddColumn


class Migration(migrations.Migration):
    dependencies = [('models', '0019_account_app_removed')]

    initial = False

    operations = [
        _AddColumn("Question", "thread_id", fields.CharField(default="", max_length=50),
                   sql="ALTER TABLE question ADD COLUMN thread_id VARCHAR(50) NOT NULL DEFAULT ''"),
    ]
