"""`api_token.role`: what a token may read.

A token acted with its person's current role: a CAM's token handed to a dashboard read every
partner's reports once the CAM was made admin or compliance. A token now keeps the role it was
created with, and reads what both that role and the person's current one allow. Tokens created
before this migration take the role their person has at migration time (a removed person's
tokens are revoked already).
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
    ]
