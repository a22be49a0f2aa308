"""topic suggestions on items, topic corrections by heads

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-30 01:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models  # custom column types are rendered from it

revision: str = '0008'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('topic_corrections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('from_topic', sa.String(length=64), nullable=False),
    sa.Column('to_topic', sa.String(length=64), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=True),
    sa.Column('at', storage.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], name=op.f('fk_topic_corrections_item_id_items')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_topic_corrections_staff_id_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_topic_corrections'))
    )
    with op.batch_alter_table('topic_corrections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_topic_corrections_item_id'), ['item_id'], unique=False)

    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('suggested_topic', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('suggestion_score', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_column('suggestion_score')
        batch_op.drop_column('suggested_topic')

    with op.batch_alter_table('topic_corrections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_topic_corrections_item_id'))

    op.drop_table('topic_corrections')
