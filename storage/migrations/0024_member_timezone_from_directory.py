"""`member.timezone_from_directory`: the directory import gave the member their time zone.

Every Teams message carries the sender's device time zone (clientInfo), but a member imported with a
blank `timezone` cell stayed on UTC, so their working hours and quiet hours were kept in UTC.
Herald now takes the zone Teams sends when nobody else gave one: not the directory (this flag) and
not the member in their preferences (`timezone_chosen`).

Members whose zone is not UTC and was not chosen got it from an import; a member on UTC may have
been imported so explicitly, which the database cannot tell: the next import naming a zone for
them sets the flag (and the zone) again.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

from storage.migrations._columns import AddColumn


class Migration(migrations.Migration):
    dependencies = [('models', '0023_outbound_request_started')]

    initial = False

    operations = [
        AddColumn("Member", "timezone_from_directory", fields.BooleanField(default=False),
                  sql="ALTER TABLE member ADD COLUMN timezone_from_directory BOOL NOT NULL DEFAULT FALSE"),
        ops.RunSQL(["UPDATE member SET timezone_from_directory = TRUE "
                    "WHERE timezone <> 'UTC' AND NOT timezone_chosen"]),
    ]
