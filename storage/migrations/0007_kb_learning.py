"""Learning from hand-offs (issue 16): `kb_proposal`, a CAM's proposal to add a handed-off question
to the knowledge base (a new phrasing of an entry, or a new entry with the CAM's reply), pending an
admin's approval; approved ones are applied as an overlay on the knowledge base files.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0006_messages')]

    initial = False

    operations = [
        ops.CreateModel(
            name='KBProposal',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('question', fields.ForeignKeyField('models.Question', source_field='question_id', null=True, db_constraint=True, to_field='id', related_name='kb_proposals', on_delete=OnDelete.SET_NULL)),
                ('kind', fields.CharField(max_length=20)),
                ('entry_id', fields.CharField(max_length=100)),
                ('question_text', fields.TextField(unique=False)),
                ('answer', fields.TextField(default='', unique=False)),
                ('source', fields.CharField(default='', max_length=20)),
                ('status', fields.CharField(default='pending', max_length=20)),
                ('proposed_by', fields.CharField(max_length=254)),
                ('proposed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('decided_by', fields.CharField(default='', max_length=254)),
                ('decided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'kb_proposal', 'app': 'models', 'unique_together': (('question', 'kind'),), 'indexes': [Index(fields=['status'])], 'pk_attr': 'id', 'table_description': "A CAM's proposal to teach the assistant a handed-off question (issue 16): as another phrasing"},
            bases=['Model'],
        ),
    ]
