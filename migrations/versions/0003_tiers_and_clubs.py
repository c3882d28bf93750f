"""Tiers and clubs: tier status and history, club memberships, fee charges, group
verifications and consent flags.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loyalty_engine.store.types import UTCDateTime


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('club_memberships',
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('club_id', sa.String(length=64), nullable=False),
    sa.Column('level', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('joined_at', UTCDateTime(), nullable=False),
    sa.Column('term_start', UTCDateTime(), nullable=True),
    sa.Column('term_end', UTCDateTime(), nullable=True),
    sa.Column('auto_renew', sa.Boolean(), nullable=False),
    sa.Column('ended_at', UTCDateTime(), nullable=True),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'active', 'grace', 'lapsed', 'cancelled', 'left')", name=op.f('ck_club_memberships_status_known')),
    sa.ForeignKeyConstraint(['member_id'], ['members.member_id'], name=op.f('fk_club_memberships_member_id_members')),
    sa.PrimaryKeyConstraint('member_id', 'program_id', 'club_id', name=op.f('pk_club_memberships'))
    )
    with op.batch_alter_table('club_memberships', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_club_memberships_program_id_club_id_status'), ['program_id', 'club_id', 'status'], unique=False)

    op.create_table('fee_charges',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('club_id', sa.String(length=64), nullable=False),
    sa.Column('level', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('term_start', UTCDateTime(), nullable=False),
    sa.Column('term_end', UTCDateTime(), nullable=False),
    sa.Column('due_at', UTCDateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('paid_at', UTCDateTime(), nullable=True),
    sa.Column('paid_via', sa.String(length=16), nullable=True),
    sa.Column('paid_ref', sa.String(length=160), nullable=True),
    sa.Column('points', sa.BigInteger(), nullable=True),
    sa.Column('refunded_minor', sa.BigInteger(), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.CheckConstraint("status IN ('due', 'paid', 'failed', 'refunded', 'waived')", name=op.f('ck_fee_charges_status_known')),
    sa.CheckConstraint('amount_minor >= 0', name=op.f('ck_fee_charges_amount_not_negative')),
    sa.ForeignKeyConstraint(['member_id'], ['members.member_id'], name=op.f('fk_fee_charges_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fee_charges')),
    sa.UniqueConstraint('member_id', 'program_id', 'club_id', 'kind', 'term_start', name=op.f('uq_fee_charges_member_id_program_id_club_id_kind_term_start'))
    )
    with op.batch_alter_table('fee_charges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fee_charges_status_due_at'), ['status', 'due_at'], unique=False)

    op.create_table('group_verifications',
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('group_id', sa.String(length=64), nullable=False),
    sa.Column('evidence', sa.String(length=200), nullable=False),
    sa.Column('verified_at', UTCDateTime(), nullable=False),
    sa.Column('verified_until', UTCDateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('lapsed_at', UTCDateTime(), nullable=True),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.member_id'], name=op.f('fk_group_verifications_member_id_members')),
    sa.PrimaryKeyConstraint('member_id', 'program_id', 'group_id', name=op.f('pk_group_verifications'))
    )
    op.create_table('member_consents',
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('flag', sa.String(length=64), nullable=False),
    sa.Column('given', sa.Boolean(), nullable=False),
    sa.Column('given_at', UTCDateTime(), nullable=True),
    sa.Column('withdrawn_at', UTCDateTime(), nullable=True),
    sa.Column('changed_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.member_id'], name=op.f('fk_member_consents_member_id_members')),
    sa.PrimaryKeyConstraint('member_id', 'flag', name=op.f('pk_member_consents'))
    )
    op.create_table('tier_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('from_tier', sa.String(length=64), nullable=False),
    sa.Column('to_tier', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('changed_at', UTCDateTime(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('ref', sa.String(length=160), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.member_id'], name=op.f('fk_tier_history_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_history')),
    sa.UniqueConstraint('member_id', 'program_id', 'ref', name=op.f('uq_tier_history_member_id_program_id_ref'))
    )
    with op.batch_alter_table('tier_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tier_history_member_id_program_id_id'), ['member_id', 'program_id', 'id'], unique=False)

    op.create_table('tier_status',
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('tier', sa.String(length=64), nullable=False),
    sa.Column('base_tier', sa.String(length=64), nullable=False),
    sa.Column('held_until', sa.Date(), nullable=True),
    sa.Column('base_held_until', sa.Date(), nullable=True),
    sa.Column('manual_tier', sa.String(length=64), nullable=True),
    sa.Column('manual_until', UTCDateTime(), nullable=True),
    sa.Column('manual_reason', sa.String(length=200), nullable=True),
    sa.Column('enrolled_on', sa.Date(), nullable=False),
    sa.Column('reviewed_on', sa.Date(), nullable=True),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.member_id'], name=op.f('fk_tier_status_member_id_members')),
    sa.PrimaryKeyConstraint('member_id', 'program_id', name=op.f('pk_tier_status'))
    )


def downgrade() -> None:
    op.drop_table('tier_status')
    with op.batch_alter_table('tier_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tier_history_member_id_program_id_id'))

    op.drop_table('tier_history')
    op.drop_table('member_consents')
    op.drop_table('group_verifications')
    with op.batch_alter_table('fee_charges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fee_charges_status_due_at'))

    op.drop_table('fee_charges')
    with op.batch_alter_table('club_memberships', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_club_memberships_program_id_club_id_status'))

    op.drop_table('club_memberships')
