"""Operator basics: an audit trail of operators' acts (adjustments, erasures) and members'
erasure time.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loyalty_engine.store.types import UTCDateTime


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_records',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.String(length=64), nullable=True),
    sa.Column('program_id', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_records'))
    )
    with op.batch_alter_table('audit_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_records_member_id_id'), ['member_id', 'id'],
                              unique=False)
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('erased_at', UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_column('erased_at')
    with op.batch_alter_table('audit_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_records_member_id_id'))
    op.drop_table('audit_records')
