"""`api_token.role` and `api_token.expires_at`: what a token may read, and until when.

A token acted with its person's current role: a CAM's token handed to a dashboard read every
partner's reports once the CAM was made admin or compliance. A token now keeps the role it was
created with, and reads what both that role and the person's current one allow. Tokens created
before this migration take the role their person has at migration time (a removed person's
tokens are revoked already).

Tokens never expired. `herald token create` now gives each an expiry (365 days unless told
otherwise); tokens created before this migration keep working with no expiry (`herald token
list` shows "no expiry"): revoke them and create new ones to give them one.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

from storage.migrations._columns import AddColumn


class Migration(migrations.Migration):
    dependencies = [('models', '0035_notice_author_created')]

    initial = False

    operations = [
        AddColumn("ApiToken", "role", fields.CharField(max_length=20),
                  sql="ALTER TABLE api_token ADD COLUMN role VARCHAR(20) NOT NULL DEFAULT 'cam'"),
        ops.RunSQL(["UPDATE api_token SET role = COALESCE("
                    "(SELECT staff.role FROM staff WHERE staff.id = api_token.staff_id), 'cam')"]),
        ops.AddField(model_name='ApiToken', name='expires_at', field=fields.DatetimeField(null=True)),
    ]
