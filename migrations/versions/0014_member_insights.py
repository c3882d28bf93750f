"""Member insights: RFM snapshots per member, program and run date; members' total spend per
category and period from outside data (share of wallet); attitudinal survey answers.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loyalty_engine.store.types import UTCDateTime


revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'rfm_snapshots',
        sa.Column('member_id', sa.String(length=64), nullable=False),
        sa.Column('program_id', sa.String(length=64), nullable=False),
        sa.Column('as_of_date', sa.Date(), nullable=False),
        sa.Column('taken_at', UTCDateTime(), nullable=False),
        sa.Column('recency_days', sa.Integer(), nullable=False),
        sa.Column('frequency', sa.Integer(), nullable=False),
        sa.Column('monetary_minor', sa.BigInteger(), nullable=False),
        sa.Column('r', sa.SmallInteger(), nullable=False),
        sa.Column('f', sa.SmallInteger(), nullable=False),
        sa.Column('m', sa.SmallInteger(), nullable=False),
        sa.Column('segment', sa.String(length=64), nullable=False),
        sa.Column('clv_minor', sa.BigInteger(), nullable=True),
        sa.Column('p_alive', sa.Float(), nullable=True),
        sa.Column('recorded_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['members.member_id'],
                                name=op.f('fk_rfm_snapshots_member_id_members')),
        sa.PrimaryKeyConstraint('member_id', 'program_id', 'as_of_date',
                                name=op.f('pk_rfm_snapshots')),
    )
    with op.batch_alter_table('rfm_snapshots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rfm_snapshots_program_id_as_of_date'),
                              ['program_id', 'as_of_date'], unique=False)
    op.create_table(
        'wallet_totals',
        sa.Column('member_id', sa.String(length=64), nullable=False),
        sa.Column('category', sa.String(length=64), nullable=False),
        sa.Column('period', sa.String(length=32), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('amount_minor', sa.BigInteger(), nullable=False),
        sa.Column('source', sa.String(length=200), nullable=False),
        sa.Column('recorded_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['members.member_id'],
                                name=op.f('fk_wallet_totals_member_id_members')),
        sa.PrimaryKeyConstraint('member_id', 'category', 'period',
                                name=op.f('pk_wallet_totals')),
    )
    op.create_table(
        'member_surveys',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('member_id', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('score', sa.SmallInteger(), nullable=False),
        sa.Column('answered_at', UTCDateTime(), nullable=False),
        sa.Column('source', sa.String(length=200), nullable=False),
        sa.Column('recorded_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['members.member_id'],
                                name=op.f('fk_member_surveys_member_id_members')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_member_surveys')),
        sa.UniqueConstraint('member_id', 'kind', 'answered_at',
                            name=op.f('uq_member_surveys_member_id_kind_answered_at')),
    )


def downgrade() -> None:
    op.drop_table('member_surveys')
    op.drop_table('wallet_totals')
    with op.batch_alter_table('rfm_snapshots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rfm_snapshots_program_id_as_of_date'))
    op.drop_table('rfm_snapshots')
