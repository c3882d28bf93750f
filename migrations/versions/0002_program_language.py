"""Program language: counters and their per-purchase journal, vouchers, refunds,
redemptions, point debts; pending and expiring lots; natural keys for non-earning entries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 18:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loyalty_engine.store.types import UTCDateTime


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('progress_counters',
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('counter', sa.String(length=80), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.member_id'], name=op.f('fk_progress_counters_member_id_members')),
    sa.PrimaryKeyConstraint('member_id', 'program_id', 'counter', 'period', name=op.f('pk_progress_counters'))
    )
    op.create_table('redemptions',
    sa.Column('redemption_id', sa.String(length=128), nullable=False),
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('voucher_code', sa.String(length=160), nullable=True),
    sa.Column('reward_id', sa.String(length=64), nullable=True),
    sa.Column('consumed', sa.JSON(), nullable=False),
    sa.Column('body_hash', sa.String(length=64), nullable=False),
    sa.Column('occurred_at', UTCDateTime(), nullable=False),
    sa.Column('recorded_at', UTCDateTime(), nullable=False),
    sa.Column('reversed_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.member_id'], name=op.f('fk_redemptions_member_id_members')),
    sa.PrimaryKeyConstraint('redemption_id', name=op.f('pk_redemptions'))
    )
    op.create_table('purchase_progress',
    sa.Column('purchase_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('counter', sa.String(length=80), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('delta', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], name=op.f('fk_purchase_progress_purchase_id_purchases')),
    sa.PrimaryKeyConstraint('purchase_id', 'program_id', 'counter', 'period', name=op.f('pk_purchase_progress'))
    )
    op.create_table('refunds',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('store_id', sa.String(length=64), nullable=False),
    sa.Column('refund_id', sa.String(length=128), nullable=False),
    sa.Column('purchase_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.String(length=64), nullable=True),
    sa.Column('occurred_at', UTCDateTime(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('items', sa.JSON(), nullable=False),
    sa.Column('body_hash', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', UTCDateTime(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_refunds_amount_positive')),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], name=op.f('fk_refunds_purchase_id_purchases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
    sa.UniqueConstraint('store_id', 'refund_id', name=op.f('uq_refunds_store_id_refund_id'))
    )
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refunds_purchase_id'), ['purchase_id'], unique=False)

    op.create_table('vouchers',
    sa.Column('code', sa.String(length=160), nullable=False),
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('program_version_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reward_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=True),
    sa.Column('percent', sa.String(length=16), nullable=True),
    sa.Column('sku', sa.String(length=64), nullable=True),
    sa.Column('category', sa.String(length=64), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('purchase_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('rule_id', sa.String(length=64), nullable=True),
    sa.Column('consumed', sa.JSON(), nullable=False),
    sa.Column('issued_at', UTCDateTime(), nullable=False),
    sa.Column('valid_until', UTCDateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('redeemed_by', sa.String(length=128), nullable=True),
    sa.Column('changed_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint("status IN ('issued', 'redeemed', 'void')", name=op.f('ck_vouchers_status_known')),
    sa.ForeignKeyConstraint(['member_id'], ['members.member_id'], name=op.f('fk_vouchers_member_id_members')),
    sa.ForeignKeyConstraint(['program_version_id'], ['program_versions.id'], name=op.f('fk_vouchers_program_version_id_program_versions')),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], name=op.f('fk_vouchers_purchase_id_purchases')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_vouchers'))
    )
    with op.batch_alter_table('vouchers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vouchers_member_id_program_id'), ['member_id', 'program_id'], unique=False)

    op.create_table('point_debts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('refund_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('outstanding', sa.BigInteger(), nullable=False),
    sa.Column('in_balance', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint('outstanding >= 0 AND outstanding <= points', name=op.f('ck_point_debts_outstanding_in_range')),
    sa.ForeignKeyConstraint(['member_id'], ['members.member_id'], name=op.f('fk_point_debts_member_id_members')),
    sa.ForeignKeyConstraint(['refund_id'], ['refunds.id'], name=op.f('fk_point_debts_refund_id_refunds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_point_debts'))
    )
    with op.batch_alter_table('point_debts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_point_debts_member_id_program_id'), ['member_id', 'program_id'], unique=False)

    with op.batch_alter_table('balances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending', sa.BigInteger(), server_default='0', nullable=False))

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ref', sa.String(length=160), nullable=True))
        batch_op.create_index(batch_op.f('ix_ledger_entries_kind_ref'), ['kind', 'ref'], unique=True,
                              postgresql_where=sa.text('ref IS NOT NULL'),
                              sqlite_where=sa.text('ref IS NOT NULL'))

    with op.batch_alter_table('point_lots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending_until', UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('activated_at', UTCDateTime(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('point_lots', schema=None) as batch_op:
        batch_op.drop_column('activated_at')
        batch_op.drop_column('pending_until')

    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_entries_kind_ref'))
    # Dropping a column would make SQLite rebuild the table (and lose its append-only
    # triggers), so the column goes without the batch machinery where the database allows.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE ledger_entries DROP COLUMN ref")
    else:
        op.drop_column('ledger_entries', 'ref')

    with op.batch_alter_table('balances', schema=None) as batch_op:
        batch_op.drop_column('pending')

    with op.batch_alter_table('point_debts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_point_debts_member_id_program_id'))

    op.drop_table('point_debts')
    with op.batch_alter_table('vouchers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vouchers_member_id_program_id'))

    op.drop_table('vouchers')
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refunds_purchase_id'))

    op.drop_table('refunds')
    op.drop_table('purchase_progress')
    op.drop_table('redemptions')
    op.drop_table('progress_counters')
