"""Slack token rotation: when the stored token expires, the sealed refresh token, and a lease so
that only one replica refreshes a workspace's token at a time.

The two NOT NULL columns are added with a DEFAULT (`AddColumn`): this migration used tortoise's
AddField, which cannot add them to a `workspace` table that has rows, so a database with a
connected Slack workspace could not be upgraded from 0001. Databases it did upgrade (an empty
`workspace` table) have the same columns without the DEFAULT; Herald always writes both.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

from storage.migrations._columns import AddColumn


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    operations = [
        ops.AddField(model_name="Workspace", name="token_expires_at",
                     field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
        AddColumn("Workspace", "refresh_token", fields.TextField(default=""),
                  sql="ALTER TABLE \"workspace\" ADD COLUMN \"refresh_token\" TEXT NOT NULL DEFAULT ''"),
        AddColumn("Workspace", "refresh_claimed_by", fields.CharField(default="", max_length=64),
                  sql="ALTER TABLE \"workspace\" ADD COLUMN \"refresh_claimed_by\" VARCHAR(64) NOT NULL DEFAULT ''"),
        ops.AddField(model_name="Workspace", name="refresh_claimed_until",
                     field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
    ]
