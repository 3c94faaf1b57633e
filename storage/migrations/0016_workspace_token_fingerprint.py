"""`workspace.token_fingerprint`: a hash of the bot token a workspace row stands for (never the token).

When Herald missed Slack's `app_uninstalled` event, the first it hears of the removal is a send
refused with `account_inactive` / `token_revoked` / `invalid_auth`; the workspace is then
deactivated, unless the refused token is no longer the row's (reconnected meanwhile). A workspace
known only from `HERALD_SLACK_BOT_TOKEN` gets an inactive row holding the revoked env token's
fingerprint, so a new env token (the operator reinstalled the app) is used again.
"""

import importlib

from tortoise import fields, migrations

_AddColumn = importlib.import_module("storage.migrations.0003_surveys")._AddColumn


class Migration(migrations.Migration):
    dependencies = [('models', '0015_notice_failure')]

    initial = False

    operations = [
        _AddColumn("Workspace", "token_fingerprint", fields.CharField(default="", max_length=64),
                   sql="ALTER TABLE workspace ADD COLUMN token_fingerprint VARCHAR(64) NOT NULL DEFAULT ''"),
    ]
