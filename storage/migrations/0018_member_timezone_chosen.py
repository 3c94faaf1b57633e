"""`member.timezone_chosen`: the member set their time zone in their preferences.

A directory import wrote the file's `timezone` cell over every member's zone, so a member who had
chosen another one (they moved, or travel) was put back on the directory's zone by the next
routine import, and a need-to-know notice held for their quiet hours reached them at night. An
import now leaves a chosen zone alone (and never replaces a zone with a blank cell).
"""

import importlib

from tortoise import fields, migrations

_AddColumn = importlib.import_module("storage.migrations.0003_surveys")._AddColumn


class Migration(migrations.Migration):
    dependencies = [('models', '0017_member_indexes')]

    initial = False

    operations = [
        _AddColumn("Member", "timezone_chosen", fields.BooleanField(default=False),
                   sql="ALTER TABLE member ADD COLUMN timezone_chosen BOOL NOT NULL DEFAULT FALSE"),
    ]
