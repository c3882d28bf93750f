"""Inactivity expiry: each balance's last activity, the instant it lapses without another,
and the last lapse that came before one.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loyalty_engine.store.types import UTCDateTime


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('balances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_activity_at', UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('lapses_at', UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('lapsed_at', UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('balances', schema=None) as batch_op:
        batch_op.drop_column('lapsed_at')
        batch_op.drop_column('lapses_at')
        batch_op.drop_column('last_activity_at')
