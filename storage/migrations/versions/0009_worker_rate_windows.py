"""rate windows shared by every sending process (mcu worker, mcu serve)

Revision ID: 0009_worker
Revises: 0008
Create Date: 2026-11-30 04:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009_worker'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('rate_windows',
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('expires', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_rate_windows'))
    )
    with op.batch_alter_table('rate_windows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rate_windows_expires'), ['expires'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('rate_windows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rate_windows_expires'))

    op.drop_table('rate_windows')
