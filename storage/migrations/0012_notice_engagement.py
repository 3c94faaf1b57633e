"""The console's engagement page at 100,000 recipients per notice: `notice_engagement` keeps each
notice's figures per partner CAM by tier, region and role, worked out by the clock when they change,
so the page adds up a few rows per notice instead of reading every delivery and acknowledgement
of its window (0.3-0.5 s at 100,000 recipients, every minute per replica and scope).

Also a partial index on the members who left some topic: the page counts opt-outs from them
alone instead of reading every member.
"""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0011_open_lanes')]

    initial = False

    operations = [
        ops.CreateModel(
            name='NoticeEngagement',
            fields=[
                ('notice', fields.OneToOneField('models.Notice', source_field='notice_id', primary_key=True,
                                                db_constraint=True, to_field='id', related_name='engagement',
                                                on_delete=OnDelete.CASCADE)),
                ('computed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('fingerprint', fields.CharField(max_length=200)),
                ('figures', fields.TextField(unique=False)),
            ],
            options={'table': 'notice_engagement', 'app': 'models', 'pk_attr': 'notice_id',
                     'table_description': "A notice's engagement figures per partner CAM by tier, region and role"},
            bases=['Model'],
        ),
        ops.RunSQL(
            ["CREATE INDEX IF NOT EXISTS member_opted_out ON member (organisation_id) "
             "WHERE active AND topic_opt_outs <> '[]'"],
            reverse_sql=["DROP INDEX IF EXISTS member_opted_out"],
        ),
    ]
