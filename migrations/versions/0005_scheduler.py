"""The scheduler: watermarks per program and job, job effects under natural keys, job
failures to retry, vouchers that expire, and tier history without a foreign key of its own.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loyalty_engine.store.types import UTCDateTime


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "status IN ('issued', 'redeemed', 'void')"
_NEW = "status IN ('issued', 'redeemed', 'void', 'expired')"


def upgrade() -> None:
    op.create_table('scheduler_watermarks',
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('job', sa.String(length=32), nullable=False),
    sa.Column('ran_to', UTCDateTime(), nullable=False),
    sa.Column('runs', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('program_id', 'job', name=op.f('pk_scheduler_watermarks'))
    )
    op.create_table('job_effects',
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('job', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('effect_key', sa.String(length=160), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('occurred_at', UTCDateTime(), nullable=False),
    sa.Column('recorded_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('program_id', 'job', 'member_id', 'effect_key',
                            name=op.f('pk_job_effects'))
    )
    op.create_table('job_failures',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('job', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('failure_key', sa.String(length=160), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('as_of', UTCDateTime(), nullable=False),
    sa.Column('attempts', sa.BigInteger(), nullable=False),
    sa.Column('first_failed_at', UTCDateTime(), nullable=False),
    sa.Column('last_failed_at', UTCDateTime(), nullable=False),
    sa.Column('resolved_at', UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_failures')),
    sa.UniqueConstraint('program_id', 'job', 'member_id', 'failure_key',
                        name=op.f('uq_job_failures_program_id_job_member_id_failure_key'))
    )
    _voucher_statuses(_NEW)
    # tier_status guards the member already; a review appends history in bulk.
    with op.batch_alter_table('tier_history', recreate='auto') as batch_op:
        batch_op.drop_constraint(op.f('fk_tier_history_member_id_members'), type_='foreignkey')


def _voucher_statuses(check: str) -> None:
    # SQLite cannot alter a CHECK constraint: batch mode rebuilds the table (vouchers has
    # no triggers to lose, unlike the ledger).
    with op.batch_alter_table('vouchers', recreate='auto') as batch_op:
        batch_op.drop_constraint(op.f('ck_vouchers_status_known'), type_='check')
        batch_op.create_check_constraint('status_known', check)


def downgrade() -> None:
    with op.batch_alter_table('tier_history', recreate='auto') as batch_op:
        batch_op.create_foreign_key(op.f('fk_tier_history_member_id_members'), 'members',
                                    ['member_id'], ['member_id'])
    op.execute("UPDATE vouchers SET status = 'issued' WHERE status = 'expired'")
    _voucher_statuses(_OLD)
    op.drop_table('job_failures')
    op.drop_table('job_effects')
    op.drop_table('scheduler_watermarks')
