"""Rebate debts: money a refund should have taken back from a rebate voucher already used,
owed by the member and taken from their next rebate of the same rule.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loyalty_engine.store.types import UTCDateTime


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('rebate_debts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('rule_id', sa.String(length=64), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('voucher_code', sa.String(length=160), nullable=False),
    sa.Column('refund_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('outstanding_minor', sa.BigInteger(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('repaid_by', sa.String(length=160), nullable=True),
    sa.CheckConstraint('outstanding_minor >= 0 AND outstanding_minor <= amount_minor',
                       name=op.f('ck_rebate_debts_outstanding_in_range')),
    sa.ForeignKeyConstraint(['member_id'], ['members.member_id'],
                            name=op.f('fk_rebate_debts_member_id_members')),
    sa.ForeignKeyConstraint(['refund_id'], ['refunds.id'],
                            name=op.f('fk_rebate_debts_refund_id_refunds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rebate_debts')),
    sa.UniqueConstraint('member_id', 'refund_id', 'program_id', 'rule_id', 'period',
                        name=op.f('uq_rebate_debts_member_id_refund_id_program_id_rule_id_period'))
    )
    with op.batch_alter_table('rebate_debts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rebate_debts_member_id_program_id_rule_id'),
                              ['member_id', 'program_id', 'rule_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('rebate_debts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rebate_debts_member_id_program_id_rule_id'))
    op.drop_table('rebate_debts')
