"""`delivery.update_seq`: a count of the flags raised for a copy's in-place update.

An update's outcome used to clear `update_pending` outright, so a flag raised while the update was
on the wire (a retraction during an edit's update, an acknowledgement while a reminder was being
sent) was cleared with it and never reached the message. The outbox now reads the count when it
claims an update and clears the flag only if the count is unchanged.
"""

from tortoise import fields, migrations

from storage.migrations._columns import AddColumn


class Migration(migrations.Migration):
    dependencies = [('models', '0013_delivery_account')]

    initial = False

    operations = [
        AddColumn("Delivery", "update_seq", fields.IntField(default=0),
                  sql="ALTER TABLE delivery ADD COLUMN update_seq INTEGER NOT NULL DEFAULT 0"),
    ]
