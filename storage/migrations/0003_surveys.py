"""Pulse surveys and A/B notice variants: surveys and their answers (current and history), notice
variants, the A/B test of a notice (share sent first, the variant rolled out), interactions with a
notice's buttons, and the variant each delivery row shows (`delivery.variant`).

`delivery.variant` is added with `AddColumn` (storage/migrations/_columns.py): tortoise's AddField
cannot add a NOT NULL column to a table that has rows.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

from storage.migrations._columns import AddColumn as _AddColumn  # the name later migrations once imported


class Migration(migrations.Migration):
    dependencies = [('models', '0002_operations')]

    initial = False

    operations = [
        ops.CreateModel(
            name='NoticeExperiment',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('notice', fields.OneToOneField('models.Notice', source_field='notice_id', db_constraint=True, to_field='id', related_name='experiment', on_delete=OnDelete.CASCADE)),
                ('share_percent', fields.SmallIntField(null=True)),
                ('winner', fields.CharField(default='', max_length=1)),
                ('rolled_out_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('rolled_out_by', fields.CharField(default='', max_length=254)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'notice_experiment', 'app': 'models', 'pk_attr': 'id', 'table_description': "A notice's A/B test: the share of the audience sent first, and the variant rolled out to the"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='NoticeInteraction',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('notice', fields.ForeignKeyField('models.Notice', source_field='notice_id', db_constraint=True, to_field='id', related_name='interactions', on_delete=OnDelete.CASCADE)),
                ('member', fields.ForeignKeyField('models.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='interactions', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharField(max_length=20)),
                ('platform', fields.CharField(max_length=10)),
                ('first_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('presses', fields.IntField(default=1)),
            ],
            options={'table': 'notice_interaction', 'app': 'models', 'unique_together': (('notice', 'member', 'kind'),), 'pk_attr': 'id', 'table_description': "A member's press of a button on a notice other than Acknowledge (e.g. its link): the first"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='NoticeVariant',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('notice', fields.ForeignKeyField('models.Notice', source_field='notice_id', db_constraint=True, to_field='id', related_name='variants', on_delete=OnDelete.CASCADE)),
                ('label', fields.CharField(max_length=1)),
                ('title', fields.CharField(max_length=200)),
                ('body', fields.TextField(unique=False)),
            ],
            options={'table': 'notice_variant', 'app': 'models', 'unique_together': (('notice', 'label'),), 'pk_attr': 'id', 'table_description': "One version (title and body) of a notice in an A/B test. Variant A is the notice's own text."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Survey',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('notice', fields.OneToOneField('models.Notice', source_field='notice_id', db_constraint=True, to_field='id', related_name='survey', on_delete=OnDelete.CASCADE)),
                ('key', fields.CharField(null=True, unique=True, max_length=120)),
                ('question', fields.CharField(max_length=300)),
                ('kind', fields.CharField(max_length=10)),
                ('options', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('scale_min', fields.SmallIntField(null=True)),
                ('scale_max', fields.SmallIntField(null=True)),
                ('follow_up', fields.CharField(default='', max_length=300)),
                ('anonymous', fields.BooleanField(default=False)),
                ('respondent_key', fields.TextField(default='', unique=False)),
                ('closes_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'survey', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A pulse survey: what its notice asks and how it may be answered. Journey surveys are standing'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SurveyAnswer',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('survey', fields.ForeignKeyField('models.Survey', source_field='survey_id', db_constraint=True, to_field='id', related_name='answers', on_delete=OnDelete.CASCADE)),
                ('respondent', fields.CharField(max_length=64)),
                ('member', fields.ForeignKeyField('models.Member', source_field='member_id', null=True, db_constraint=True, to_field='id', related_name='survey_answers', on_delete=OnDelete.SET_NULL)),
                ('organisation', fields.ForeignKeyField('models.Organisation', source_field='organisation_id', null=True, db_constraint=True, to_field='id', related_name='survey_answers', on_delete=OnDelete.SET_NULL)),
                ('role', fields.CharField(default='', max_length=50)),
                ('value', fields.SmallIntField()),
                ('comment', fields.TextField(default='', unique=False)),
                ('platform', fields.CharField(max_length=10)),
                ('answered_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('changed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('changes', fields.IntField(default=0)),
            ],
            options={'table': 'survey_answer', 'app': 'models', 'unique_together': (('survey', 'respondent'),), 'pk_attr': 'id', 'table_description': "A respondent's current answer: one per survey and respondent, the latest wins (every change is"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SurveyAnswerChange',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('survey', fields.ForeignKeyField('models.Survey', source_field='survey_id', db_constraint=True, to_field='id', related_name='answer_changes', on_delete=OnDelete.CASCADE)),
                ('respondent', fields.CharField(max_length=64)),
                ('value', fields.SmallIntField()),
                ('comment', fields.TextField(default='', unique=False)),
                ('platform', fields.CharField(max_length=10)),
                ('changed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'survey_answer_change', 'app': 'models', 'indexes': [Index(fields=['survey_id', 'respondent'])], 'pk_attr': 'id', 'table_description': 'The history of answers: the first answer and every change of answer or comment.'},
            bases=['Model'],
        ),
        _AddColumn(
            model_name='Delivery',
            name='variant',
            field=fields.CharField(default='', max_length=1),
            sql="ALTER TABLE \"delivery\" ADD COLUMN \"variant\" VARCHAR(1) NOT NULL DEFAULT ''",
        ),
    ]
