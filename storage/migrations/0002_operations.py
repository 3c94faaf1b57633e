from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    """Slack token rotation: when the stored token expires, the sealed refresh token, and a lease
    so that only one replica refreshes a workspace's token at a time."""

    dependencies = [("models", "0001_initial")]

    operations = [
        ops.AddField(model_name="Workspace", name="token_expires_at",
                     field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
        ops.AddField(model_name="Workspace", name="refresh_token", field=fields.TextField(default="")),
        ops.AddField(model_name="Workspace", name="refresh_claimed_by", field=fields.CharField(default="", max_length=64)),
        ops.AddField(model_name="Workspace", name="refresh_claimed_until",
                     field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
    ]
