"""Household members: secondary members sharing a primary's fee-club membership.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 12:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loyalty_engine.store.types import UTCDateTime


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('household_members',
    sa.Column('member_id', sa.String(length=64), nullable=False),
    sa.Column('program_id', sa.String(length=64), nullable=False),
    sa.Column('club_id', sa.String(length=64), nullable=False),
    sa.Column('added_at', UTCDateTime(), nullable=False),
    sa.Column('primary_member_id', sa.String(length=64), nullable=False),
    sa.Column('removed_at', UTCDateTime(), nullable=True),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.member_id'],
                            name=op.f('fk_household_members_member_id_members')),
    sa.ForeignKeyConstraint(['primary_member_id'], ['members.member_id'],
                            name=op.f('fk_household_members_primary_member_id_members')),
    sa.PrimaryKeyConstraint('member_id', 'program_id', 'club_id', 'added_at',
                            name=op.f('pk_household_members'))
    )
    with op.batch_alter_table('household_members', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_household_members_program_id_club_id_primary_member_id'),
            ['program_id', 'club_id', 'primary_member_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('household_members', schema=None) as batch_op:
        batch_op.drop_index(
            batch_op.f('ix_household_members_program_id_club_id_primary_member_id'))
    op.drop_table('household_members')
