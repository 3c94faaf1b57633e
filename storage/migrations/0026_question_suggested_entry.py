"""`question.suggested_entry_id`: the entry the assistant offered as "Did you mean" with its answer.

When the assistant was not sure it asked back ("If it is about ..., press the button") and filed
the question under no entry, so a hand-off told the CAM "The knowledge base had no answer" and
had no "Add question to the suggested entry": the CAM was told less than the partner saw, and
the one-click way to teach the knowledge base that phrasing was missing where it was needed. ""
when nothing was offered (and for questions asked before).
"""

from tortoise import fields, migrations

from storage.migrations._columns import AddColumn as _AddColumn


class Migration(migrations.Migration):
    dependencies = [('models', '0025_lane_update_budget')]

    initial = False

    operations = [
        _AddColumn("Question", "suggested_entry_id", fields.CharField(default="", max_length=100),
                   sql="ALTER TABLE question ADD COLUMN suggested_entry_id VARCHAR(100) NOT NULL DEFAULT ''"),
    ]
